"""
Paired comparison of runs kept in different result folders (RESULTS.md, "Pooling the reliability over iterations").

Each variant is ``NAME=FOLDER::LABEL`` (a folder of the runner's CSVs and the run label inside it, as in the CSV
names; ``LABEL1|LABEL2`` takes each seed's run from the first label that has it); a NAME given more than once
pools its folders' seeds (a seed in two of them is an error). The first variant is the baseline. Per variant: mean
AUC (mean evaluation return over the checkpoints), the kept fraction, and against the baseline ΔAUC with a 95% BCa
interval, SE_ave (mean ± standard error) and the per-seed ΔAUC; then every pair of the other variants. Only the
seeds every variant has are used.

    python benchmarks/paired_folders.py --seeds 0,1,2,3,4 \\
        ppo=benchmarks/results_eval100/MiniGrid-Empty-8x8-v0::ppo \\
        new=benchmarks/results_pooled_open/MiniGrid-Empty-8x8-v0::influence_ppo:filter_mode=reliability,filter_fraction=0.5
"""

import argparse

import numpy as np

from sb3_influence.benchmark.metrics import aggregate, format_pct, se_ave
from sb3_influence.benchmark.plots import curve, load_runs
from sb3_influence.benchmark.stats import paired_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", required=True, help="comma-separated, e.g. 0,1,2,3,4")
    parser.add_argument(
        "variants", nargs="+", help="NAME=FOLDER::LABEL (repeat a NAME to pool folders); the first is the baseline"
    )
    args = parser.parse_args()
    runs = {}
    for item in args.variants:
        name, _, rest = item.partition("=")
        folder, _, labels = rest.partition("::")
        by_label = load_runs(folder)
        found: dict = {}
        for label in reversed(labels.split("|")):  # a seed's run from the first label that has it
            if label not in by_label:
                raise SystemExit(f"{folder} has no runs labelled {label!r}; it has {sorted(by_label)}")
            found.update(by_label[label])
        both = sorted(set(found) & set(runs.get(name, {})))
        if both:
            raise SystemExit(f"{name}: seeds {both} are in more than one of its folders")
        runs.setdefault(name, {}).update(found)
    seeds = [s for s in (int(x) for x in args.seeds.split(",")) if all(s in by_seed for by_seed in runs.values())]
    print(f"seeds {seeds}")
    auc = {name: np.array([curve(by_seed[s]).mean() for s in seeds]) for name, by_seed in runs.items()}
    for name, by_seed in runs.items():
        kept = np.mean([by_seed[s].columns["kept_fraction"][by_seed[s].trained].mean() for s in seeds])
        print(f"{name:12s} AUC {auc[name].mean():+.4f}  kept {kept:.3f}")
    names = list(runs)
    base = names[0]
    for name in names[1:]:
        d = paired_difference(auc[name], auc[base])
        se = aggregate([se_ave(curve(runs[base][s]), curve(runs[name][s])) for s in seeds])
        per_seed = " ".join(f"{x:+.3f}" for x in auc[name] - auc[base])
        print(f"{name} - {base}: {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]  SE_ave {format_pct(se)}  per seed {per_seed}")
    for i, first in enumerate(names[1:], start=1):
        for second in names[i + 1 :]:
            d = paired_difference(auc[first], auc[second])
            print(f"{first} - {second}: {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]")


if __name__ == "__main__":
    main()
