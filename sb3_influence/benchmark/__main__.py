"""
``python -m sb3_influence.benchmark``: the benchmark's commands.

- ``[run] ARGS``: paired PPO / InfluencePPO runs on the paper's environments (:mod:`~sb3_influence.benchmark.runner`);
- ``summarize DIR [DIR ...]``: SE_ave / SE_peak / RT_peak tables and plots (:mod:`~sb3_influence.benchmark.plots`);
- ``panel``: the no-harm panel (:mod:`~sb3_influence.benchmark.panel`).

The modules import one way: evaluation <- runner <- plots, panel <- this entry point.
"""

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """
    Dispatch to the ``run``, ``summarize`` or ``panel`` command.

    :param argv: Arguments (default: ``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "summarize":
        from sb3_influence.benchmark.plots import summarize_main

        summarize_main(args[1:])
    elif args and args[0] == "panel":
        from sb3_influence.benchmark.panel import panel_main

        panel_main(args[1:])
    else:
        from sb3_influence.benchmark.runner import run_main

        run_main(args[1:] if args and args[0] == "run" else args)


if __name__ == "__main__":
    main()
