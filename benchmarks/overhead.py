"""
Influence scoring cost as a ratio: scoring time / one epoch of the parent algorithm on the same buffer, same process,
for every IIF algorithm (InfluencePPO, InfluenceA2C, InfluenceMaskablePPO, InfluenceRecurrentPPO).

For each case one rollout is collected, then, interleaved ``--repeats`` times:
- scoring: ``model.compute_influence()`` (objective gradient + forward-mode JVP over the whole buffer);
- cross-fitted scoring, what the default rules (``"reliability"``, ``"adaptive"``) compute: ``model_crossfit_scores(model)``
  (one objective gradient per fold, one JVP per fold over the whole buffer);
- one epoch: the parent's own ``train()`` (``PPO.train``, ``MaskablePPO.train``, ``RecurrentPPO.train``) with
  ``n_epochs=1`` on the full buffer, or A2C's single update (parameters and optimizer state are restored after each
  repeat, so every repeat sees the same buffer and weights).
The medians of both and their ratio are reported. Usage::

    python benchmarks/overhead.py --repeats 7 --output benchmarks/overhead.md
"""

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid ids)
import torch as th
from minigrid.wrappers import ImgObsWrapper
from stable_baselines3.common.env_util import make_vec_env

from sb3_influence import MiniGridCNN, model_crossfit_scores
from sb3_influence.benchmark.runner import cpu_name
from sb3_influence.registry import get_algo


@dataclass
class Case:
    name: str
    env_fn: Callable[[], gym.Env]
    policy: str
    n_envs: int
    n_steps: int
    policy_kwargs: dict[str, Any]
    algo: str = "influence_ppo"


def _lunar() -> gym.Env:
    return gym.make("LunarLander-v3")


def _masked() -> gym.Env:
    return gym.make("sb3_influence/MaskedIdentity-v0")


def _minigrid() -> gym.Env:
    return ImgObsWrapper(gym.make("MiniGrid-Empty-8x8-v0"))


SGD = dict(optimizer_class=th.optim.SGD)
CASES = [
    Case("MLP 64x64, 2048 records (1x2048)", _lunar, "MlpPolicy", 1, 2048, dict(net_arch=[64, 64], **SGD)),
    Case("MLP 64x64, 16384 records (16x1024)", _lunar, "MlpPolicy", 16, 1024, dict(net_arch=[64, 64], **SGD)),
    Case("MLP 256x256, 2048 records", _lunar, "MlpPolicy", 1, 2048, dict(net_arch=[256, 256], **SGD)),
    Case(
        "MiniGrid CNN (shared), 2048 records",
        _minigrid,
        "CnnPolicy",
        1,
        2048,
        dict(features_extractor_class=MiniGridCNN, net_arch=[64, 64], **SGD),
    ),
    Case("A2C: MLP 64x64, 40 records (8x5, A2C's default)", _lunar, "MlpPolicy", 8, 5, {}, "influence_a2c"),
    Case("A2C: MLP 64x64, 2048 records (8x256)", _lunar, "MlpPolicy", 8, 256, {}, "influence_a2c"),
    Case(
        "MaskablePPO: MLP 64x64, 2048 records (masked identity, 16 actions)",
        _masked,
        "MlpPolicy",
        1,
        2048,
        dict(net_arch=[64, 64], **SGD),
        "influence_maskable_ppo",
    ),
    Case(
        "RecurrentPPO: LSTM 64 + MLP 64, 2048 records (8x256)",
        _lunar,
        "MlpLstmPolicy",
        8,
        256,
        dict(lstm_hidden_size=64, net_arch=[64], **SGD),
        "influence_recurrent_ppo",
    ),
]


def _collect(case: Case, device: str) -> Any:
    env = make_vec_env(case.env_fn, n_envs=case.n_envs, seed=0)
    minibatches = {} if case.algo == "influence_a2c" else dict(batch_size=64, n_epochs=1)
    model = get_algo(case.algo).load()(
        case.policy,
        env,
        learning_rate=5e-3,
        n_steps=case.n_steps,
        max_grad_norm=1e10,
        policy_kwargs=case.policy_kwargs,
        seed=0,
        device=device,
        **minibatches,
    )
    # Fill the buffer exactly as learn() does, without an update.
    total, callback = model._setup_learn(case.n_steps * case.n_envs, None)
    callback.on_training_start(locals(), globals())
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=case.n_steps)
    return model


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        th.cuda.synchronize()


def measure(case: Case, repeats: int, device: str) -> dict[str, float]:
    model = _collect(case, device)
    parent = get_algo(get_algo(case.algo).baseline or case.algo).load()
    policy_state = copy.deepcopy(model.policy.state_dict())
    optim_state = copy.deepcopy(model.policy.optimizer.state_dict())
    score_times, crossfit_times, epoch_times = [], [], []
    model.compute_influence()  # warm-up
    model_crossfit_scores(model)
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        model.compute_influence()
        _sync(device)
        score_times.append(time.perf_counter() - start)

        start = time.perf_counter()
        model_crossfit_scores(model)
        _sync(device)
        crossfit_times.append(time.perf_counter() - start)

        start = time.perf_counter()
        parent.train(model)  # one epoch of the parent's own update over the whole buffer
        _sync(device)
        epoch_times.append(time.perf_counter() - start)
        model.policy.load_state_dict(policy_state)
        model.policy.optimizer.load_state_dict(optim_state)
    score, epoch = statistics.median(score_times), statistics.median(epoch_times)
    crossfit = statistics.median(crossfit_times)
    return dict(
        records=case.n_steps * case.n_envs,
        score=score,
        crossfit=crossfit,
        epoch=epoch,
        ratio=score / epoch,
        crossfit_ratio=crossfit / epoch,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--output", default=None, help="write a markdown table here")
    parser.add_argument("--match", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    if args.threads:
        th.set_num_threads(args.threads)
    header = (
        "| case | records | scoring (ms) | cross-fitted scoring (ms) | one parent epoch (ms) | scoring / epoch "
        "| cross-fitted / epoch |\n|---|---|---|---|---|---|---|"
    )
    rows = []
    for case in [c for c in CASES if args.match in c.name]:
        r = measure(case, args.repeats, args.device)
        rows.append(
            f"| {case.name} | {r['records']} | {1e3 * r['score']:.1f} | {1e3 * r['crossfit']:.1f} | {1e3 * r['epoch']:.1f} "
            f"| {r['ratio']:.3f} | {r['crossfit_ratio']:.3f} |"
        )
        print(rows[-1], flush=True)
    machine = (
        f"{cpu_name()} ({os.cpu_count()} logical CPUs), {th.get_num_threads()} torch threads, device {args.device}, "
        f"torch {th.__version__}, Python {platform.python_version()}"
    )
    command = " ".join(["python benchmarks/overhead.py", *sys.argv[1:]])
    text = (
        f"# Influence scoring overhead\n\nCommand: `{command}`\n\nMedians of {args.repeats} interleaved repeats "
        "(scoring: `compute_influence()` over the full buffer; cross-fitted: `model_crossfit_scores(model)`, 3 folds, what "
        "the default adaptive filter computes; epoch: the parent's own `train()` with `n_epochs=1`, "
        f"batch 64 (A2C: its single update), SGD). Machine: {machine}.\n\n{header}\n" + "\n".join(rows) + "\n\n"
        "Goals: <= 0.25 epoch for the 64x64 MLP on 2048 records; <= 1 epoch for the 256x256 MLP and the MiniGrid CNN.\n"
    )
    print("\n" + text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
