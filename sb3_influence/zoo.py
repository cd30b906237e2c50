"""
rl-zoo3 integration: ``influence_ppo`` as a zoo algorithm, without forking the zoo.

Usage (also installed as the ``sb3-influence-zoo`` console script)::

    python -m sb3_influence.zoo train --algo influence_ppo --env LunarLander-v3 [any rl-zoo3 train flag]
    python -m sb3_influence.zoo enjoy --algo influence_ppo --env LunarLander-v3 -f logs/
    python -m sb3_influence.zoo record_video --algo influence_ppo --env LunarLander-v3 -f logs/
    python -m sb3_influence.zoo best-params logs/influence_ppo/report_...pkl --env LunarLander-v3 -o tuned.yml

rl-zoo3 has no plugin mechanism: its ``--algo`` choices and Optuna samplers are module-level dicts read at
call time. :func:`register` adds ``influence_ppo`` to them, then the command line is handed to the zoo
unchanged. For ``train`` without ``-conf``, the packaged ``zoo_configs/<algo>.yml`` is used when the
package has one (``influence_ppo``, ``ppo``); ``-conf NAME`` also accepts the bare name of a packaged config
(e.g. ``-conf influence_ppo_adam``).
"""

import argparse
import ast
import contextvars
import importlib
import pickle
import random
import re
import runpy
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import yaml
from rl_zoo3 import hyperparams_opt, utils
from rl_zoo3.exp_manager import ExperimentManager

from sb3_influence.configs import config_path
from sb3_influence.influence_ppo import InfluencePPO

ALGO_NAME = "influence_ppo"
#: Values of ``filter_fraction`` the Optuna sampler tries (``p``, the paper's values and 1).
FILTER_FRACTIONS: tuple[float, ...] = (0.0625, 0.125, 0.25, 0.5, 1.0)
#: Values of ``filter_mode`` the Optuna sampler tries ("random" is the paper's ablation control, not a method).
FILTER_MODES: tuple[str, ...] = ("negative", "all")
ZOO_COMMANDS = ("train", "enjoy", "record_video")
COMMANDS = (*ZOO_COMMANDS, "best-params")

Sampler = Callable[[optuna.Trial, int, int, dict], dict[str, Any]]

# The (eval'ed) policy_kwargs of the config while the zoo samples a trial: the zoo's samplers return a complete
# policy_kwargs (net_arch, activation_fn) that would replace the config's, dropping optimizer_class (the paper's SGD)
# and features_extractor_class (MiniGrid's CNN). Set per thread by ``InfluenceExperimentManager.objective``.
_CONFIG_POLICY_KWARGS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "sb3_influence_zoo_config_policy_kwargs", default=None
)


def sample_influence_ppo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Optuna sampler for ``influence_ppo``: rl-zoo3's PPO search space plus ``filter_fraction`` and ``filter_mode``.

    :param trial: The Optuna trial.
    :param n_actions: Action dimension (unused, the zoo's sampler signature).
    :param n_envs: Number of environments.
    :param additional_args: The zoo's extra sampler arguments.
    :return: Hyperparameters for :class:`~sb3_influence.InfluencePPO` (already converted, as the zoo's samplers do).
    """
    params = hyperparams_opt.sample_ppo_params(trial, n_actions, n_envs, additional_args)
    params["filter_fraction"] = trial.suggest_categorical("filter_fraction", FILTER_FRACTIONS)
    params["filter_mode"] = trial.suggest_categorical("filter_mode", FILTER_MODES)
    return params


class _KeepConfigPolicyKwargs:
    """A zoo sampler whose sampled ``policy_kwargs`` extend the config's instead of replacing them."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def __call__(self, trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        params = self.sampler(trial, n_actions, n_envs, additional_args)
        base = _CONFIG_POLICY_KWARGS.get()
        if base and isinstance(params.get("policy_kwargs"), dict):
            params["policy_kwargs"] = {**base, **params["policy_kwargs"]}
        return params


def register() -> None:
    """
    Register ``influence_ppo`` in rl-zoo3: its algorithm table (``rl_zoo3.ALGOS``) and Optuna sampler and
    converter. The samplers of ``influence_ppo`` and ``ppo`` keep the config's ``policy_kwargs`` that are not
    searched (e.g. ``optimizer_class``) when run through :func:`main`. Idempotent.
    """
    utils.ALGOS[ALGO_NAME] = InfluencePPO
    hyperparams_opt.HYPERPARAMS_SAMPLER[ALGO_NAME] = _KeepConfigPolicyKwargs(sample_influence_ppo_params)
    hyperparams_opt.HYPERPARAMS_CONVERTER[ALGO_NAME] = hyperparams_opt.convert_onpolicy_params
    ppo_sampler = hyperparams_opt.HYPERPARAMS_SAMPLER["ppo"]
    if not isinstance(ppo_sampler, _KeepConfigPolicyKwargs):
        hyperparams_opt.HYPERPARAMS_SAMPLER["ppo"] = _KeepConfigPolicyKwargs(ppo_sampler)


def _to_source(value: Any) -> str:
    """Python source for a policy_kwargs value, in the names rl-zoo3 has in scope (``th``, ``nn``, ``importlib``)."""
    if isinstance(value, type):
        module, name = value.__module__, value.__qualname__
        if module.startswith("torch.nn"):
            return f"nn.{name}"
        if module.startswith("torch.optim"):
            return f"th.optim.{name}"
        return f"importlib.import_module({module!r}).{name}"
    return repr(value)


def merge_policy_kwargs(base: str | dict[str, Any] | None, updates: dict[str, Any]) -> str:
    """
    Source of the ``policy_kwargs`` string a zoo config holds: ``base`` with the keys of ``updates`` replaced.

    :param base: The config's ``policy_kwargs`` (a ``dict(...)`` source string as rl-zoo3 configs hold, or a dict).
    :param updates: New values (Python objects, e.g. ``net_arch`` and ``activation_fn`` from a study).
    :return: A ``dict(key=value, ...)`` string that rl-zoo3 can eval.
    """
    new = {key: _to_source(value) for key, value in updates.items()}
    items: dict[str, str] = {}
    if isinstance(base, dict):
        items = {key: _to_source(value) for key, value in base.items()}
    elif base:
        node = ast.parse(base, mode="eval").body
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "dict"
            and not node.args
            and all(keyword.arg is not None for keyword in node.keywords)
        ):
            # Not a plain dict(key=value, ...) call: keep it whole, dict() merges the new keys into it.
            return f"dict({base}" + "".join(f", {key}={source}" for key, source in new.items()) + ")"
        items = {str(kw.arg): ast.get_source_segment(base, kw.value) or ast.unparse(kw.value) for kw in node.keywords}
    items.update(new)
    return "dict(" + ", ".join(f"{key}={source}" for key, source in items.items()) + ")"


def trial_hyperparams(params: dict[str, Any], algo: str = ALGO_NAME, base_policy_kwargs: str | None = None) -> dict[str, Any]:
    """
    Convert an Optuna trial's raw parameters into zoo config entries (what to write into a ``.yml``).

    :param params: ``trial.params`` of a study run with ``-optimize``.
    :param algo: The zoo algorithm the study was run for (selects the zoo's converter).
    :param base_policy_kwargs: The config's ``policy_kwargs`` string; keys the study did not search are kept.
    :return: Hyperparameters with plain YAML values; ``policy_kwargs`` as a source string.
    """
    register()
    hyperparams = hyperparams_opt.HYPERPARAMS_CONVERTER[algo](dict(params))
    if "policy_kwargs" in hyperparams:
        hyperparams["policy_kwargs"] = merge_policy_kwargs(base_policy_kwargs, hyperparams["policy_kwargs"])
    return {key: value.item() if hasattr(value, "item") else value for key, value in hyperparams.items()}


def _read_entries(config: str | Path) -> dict[str, Any]:
    with open(config) as file:
        entries = yaml.safe_load(file) or {}
    if not isinstance(entries, dict):
        raise ValueError(f"{config} is not an rl-zoo3 config (a mapping from env ids to hyperparameters)")
    return entries


def check_config_entry(config: str | Path, env_id: str, algo: str = ALGO_NAME) -> None:
    """
    Fail early, and clearly, when a ``.yml`` config has no entry for the env id (rl-zoo3 keys configs by env id).

    :param config: Path of the YAML config.
    :param env_id: The ``--env`` id.
    :param algo: The ``--algo`` name (for the message).
    :raises ValueError: When neither ``env_id`` nor a ``default`` entry is in the config.
    """
    entries = _read_entries(config)
    if env_id not in entries and "default" not in entries and "atari" not in entries:
        raise ValueError(
            f"No hyperparameters for {algo} on {env_id!r} in {config}: it has entries for {', '.join(map(str, entries))}. "
            f"Add an entry '{env_id}:' to a config of yours and pass it with -conf PATH."
        )


class InfluenceExperimentManager(ExperimentManager):
    """
    rl-zoo3's ``ExperimentManager`` with the config's ``policy_kwargs`` kept under hyperparameter search:
    the search's ``net_arch`` / ``activation_fn`` are merged into them instead of replacing them, for sampled
    trials (``-optimize``) and trials loaded from a study (``--storage ... --study-name ... --trial-id N``).
    """

    def objective(self, trial: optuna.Trial) -> float:
        token = _CONFIG_POLICY_KWARGS.set(self._hyperparams.get("policy_kwargs"))
        try:
            return super().objective(trial)
        finally:
            _CONFIG_POLICY_KWARGS.reset(token)

    def load_trial(self, storage: str, study_name: str, trial_id: int | None = None, convert: bool = True) -> dict[str, Any]:
        params = super().load_trial(storage, study_name, trial_id, convert=False)
        if not convert:
            return params
        base = None
        if self.config.endswith((".yml", ".yaml")):
            base = _read_entries(self.config).get(self.env_name.gym_id, {}).get("policy_kwargs")
        return trial_hyperparams(params, self.algo, base)


def init_storage(url: str, attempts: int = 5) -> None:
    """
    Create the tables of an Optuna RDB storage. Workers started at the same time on a fresh storage race to
    create them (``table ... already exists``): retry after a random pause, by when another worker has made them.

    :param url: SQLAlchemy URL of the storage (``sqlite:///study.db``, ``postgresql://user:pass@host/db``).
    :param attempts: How many times to try.
    """
    import sqlalchemy.exc

    pause = random.Random()
    for attempt in range(attempts):
        try:
            optuna.storages.RDBStorage(url)
            return
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + pause.random())


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
    Register ``influence_ppo`` and run an rl-zoo3 command in this process with the given arguments.

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


def load_study(source: str, study_name: str | None = None) -> optuna.Study:
    """
    Load a study written by ``-optimize``.

    :param source: The zoo's report pickle (``<log folder>/<algo>/report_*.pkl``), an Optuna storage URL
        (``sqlite:///study.db``, ``postgresql://user:pass@host/db``) or a journal file (``*.log``).
    :param study_name: The ``--study-name``; may be omitted when the storage holds a single study.
    :return: The study.
    """
    if source.endswith(".pkl"):
        with open(source, "rb") as file:
            study = pickle.load(file)
        if not isinstance(study, optuna.Study):
            raise ValueError(f"{source} does not hold an Optuna study")
        return study
    storage: Any = source
    if source.endswith(".log"):
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(source))  # type: ignore[attr-defined]
    if study_name is None:
        names = optuna.get_all_study_names(storage)
        if len(names) != 1:
            raise ValueError(f"{source} holds the studies {names}: pass --study-name")
        study_name = names[0]
    return optuna.load_study(study_name=study_name, storage=storage)


def best_params(
    source: str,
    env_id: str,
    algo: str = ALGO_NAME,
    study_name: str | None = None,
    trial_id: int | None = None,
    base_config: str | Path | None = None,
) -> dict[str, Any]:
    """
    The config entry for ``env_id`` with the hyperparameters of a study's best trial (or of trial ``trial_id``).

    :param source: Report pickle, storage URL or journal file (see :func:`load_study`).
    :param env_id: The env id the study was run on.
    :param algo: The zoo algorithm of the study.
    :param study_name: The study name in a storage holding several.
    :param trial_id: A trial number instead of the best trial.
    :param base_config: Config whose entry for ``env_id`` the searched values update (default: the packaged
        config of ``algo``); keys the search does not cover (``n_timesteps``, ``policy``, ``env_wrapper``, the
        optimizer in ``policy_kwargs``...) are kept.
    :return: The complete entry to write under ``env_id``.
    """
    study = load_study(source, study_name)
    trial = study.best_trial if trial_id is None else study.trials[trial_id]
    base_config = base_config or config_path(algo)
    entry: dict[str, Any] = {}
    if base_config is not None:
        entry = dict(_read_entries(base_config).get(env_id) or {})
    entry.update(trial_hyperparams(trial.params, algo, entry.get("policy_kwargs")))
    return entry


def _dump_entry(env_id: str, entry: dict[str, Any]) -> str:
    # Block style, keys in config order, long policy_kwargs strings on one line.
    return yaml.safe_dump({env_id: entry}, sort_keys=False, default_flow_style=False, width=2**16)


def write_entry(path: str | Path, env_id: str, entry: dict[str, Any]) -> None:
    """
    Write ``entry`` under ``env_id`` in a YAML config: the env's block is replaced (or appended), the rest of
    the file, comments included, is left as it was. Comments inside the replaced block are not kept.

    :param path: The config to create or update.
    :param env_id: The top-level key.
    :param entry: The hyperparameters.
    """
    path = Path(path)
    block = _dump_entry(env_id, entry)
    lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    key = re.compile(rf"^['\"]?{re.escape(env_id)}['\"]?\s*:")
    top_level = re.compile(r"^[^\s#]")
    start = next((i for i, line in enumerate(lines) if key.match(line)), None)
    if start is None:
        lines += ["\n", block] if lines else [block]
    else:
        end = next((i for i in range(start + 1, len(lines)) if top_level.match(lines[i])), len(lines))
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
            end -= 1  # leave the next block's comments and the blank lines before them
        lines[start:end] = [block]
    text = "".join(lines)
    if (yaml.safe_load(text) or {}).get(env_id) != entry:
        raise RuntimeError(f"Could not write {env_id} into {path} (unexpected layout): write it by hand:\n{block}")
    path.write_text(text)


def _best_params_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="sb3-influence-zoo best-params",
        description="Write the best hyperparameters of an rl-zoo3 -optimize study into a zoo config.",
    )
    parser.add_argument("source", help="report_*.pkl of the zoo, an Optuna storage URL or a journal .log file")
    parser.add_argument("--env", required=True, help="environment ID of the study")
    parser.add_argument("--algo", default=ALGO_NAME, help="zoo algorithm of the study")
    parser.add_argument("--study-name", default=None, help="study name (needed when the storage holds several)")
    parser.add_argument("--trial-id", type=int, default=None, help="use this trial number instead of the best one")
    parser.add_argument("-conf", "--conf-file", default=None, help="base config (default: -o, else packaged)")
    parser.add_argument("-o", "--output", default=None, help="config to write the entry into (default: print it)")
    args = parser.parse_args(argv)
    base = args.conf_file
    if base is not None and not Path(base).exists():
        base = config_path(base) or base
    if base is None and args.output is not None and Path(args.output).is_file() and args.env in _read_entries(args.output):
        base = args.output
    entry = best_params(args.source, args.env, args.algo, args.study_name, args.trial_id, base)
    if args.output is None:
        print(_dump_entry(args.env, entry), end="")
    else:
        write_entry(args.output, args.env, entry)
        print(f"Wrote {args.env} to {args.output}")


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
        _best_params_main(args[1:])
    else:
        run_zoo(args[0], args[1:])


if __name__ == "__main__":
    main()
