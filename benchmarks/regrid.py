"""
Put a run's CSV on a coarser evaluation grid: keep the evaluations at every K-th iteration (and iteration 0).

A run evaluated every k iterations holds, at every multiple of K (a multiple of k), exactly the evaluation a run
evaluated every K iterations would have: training never depends on evaluation (every global RNG is restored
around it) and a fixed test set (``--eval-seed``) gives the same episodes at every checkpoint. So a seed evaluated
on a finer grid can be paired with seeds evaluated every K iterations. The timing, drop and reliability columns of
a kept row become the per-iteration means over all the iterations since the previous kept row.

Usage::

    python benchmarks/regrid.py --every 10 --out benchmarks/results_lunar_full/LunarLander-v3 \
        benchmarks/results_lunar_full/LunarLander-v3/eval_every5/*.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sb3_influence.benchmark.runner import COLUMNS, finite_mean, read_run_csv, write_run_csv

#: Columns that are per-iteration means in a row (averaged over the merged blocks, weighted by their lengths).
MEAN_COLUMNS = ("collect_s", "score_s", "update_s", "n_dropped", "kept_fraction", "reliability")


def regrid(path: Path, every: int, out_dir: Path) -> Path:
    """
    Write ``path`` on the grid of every ``every`` iterations into ``out_dir`` (same file name).

    :param path: A run's CSV.
    :param every: The new grid's step, a multiple of the run's ``eval_every``.
    :param out_dir: The output folder.
    :return: The written CSV.
    """
    run = read_run_csv(path)
    old = int(run.metadata.get("eval_every", "1"))
    if every % old:
        raise ValueError(f"{path}: the new step {every} is not a multiple of the run's eval_every {old}")
    iterations = run.columns["iteration"].astype(int)
    if int(iterations[-1]) % every:
        raise ValueError(f"{path}: the run's {iterations[-1]} iterations are not a multiple of {every}")
    rows = []
    previous = 0
    for index, iteration in enumerate(iterations):
        if iteration % every:
            continue
        row = {name: run.columns[name][index] for name in ("iteration", "timesteps", "eval_mean", "eval_std")}
        if iteration == 0:
            row.update({name: run.columns[name][index] for name in MEAN_COLUMNS})
        else:
            block = (iterations > previous) & (iterations <= iteration)
            lengths = np.diff(np.concatenate([[previous], iterations[block]])).astype(float)
            row.update({name: finite_mean(run.columns[name][block], lengths) for name in MEAN_COLUMNS})
            previous = int(iteration)
        rows.append({name: int(value) if name in ("iteration", "timesteps") else float(value) for name, value in row.items()})
    metadata = dict(run.metadata)
    metadata["eval_every"] = str(every)
    metadata["regridded"] = f"from eval_every {old} ({path.name}) by benchmarks/regrid.py"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
    if target.exists():
        raise FileExistsError(f"{target} exists; not overwriting it")
    write_run_csv(target, metadata, [{name: row[name] for name in COLUMNS} for row in rows])
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csvs", nargs="+", type=Path)
    parser.add_argument("--every", type=int, required=True, help="the new grid's step (iterations)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args()
    for path in args.csvs:
        print(regrid(path, args.every, args.out))


if __name__ == "__main__":
    main()
