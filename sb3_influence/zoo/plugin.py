"""
The rl-zoo3 plugin: the library's algorithms and their Optuna samplers in the zoo's tables, and the zoo pieces
that keep a config's ``policy_kwargs`` under hyperparameter search.

rl-zoo3 has no plugin mechanism: its ``--algo`` choices and Optuna samplers are module-level dicts read at call
time. :func:`register` adds every IIF algorithm of :data:`~sb3_influence.registry.ALGORITHMS` to them, and the
``ppo_mask`` baseline (``MaskablePPO``), which the zoo lacks.
"""

import ast
import contextvars
import functools
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml
from rl_zoo3 import hyperparams_opt, utils
from rl_zoo3.exp_manager import ExperimentManager

from sb3_influence.registry import AlgoEntry, get_algo, influence_algos

#: The zoo name of :class:`~sb3_influence.InfluencePPO`, the default ``--algo`` of the study tools.
ALGO_NAME = "influence_ppo"
#: Values of ``filter_fraction`` the Optuna sampler tries (``p``, the paper's values and 1).
FILTER_FRACTIONS: tuple[float, ...] = (0.0625, 0.125, 0.25, 0.5, 1.0)
#: Values of ``filter_mode`` the Optuna sampler tries ("random" is the paper's ablation control, not a method).
FILTER_MODES: tuple[str, ...] = ("negative", "all")

#: An rl-zoo3 Optuna sampler: ``(trial, n_actions, n_envs, additional_args) -> hyperparameters``.
Sampler = Callable[[optuna.Trial, int, int, dict], dict[str, Any]]

# The (eval'ed) policy_kwargs of the config while the zoo samples a trial: the zoo's samplers return a complete
# policy_kwargs (net_arch, activation_fn) that would replace the config's, dropping optimizer_class (the paper's SGD)
# and features_extractor_class (MiniGrid's CNN). Set per thread by ``InfluenceExperimentManager.objective``.
_CONFIG_POLICY_KWARGS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "sb3_influence_zoo_config_policy_kwargs", default=None
)


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


def _unwrapped(sampler: Sampler) -> Sampler:
    """The zoo's own sampler under a :class:`_KeepConfigPolicyKwargs`."""
    return sampler.sampler if isinstance(sampler, _KeepConfigPolicyKwargs) else sampler


def sample_influence_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict, parent: str = "ppo"
) -> dict[str, Any]:
    """
    Optuna sampler of an IIF algorithm: the search space of rl-zoo3's sampler ``parent`` plus ``filter_fraction``
    (:data:`FILTER_FRACTIONS`) and ``filter_mode`` (:data:`FILTER_MODES`).

    :param trial: The Optuna trial.
    :param n_actions: Action dimension (the zoo's sampler signature).
    :param n_envs: Number of environments.
    :param additional_args: The zoo's extra sampler arguments.
    :param parent: The zoo sampler the search space starts from (a key of
        ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER``: an entry's :attr:`~sb3_influence.registry.AlgoEntry.sampler`).
    :return: Hyperparameters for the IIF algorithm (already converted, as the zoo's samplers do).
    """
    params = _unwrapped(hyperparams_opt.HYPERPARAMS_SAMPLER[parent])(trial, n_actions, n_envs, additional_args)
    params["filter_fraction"] = trial.suggest_categorical("filter_fraction", FILTER_FRACTIONS)
    params["filter_mode"] = trial.suggest_categorical("filter_mode", FILTER_MODES)
    return params


def sample_influence_ppo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Optuna sampler for ``influence_ppo``: rl-zoo3's PPO search space plus ``filter_fraction`` and ``filter_mode``.

    :param trial: The Optuna trial.
    :param n_actions: Action dimension (unused, the zoo's sampler signature).
    :param n_envs: Number of environments.
    :param additional_args: The zoo's extra sampler arguments.
    :return: Hyperparameters for :class:`~sb3_influence.InfluencePPO` (already converted, as the zoo's samplers do).
    """
    return sample_influence_params(trial, n_actions, n_envs, additional_args, parent="ppo")


def _keep_config_policy_kwargs(name: str) -> None:
    """Wrap the zoo's sampler ``name`` in :class:`_KeepConfigPolicyKwargs` (once)."""
    sampler = hyperparams_opt.HYPERPARAMS_SAMPLER[name]
    if not isinstance(sampler, _KeepConfigPolicyKwargs):
        hyperparams_opt.HYPERPARAMS_SAMPLER[name] = _KeepConfigPolicyKwargs(sampler)


def _register_baseline(entry: AlgoEntry) -> None:
    """A parent algorithm in the zoo's tables: added where the zoo lacks it (``ppo_mask``), its sampler wrapped."""
    utils.ALGOS.setdefault(entry.name, entry.load())
    samplers: dict[str, Any] = hyperparams_opt.HYPERPARAMS_SAMPLER
    if entry.name not in samplers:
        samplers[entry.name] = _unwrapped(samplers[entry.sampler])
    hyperparams_opt.HYPERPARAMS_CONVERTER.setdefault(entry.name, hyperparams_opt.HYPERPARAMS_CONVERTER[entry.sampler])
    _keep_config_policy_kwargs(entry.name)


def register() -> None:
    """
    Register the library's algorithms in rl-zoo3: every IIF algorithm of :data:`~sb3_influence.registry.ALGORITHMS`
    (``influence_ppo``, ``influence_a2c``, ``influence_maskable_ppo``, ``influence_recurrent_ppo``) in its algorithm
    table (``rl_zoo3.utils.ALGOS``), with an Optuna sampler (:func:`sample_influence_params` over the entry's parent
    sampler) and the on-policy converter; and their baselines where the zoo lacks them (``ppo_mask``, i.e.
    ``MaskablePPO``). The samplers of these algorithms and of their parents (``ppo``, ``a2c``, ``ppo_lstm``,
    ``ppo_mask``) keep the config's ``policy_kwargs`` that are not searched (e.g. ``optimizer_class``) when run
    through :func:`~sb3_influence.zoo.launcher.main`. Idempotent.
    """
    for entry in influence_algos():
        assert entry.baseline is not None
        _register_baseline(get_algo(entry.baseline))
        _keep_config_policy_kwargs(entry.sampler)
        utils.ALGOS[entry.name] = entry.load()
        sampler = functools.partial(sample_influence_params, parent=entry.sampler)
        hyperparams_opt.HYPERPARAMS_SAMPLER[entry.name] = _KeepConfigPolicyKwargs(sampler)
        hyperparams_opt.HYPERPARAMS_CONVERTER[entry.name] = hyperparams_opt.convert_onpolicy_params


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


def read_entries(config: str | Path) -> dict[str, Any]:
    """
    The entries of an rl-zoo3 config, as the zoo reads them (PyYAML).

    :param config: Path of the YAML config.
    :return: ``{env id: hyperparameters}`` (empty for an empty file).
    :raises ValueError: When the file is not a mapping.
    """
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
    entries = read_entries(config)
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
        """
        The zoo's objective, with the config's ``policy_kwargs`` visible to the samplers.

        :param trial: The Optuna trial.
        :return: The trial's evaluation result.
        """
        token = _CONFIG_POLICY_KWARGS.set(self._hyperparams.get("policy_kwargs"))
        try:
            return super().objective(trial)
        finally:
            _CONFIG_POLICY_KWARGS.reset(token)

    def load_trial(self, storage: str, study_name: str, trial_id: int | None = None, convert: bool = True) -> dict[str, Any]:
        """
        The hyperparameters of a stored trial, with ``policy_kwargs`` merged into the config's.

        :param storage: The Optuna storage URL.
        :param study_name: The study name.
        :param trial_id: The trial number (default: the best trial).
        :param convert: Convert the raw trial parameters into hyperparameters.
        :return: The trial's (raw or converted) parameters.
        """
        params = super().load_trial(storage, study_name, trial_id, convert=False)
        if not convert:
            return params
        base = None
        if self.config.endswith((".yml", ".yaml")):
            base = read_entries(self.config).get(self.env_name.gym_id, {}).get("policy_kwargs")
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
