"""
Why IIF stalls on some LunarLander seeds: does the filter hold the policy back, or did it lead it somewhere bad?

Re-trains the benchmark runner's InfluencePPO run of one seed (the zoo config: the paper's rule, p = 0.125) up to a
branch iteration, checks that it reproduces the committed run there, then forks the process. Each child continues
the *same* model, optimiser and env state for the same number of iterations, in one of two arms:

- ``iif``: the filter stays on (with ``--reseeds 0``, this child is the committed run itself);
- ``ppo``: the filter is switched off (``filter_fraction = 0``: nothing dropped, PPO's update).

With ``--reseeds R`` every arm also runs ``R`` more times with the global RNGs re-seeded at the branch (new action
noise and minibatch order from the same state), to tell the arms apart from the chaos of RL training. Every child
is evaluated on the runner's fixed test set (``--eval-seed``) at the iterations of ``--evals``, and writes one line
of per-rollout facts per iteration (episode outcomes, policy entropy, what the filter dropped). Output: a CSV of
evaluations and one of facts in ``--out``. With ``--prefix ppo`` the prefix runs with the filter off instead
(InfluencePPO with ``filter_fraction = 0`` is PPO: it reproduces the committed PPO run), so the same two arms
start from PPO's state (files ``*_ppo.csv``). Usage::

    python benchmarks/lunar_stall.py --seed 4 --branch 60 --evals 80 100 120 --reseeds 1 \\
        --out benchmarks/lunar_stall
    python benchmarks/lunar_stall.py --seed 4 --prefix ppo --branch 60 --evals 80 100 120 --reseeds 0
"""

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from scipy.stats import spearmanr
from stable_baselines3.common.callbacks import BaseCallback

from sb3_influence.benchmark.evaluation import evaluation_returns
from sb3_influence.benchmark.runner import (
    MAX_EVAL_ENVS,
    build_model,
    load_hyperparams,
    make_vec_env_from_config,
    read_run_csv,
    resolve_config,
)

ENV_ID = "LunarLander-v3"
FACT_FIELDS = [
    "arm",
    "iteration",
    "episodes",
    "train_return",
    "landed",
    "crashed",
    "timeouts",
    "entropy",
    "negative_scores",
    "dropped",
    "dropped_adv_mean",
    "dropped_adv_positive",
    "adv_abs_mean",
    "spearman_score_adv",
]


class StallStudy(BaseCallback):
    """Per-rollout facts, evaluations at chosen iterations, and the fork at the branch iteration."""

    def __init__(self, args: argparse.Namespace, eval_env: Any) -> None:
        super().__init__()
        self.args, self.eval_env = args, eval_env
        self.arm = "prefix"
        self.stop_at = float("inf")  # the prefix runs until it forks; each child stops after its iterations
        self.pending: dict[str, Any] | None = None

    # -- facts ---------------------------------------------------------------------------------------------------
    def _on_rollout_start(self) -> None:
        iteration = self.model.num_timesteps // self.model.n_steps
        if self.pending is not None:
            self._write_facts()
        if iteration in self.args.evals and self.arm != "prefix":
            value = self._write_eval(iteration)
            print(f"  seed {self.args.seed} {self.arm}: iteration {iteration}, eval {value:.1f}", flush=True)
        if iteration == self.args.branch and self.arm == "prefix":
            self._branch(iteration)
        self.outcomes: list[str] = []
        self.returns: list[float] = []

    def _on_step(self) -> bool:
        for info, reward, done in zip(self.locals["infos"], self.locals["rewards"], self.locals["dones"], strict=True):
            if not done:
                continue
            self.returns.append(float(info["episode"]["r"]))
            if info.get("TimeLimit.truncated", False):
                self.outcomes.append("timeout")
            else:
                self.outcomes.append("landed" if reward > 50 else "crashed" if reward < -50 else "other")
        # stop at the first step after the last iteration's update (that iteration is then evaluated and logged)
        return (self.model.num_timesteps - 1) // self.model.n_steps < self.stop_at

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        obs = th.as_tensor(buffer.observations.reshape(buffer.buffer_size * buffer.n_envs, -1))
        with th.no_grad():
            entropy = float(self.model.policy.get_distribution(obs).entropy().mean())
        self.pending = dict(
            arm=self.arm,
            iteration=self.model.num_timesteps // self.model.n_steps,
            episodes=len(self.returns),
            train_return=float(np.mean(self.returns)) if self.returns else float("nan"),
            landed=self.outcomes.count("landed"),
            crashed=self.outcomes.count("crashed"),
            timeouts=self.outcomes.count("timeout"),
            entropy=entropy,
            advantages=buffer.advantages.copy(),
        )

    def _on_training_end(self) -> None:
        if self.pending is not None and getattr(self.model, "last_influence", None) is not None:
            self._write_facts()

    def _write_facts(self) -> None:
        """The facts of the last rollout, with what the filter did to it (read after its update)."""
        assert self.pending is not None
        row = self.pending
        self.pending = None
        report = getattr(self.model, "last_influence", None)
        advantages = row.pop("advantages").ravel()
        if report is None:  # PPO: nothing scored, nothing dropped
            scores, kept = np.full(advantages.shape, np.nan), np.ones(advantages.shape, dtype=bool)
        else:
            scores, kept = report.scores.ravel(), report.kept.ravel()
        dropped = advantages[~kept]
        row.update(
            negative_scores=float(np.mean(scores < 0)) if report is not None else float("nan"),
            dropped=int(dropped.size),
            dropped_adv_mean=float(dropped.mean()) if dropped.size else float("nan"),
            dropped_adv_positive=float(np.mean(dropped > 0)) if dropped.size else float("nan"),
            adv_abs_mean=float(np.abs(advantages).mean()),
            spearman_score_adv=float(spearmanr(scores, advantages)[0]) if report is not None else float("nan"),
        )
        _append(self.args.facts, FACT_FIELDS, row)

    # -- evaluation and branching --------------------------------------------------------------------------------
    def _evaluate(self) -> float:
        return float(evaluation_returns(self.model, self.eval_env, self.args.eval_episodes, self.args.eval_seed).mean())

    def _write_eval(self, iteration: int, value: float | None = None) -> float:
        """Evaluate (unless ``value`` is given) and append the row of this arm and iteration."""
        value = self._evaluate() if value is None else value
        _append(
            self.args.evals_csv, ["arm", "iteration", "eval_mean"], dict(arm=self.arm, iteration=iteration, eval_mean=value)
        )
        return value

    def _branch(self, iteration: int) -> None:
        """Check the prefix against the committed run, then fork one child per arm and wait for each in turn."""
        value = self._evaluate()
        columns = read_run_csv(self.args.committed).columns
        expected = [float(v) for i, v in zip(columns["iteration"], columns["eval_mean"], strict=True) if i == iteration]
        print(f"  seed {self.args.seed}: iteration {iteration}, eval {value:.3f} (committed run: {expected})", flush=True)
        if expected and abs(expected[0] - value) > 1e-3:
            sys.exit(f"the prefix does not reproduce the committed run ({value} != {expected[0]})")
        self._write_eval(iteration, value)
        for reseed in range(self.args.reseeds + 1):
            for arm in ("iif", "ppo"):
                pid = os.fork()
                if pid == 0:  # the child continues learn() from here, in its arm
                    self.arm = arm if reseed == 0 else f"{arm}_r{reseed}"
                    self.stop_at = self.args.branch + self.args.iterations
                    self.model.filter_fraction = self.args.filter_fraction if arm == "iif" else 0.0
                    if reseed:
                        th.manual_seed(1000 * self.args.seed + reseed)
                        np.random.seed(1000 * self.args.seed + reseed)
                    return
                _, status = os.waitpid(pid, 0)
                if status:
                    sys.exit(f"child {arm} (reseed {reseed}) failed with status {status}")
        os._exit(0)  # the parent's work ends at the branch


def _append(path: Path, fields: list[str], row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--branch", type=int, default=60, help="iteration at which the arms part")
    parser.add_argument("--iterations", type=int, default=60, help="iterations each arm runs after the branch")
    parser.add_argument("--evals", type=int, nargs="+", default=[80, 100, 120], help="iterations evaluated")
    parser.add_argument("--reseeds", type=int, default=1, help="re-seeded repeats of each arm")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--eval-seed", type=int, default=10000)
    parser.add_argument("--prefix", choices=("iif", "ppo"), default="iif", help="the filter before the branch: on or off")
    parser.add_argument("--committed", default=None, help="the committed run's CSV (default: results_lunar_full)")
    parser.add_argument("--out", default="benchmarks/lunar_stall")
    args = parser.parse_args()
    committed_algo = "influence_ppo" if args.prefix == "iif" else "ppo"
    args.committed = args.committed or f"benchmarks/results_lunar_full/{ENV_ID}/{committed_algo}_seed{args.seed}.csv"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.prefix == "iif" else "_ppo"
    args.facts, args.evals_csv = out / f"facts_seed{args.seed}{suffix}.csv", out / f"evals_seed{args.seed}{suffix}.csv"
    for path in (args.facts, args.evals_csv):
        if path.exists():
            sys.exit(f"{path} exists: remove it or choose another --out")
    th.set_num_threads(1)
    print("Command: python " + " ".join(sys.argv), flush=True)
    hyperparams = load_hyperparams(resolve_config("influence_ppo"), ENV_ID)
    model = build_model("influence_ppo", ENV_ID, hyperparams, args.seed)
    args.filter_fraction = model.filter_fraction
    if args.prefix == "ppo":
        model.filter_fraction = 0.0
    eval_env = make_vec_env_from_config(
        ENV_ID, hyperparams, max(1, min(args.eval_episodes, MAX_EVAL_ENVS)), args.seed + 1_000_000
    )
    start = time.time()
    study = StallStudy(args, eval_env)
    model.learn((args.branch + args.iterations + 1) * model.n_steps, callback=study)
    print(f"  seed {args.seed} {study.arm}: done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
