"""
Pool the runs of one task from several panel folders into one panel CSV, so that ``panel --summarize`` reads them as
one panel (RESULTS.md, "The plain ranking and the two-rollout gate: the new default").

Each source is ``FOLDER::VARIANT::SEEDS[::AS]`` (``SEEDS`` as ``0-9`` or ``0,3,5``): the rows of that variant and
those seeds in ``FOLDER/<task>.csv``, with the variant renamed to ``AS`` when given (so that runs of one rule under
two labels pair as one). A (variant, seed) pair given twice is an error, so nothing is counted twice. The
output CSV starts with one ``# pooled:`` line per source and the sources' command lines, prefixed with
``# source <folder>:``. Reading and writing are the panel's own (``_read_rows``, ``PANEL_COLUMNS``, ``atomic_write``).

    python benchmarks/pool_panel.py --task acrobot --out benchmarks/panel_default \\
        benchmarks/panel_ppo_intel::ppo::0-9 benchmarks/panel_streak::ppo::10-19
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from sb3_influence.benchmark.panel import PANEL_COLUMNS, _read_rows
from sb3_influence.benchmark.runner import atomic_write


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` or ``"0,3,5"`` (or a mix, ``"0-4,7"``) as a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            first, last = part.split("-")
            seeds.extend(range(int(first), int(last) + 1))
        else:
            seeds.append(int(part))
    return seeds


def pool(task: str, sources: list[str], out: Path) -> Path:
    """Write ``out/<task>.csv`` from the sources' rows; return its path."""
    rows: list[dict[str, Any]] = []
    metadata: list[str] = []
    taken: set[tuple[str, int]] = set()
    for source in sources:
        folder, variant, seed_text, *rename = source.split("::")
        name = rename[0] if rename else variant
        seeds = set(parse_seeds(seed_text))
        path = Path(folder) / f"{task}.csv"
        source_metadata, source_rows = _read_rows(path)
        metadata.append(f"# pooled: {variant} seeds {seed_text} from {path}" + (f" as {name}" if rename else ""))
        metadata += [f"# source {folder}: {line}" for line in source_metadata if "command" in line]
        found = set()
        for row in source_rows:
            seed = int(row["seed"])
            if row["variant"] == variant and seed in seeds:
                if (name, seed) in taken:
                    raise ValueError(f"{name} seed {seed} is given twice (again in {path})")
                found.add(seed)
                rows.append({**row, "variant": name})
        missing = seeds - found
        if missing:
            raise ValueError(f"{path} has no {variant} run for seeds {sorted(missing)}")
        taken |= {(name, seed) for seed in found}
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{task}.csv"
    with atomic_write(target) as file:
        file.write(f"# task: {task}\n" + "\n".join(metadata) + "\n")
        writer = csv.DictWriter(file, fieldnames=PANEL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="panel task (the CSV's stem)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("sources", nargs="+", help="FOLDER::VARIANT::SEEDS[::AS]")
    args = parser.parse_args()
    print(pool(args.task, args.sources, args.out))


if __name__ == "__main__":
    main()
