"""
Per-iteration counterfactual of one panel task: from the same parameters, the filtered update against the full one.

    python benchmarks/counterfactual.py --task cartpole --seeds 30 31 --iterations 15 --out /tmp/cartpole.csv

At each iteration the model's parameters, optimizer state and global RNG states are saved; the IIF update
(the variant's rule) runs and is evaluated; then the same update on every record (PPO's) runs from the saved
state with the same minibatch permutation and is evaluated on the same test episodes; training goes on from the
update named by ``--follow``. One row per iteration: both evaluations (``--eval-episodes`` stochastic episodes
of the fixed test set, seed 10000), PPO's approx_kl and clip fraction of both updates, and what the rule dropped
(how many; their mean raw advantage and share with a negative one; their mean distance, in steps, to the end of
their episode within the rollout and the share within 10 steps of a termination; the same for all records).
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
from typing import Any

import numpy as np
import torch as th

from sb3_influence.benchmark.evaluation import evaluate_fixed
from sb3_influence.benchmark.panel import TASKS, _build, make_env

COLUMNS = [
    "seed",
    "iteration",
    "eval_filtered",
    "eval_full",
    "kl_filtered",
    "kl_full",
    "clip_filtered",
    "clip_full",
    "n",
    "n_dropped",
    "dropped_adv_mean",
    "all_adv_mean",
    "dropped_adv_negative",
    "all_adv_negative",
    "dropped_to_end",
    "all_to_end",
    "dropped_near_termination",
    "all_near_termination",
    "episodes",
]


def _steps_to_end(buffer: Any, last_starts: np.ndarray) -> np.ndarray:
    """For every record ``(step, env)``: steps until its episode ends within the rollout (inf if it does not end)."""
    starts = np.concatenate([buffer.episode_starts[1:], last_starts[None, :]], axis=0)  # row t: episode ended at t
    n_steps, n_envs = starts.shape
    to_end = np.full((n_steps, n_envs), np.inf)
    for env in range(n_envs):
        remaining = np.inf
        for step in range(n_steps - 1, -1, -1):
            remaining = 0.0 if starts[step, env] else remaining + 1
            to_end[step, env] = remaining
    return to_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="cartpole", choices=sorted(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[30])
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--variant", default="influence_ppo")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--follow", choices=["filtered", "full"], default="filtered")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    th.set_num_threads(1)
    task = TASKS[args.task]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    new = not os.path.exists(args.out)
    with open(args.out, "a", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS)
        if new:
            file.write(f"# python benchmarks/counterfactual.py --task {args.task} --variant {args.variant} ")
            file.write(f"--follow {args.follow}\n")
            writer.writeheader()
        for seed in args.seeds:
            model = _build(task, args.variant, seed)
            parent_cls = type(model).__mro__[2]  # InfluencePPO -> InfluenceFilterMixin -> PPO
            assert parent_cls.__module__.startswith(("stable_baselines3", "sb3_contrib")), parent_cls
            parent_train = parent_cls.train
            eval_env = make_env(task, 1, 10_000)
            filtered_train = model.train
            state = {"iteration": 0, "seed": seed}

            def evaluate(model: Any = model, eval_env: Any = eval_env) -> float:
                return evaluate_fixed(model, eval_env, args.eval_episodes, 10_000)

            def counterfactual_train(
                model: Any = model,
                filtered_train: Any = filtered_train,
                parent_train: Any = parent_train,
                state: dict[str, int] = state,
            ) -> None:
                state["iteration"] += 1
                saved = (copy.deepcopy(model.policy.state_dict()), copy.deepcopy(model.policy.optimizer.state_dict()))
                rng = (np.random.get_state(), th.get_rng_state())
                filtered_train()
                report = model.last_influence
                logged = dict(model.logger.name_to_value)
                after_filtered = (copy.deepcopy(model.policy.state_dict()), copy.deepcopy(model.policy.optimizer.state_dict()))
                rng_filtered = (np.random.get_state(), th.get_rng_state())
                eval_filtered = evaluate()
                model.policy.load_state_dict(saved[0])
                model.policy.optimizer.load_state_dict(saved[1])
                np.random.set_state(rng[0])
                th.set_rng_state(rng[1])
                model.rollout_buffer.set_keep_mask(None)
                parent_train(model)
                logged_full = dict(model.logger.name_to_value)
                eval_full = evaluate()
                if args.follow == "filtered":
                    model.policy.load_state_dict(after_filtered[0])
                    model.policy.optimizer.load_state_dict(after_filtered[1])
                    np.random.set_state(rng_filtered[0])
                    th.set_rng_state(rng_filtered[1])
                buffer = model.rollout_buffer
                adv = buffer.advantages.reshape(report.kept.shape)
                to_end = _steps_to_end(buffer, np.asarray(model._last_episode_starts, dtype=float))
                near = to_end < 10
                dropped = ~report.kept
                ended = int(np.count_nonzero(buffer.episode_starts[1:]) + np.count_nonzero(model._last_episode_starts))

                def mean(values: np.ndarray) -> float:
                    values = values[np.isfinite(values)]
                    return float(values.mean()) if values.size else float("nan")

                writer.writerow(
                    dict(
                        seed=state["seed"],
                        iteration=state["iteration"],
                        eval_filtered=round(eval_filtered, 2),
                        eval_full=round(eval_full, 2),
                        kl_filtered=round(logged.get("train/approx_kl", float("nan")), 5),
                        kl_full=round(logged_full.get("train/approx_kl", float("nan")), 5),
                        clip_filtered=round(logged.get("train/clip_fraction", float("nan")), 4),
                        clip_full=round(logged_full.get("train/clip_fraction", float("nan")), 4),
                        n=report.kept.size,
                        n_dropped=int(dropped.sum()),
                        dropped_adv_mean=round(mean(adv[dropped]), 4),
                        all_adv_mean=round(mean(adv), 4),
                        dropped_adv_negative=round(mean((adv[dropped] < 0).astype(float)), 3),
                        all_adv_negative=round(mean((adv < 0).astype(float)), 3),
                        dropped_to_end=round(mean(to_end[dropped]), 1),
                        all_to_end=round(mean(to_end), 1),
                        dropped_near_termination=round(mean(near[dropped].astype(float)), 3),
                        all_near_termination=round(mean(near.astype(float)), 3),
                        episodes=ended,
                    )
                )
                file.flush()

            model.train = counterfactual_train  # type: ignore[method-assign]
            model.learn(args.iterations * task.hyperparams.get("n_envs", 1) * task.hyperparams["n_steps"])


if __name__ == "__main__":
    main()
