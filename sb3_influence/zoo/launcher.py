"""
The ``sb3-influence-zoo`` launcher: registers the library's algorithms (:func:`~sb3_influence.zoo.plugin.register`)
and hands the command line to rl-zoo3's ``train``, ``enjoy`` or ``record_video`` unchanged; ``best-params`` goes to
:mod:`sb3_influence.zoo.best_params`.

For ``train`` without ``-conf``, the packaged ``zoo_configs/<algo>.yml`` is used when the package has one
(``influence_ppo``, ``ppo``); ``-conf NAME`` also accepts the bare name of a packaged config
(e.g. ``-conf influence_ppo_adam``).
"""

import argparse
import importlib
import runpy
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sb3_influence.configs import config_path
from sb3_influence.zoo.best_params import best_params_main
from sb3_influence.zoo.plugin import InfluenceExperimentManager, check_config_entry, init_storage, register

#: The rl-zoo3 commands the launcher runs.
ZOO_COMMANDS = ("train", "enjoy", "record_video")
#: Every command of the launcher.
COMMANDS = (*ZOO_COMMANDS, "best-params")


def _option(argv: list[str], names: Sequence[str]) -> int | None:
    """Index in ``argv`` of the value of the last of the options ``names`` (``-x v`` or ``-x=v``)."""
    found = None
    for i, token in enumerate(argv):
        if token in names and i + 1 < len(argv):
            found = i + 1
        elif any(token.startswith(f"{name}=") for name in names):
            found = i
    return found


def _train_argv(argv: list[str]) -> list[str]:
    """The zoo's train arguments with the packaged config as default ``-conf``, after checking the env id has an entry."""
    argv = list(argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-conf", "--conf-file", default=None)
    parser.add_argument("-optimize", "--optimize-hyperparameters", action="store_true")
    parser.add_argument("--storage", default=None)
    args, _ = parser.parse_known_args(argv)
    if args.optimize_hyperparameters and args.storage is not None and "://" in args.storage:
        init_storage(args.storage)
    conf = args.conf_file
    index = _option(argv, ("-conf", "--conf-file"))
    if conf is None:
        packaged = config_path(args.algo)
        if packaged is not None:
            argv += ["-conf", str(packaged)]
            conf = str(packaged)
    elif not Path(conf).exists() and config_path(conf) is not None and index is not None:
        conf = str(config_path(conf))
        argv[index] = conf if argv[index] == args.conf_file else f"{argv[index].split('=', 1)[0]}={conf}"
    if conf is not None and conf.endswith((".yml", ".yaml")) and Path(conf).is_file():
        check_config_entry(conf, args.env, args.algo)
    return argv


@contextmanager
def _zoo_argv(command: str, argv: list[str]) -> Iterator[None]:
    saved_argv = sys.argv
    sys.argv = [f"sb3-influence-zoo {command}", *argv]
    try:
        yield
    finally:
        sys.argv = saved_argv


def run_zoo(command: str, argv: Sequence[str]) -> None:
    """
    Register the library's algorithms and run an rl-zoo3 command in this process with the given arguments.

    :param command: ``"train"``, ``"enjoy"`` or ``"record_video"``.
    :param argv: The zoo's command-line arguments (all of its flags work).
    """
    if command not in ZOO_COMMANDS:
        raise ValueError(f"Unknown rl-zoo3 command {command!r}, expected one of {ZOO_COMMANDS}")
    register()
    # Imported here: the ids of these env packages must exist when the zoo checks --env.
    importlib.import_module("minigrid")
    importlib.import_module("highway_env")
    args = list(argv)
    if command == "train":
        import rl_zoo3.train

        args = _train_argv(args)
        saved_manager = rl_zoo3.train.ExperimentManager
        rl_zoo3.train.ExperimentManager = InfluenceExperimentManager  # type: ignore[misc]
        try:
            with _zoo_argv(command, args):
                rl_zoo3.train.train()
        finally:
            rl_zoo3.train.ExperimentManager = saved_manager  # type: ignore[misc]
    elif command == "enjoy":
        import rl_zoo3.enjoy

        with _zoo_argv(command, args):
            rl_zoo3.enjoy.enjoy()
    else:  # record_video is a script without a function
        with _zoo_argv(command, args):
            runpy.run_module("rl_zoo3.record_video", run_name="__main__", alter_sys=False)


def main(argv: Sequence[str] | None = None) -> None:
    """
    Command-line entry point: ``sb3-influence-zoo {train,enjoy,record_video,best-params} [args]``.

    :param argv: Arguments after the program name (default: ``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        usage = (
            f"usage: sb3-influence-zoo {{{','.join(COMMANDS)}}} [args]\n"
            "  train/enjoy/record_video take rl-zoo3's arguments (--algo influence_ppo is registered);\n"
            "  best-params --help for writing a study's best hyperparameters into a config."
        )
        if args and args[0] in ("-h", "--help"):
            print(usage)
            return
        raise SystemExit(usage)
    if args[0] == "best-params":
        best_params_main(args[1:])
    else:
        run_zoo(args[0], args[1:])
