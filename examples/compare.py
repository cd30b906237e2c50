"""
Quick start: InfluencePPO with its default settings against PPO on CartPole-v1, paired seeds.

    python examples/compare.py                 # 1.5 to 3 minutes on a 2-core CPU
    tensorboard --logdir runs/quickstart       # rollout/, train/ and influence/ (diagnostics) curves

The only change between the two runs of a seed is the class: ``PPO`` or ``InfluencePPO``. After every iteration
each model is evaluated on the same fixed test set (the same evaluation episodes and action noise for every
checkpoint of both methods, :func:`sb3_influence.benchmark.evaluation.evaluate_fixed`), so the curves differ only
because the policies differ, and the numbers repeat exactly on one machine (another CPU may round differently).
Writes the learning curves (mean and range over seeds) to ``runs/quickstart/learning_curves.png`` and prints a
short table.
"""

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_influence import InfluenceDiagnosticsCallback, InfluencePPO
from sb3_influence.benchmark.evaluation import evaluate_fixed

# rl-zoo3's CartPole-v1 PPO settings, with a constant learning rate; both methods get exactly these.
HYPERPARAMS: dict[str, Any] = dict(
    n_steps=256, batch_size=64, n_epochs=10, gamma=0.98, gae_lambda=0.8, learning_rate=1e-3, ent_coef=0.0
)
N_ENVS = 4
EVAL_SEED = 10_000


class FixedTestSetEval(BaseCallback):
    """Evaluates the policy on the fixed test set at every iteration boundary and prints progress."""

    def __init__(self, label: str, n_episodes: int, n_iterations: int) -> None:
        super().__init__()
        self.label, self.n_episodes, self.n_iterations = label, n_episodes, n_iterations
        self.returns: list[float] = []
        self.kept: list[float] = []

    def _evaluate(self) -> None:
        self.returns.append(evaluate_fixed(self.model, self.eval_env, self.n_episodes, EVAL_SEED))

    def _on_training_start(self) -> None:
        self.eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=EVAL_SEED)
        self._evaluate()  # the initial policy

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps > 0:  # after each update
            self._after_update()

    def _on_training_end(self) -> None:
        self._after_update()

    def _after_update(self) -> None:
        self._evaluate()
        report = getattr(self.model, "last_influence", None)
        self.kept.append(1.0 if report is None else report.n_kept / report.kept.size)
        iteration = len(self.returns) - 1
        if iteration % 5 == 0 or iteration == self.n_iterations:
            print(
                f"  {self.label}: iteration {iteration:3d}/{self.n_iterations}  eval return {self.returns[-1]:6.1f}",
                flush=True,
            )

    def _on_step(self) -> bool:
        return True


def train(cls: type[PPO], seed: int, timesteps: int, episodes: int, logdir: str) -> dict[str, Any]:
    """Train one model and return its evaluated curve, kept fractions and wall time."""
    name = cls.__name__
    model = cls(
        "MlpPolicy", make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=seed), seed=seed, tensorboard_log=logdir, **HYPERPARAMS
    )
    n_iterations = timesteps // (N_ENVS * HYPERPARAMS["n_steps"])
    evaluation = FixedTestSetEval(f"{name} seed {seed}", episodes, n_iterations)
    callbacks: list[BaseCallback] = [evaluation]
    if isinstance(model, InfluencePPO):  # what the README's TensorBoard screenshots show
        callbacks.append(InfluenceDiagnosticsCallback(top_k=5))
    start = time.perf_counter()
    model.learn(timesteps, callback=callbacks, tb_log_name=f"{name}_seed{seed}")
    return dict(curve=np.array(evaluation.returns), kept=np.array(evaluation.kept), seconds=time.perf_counter() - start)


def plot(results: dict[str, list[dict[str, Any]]], path: Path, timesteps_per_iteration: int) -> None:
    """Mean learning curve and its range over seeds, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, runs in results.items():
        curves = np.stack([run["curve"] for run in runs])
        steps = np.arange(curves.shape[1]) * timesteps_per_iteration
        ax.plot(steps, curves.mean(axis=0), label=f"{name} (mean of {len(runs)} seeds)")
        ax.fill_between(steps, curves.min(axis=0), curves.max(axis=0), alpha=0.2)
    ax.set_xlabel("timesteps")
    ax.set_ylabel("return on the fixed test set")
    ax.set_title("CartPole-v1: InfluencePPO (defaults) vs PPO")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=20_480, help="per run (20 iterations of 4 x 256 steps)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int, default=5, help="episodes per checkpoint (the fixed test set)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small networks)")
    parser.add_argument("--logdir", default="runs/quickstart")
    args = parser.parse_args()
    th.set_num_threads(args.threads)

    results: dict[str, list[dict[str, Any]]] = {"PPO": [], "InfluencePPO": []}
    for seed in args.seeds:
        for cls in (PPO, InfluencePPO):
            results[cls.__name__].append(train(cls, seed, args.timesteps, args.eval_episodes, args.logdir))

    print(
        f"\n{'method':>13} | {'mean return over checkpoints':>28} | {'final return':>12} | {'records kept':>12} | seconds/run"
    )
    for name, runs in results.items():
        aucs = [float(run["curve"][1:].mean()) for run in runs]
        finals = [float(run["curve"][-1]) for run in runs]
        kept = float(np.mean([run["kept"].mean() for run in runs]))
        seconds = float(np.mean([run["seconds"] for run in runs]))
        print(f"{name:>13} | {np.mean(aucs):28.1f} | {np.mean(finals):12.1f} | {kept:12.1%} | {seconds:6.1f}")
    ppo_aucs = np.array([run["curve"][1:].mean() for run in results["PPO"]])
    iif_aucs = np.array([run["curve"][1:].mean() for run in results["InfluencePPO"]])
    print(f"paired difference of the mean return over checkpoints, per seed: {np.round(iif_aucs - ppo_aucs, 1).tolist()}")
    png = Path(args.logdir) / "learning_curves.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(results, png, N_ENVS * HYPERPARAMS["n_steps"])
    print(f"learning curves: {png}\nTensorBoard: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
