"""
The no-harm panel: cheap tasks over every action space, paired seeds, InfluencePPO variants against PPO.

    python -m sb3_influence.benchmark panel --seeds 0 1 2 3 4 5 6 7 8 9 --jobs 2 --out benchmarks/panel
    python -m sb3_influence.benchmark panel --summarize benchmarks/panel

Each task is small enough for a 2-core CPU (seconds to a minute per run). Every variant of a seed trains from
the same seed, and every checkpoint of every run is evaluated on the same fixed test set: the evaluation envs
are seeded with the same seed at every checkpoint and the policy's action noise is drawn from a torch
generator seeded the same way, so two checkpoints (of one run or of two methods) differ in score only
because their policies differ ("fixed-noise evaluation"). One CSV per task holds every run's curve.

For each task and variant the summary gives, paired by seed against PPO: the difference of the area under
the learning curve (the mean evaluated return over the checkpoints after each update) and of the final return
(the mean of the last three checkpoints), as mean and 95% bootstrap confidence interval (scipy, BCa), and the
probability of improvement P(variant > PPO) of the AUC with rliable's stratified-bootstrap interval. Across
tasks: the interquartile mean (IQM) of min-max-normalised AUC per method, with rliable's interval.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sb3_influence.benchmark.evaluation import evaluate_fixed
from sb3_influence.benchmark.runner import STOP_FILE, atomic_write, environment_metadata, parse_algo_spec
from sb3_influence.benchmark.stats import across_tasks, paired_difference, probability_of_improvement
from sb3_influence.registry import ALGORITHMS, get_algo, influence_algos

#: Columns of a panel CSV.
PANEL_COLUMNS = ("task", "variant", "seed", "iteration", "timesteps", "eval_mean", "kept_fraction")


def _identity(kind: str) -> Callable[[], Any]:
    from stable_baselines3.common import envs

    makers: dict[str, Callable[[], Any]] = {
        "discrete": lambda: envs.IdentityEnv(4, ep_length=16),
        "multidiscrete": lambda: envs.IdentityEnvMultiDiscrete(3, ep_length=16),
        "multibinary": lambda: envs.IdentityEnvMultiBinary(4, ep_length=16),
        "box": lambda: envs.IdentityEnvBox(eps=0.5, ep_length=16),
    }
    return makers[kind]


def _frozen_lake() -> Any:
    import gymnasium as gym

    return gym.make("FrozenLake-v1", map_name="4x4", is_slippery=False)


@dataclass(frozen=True)
class PanelTask:
    """
    One task of the panel.

    :param name: Short name (also the CSV's file name).
    :param env: A gym id, or a name of :data:`ENV_FACTORIES`.
    :param action_space: The kind of action space, for the table.
    :param n_timesteps: Training budget.
    :param eval_episodes: Episodes per checkpoint (on the fixed test set).
    :param hyperparams: The algorithm's arguments (``n_envs`` is the number of training envs).
    :param parent: The parent algorithm (a registry name): the baseline, whose IIF twin is compared with it.
    :param policy: The policy.
    :param eval_every: Evaluate every this many iterations (and at the start).
    """

    name: str
    env: str
    action_space: str
    n_timesteps: int
    eval_episodes: int
    hyperparams: dict[str, Any] = field(default_factory=dict)
    parent: str = "ppo"
    policy: str = "MlpPolicy"
    eval_every: int = 1

    @property
    def variants(self) -> tuple[str, str]:
        """The default variants: the parent and its IIF twin."""
        (twin,) = [entry.name for entry in influence_algos() if entry.baseline == self.parent]
        return self.parent, twin


#: Env factories for the panel's non-registered envs (SB3's toy envs and FrozenLake's paper setup).
ENV_FACTORIES: dict[str, Callable[[], Any]] = {
    "identity-discrete": _identity("discrete"),
    "identity-multidiscrete": _identity("multidiscrete"),
    "identity-multibinary": _identity("multibinary"),
    "identity-box": _identity("box"),
    "frozenlake-4x4": _frozen_lake,
}

_TOY = dict(n_envs=2, n_steps=64, batch_size=32, n_epochs=4, learning_rate=1e-3, policy_kwargs=dict(net_arch=[32, 32]))
_CLASSIC = dict(n_envs=4, n_steps=256, batch_size=64, n_epochs=10, learning_rate=1e-3)

#: The panel: every action space on a toy task (SB3's identity envs), plus classic control and FrozenLake.
TASKS: dict[str, PanelTask] = {
    task.name: task
    for task in (
        PanelTask("identity-discrete", "identity-discrete", "Discrete", 4096, 8, _TOY),
        PanelTask("identity-multidiscrete", "identity-multidiscrete", "MultiDiscrete", 4096, 8, _TOY),
        PanelTask("identity-multibinary", "identity-multibinary", "MultiBinary", 4096, 8, _TOY),
        PanelTask("identity-box", "identity-box", "Box", 8192, 8, _TOY),
        PanelTask("cartpole", "CartPole-v1", "Discrete", 40_960, 5, dict(_CLASSIC, gamma=0.98, gae_lambda=0.8)),
        PanelTask("pendulum", "Pendulum-v1", "Box", 40_960, 5, dict(_CLASSIC, gamma=0.9, n_steps=512, use_sde=True)),
        PanelTask("pendulum-nosde", "Pendulum-v1", "Box", 40_960, 5, dict(_CLASSIC, gamma=0.9, n_steps=512)),
        PanelTask("acrobot", "Acrobot-v1", "Discrete", 40_960, 5, _CLASSIC),
        PanelTask(
            "frozenlake",
            "frozenlake-4x4",
            "Discrete",
            40_960,
            50,
            # the paper's setup (SGD lr 5e-3, no gradient clipping), 20 of its 50 iterations
            dict(
                n_envs=1,
                n_steps=2048,
                batch_size=64,
                learning_rate=5e-3,
                max_grad_norm=1e10,
                policy_kwargs=dict(optimizer_class="SGD"),
            ),
        ),
        # The other algorithms against their parents (variants: the parent and its IIF twin).
        PanelTask(
            "a2c-cartpole",
            "CartPole-v1",
            "Discrete",
            40_960,
            5,
            dict(n_envs=8, n_steps=16),  # 128 records per update (rl-zoo3's 8 envs; 16 steps instead of 5)
            parent="a2c",
            eval_every=8,
        ),
        PanelTask(
            "maskable-identity",
            "sb3_influence/MaskedIdentity-v0",
            "Discrete (masked)",
            8192,
            4,
            dict(_TOY, n_steps=128),
            parent="ppo_mask",
        ),
        PanelTask(
            "recurrent-cartpole",
            "CartPole-v1",
            "Discrete (LSTM)",
            20_480,
            5,
            dict(
                n_envs=4,
                n_steps=128,
                batch_size=128,
                n_epochs=4,
                gamma=0.98,
                gae_lambda=0.8,
                learning_rate=1e-3,
                policy_kwargs={"lstm_hidden_size": 32},
            ),
            parent="ppo_lstm",
            policy="MlpLstmPolicy",
            eval_every=2,
        ),
    )
}


def make_env(task: PanelTask, n_envs: int, seed: int) -> Any:
    """
    The task's vectorised env, seeded.

    :param task: The task.
    :param n_envs: Number of envs.
    :param seed: Seed of the first env (the others ``seed + i``).
    :return: A ``VecEnv``.
    """
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env(ENV_FACTORIES.get(task.env, task.env), n_envs=n_envs, seed=seed)


def _build(task: PanelTask, variant: str, seed: int) -> Any:
    import torch as th

    spec = parse_algo_spec(variant, list(ALGORITHMS))
    entry = get_algo(spec.algo)
    cls = entry.load()
    kwargs = dict(task.hyperparams)
    n_envs = int(kwargs.pop("n_envs", 1))
    policy_kwargs = dict(kwargs.pop("policy_kwargs", {}))
    if policy_kwargs.get("optimizer_class") == "SGD":
        policy_kwargs["optimizer_class"] = th.optim.SGD
    kwargs.update(spec.overrides)
    family = entry.baseline or spec.algo
    if family != task.parent:
        raise ValueError(f"Panel task {task.name!r} compares {task.parent} and its IIF twin; got variant {variant!r}")
    env = make_env(task, n_envs, seed)
    return cls(task.policy, env, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **kwargs)


def run_panel_one(task_name: str, variant: str, seed: int, eval_seed: int = 10_000) -> list[dict[str, Any]]:
    """
    Train one variant on one task with one seed, evaluating at every iteration boundary (and at the start).

    :param task_name: A key of :data:`TASKS`.
    :param variant: ``ppo``, ``influence_ppo`` or ``ALGO:key=value,...``.
    :param seed: The training seed.
    :param eval_seed: The fixed test set's seed.
    :return: The rows of its curve (:data:`PANEL_COLUMNS`).
    """
    import torch as th

    th.set_num_threads(1)
    task = TASKS[task_name]
    model = _build(task, variant, seed)
    eval_env = make_env(task, 1, eval_seed)
    rows: list[dict[str, Any]] = []

    def record() -> None:
        report = getattr(model, "last_influence", None)
        kept = 1.0 if report is None or not rows else report.n_kept / report.kept.size
        rows.append(
            dict(
                task=task_name,
                variant=variant,
                seed=seed,
                iteration=len(rows),
                timesteps=int(model.num_timesteps),
                eval_mean=evaluate_fixed(model, eval_env, task.eval_episodes, eval_seed),
                kept_fraction=kept,
            )
        )

    original_train = model.train
    iterations = 0

    def train_then_evaluate() -> None:
        nonlocal iterations
        original_train()
        iterations += 1
        if iterations % task.eval_every == 0:
            record()

    setattr(model, "train", train_then_evaluate)  # noqa: B010 (an instance attribute shadows the method in learn())
    record()
    model.learn(task.n_timesteps)
    return rows


def _run_star(args: tuple[str, str, int]) -> list[dict[str, Any]]:
    return run_panel_one(*args)


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The metadata lines (without ``# ``) and the rows of a panel CSV."""
    with open(path) as file:
        lines = file.read().splitlines()
    metadata = [line[2:] for line in lines if line.startswith("# ")]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    return metadata, rows


def run_panel(
    tasks: Sequence[str],
    variants: Sequence[str] | None,
    seeds: Sequence[int],
    out: str | Path,
    jobs: int = 1,
    command: str = "",
) -> list[Path]:
    """
    Run every (task, variant, seed) and write one CSV per task, ``out/<task>.csv``.

    Nothing is lost or run twice: the runs a task's CSV already holds are kept and skipped, the missing ones are
    run and added (so a stopped sweep resumes where it was, and more seeds or variants can be added later). The
    CSV is written once all of a task's new runs are done; a line is printed as each run ends. A file named
    :data:`~sb3_influence.benchmark.runner.STOP_FILE` in ``out`` stops the panel before its next task with runs
    to do (the running task finishes and writes its CSV).

    :param tasks: Task names.
    :param variants: Variants (the first is the baseline of the summary, usually ``ppo``); ``None``: each task's
        :attr:`~PanelTask.variants` (its parent and the parent's IIF twin).
    :param seeds: Seeds.
    :param out: Output folder.
    :param jobs: Parallel processes.
    :param command: The command line, for the metadata.
    :return: The CSVs written or already complete (not those of the tasks a ``STOP`` file left out).
    """
    unknown = [name for name in tasks if name not in TASKS]
    if unknown:
        raise ValueError(f"Unknown panel task(s) {unknown}; known: {sorted(TASKS)}")
    for variant in variants or ():
        parse_algo_spec(variant, list(ALGORITHMS))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for position, task in enumerate(tasks):
        task_variants = list(variants) if variants else list(TASKS[task].variants)
        path = out / f"{task}.csv"
        old_metadata, old_rows = _read_rows(path) if path.exists() else ([], [])
        done = {(row["variant"], int(row["seed"])) for row in old_rows}
        todo = [(task, variant, seed) for seed in seeds for variant in task_variants if (variant, seed) not in done]
        if not todo:
            paths.append(path)
            print(f"{task}: all {len(seeds) * len(task_variants)} runs already in {path}", flush=True)
            continue
        if (out / STOP_FILE).exists():
            print(
                f"Stopped (a {STOP_FILE} file exists in {out}): no new run of {list(tasks[position:])} started; run "
                f"the same command again to resume after deleting the {STOP_FILE} file",
                flush=True,
            )
            break
        paths.append(path)
        started = time.time()
        results = []
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(_run_star, job): job for job in todo}
            for count, future in enumerate(as_completed(futures), start=1):
                rows = future.result()
                results.append(rows)
                _, variant, seed = futures[future]
                print(
                    f"  {task} {variant} seed {seed}: mean return {auc(np.array([r['eval_mean'] for r in rows])):.4g} "
                    f"({count}/{len(todo)}, {time.time() - started:.0f} s)",
                    flush=True,
                )
        results.sort(key=lambda rows: (rows[0]["seed"], task_variants.index(rows[0]["variant"])))
        metadata = {
            "task": task,
            "policy": TASKS[task].policy,
            "eval_every": TASKS[task].eval_every,
            "hyperparameters": json.dumps(TASKS[task].hyperparams, sort_keys=True, default=str),
            "n_timesteps": TASKS[task].n_timesteps,
            "eval_episodes": TASKS[task].eval_episodes,
            "evaluation": "fixed test set: env and action noise seeded with 10000 at every checkpoint",
            "wall_s": round(time.time() - started, 1),
            **environment_metadata(),
            "command": command,
        }
        with atomic_write(path) as file:
            for key, value in metadata.items():
                file.write(f"# {key}: {value}\n")
            for line in old_metadata:  # an earlier call's runs, kept
                file.write(f"# earlier {line}\n" if not line.startswith("earlier ") else f"# {line}\n")
            writer = csv.DictWriter(file, fieldnames=PANEL_COLUMNS)
            writer.writeheader()
            writer.writerows(old_rows)
            for rows in results:
                writer.writerows(rows)
        print(f"{task}: {len(todo)} new runs in {time.time() - started:.0f} s -> {path}", flush=True)
    return paths


# ---------------------------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------------------------


def read_panel(path: str | Path) -> dict[str, dict[int, np.ndarray]]:
    """
    Read a panel CSV.

    :param path: The CSV.
    :return: ``{variant: {seed: curve}}`` with ``curve[0]`` the initial policy's return.
    """
    curves: dict[str, dict[int, list[tuple[int, float]]]] = {}
    with open(path) as file:
        reader = csv.DictReader(line for line in file if not line.startswith("#"))
        for row in reader:
            curves.setdefault(row["variant"], {}).setdefault(int(row["seed"]), []).append(
                (int(row["iteration"]), float(row["eval_mean"]))
            )
    return {
        variant: {seed: np.array([value for _, value in sorted(points)]) for seed, points in by_seed.items()}
        for variant, by_seed in curves.items()
    }


def auc(curve: np.ndarray) -> float:
    """Area under a learning curve: the mean evaluated return over the checkpoints after each update."""
    return float(np.mean(curve[1:]))


def final_return(curve: np.ndarray, last: int = 3) -> float:
    """The mean of the last ``last`` checkpoints."""
    return float(np.mean(curve[-last:]))


def summarize_panel(folder: str | Path, baseline: str | None = None) -> str:
    """
    The panel's Markdown tables: per task and variant, paired differences against the baseline; then IQM and
    P(variant > baseline) across tasks on min-max-normalised AUC (per task, over every run of the task).

    :param folder: Folder of panel CSVs.
    :param baseline: The baseline variant; default: each task's parent algorithm (``ppo`` for unknown tasks), and
        ``ppo`` for the aggregate across tasks.
    :return: Markdown.
    """
    lines = [
        "| task | variant | seeds | AUC baseline | AUC variant | ΔAUC [95% CI] | Δfinal [95% CI] "
        "| P(variant > baseline) [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    normalised: dict[str, dict[str, dict[int, float]]] = {}  # variant -> task -> seed -> normalised AUC
    for path in sorted(Path(folder).glob("*.csv")):
        curves = read_panel(path)
        base = baseline or (TASKS[path.stem].parent if path.stem in TASKS else "ppo")
        if base not in curves:
            continue
        low = min(min(c.min() for c in runs.values()) for runs in curves.values())
        high = max(max(c.max() for c in runs.values()) for runs in curves.values())
        scale = (high - low) or 1.0
        for variant, runs in curves.items():
            seeds = sorted(set(runs) & set(curves[base]))
            aucs = np.array([auc(runs[s]) for s in seeds])
            normalised.setdefault(variant, {})[path.stem] = dict(zip(seeds, (aucs - low) / scale, strict=True))
            if variant == base:
                continue
            base_aucs = np.array([auc(curves[base][s]) for s in seeds])
            d_auc = paired_difference(aucs, base_aucs)
            d_final = paired_difference([final_return(runs[s]) for s in seeds], [final_return(curves[base][s]) for s in seeds])
            p, p_low, p_high = probability_of_improvement(aucs[:, None], base_aucs[:, None])
            lines.append(
                f"| {path.stem} | {variant} | {len(seeds)} | {base_aucs.mean():.3g} | {aucs.mean():.3g} | "
                f"{d_auc.mean:+.3g} [{d_auc.low:+.3g}, {d_auc.high:+.3g}] | "
                f"{d_final.mean:+.3g} [{d_final.low:+.3g}, {d_final.high:+.3g}] | {p:.2f} [{p_low:.2f}, {p_high:.2f}] |"
            )
    aggregate = across_tasks(normalised, baseline or "ppo")
    if aggregate is not None:
        lines += [
            "",
            "| method | IQM of normalised AUC [95% CI] | P(method > baseline) over tasks [95% CI] |",
            "|---|---|---|",
        ]
        for name, (value, lo, hi, prob) in aggregate[2].items():
            cell = "-" if prob is None else "{:.2f} [{:.2f}, {:.2f}]".format(*prob)
            lines.append(f"| {name} | {value:.3f} [{lo:.3f}, {hi:.3f}] | {cell} |")
    return "\n".join(lines)


#: What the summary's columns mean, printed under its tables.
LEGEND = (
    "AUC: the mean evaluated return over the checkpoints after each update (the area under the learning curve); "
    "final: the mean of the last three checkpoints. Δ: variant minus baseline, paired by seed, mean and 95% BCa "
    "bootstrap interval; an interval that reaches 0 or above means no harm beyond noise. P(variant > baseline): "
    "rliable's probability of improvement of the AUC, with its stratified-bootstrap 95% interval (0.5 = a tie). "
    "IQM: rliable's interquartile mean over (seed, task) of the AUC min-max-normalised per task."
)


def plot_panel(folder: str | Path, output: str | Path, dpi: int = 90) -> Path:
    """
    One panel per task: every variant's mean learning curve over seeds, with its standard-error band (one colour
    per variant in every panel).

    :param folder: Folder of panel CSVs.
    :param output: The PNG to write.
    :param dpi: Resolution.
    :return: ``output``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = sorted(Path(folder).glob("*.csv"))
    if not paths:
        raise ValueError(f"No panel CSV in {folder}")
    n_cols = min(4, len(paths))
    n_rows = math.ceil(len(paths) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 2.8 * n_rows), squeeze=False)
    panels = [read_panel(path) for path in paths]
    variants = list(dict.fromkeys(variant for curves in panels for variant in curves))  # one colour each, everywhere
    colours = {variant: plt.get_cmap("tab10")(index % 10) for index, variant in enumerate(variants)}
    for ax, path, curves_by_variant in zip(axes.flat, paths, panels, strict=False):
        for variant, runs in curves_by_variant.items():
            curves = np.stack(list(runs.values()))
            mean = curves.mean(axis=0)
            sem = curves.std(axis=0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else np.zeros_like(mean)
            x = np.arange(mean.size)
            ax.plot(x, mean, color=colours[variant], linewidth=1.2)
            ax.fill_between(x, mean - sem, mean + sem, color=colours[variant], alpha=0.2)
        ax.set_title(path.stem, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(paths) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colours[variant]) for variant in variants]
    fig.legend(handles, variants, loc="lower center", ncol=min(3, len(variants)), fontsize=8)
    fig.tight_layout(rect=(0, 0.04 * math.ceil(len(variants) / 3) + 0.02, 1, 1))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=dpi)
    plt.close(fig)
    return output


def panel_main(argv: Sequence[str]) -> None:
    """
    The ``panel`` command: run the panel, or summarise its CSVs.

    :param argv: Its arguments.
    """
    import shlex
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m sb3_influence.benchmark panel",
        description="No-harm panel: InfluencePPO variants against PPO on cheap tasks over every action space.",
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help=f"tasks (default: all of {list(TASKS)})")
    parser.add_argument(
        "--algos",
        nargs="+",
        default=None,
        help="variants, the first is the baseline (default: each task's parent algorithm and its IIF twin)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)), help="seeds (default 0..9)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes")
    parser.add_argument("--out", default="benchmarks/panel", help="output folder")
    parser.add_argument("--summarize", metavar="FOLDER", default=None, help="print the tables of a panel folder and exit")
    parser.add_argument("--no-plot", action="store_true", help="with --summarize: do not write FOLDER/learning_curves.png")
    args = parser.parse_args(list(argv))
    if args.summarize is not None:
        print(summarize_panel(args.summarize, baseline=args.algos[0] if args.algos else None))
        print(f"\n{LEGEND}")
        if not args.no_plot:
            print(f"learning curves: {plot_panel(args.summarize, Path(args.summarize) / 'learning_curves.png')}")
        return
    command = shlex.join([sys.executable, "-m", "sb3_influence.benchmark", "panel", *argv])
    run_panel(args.tasks, args.algos, args.seeds, args.out, jobs=args.jobs, command=command)
