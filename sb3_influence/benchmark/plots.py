"""
Summaries and plots of benchmark CSVs written by :mod:`sb3_influence.benchmark.runner`.

Usage::

    python -m sb3_influence.benchmark summarize benchmarks/results/FrozenLake-v1 benchmarks/results/Acrobot-v1 \
        --markdown summary.md --plot-dir benchmarks --combined benchmarks/learning_curves_all.png

For each env folder, the runs are grouped by variant (the ``algo`` metadata) and each non-baseline variant is
paired with the baseline (``ppo``) by seed. Per seed, SE_ave / SE_peak / RT_peak come from
:func:`~sb3_influence.benchmark.metrics.compute_metrics` on the evaluated returns of iterations ``1..T``
(iteration 0, the initial policy, is left out) and the cumulative ``collect_s + score_s + update_s``; they are
then aggregated over seeds (mean, standard error, percentile-bootstrap 95% CI).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sb3_influence.benchmark.metrics import (
    Aggregate,
    SeedMetrics,
    aggregate,
    compute_metrics,
    first_reach,
    format_pct,
    rt_peak,
    se_band,
)
from sb3_influence.benchmark.runner import RunData, read_run_csv
from sb3_influence.benchmark.stats import PairedDifference, across_tasks, paired_difference, probability_of_improvement
from sb3_influence.registry import ALGORITHMS

BASELINE = "ppo"


def load_runs(folder: str | Path) -> dict[str, dict[int, RunData]]:
    """
    Read every ``*.csv`` of a results folder.

    :param folder: The folder (one env).
    :return: ``{variant label: {seed: run}}``.
    """
    runs: dict[str, dict[int, RunData]] = {}
    for path in sorted(Path(folder).glob("*.csv")):
        run = read_run_csv(path)
        label = run.metadata.get("algo", path.stem.rsplit("_seed", 1)[0])
        seed = int(run.metadata.get("seed", path.stem.rsplit("_seed", 1)[-1]))
        runs.setdefault(label, {})[seed] = run
    return runs


def curve(run: RunData) -> np.ndarray:
    """
    Evaluated returns at iterations ``1..T`` (without the initial policy's row).

    :param run: The run.
    :return: The curve.
    """
    return run.columns["eval_mean"][run.trained]


def cumulative_seconds(run: RunData) -> np.ndarray:
    """
    Cumulative training wall-clock (collection + scoring + update) at the end of iterations ``1..T``.

    A row's timing columns are per-iteration means over the iterations since the previous row (one iteration,
    unless the run was evaluated every few iterations), so each row adds its mean times that number.

    :param run: The run.
    :return: The cumulative seconds.
    """
    mask = run.trained
    iterations = np.concatenate([[0.0], run.columns["iteration"][mask]])
    per_iteration = run.columns["collect_s"][mask] + run.columns["score_s"][mask] + run.columns["update_s"][mask]
    return np.cumsum(per_iteration * np.diff(iterations))


@dataclass
class VariantSummary:
    """
    One variant against the baseline on one env.

    :param env: The env id.
    :param variant: The variant's label.
    :param seeds: The paired seeds.
    :param per_seed: Metrics per seed.
    :param se_ave: Aggregate of SE_ave.
    :param se_peak: Aggregate of SE_peak.
    :param rt_peak: Aggregate of RT_peak.
    :param rt_to_ppo_peak: Aggregate of ``1 - t_IIF(m_IIF(peak)) / t_PPO(m_PPO(peak))``: the run-time reduction
        against PPO's time to its own peak (not to the end of its run), a stricter, supplementary figure.
    :param se_mid: Aggregate of :func:`~sb3_influence.benchmark.metrics.se_band` (10-90% of PPO's range), over the
        seeds where it is defined: the speed-up while PPO is learning, without the noise-made levels at both ends.
    :param final_baseline: Aggregate of the baseline's final evaluated return.
    :param final_variant: Aggregate of the variant's final evaluated return.
    :param peak_baseline: Aggregate of the baseline's peak evaluated return.
    :param peak_variant: Aggregate of the variant's peak evaluated return.
    :param score_s: Mean scoring seconds per iteration of the variant (over seeds and iterations).
    :param update_s_variant: Mean update seconds per iteration of the variant.
    :param update_s_baseline: Mean update seconds per iteration of the baseline.
    :param collect_s: Mean collection seconds per iteration of the variant.
    :param kept_fraction: Mean kept fraction of the variant.
    :param iterations: Iterations of the runs (of the variant's first seed).
    :param timesteps: Training timesteps of the runs.
    :param eval_episodes: Evaluation episodes per boundary.
    """

    env: str
    variant: str
    seeds: list[int]
    per_seed: dict[int, SeedMetrics]
    se_ave: Aggregate
    se_peak: Aggregate
    rt_peak: Aggregate
    rt_to_ppo_peak: Aggregate
    se_mid: Aggregate
    final_baseline: Aggregate
    final_variant: Aggregate
    peak_baseline: Aggregate
    peak_variant: Aggregate
    score_s: float
    update_s_variant: float
    update_s_baseline: float
    collect_s: float
    kept_fraction: float
    iterations: int
    timesteps: int
    eval_episodes: str


def _aggregate_finite(values: list[float]) -> Aggregate:
    """:func:`aggregate` of the finite values; all-``nan`` fields when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return aggregate(finite) if finite else Aggregate(math.nan, math.nan, math.nan, math.nan, 0)


def _rt_to_ppo_peak(ppo: RunData, iif: RunData) -> float:
    """RT against PPO's time to first reach its own peak (PPO's curve and times cut at that iteration)."""
    ppo_curve = curve(ppo)
    m = first_reach(ppo_curve, float(ppo_curve.max()))
    assert m is not None
    return rt_peak(ppo_curve[:m], curve(iif), cumulative_seconds(iif), cumulative_seconds(ppo)[:m])


def summarize_env(folder: str | Path, baseline: str = BASELINE) -> list[VariantSummary]:
    """
    Pair each variant of a results folder with the baseline by seed and compute the metrics.

    :param folder: The env's results folder.
    :param baseline: The baseline's label.
    :return: One summary per non-baseline variant that shares at least one seed with the baseline.
    """
    runs = load_runs(folder)
    if baseline not in runs:
        return []
    base = runs[baseline]
    summaries = []
    for label in sorted(runs):
        if label == baseline:
            continue
        seeds = sorted(set(base) & set(runs[label]))
        if not seeds:
            continue
        grids = {run.metadata.get("eval_every", "1") for run in [*base.values(), *runs[label].values()]}
        if len(grids) > 1:
            raise ValueError(
                f"{folder}: {baseline} and {label} were evaluated on different grids (eval_every {sorted(grids)}); "
                "their learning curves cannot be paired"
            )
        per_seed = {
            seed: compute_metrics(
                curve(base[seed]),
                curve(runs[label][seed]),
                cumulative_seconds(base[seed]),
                cumulative_seconds(runs[label][seed]),
            )
            for seed in seeds
        }
        variant_runs = [runs[label][seed] for seed in seeds]
        base_runs = [base[seed] for seed in seeds]

        def mean_col(items: list[RunData], name: str) -> float:
            return float(np.mean(np.concatenate([run.columns[name][run.trained] for run in items])))

        first = variant_runs[0]
        summaries.append(
            VariantSummary(
                env=first.metadata.get("env", Path(folder).name),
                variant=label,
                seeds=seeds,
                per_seed=per_seed,
                se_ave=aggregate([m.se_ave for m in per_seed.values()]),
                se_peak=aggregate([m.se_peak for m in per_seed.values()]),
                rt_peak=aggregate([float(m.rt_peak) for m in per_seed.values() if m.rt_peak is not None]),
                rt_to_ppo_peak=aggregate([_rt_to_ppo_peak(base[seed], runs[label][seed]) for seed in seeds]),
                se_mid=_aggregate_finite([se_band(curve(base[seed]), curve(runs[label][seed])) for seed in seeds]),
                final_baseline=aggregate([curve(run)[-1] for run in base_runs]),
                final_variant=aggregate([curve(run)[-1] for run in variant_runs]),
                peak_baseline=aggregate([curve(run).max() for run in base_runs]),
                peak_variant=aggregate([curve(run).max() for run in variant_runs]),
                score_s=mean_col(variant_runs, "score_s"),
                update_s_variant=mean_col(variant_runs, "update_s"),
                update_s_baseline=mean_col(base_runs, "update_s"),
                collect_s=mean_col(variant_runs, "collect_s"),
                kept_fraction=mean_col(variant_runs, "kept_fraction"),
                iterations=int(first.columns["iteration"][-1]),
                timesteps=int(first.columns["timesteps"][-1]),
                eval_episodes=first.metadata.get("eval_episodes", "?"),
            )
        )
    return summaries


def _ci(agg: Aggregate) -> str:
    return f"[{100 * agg.ci_low:.1f}, {100 * agg.ci_high:.1f}]"


def _ret(agg: Aggregate) -> str:
    return f"{agg.mean:.3g}±{agg.stderr:.2g}"


def markdown_table(summaries: Sequence[VariantSummary]) -> str:
    """
    Markdown tables of summaries: the metrics (mean±stderr and bootstrap 95% CI), returns, and costs.

    :param summaries: From :func:`summarize_env`.
    :return: The markdown.
    """
    lines = [
        "| env | variant | seeds | iters (steps) | eval eps | SE_ave | SE_peak | RT_peak | RT vs PPO's time to its peak "
        "| SE over PPO's 10-90% levels |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.env} | {s.variant} | {len(s.seeds)} | {s.iterations} ({s.timesteps:,}) | {s.eval_episodes} "
            f"| {format_pct(s.se_ave)} {_ci(s.se_ave)} | {format_pct(s.se_peak)} {_ci(s.se_peak)} "
            f"| {format_pct(s.rt_peak)} {_ci(s.rt_peak)} | {format_pct(s.rt_to_ppo_peak)} {_ci(s.rt_to_ppo_peak)} "
            f"| {format_pct(s.se_mid)} {_ci(s.se_mid)} |"
        )
    lines += [
        "",
        "| env | variant | final return PPO | final return variant | peak PPO | peak variant "
        "| score_s / iter | score_s / update_s | update_s PPO / variant | collect_s / iter | kept fraction |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        ratio = s.score_s / s.update_s_variant if s.update_s_variant > 0 else math.nan
        lines.append(
            f"| {s.env} | {s.variant} | {_ret(s.final_baseline)} | {_ret(s.final_variant)} | {_ret(s.peak_baseline)} "
            f"| {_ret(s.peak_variant)} | {s.score_s:.3f} s | {ratio:.3f} | {s.update_s_baseline:.2f} s / "
            f"{s.update_s_variant:.2f} s | {s.collect_s:.2f} s | {s.kept_fraction:.3f} |"
        )
    lines += ["", "Per seed (SE_ave / SE_peak / RT_peak, %), then the median over seeds (robust to one failed seed):", ""]
    for s in summaries:
        cells = ", ".join(
            f"seed {seed}: {100 * m.se_ave:.1f} / {100 * m.se_peak:.1f} / {100 * float(m.rt_peak or math.nan):.1f}"
            for seed, m in s.per_seed.items()
        )
        medians = [np.median([getattr(m, name) for m in s.per_seed.values()]) for name in ("se_ave", "se_peak")] + [
            np.median([float(m.rt_peak) for m in s.per_seed.values() if m.rt_peak is not None] or [math.nan])
        ]
        median = " / ".join(f"{100 * value:.1f}" for value in medians)
        lines.append(f"- {s.env}, {s.variant}: {cells}; median: {median}")
    return "\n".join(lines) + "\n"


def _band(runs: Sequence[RunData], initial: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Timesteps, mean and standard error over runs (truncated to the shortest run)."""
    keep = [np.ones_like(run.trained) if initial else run.trained for run in runs]
    length = min(int(k.sum()) for k in keep)
    values = np.stack([run.columns["eval_mean"][k.astype(bool)][:length] for run, k in zip(runs, keep, strict=True)])
    steps = runs[0].columns["timesteps"][keep[0].astype(bool)][:length]
    mean = values.mean(axis=0)
    stderr = values.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else np.zeros_like(mean)
    return steps, mean, stderr


def plot_env_axes(ax: object, folder: str | Path, title: str | None = None) -> None:
    """
    Draw an env's learning curves (mean ± standard error over seeds, one line per variant) on a matplotlib axes.

    :param ax: The axes.
    :param folder: The env's results folder.
    :param title: The title (default: the env id).
    """
    runs = load_runs(folder)
    colours = {"ppo": "tab:blue", "influence_ppo": "tab:red"}
    env = title or Path(folder).name
    for i, label in enumerate(sorted(runs, key=lambda name: (name != BASELINE, name))):
        group = [runs[label][seed] for seed in sorted(runs[label])]
        steps, mean, stderr = _band(group)
        colour = colours.get(label, f"C{(i + 2) % 10}")
        name = ALGORITHMS[label].label if label in ALGORITHMS else label
        ax.plot(steps, mean, color=colour, label=f"{name} (n={len(group)})", lw=1.5)  # type: ignore[attr-defined]
        ax.fill_between(steps, mean - stderr, mean + stderr, color=colour, alpha=0.2, lw=0)  # type: ignore[attr-defined]
        if group:
            env = title or group[0].metadata.get("env", env)
    ax.set_title(env)  # type: ignore[attr-defined]
    ax.set_xlabel("timesteps")  # type: ignore[attr-defined]
    ax.set_ylabel("evaluated return (stochastic)")  # type: ignore[attr-defined]
    ax.grid(alpha=0.3)  # type: ignore[attr-defined]
    ax.legend(fontsize=8)  # type: ignore[attr-defined]


def plot_env(folder: str | Path, output: str | Path, dpi: int = 100) -> Path:
    """
    Learning curves of one env (PPO vs IIF and any other variant), mean ± standard error over seeds, as a PNG.

    :param folder: The env's results folder.
    :param output: The PNG.
    :param dpi: Resolution.
    :return: The PNG's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    plot_env_axes(ax, folder)
    fig.tight_layout()
    fig.savefig(output, dpi=dpi)
    plt.close(fig)
    return Path(output)


def plot_all(folders: Sequence[str | Path], output: str | Path, dpi: int = 90) -> Path:
    """
    A combined figure: one panel of learning curves per env folder.

    :param folders: The env results folders.
    :param output: The PNG.
    :param dpi: Resolution.
    :return: The PNG's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(folders)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    for ax, folder in zip(axes.flat, folders, strict=False):
        plot_env_axes(ax, folder)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(output, dpi=dpi)
    plt.close(fig)
    return Path(output)


#: What ``summarize`` prints below its tables: what each metric means.
LEGEND = """\
SE_ave: the mean sample-efficiency gain over PPO's successive new bests: at each level PPO reaches, 1 - (iterations \
IIF needs) / (iterations PPO needs); positive = IIF gets there sooner. It counts only levels PPO reaches, so \
evaluation noise that gives PPO a spurious new best (then reached late or never by IIF, which counts as one \
iteration past its budget) pulls it down, even when IIF's final return is better. SE_peak: the same at PPO's peak \
return. RT_peak: 1 - (IIF's wall-clock time to reach PPO's peak) / (PPO's whole run time). Cells: mean ± standard \
error over seeds [95% bootstrap interval]. ΔAUC: the mean evaluated return over the curve, variant minus PPO, paired \
by seed (mean and 95% BCa interval); Δfinal: the same for the mean of the last three evaluations (the last 3K \
iterations of a run evaluated every K iterations); an interval that reaches 0 or above means no harm beyond \
noise. P(variant > PPO): rliable's probability of improvement of the AUC \
(stratified bootstrap 95% interval; 0.5 = a tie). IQM: rliable's interquartile mean of the AUC min-max-normalised \
per env over every run of that env."""


def paired_table(folders: Sequence[str | Path], baseline: str = BASELINE) -> str:
    """
    Markdown tables of the paired statistics: per env and variant, ΔAUC and Δfinal against the baseline (BCa
    intervals) and rliable's P(variant > baseline); then, across envs, rliable's IQM of min-max-normalised AUC and
    P(variant > baseline) for the variants run on every env (with the seeds all envs share).

    :param folders: One results folder per env.
    :param baseline: The baseline's label.
    :return: The markdown.
    """
    lines = [
        "| env | variant | seeds | ΔAUC [95% CI] | Δfinal [95% CI] | P(variant > PPO) [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    normalised: dict[str, dict[str, dict[int, float]]] = {}  # variant -> env -> seed -> normalised AUC
    for folder in folders:
        runs = load_runs(folder)
        if baseline not in runs:
            continue
        env = Path(folder).name
        aucs = {label: {seed: float(curve(run).mean()) for seed, run in by_seed.items()} for label, by_seed in runs.items()}
        values = [v for by_seed in aucs.values() for v in by_seed.values()]
        low, scale = min(values), (max(values) - min(values)) or 1.0
        for label in sorted(runs):
            normalised.setdefault(label, {})[env] = {seed: (v - low) / scale for seed, v in aucs[label].items()}
            seeds = sorted(set(runs[label]) & set(runs[baseline]))
            if label == baseline or len(seeds) < 2:
                continue
            variant = np.array([aucs[label][s] for s in seeds])
            base = np.array([aucs[baseline][s] for s in seeds])
            d_auc = paired_difference(variant, base)
            finals = [[float(curve(by[s])[-3:].mean()) for s in seeds] for by in (runs[label], runs[baseline])]
            d_final = paired_difference(finals[0], finals[1])
            p, p_low, p_high = probability_of_improvement(variant[:, None], base[:, None])
            lines.append(
                f"| {env} | {label} | {len(seeds)} | {_diff(d_auc)} | {_diff(d_final)} | {p:.2f} [{p_low:.2f}, {p_high:.2f}] |"
            )
    aggregate = across_tasks(normalised, baseline)
    if aggregate is not None:
        envs, n_seeds, rows = aggregate
        lines += [
            "",
            f"Across {len(envs)} envs ({', '.join(envs)}), {n_seeds} seeds each:",
            "",
            "| variant | IQM of normalised AUC [95% CI] | P(variant > PPO) over envs [95% CI] |",
            "|---|---|---|",
        ]
        for label, (value, low, high, prob) in rows.items():
            cell = "" if prob is None else "{:.2f} [{:.2f}, {:.2f}]".format(*prob)
            lines.append(f"| {label} | {value:.3f} [{low:.3f}, {high:.3f}] | {cell} |")
    return "\n".join(lines) + "\n"


def _diff(d: PairedDifference) -> str:
    return f"{d.mean:+.4g} [{d.low:+.4g}, {d.high:+.4g}]"


def summarize(
    folders: Sequence[str | Path],
    markdown: str | Path | None = None,
    plot_dir: str | Path | None = None,
    combined: str | Path | None = None,
) -> str:
    """
    Summarize results folders: markdown table (printed and optionally written), per-env and combined plots.

    :param folders: One folder per env.
    :param markdown: Where to write the table (``None``: only return it).
    :param plot_dir: Where to write ``learning_curves_<env>.png`` per env (``None``: no per-env plots).
    :param combined: Where to write the combined figure (``None``: none).
    :return: The markdown: the metric tables, the paired statistics (:func:`paired_table`) and the legend.
    """
    summaries = [summary for folder in folders for summary in summarize_env(folder)]
    text = markdown_table(summaries) + "\n" + paired_table(folders) + "\n" + LEGEND + "\n"
    if markdown is not None:
        Path(markdown).write_text(text)
    if plot_dir is not None:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
        for folder in folders:
            plot_env(folder, Path(plot_dir) / f"learning_curves_{Path(folder).name}.png")
    if combined is not None:
        plot_all(list(folders), combined)
    return text


def summarize_main(argv: Sequence[str]) -> None:
    """
    The ``summarize`` command.

    :param argv: Its arguments.
    """
    parser = argparse.ArgumentParser(
        prog="python -m sb3_influence.benchmark summarize",
        description="SE_ave / SE_peak / RT_peak tables and learning-curve plots of benchmark CSVs written by "
        "'python -m sb3_influence.benchmark run'; each variant is paired with PPO by seed.",
    )
    parser.add_argument("folders", nargs="+", help="results folders, one per env (benchmarks/results/<env>)")
    parser.add_argument("--markdown", default=None, help="write the table here")
    parser.add_argument(
        "--plot-dir", default=None, help="write learning_curves_<env>.png here (default: into each results folder)"
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write the learning-curve plots")
    parser.add_argument("--combined", default=None, help="write the combined figure of all envs here")
    args = parser.parse_args(list(argv))
    if args.no_plot:
        print(summarize(args.folders, args.markdown, None, args.combined), end="")
        return
    if args.plot_dir is not None:
        print(summarize(args.folders, args.markdown, args.plot_dir, args.combined), end="")
        return
    print(summarize(args.folders, args.markdown, None, args.combined), end="")
    for folder in args.folders:
        print(f"learning curves: {plot_env(folder, Path(folder) / f'learning_curves_{Path(folder).name}.png')}")


__all__ = [
    "VariantSummary",
    "cumulative_seconds",
    "curve",
    "load_runs",
    "markdown_table",
    "paired_table",
    "plot_all",
    "plot_env",
    "plot_env_axes",
    "summarize",
    "summarize_env",
    "summarize_main",
]
