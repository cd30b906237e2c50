"""
rl-zoo3 integration: the library's algorithms (``influence_ppo`` and the other IIF algorithms, and the ``ppo_mask``
baseline) as zoo algorithms, without forking the zoo.

Usage (also installed as the ``sb3-influence-zoo`` console script)::

    python -m sb3_influence.zoo train --algo influence_ppo --env LunarLander-v3 [any rl-zoo3 train flag]
    python -m sb3_influence.zoo enjoy --algo influence_ppo --env LunarLander-v3 -f logs/
    python -m sb3_influence.zoo record_video --algo influence_ppo --env LunarLander-v3 -f logs/
    python -m sb3_influence.zoo best-params logs/influence_ppo/report_...pkl --env LunarLander-v3 -o tuned.yml

Three modules: :mod:`~sb3_influence.zoo.plugin` registers the algorithms and their Optuna samplers in the zoo's
tables (:func:`~sb3_influence.zoo.plugin.register`); :mod:`~sb3_influence.zoo.launcher` hands the command line to
the zoo unchanged; :mod:`~sb3_influence.zoo.best_params` writes a study's best trial into a config. Their public
names are importable from ``sb3_influence.zoo`` too.
"""

from sb3_influence.zoo.best_params import best_params, load_study, write_entry
from sb3_influence.zoo.launcher import COMMANDS, ZOO_COMMANDS, main, run_zoo
from sb3_influence.zoo.plugin import (
    ALGO_NAME,
    FILTER_FRACTIONS,
    FILTER_MODES,
    InfluenceExperimentManager,
    Sampler,
    check_config_entry,
    init_storage,
    merge_policy_kwargs,
    register,
    sample_influence_params,
    sample_influence_ppo_params,
    trial_hyperparams,
)

__all__ = [
    "ALGO_NAME",
    "COMMANDS",
    "FILTER_FRACTIONS",
    "FILTER_MODES",
    "ZOO_COMMANDS",
    "InfluenceExperimentManager",
    "Sampler",
    "best_params",
    "check_config_entry",
    "init_storage",
    "load_study",
    "main",
    "merge_policy_kwargs",
    "register",
    "run_zoo",
    "sample_influence_params",
    "sample_influence_ppo_params",
    "trial_hyperparams",
    "write_entry",
]
