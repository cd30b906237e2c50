"""
Paired PPO / InfluencePPO benchmark runner (GitHub issue 5).

Usage::

    python -m sb3_influence.benchmark --env FrozenLake-v1 --seeds 0 1 2 3 4 --jobs 2 --eval-episodes 100
    python -m sb3_influence.benchmark --env Acrobot-v1 --algos ppo influence_ppo influence_ppo:filter_mode=random
    python -m sb3_influence.benchmark --env LunarLander-v3 --conf ppo=ppo_adam influence_ppo=influence_ppo_adam
    python -m sb3_influence.benchmark summarize benchmarks/results/FrozenLake-v1 [more dirs] --plot-dir benchmarks

Each run (env, algorithm variant, seed) trains one model on the config entry of the env, read at run time from
``zoo_configs/<algo>.yml`` (rl-zoo3 format), and writes one CSV with one row per iteration:
``iteration, timesteps, eval_mean, eval_std, collect_s, score_s, update_s, n_dropped, kept_fraction``,
preceded by ``# key: value`` metadata lines (env, algo, seed, hyperparameters, versions, command, machine).

Conventions:

- **Pairing.** Every variant of a seed is built with the same ``seed``: SB3 seeds python, numpy and torch
  before building the policy, so PPO and InfluencePPO start from identical weights (tested) and the same
  environment reset seeds.
- **Evaluation.** Stochastic (``deterministic=False``), on ``min(episodes, 16)`` vectorised copies of the env
  (with the config's wrapper and kwargs), at every iteration boundary. Row ``iteration 0`` is the evaluation
  of the initial policy, before training; the metrics use iterations ``1..T`` only. The global RNG states
  (python, numpy, torch) are saved before and restored after each evaluation, so evaluation never changes
  the training trajectory (the same run with 2 or 1000 evaluation episodes trains identically).
- **Wall-clock.** ``collect_s`` is the time from the callback's ``on_rollout_start`` to ``on_rollout_end``
  (the rollout and GAE); ``score_s`` is InfluencePPO's scoring plus keep/drop decision
  (``last_influence.seconds + filter_seconds``, 0 for PPO); ``update_s`` is PPO's update (InfluencePPO's
  ``last_influence.update_seconds``; for PPO the time of ``train()``). Evaluation time is excluded.
  A run's wall-clock is the cumulative sum of ``collect_s + score_s + update_s``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import csv
import importlib
import json
import multiprocessing
import os
import platform
import shlex
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml

from sb3_influence.benchmark.evaluation import evaluation_returns
from sb3_influence.configs import config_dir
from sb3_influence.registry import get_algo

#: Columns of a run's CSV, in order.
COLUMNS = (
    "iteration",
    "timesteps",
    "eval_mean",
    "eval_std",
    "collect_s",
    "score_s",
    "update_s",
    "n_dropped",
    "kept_fraction",
    "reliability",
    "gated",
)
#: Evaluation episodes the paper uses (docs page "Metrics and the paper's results"); any other env: 1000.
PAPER_EVAL_EPISODES = {"highway-v0": 100, "BipedalWalker-v3": 100}
DEFAULT_EVAL_EPISODES = 1000
#: The most vectorised evaluation envs.
MAX_EVAL_ENVS = 16
#: Config keys consumed by the runner (not model constructor arguments), as in rl-zoo3.
_NON_MODEL_KEYS = ("n_timesteps", "n_envs", "policy", "env_wrapper", "env_kwargs", "callback", "frame_stack", "normalize")
#: The algorithms of :data:`~sb3_influence.registry.ALGORITHMS` the runner accepts (``--algos``).
ALGO_NAMES = ("ppo", "influence_ppo")


# ---------------------------------------------------------------------------------------------------------------------
# Algorithm variants and configs
# ---------------------------------------------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    """A YAML scalar (``1.0``, ``random``, ``true``, ``null``, ``[1, 2]``) from a command-line ``key=value``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """
    Parse ``key=value`` pairs; values are YAML scalars (``filter_fraction=1.0``, ``filter_mode=random``).

    :param items: The pairs.
    :return: The mapping, values converted.
    :raises ValueError: On an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Expected key=value, got {item!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


@dataclass(frozen=True)
class AlgoSpec:
    """
    An algorithm variant: a zoo algorithm name and keyword arguments applied on top of its config.

    :param algo: ``"ppo"`` or ``"influence_ppo"``.
    :param overrides: Extra hyperparameters (e.g. ``{"filter_mode": "random"}``).
    :param label: The variant as written on the command line (``"influence_ppo:filter_mode=random"``).
    """

    algo: str
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def slug(self) -> str:
        """File-name-safe form of the label."""
        return self.label.replace(":", "__").replace(",", "_").replace("/", "_").replace(" ", "")


def parse_algo_spec(spec: str, allowed: Sequence[str] = ALGO_NAMES) -> AlgoSpec:
    """
    Parse an algorithm variant: ``ALGO`` or ``ALGO:key=value[,key=value...]``.

    Examples: ``"ppo"``, ``"influence_ppo:filter_mode=random"``, ``"influence_ppo:filter_fraction=1.0"``,
    ``"influence_ppo:filter_mode=all,filter_fraction=0.1"``.

    :param spec: The variant.
    :param allowed: The algorithm names accepted (the runner's paper environments: PPO and InfluencePPO; the panel
        takes every name of :data:`~sb3_influence.registry.ALGORITHMS`).
    :return: The parsed :class:`AlgoSpec` (label normalised to ``ALGO[:k=v,...]`` without spaces).
    :raises ValueError: On an unknown algorithm or a malformed assignment.
    """
    algo, _, rest = spec.strip().partition(":")
    algo = algo.strip()
    if algo not in allowed:
        raise ValueError(f"Unknown algorithm {algo!r} in {spec!r}, expected one of {tuple(allowed)}")
    items = [item for item in rest.split(",") if item.strip()]
    overrides = parse_assignments(items)
    label = algo if not items else algo + ":" + ",".join("".join(item.split()) for item in items)
    return AlgoSpec(algo=algo, overrides=overrides, label=label)


def _repo_config_dirs() -> list[Path]:
    return [Path.cwd() / "zoo_configs", config_dir()]


def resolve_config(name: str) -> Path:
    """
    Find a config: an existing path, else ``zoo_configs/<name>[.yml]`` in the working directory or the packaged configs.

    :param name: A path or a config name (``"ppo"``, ``"influence_ppo_adam"``).
    :return: The config file.
    :raises FileNotFoundError: When none is found.
    """
    path = Path(name)
    if path.is_file():
        return path
    file_name = name if name.endswith((".yml", ".yaml")) else f"{name}.yml"
    for folder in _repo_config_dirs():
        if (folder / file_name).is_file():
            return folder / file_name
    raise FileNotFoundError(f"No config {name!r} (looked for it as a path and in {[str(d) for d in _repo_config_dirs()]})")


def load_hyperparams(config: str | Path, env_id: str) -> dict[str, Any]:
    """
    The raw config entry of ``env_id`` (rl-zoo3 format: top-level keys are env ids).

    :param config: The YAML file.
    :param env_id: The env id.
    :return: A copy of the entry (``policy_kwargs`` still a string).
    :raises KeyError: When the config has no entry for ``env_id``.
    """
    with open(config) as file:
        entries = yaml.safe_load(file) or {}
    if env_id not in entries:
        raise KeyError(f"{config} has no entry for {env_id!r}; it has {', '.join(map(str, entries))}")
    return copy.deepcopy(dict(entries[env_id]))


def _import_env_packages(env_id: str) -> None:
    """Import the packages that register ``env_id`` (MiniGrid and highway-env ids exist only after import)."""
    if env_id.startswith("MiniGrid"):
        importlib.import_module("minigrid")
    if env_id.startswith(("highway", "merge", "roundabout", "intersection", "parking", "racetrack", "exit", "u-turn")):
        importlib.import_module("highway_env")


def _import_object(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def eval_policy_kwargs(value: str | dict[str, Any] | None) -> dict[str, Any]:
    """
    Evaluate a config's ``policy_kwargs`` as rl-zoo3 does: a python expression with ``th``, ``nn``, ``importlib``
    and :class:`~sb3_influence.policies.MiniGridCNN` in scope.

    :param value: The string (or an already built dict, or ``None``).
    :return: The keyword arguments.
    """
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    import torch as th
    from torch import nn

    from sb3_influence.policies import MiniGridCNN

    scope = {"th": th, "torch": th, "nn": nn, "importlib": importlib, "MiniGridCNN": MiniGridCNN}
    result = eval(value, scope)  # the zoo evaluates the same strings
    if not isinstance(result, dict):
        raise ValueError(f"policy_kwargs must evaluate to a dict, got {type(result).__name__}: {value!r}")
    return result


def _wrapper_class(spec: Any) -> Any:
    """rl-zoo3's ``env_wrapper``: a dotted class name, ``{name: kwargs}``, or a list of them (applied in order)."""
    if spec is None:
        return None
    specs = spec if isinstance(spec, list) else [spec]
    wrappers: list[tuple[Any, dict[str, Any]]] = []
    for item in specs:
        if isinstance(item, dict):
            ((name, kwargs),) = item.items()
            wrappers.append((_import_object(name), dict(kwargs or {})))
        else:
            wrappers.append((_import_object(str(item)), {}))

    def wrap(env: Any) -> Any:
        for cls, kwargs in wrappers:
            env = cls(env, **kwargs)
        return env

    return wrap


def _learning_rate(value: Any) -> Any:
    """rl-zoo3's ``lin_<value>`` schedules; numbers unchanged."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def make_vec_env_from_config(env_id: str, hyperparams: dict[str, Any], n_envs: int, seed: int) -> Any:
    """
    A ``DummyVecEnv`` of the config's env (``env_kwargs``, ``env_wrapper``), each copy in a ``Monitor``.

    :param env_id: The env id.
    :param hyperparams: The config entry.
    :param n_envs: Number of copies.
    :param seed: Seed of the first copy (the others get ``seed + i``).
    :return: The vectorised env.
    """
    from stable_baselines3.common.env_util import make_vec_env

    _import_env_packages(env_id)
    if hyperparams.get("normalize") or hyperparams.get("frame_stack"):
        raise NotImplementedError("normalize / frame_stack configs are not supported by the benchmark runner")
    return make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=seed,
        env_kwargs=hyperparams.get("env_kwargs") or None,
        wrapper_class=_wrapper_class(hyperparams.get("env_wrapper")),
    )


def build_model(algo: str, env_id: str, hyperparams: dict[str, Any], seed: int) -> Any:
    """
    Build a PPO or InfluencePPO model from a config entry, as rl-zoo3 would (without VecNormalize/frame stacking).

    :param algo: ``"ppo"`` or ``"influence_ppo"``.
    :param env_id: The env id.
    :param hyperparams: The config entry with overrides applied (``policy_kwargs`` may be a string).
    :param seed: The seed (model and training envs).
    :return: The model.
    """
    cls = get_algo(algo).load()
    env = make_vec_env_from_config(env_id, hyperparams, int(hyperparams.get("n_envs", 1)), seed)
    kwargs = {key: value for key, value in hyperparams.items() if key not in _NON_MODEL_KEYS}
    kwargs["policy_kwargs"] = eval_policy_kwargs(kwargs.get("policy_kwargs"))
    if "learning_rate" in kwargs:
        kwargs["learning_rate"] = _learning_rate(kwargs["learning_rate"])
    for key in ("clip_range", "clip_range_vf"):
        if key in kwargs:
            kwargs[key] = _learning_rate(kwargs[key])
    return cls(hyperparams.get("policy", "MlpPolicy"), env, seed=seed, verbose=0, device="cpu", **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """
    Everything one run needs (picklable, sent to a worker process).

    :param env_id: The env id.
    :param algo: The algorithm variant.
    :param seed: The seed.
    :param config: The config file the variant's entry is read from.
    :param out_dir: Folder of the CSV.
    :param eval_episodes: Evaluation episodes per iteration boundary.
    :param n_timesteps: Training budget override (``None``: the config's).
    :param common_overrides: Hyperparameters set for every variant (``--set``), applied before the variant's.
    :param command: The command line, for the metadata.
    :param eval_initial: Whether to evaluate the initial policy (row ``iteration 0``).
    :param eval_seed: ``None``: fresh action noise at every evaluation (as the paper's text); a seed: every
        checkpoint of every run is evaluated on the same fixed test set (the paper's code's effect, see
        :func:`~sb3_influence.benchmark.evaluation.evaluation_returns`).
    :param eval_every: Evaluate (and write a row) every this many iterations; it must divide the run's number of
        iterations. A row's timing, drop, reliability and gated columns are then per-iteration means over the iterations
        since the previous row. ``1`` (default): every iteration, as the paper.
    """

    env_id: str
    algo: AlgoSpec
    seed: int
    config: str
    out_dir: str
    eval_episodes: int
    n_timesteps: int | None = None
    common_overrides: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    eval_initial: bool = True
    eval_seed: int | None = None
    eval_every: int = 1

    @property
    def csv_path(self) -> Path:
        """Where the run's CSV goes: ``<out_dir>/<variant>_seed<seed>.csv``."""
        return Path(self.out_dir) / f"{self.algo.slug}_seed{self.seed}.csv"

    def hyperparams(self) -> dict[str, Any]:
        """The config entry with ``--set``, the variant's overrides and ``--n-timesteps`` applied."""
        params = load_hyperparams(self.config, self.env_id)
        params.update(self.common_overrides)
        params.update(self.algo.overrides)
        if self.n_timesteps is not None:
            params["n_timesteps"] = int(self.n_timesteps)
        return params


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (else what ``platform`` knows), for benchmark metadata."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_metadata() -> dict[str, str]:
    """
    Versions and machine of this process, for a CSV's metadata.

    :return: ``{name: value}``.
    """
    import gymnasium
    import stable_baselines3
    import torch as th

    import sb3_influence.version

    return {
        "sb3_influence": sb3_influence.version.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": th.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
        "cpu": f"{cpu_name()} ({os.cpu_count()} logical CPUs)",
        "torch_threads": str(th.get_num_threads()),
    }


def run_iterations(n_timesteps: int, rollout_size: int) -> int:
    """
    Number of training iterations of ``learn(total_timesteps=n_timesteps)``: SB3 collects rollouts of
    ``rollout_size = n_steps * n_envs`` steps while fewer than ``n_timesteps`` have been collected.

    :param n_timesteps: The training budget.
    :param rollout_size: Steps per rollout.
    :return: The number of iterations, ``ceil(n_timesteps / rollout_size)``.
    """
    return -(-n_timesteps // rollout_size)


def finite_mean(values: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray | None = None) -> float:
    """
    Mean of the finite entries of ``values`` (weighted by the matching ``weights`` when given), NaN when none is
    finite: a CSV row's value over the iterations it stands for (a run's reliability is NaN in the fixed modes).

    :param values: The values.
    :param weights: Their weights (e.g. how many iterations each stands for), or ``None`` for equal weights.
    :return: The mean.
    """
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.any():
        return float("nan")
    return float(np.average(array[finite], weights=None if weights is None else np.asarray(weights, np.float64)[finite]))


def _evaluate(model: Any, eval_env: Any, n_episodes: int, seed: int | None = None) -> tuple[float, float]:
    """Mean and standard deviation of :func:`~sb3_influence.benchmark.evaluation.evaluation_returns`."""
    values = evaluation_returns(model, eval_env, n_episodes, seed)
    return float(values.mean()), float(values.std())


def run_one(spec: RunSpec, torch_threads: int | None = 1, progress_every: int = 0) -> Path:
    """
    Train one model, evaluating it every ``spec.eval_every`` iterations, and write its CSV.

    :param spec: The run.
    :param torch_threads: ``torch.set_num_threads`` for this process (``None``: leave it).
    :param progress_every: Print a line every this many iterations (0: silent).
    :return: The CSV's path.
    """
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback

    if torch_threads is not None:
        th.set_num_threads(torch_threads)
    if isinstance(spec.eval_every, bool) or not isinstance(spec.eval_every, int) or spec.eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, got {spec.eval_every!r}")
    hyperparams = spec.hyperparams()
    model = build_model(spec.algo.algo, spec.env_id, hyperparams, spec.seed)
    n_iterations = run_iterations(int(hyperparams["n_timesteps"]), int(model.n_steps) * int(model.n_envs))
    if n_iterations % spec.eval_every:
        raise ValueError(
            f"eval_every={spec.eval_every} does not divide the run's {n_iterations} iterations "
            f"({spec.algo.label}, {spec.env_id}): the last iterations would never be evaluated"
        )
    n_eval_envs = max(1, min(spec.eval_episodes, MAX_EVAL_ENVS))
    eval_env = make_vec_env_from_config(spec.env_id, hyperparams, n_eval_envs, spec.seed + 1_000_000)
    rows: list[dict[str, float | int]] = []
    collect: dict[str, float] = {"start": 0.0, "seconds": 0.0}
    # per-iteration values since the last written row, averaged into the next row (eval_every > 1)
    block: list[dict[str, float]] = []
    trained = {"iterations": 0}

    class CollectTimer(BaseCallback):
        def _on_rollout_start(self) -> None:
            collect["start"] = time.perf_counter()

        def _on_rollout_end(self) -> None:
            collect["seconds"] = time.perf_counter() - collect["start"]

        def _on_step(self) -> bool:
            return True

    original_train = model.train

    def timed_train() -> None:
        start = time.perf_counter()
        original_train()
        elapsed = time.perf_counter() - start
        report = getattr(model, "last_influence", None)
        if report is not None:
            score_s = float(report.seconds + report.filter_seconds)
            update_s = float(report.update_seconds if report.update_seconds is not None else elapsed - score_s)
            n_dropped, kept_fraction = int(report.n_dropped), report.n_kept / report.kept.size
            reliability, gated = float(report.reliability), float(report.gated)
        else:
            score_s, update_s, n_dropped, kept_fraction, reliability, gated = 0.0, elapsed, 0, 1.0, float("nan"), 0.0
        block.append(
            dict(
                collect_s=collect["seconds"],
                score_s=score_s,
                update_s=update_s,
                n_dropped=n_dropped,
                kept_fraction=kept_fraction,
                reliability=reliability,
                gated=gated,
            )
        )
        trained["iterations"] += 1
        iteration = trained["iterations"]
        if iteration % spec.eval_every:
            return
        mean, std = _evaluate(model, eval_env, spec.eval_episodes, spec.eval_seed)
        averages = {key: finite_mean([values[key] for values in block]) for key in block[0]}
        block.clear()
        rows.append(dict(iteration=iteration, timesteps=int(model.num_timesteps), eval_mean=mean, eval_std=std, **averages))
        if progress_every and iteration % progress_every == 0:
            print(f"  {spec.csv_path.stem}: iteration {iteration}, eval return {mean:.4g}", flush=True)

    setattr(model, "train", timed_train)  # noqa: B010 (an instance attribute shadows the method in learn())
    if spec.eval_initial:
        mean, std = _evaluate(model, eval_env, spec.eval_episodes, spec.eval_seed)
        rows.append(
            dict(
                iteration=0,
                timesteps=0,
                eval_mean=mean,
                eval_std=std,
                collect_s=0.0,
                score_s=0.0,
                update_s=0.0,
                n_dropped=0,
                kept_fraction=1.0,
                reliability=float("nan"),
                gated=0.0,
            )
        )
    started = time.time()
    model.learn(total_timesteps=int(hyperparams["n_timesteps"]), callback=CollectTimer())
    metadata: dict[str, Any] = {
        "env": spec.env_id,
        "algo": spec.algo.label,
        "algo_class": type(model).__name__,
        "seed": spec.seed,
        "config": str(spec.config),
        "hyperparameters": json.dumps(hyperparams, sort_keys=True, default=str),
        "eval_episodes": spec.eval_episodes,
        "eval_envs": n_eval_envs,
        "eval_deterministic": False,
        "eval_initial": spec.eval_initial,
        "eval_seed": "fresh noise" if spec.eval_seed is None else spec.eval_seed,
        "eval_every": spec.eval_every,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s_including_eval": round(time.time() - started, 3),
        **environment_metadata(),
        "command": spec.command,
    }
    eval_env.close()
    model.env.close()
    path = spec.csv_path
    path.parent.mkdir(parents=True, exist_ok=True)
    write_run_csv(path, metadata, rows)
    return path


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[TextIO]:
    """
    Open ``path.partial`` for writing and rename it to ``path`` once the block ends without an error, so that a
    file on disk is never half-written (a stopped sweep leaves no truncated CSV behind).

    :param path: The file to write.
    :return: The open text file (``newline=""``, for ``csv``).
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as file:
        yield file
    partial.replace(path)


def write_run_csv(path: str | Path, metadata: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    """
    Write a run's CSV: ``# key: value`` metadata lines, then the header and one row per iteration.

    :param path: The file.
    :param metadata: The metadata (values written with ``str``; no newlines allowed).
    :param rows: One mapping per iteration with the :data:`COLUMNS`.
    """
    with atomic_write(path) as file:
        for key, value in metadata.items():
            text = str(value).replace("\n", " ")
            file.write(f"# {key}: {text}\n")
        writer = csv.DictWriter(file, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})


@dataclass
class RunData:
    """
    A run's CSV, read back.

    :param metadata: The ``# key: value`` lines (values as strings).
    :param columns: Column name to a float array (one entry per row).
    :param path: The file.
    """

    metadata: dict[str, str]
    columns: dict[str, np.ndarray]
    path: Path

    @property
    def trained(self) -> np.ndarray:
        """Boolean mask of the rows after a training iteration (``iteration >= 1``)."""
        return self.columns["iteration"] >= 1


def read_run_csv(path: str | Path) -> RunData:
    """
    Read a CSV written by :func:`write_run_csv`.

    :param path: The file.
    :return: Its metadata and columns.
    """
    metadata: dict[str, str] = {}
    with open(path) as file:
        lines = file.readlines()
    body = []
    for line in lines:
        if line.startswith("#"):
            key, _, value = line[1:].strip().partition(":")
            metadata[key.strip()] = value.strip()
        elif line.strip():
            body.append(line)
    reader = csv.DictReader(body)
    records = list(reader)
    names = reader.fieldnames or list(COLUMNS)
    columns = {
        name: np.asarray([float(record[name]) if record[name] not in (None, "") else np.nan for record in records])
        for name in names
    }
    return RunData(metadata=metadata, columns=columns, path=Path(path))


# ---------------------------------------------------------------------------------------------------------------------
# Sweep
# ---------------------------------------------------------------------------------------------------------------------


def default_eval_episodes(env_id: str) -> int:
    """
    The paper's evaluation episodes for ``env_id``: 100 for highway and BipedalWalker, else 1000.

    :param env_id: The env id.
    :return: The count.
    """
    return PAPER_EVAL_EPISODES.get(env_id, DEFAULT_EVAL_EPISODES)


#: With progress on, each run prints a line every this many iterations.
PROGRESS_EVERY = 10


def _worker(spec: RunSpec, progress_every: int = 0) -> str:
    return str(run_one(spec, torch_threads=1, progress_every=progress_every))


#: A file of this name in a sweep's output folder stops the sweep: no new run starts once it exists.
STOP_FILE = "STOP"


def run_sweep(specs: Sequence[RunSpec], jobs: int = 1, progress: bool = True, max_runs: int | None = None) -> list[Path]:
    """
    Run every spec, ``jobs`` at a time in separate processes (each with one torch thread).

    A run whose CSV already exists is skipped (CSVs are written whole when a run ends, so an existing one is
    complete): nothing is overwritten, and a stopped sweep resumes where it was when started again.
    At most ``jobs`` runs are handed to the processes at a time, so a sweep can be stopped between runs: once a
    file named :data:`STOP_FILE` exists in the next run's output folder, or ``max_runs`` runs have started, no new
    run starts, the running ones finish and write their CSVs, and the call returns.

    :param specs: The runs.
    :param jobs: Parallel processes (1: in this process, one after the other).
    :param progress: Show a tqdm bar over finished runs, and a line every :data:`PROGRESS_EVERY` iterations of each.
    :param max_runs: Start at most this many new runs (``None``: all of them).
    :return: The CSV paths of the runs this call made, in the order they finished.
    """
    from tqdm import tqdm

    if max_runs is not None and max_runs < 0:
        raise ValueError(f"max_runs (--max-runs) must be at least 0, not {max_runs}")
    done = [spec for spec in specs if spec.csv_path.exists()]
    if done:
        print(f"{len(done)} of {len(specs)} runs already have a CSV, kept and skipped (e.g. {done[0].csv_path})", flush=True)
    pending = [spec for spec in specs if not spec.csv_path.exists()]
    limit = len(pending) if max_runs is None else min(max_runs, len(pending))
    every = PROGRESS_EVERY if progress else 0
    paths: list[Path] = []
    started = 0

    def next_spec() -> RunSpec | None:
        nonlocal started
        if started >= limit or (Path(pending[started].out_dir) / STOP_FILE).exists():
            return None
        started += 1
        return pending[started - 1]

    bar = tqdm(total=limit, desc="runs", disable=not progress, dynamic_ncols=True)
    try:
        if jobs <= 1:
            while (spec := next_spec()) is not None:
                paths.append(run_one(spec, torch_threads=1, progress_every=every))
                bar.set_postfix_str(paths[-1].name)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                running: set[concurrent.futures.Future[str]] = set()
                while True:
                    while len(running) < jobs and (spec := next_spec()) is not None:
                        running.add(pool.submit(_worker, spec, every))
                    if not running:
                        break
                    finished, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in finished:
                        paths.append(Path(future.result()))
                        bar.set_postfix_str(paths[-1].name)
                        bar.update()
    finally:
        bar.close()
    if started < len(pending):
        stop_seen = started < limit  # next_spec gave up before the limit: the STOP file
        reason = f"a {STOP_FILE} file exists in {pending[started].out_dir}" if stop_seen else f"--max-runs {max_runs}"
        print(
            f"Stopped ({reason}): {len(pending) - started} runs not started; run the same command again to resume"
            + (f" after deleting the {STOP_FILE} file" if stop_seen else ""),
            flush=True,
        )
    return paths


def _parse_conf(items: Sequence[str] | None) -> dict[str, str]:
    """``--conf ALGO=PATH_OR_NAME ...`` (a single bare value applies to every algorithm)."""
    confs: dict[str, str] = {}
    for item in items or []:
        algo, sep, value = item.partition("=")
        if sep:
            confs[algo.strip()] = value.strip()
        else:
            confs["*"] = item.strip()
    return confs


def build_parser() -> argparse.ArgumentParser:
    """
    The ``run`` command's argument parser.

    :return: The parser.
    """
    parser = argparse.ArgumentParser(
        prog="python -m sb3_influence.benchmark",
        description="Paired PPO / InfluencePPO runs over seeds, one CSV per run (see also the 'summarize' command).",
    )
    parser.add_argument("--env", required=True, help="env id (an entry of the configs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default: 0 1 2 3 4)")
    parser.add_argument(
        "--algos",
        nargs="+",
        default=["ppo", "influence_ppo"],
        help="variants: ALGO or ALGO:key=value[,key=value] (e.g. influence_ppo:filter_mode=random)",
    )
    parser.add_argument(
        "--conf",
        nargs="+",
        default=None,
        help="configs: ALGO=PATH_OR_NAME (e.g. ppo=ppo_adam influence_ppo=influence_ppo_adam); default zoo_configs/<algo>.yml",
    )
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="hyperparameters for every variant")
    parser.add_argument("--n-timesteps", type=int, default=None, help="training budget override (reduced budgets)")
    parser.add_argument("--eval-episodes", type=int, default=None, help="default: the paper's (1000; highway/Bipedal 100)")
    parser.add_argument(
        "--eval-seed",
        type=int,
        default=None,
        help="evaluate every checkpoint on the same fixed test set (env and action noise seeded with this); "
        "default: fresh noise at every evaluation",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=1,
        help="evaluate every this many iterations (must divide the run's iterations; default 1, as the paper); "
        "the metrics then count iterations in steps of this size",
    )
    parser.add_argument("--no-initial-eval", action="store_true", help="do not evaluate the initial policy (iteration 0)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes")
    parser.add_argument("--out", default=None, help="output folder (default: benchmarks/results/<env>/)")
    parser.add_argument(
        "--max-runs",
        type=int,
        default=None,
        help=f"start at most this many new runs, then stop (run again to resume); a file named {STOP_FILE} in the "
        "output folder also stops the sweep before its next run",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def make_specs(args: argparse.Namespace, command: str = "") -> list[RunSpec]:
    """
    The runs of a parsed ``run`` command line, seed-major (the variants of a seed next to each other).

    :param args: Parsed by :func:`build_parser`.
    :param command: The command line, for the metadata.
    :return: The specs.
    """
    algos = [parse_algo_spec(spec) for spec in args.algos]
    labels = [algo.label for algo in algos]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Duplicate variants in --algos: {labels}")
    confs = _parse_conf(args.conf)
    common = parse_assignments(args.set)
    out = args.out or str(Path("benchmarks") / "results" / args.env)
    eval_episodes = args.eval_episodes if args.eval_episodes is not None else default_eval_episodes(args.env)
    if eval_episodes < 1:
        raise ValueError("--eval-episodes must be at least 1")
    if args.eval_every < 1:
        raise ValueError("--eval-every must be at least 1")
    specs = []
    for seed in args.seeds:
        for algo in algos:
            config = resolve_config(confs.get(algo.algo, confs.get("*", algo.algo)))
            load_hyperparams(config, args.env)  # fail now, not in a worker
            specs.append(
                RunSpec(
                    env_id=args.env,
                    algo=algo,
                    seed=int(seed),
                    config=str(config),
                    out_dir=out,
                    eval_episodes=int(eval_episodes),
                    n_timesteps=args.n_timesteps,
                    common_overrides=common,
                    command=command,
                    eval_initial=not args.no_initial_eval,
                    eval_seed=args.eval_seed,
                    eval_every=int(args.eval_every),
                )
            )
    return specs


def run_main(argv: Sequence[str]) -> list[Path]:
    """
    The ``run`` command.

    :param argv: Its arguments.
    :return: The CSVs written.
    """
    args = build_parser().parse_args(list(argv))
    command = shlex.join([sys.executable, "-m", "sb3_influence.benchmark", *argv])
    specs = make_specs(args, command)
    paths = run_sweep(specs, jobs=args.jobs, progress=not args.no_progress, max_runs=args.max_runs)
    print(f"Wrote {len(paths)} new CSVs to {specs[0].out_dir if specs else args.out}")
    return paths
