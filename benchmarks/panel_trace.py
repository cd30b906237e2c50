"""
One panel run, iteration by iteration: what the rollout's episodes returned, what the rule dropped, and the policy.

    V="influence_ppo:filter_mode=reliability,filter_min_fraction=0.125,filter_min_reliability=-1000000000.0"
    python benchmarks/panel_trace.py --task acrobot --seed 7 --iterations 12 --variant "$V,influence_ranking=plain"

Each line: the iteration; the episodes that ended in its rollout (count, how many succeeded, i.e. returned more than
the task's worst return, and the last three returns); the episodes in SB3's 100-episode window that succeeded; the
share of records kept, the cross-fitted reliability rho and whether the outcome gate closed; the policy's mean
entropy on the buffer, PPO's approx_kl and clip fraction after the update; the panel's evaluation (fixed test set).
Used for the Acrobot panel seed that collapsed after its first success (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch as th

from sb3_influence.benchmark.evaluation import evaluate_fixed
from sb3_influence.benchmark.panel import TASKS, _build, make_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="acrobot", choices=sorted(TASKS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--variant", default="influence_ppo")
    parser.add_argument("--worst", type=float, default=-500.0, help="the return of a failed episode (Acrobot: -500)")
    args = parser.parse_args()
    th.set_num_threads(1)
    task = TASKS[args.task]
    model = _build(task, args.variant, args.seed)
    eval_env = make_env(task, 1, 10_000)
    original_train = model.train
    iteration = 0

    def traced_train() -> None:
        nonlocal iteration
        # episodes that ended in this rollout (as the outcome gate counts them; computed here so that the script
        # also traces library versions without that gate)
        ended = int(np.count_nonzero(model.rollout_buffer.episode_starts[1:]) + np.count_nonzero(model._last_episode_starts))
        window = [float(info["r"]) for info in model.ep_info_buffer]
        recent = window[len(window) - ended :] if ended else []
        original_train()
        iteration += 1
        report = getattr(model, "last_influence", None)
        obs = th.as_tensor(model.rollout_buffer.observations.reshape(-1, *model.observation_space.shape))
        with th.no_grad():
            entropy = model.policy.get_distribution(obs).entropy().mean().item()
        logged = model.logger.name_to_value
        kl, clip = logged.get("train/approx_kl", float("nan")), logged.get("train/clip_fraction", float("nan"))
        kept = report.n_kept / report.kept.size if report is not None else 1.0
        rho = report.reliability if report is not None else float("nan")
        gated = report.gated if report is not None else False
        print(
            f"it {iteration:2d} | rollout: {len(recent)} episodes, {sum(r > args.worst for r in recent)} succeeded, "
            f"last {np.round(recent[-3:], 0).tolist()} | window successes {sum(r > args.worst for r in window):3d} | "
            f"kept {kept:.2f} rho {rho:+.2f} gated {int(gated)} | entropy {entropy:.3f} "
            f"kl {kl:.4f} clip {clip:.3f} | "
            f"eval {evaluate_fixed(model, eval_env, task.eval_episodes, 10_000):.1f}",
            flush=True,
        )

    model.train = traced_train  # type: ignore[method-assign]
    model.learn(args.iterations * task.hyperparams.get("n_envs", 1) * task.hyperparams["n_steps"])


if __name__ == "__main__":
    main()
