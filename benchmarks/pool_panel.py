"""
Pool the runs of one task from several panel folders into one panel CSV, so that ``panel --summarize`` reads them as
one panel (RESULTS.md, "The plain ranking and the two-rollout gate: the new default").

Each source is ``FOLDER::VARIANT::SEEDS[::AS]`` (``SEEDS`` as ``0-9`` or ``0,3,5``): the rows of that variant and
those seeds in ``FOLDER/<task>.csv``, with the variant renamed to ``AS`` when given (so that runs of one rule under
two labels pair as one). A (variant, seed) pair given twice is an error, so nothing is counted twice. The
output CSV starts with one ``# pooled:`` line per source and the sources' own metadata lines, prefixed with
``# source <folder>:``.

    python benchmarks/pool_panel.py --task acrobot --out benchmarks/panel_default \\
        benchmarks/panel_ppo_intel::ppo::0-9 benchmarks/panel_streak::ppo::10-19
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


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
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    metadata: list[str] = []
    taken: set[tuple[str, int]] = set()
    for source in sources:
        folder, variant, seed_text, *rename = source.split("::")
        name = rename[0] if rename else variant
        seeds = set(parse_seeds(seed_text))
        path = Path(folder) / f"{task}.csv"
        with open(path) as file:
            lines = file.read().splitlines()
        metadata.append(f"# pooled: {variant} seeds {seed_text} from {path}" + (f" as {name}" if rename else ""))
        metadata += [f"# source {folder}: {line[2:]}" for line in lines if line.startswith("# ") and "command" in line]
        reader = csv.DictReader(line for line in lines if not line.startswith("#"))
        header = header or list(reader.fieldnames or [])
        found = set()
        for row in reader:
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
    assert header is not None
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{task}.csv"
    with open(target, "w", newline="") as file:
        file.write(f"# task: {task}\n" + "\n".join(metadata) + "\n")
        writer = csv.DictWriter(file, fieldnames=header)
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
