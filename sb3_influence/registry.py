"""
The algorithms the library knows, in one place: their zoo/benchmark name, class, plot label, baseline twin and
the rl-zoo3 Optuna sampler they extend. The zoo plugin, the benchmark runner and the plots read this table.
"""

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AlgoEntry:
    """
    One algorithm of the registry.

    :param name: Its name in rl-zoo3 (``--algo``), in the configs and in the benchmark's ``--algos``.
    :param class_path: ``"module:Class"``; the class is imported on first use (:meth:`load`).
    :param label: How plots and tables name it.
    :param baseline: The name of its parent twin for IIF algorithms (e.g. ``"ppo"`` for ``"influence_ppo"``),
        ``None`` for the parents themselves.
    :param sampler: The rl-zoo3 Optuna sampler (a key of ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER``) its
        search space starts from.
    """

    name: str
    class_path: str
    label: str
    baseline: str | None
    sampler: str

    @property
    def is_influence(self) -> bool:
        """Whether this is an IIF algorithm (it has a baseline twin)."""
        return self.baseline is not None

    def load(self) -> type[Any]:
        """
        Import the algorithm's class.

        :return: The class, e.g. :class:`~sb3_influence.InfluencePPO`.
        """
        module, _, name = self.class_path.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


#: Every algorithm, by name: the four parents and their IIF twins.
ALGORITHMS: dict[str, AlgoEntry] = {
    entry.name: entry
    for entry in (
        AlgoEntry("ppo", "stable_baselines3:PPO", "PPO", None, "ppo"),
        AlgoEntry("a2c", "stable_baselines3:A2C", "A2C", None, "a2c"),
        AlgoEntry("ppo_mask", "sb3_contrib:MaskablePPO", "MaskablePPO", None, "ppo"),
        AlgoEntry("ppo_lstm", "sb3_contrib:RecurrentPPO", "RecurrentPPO", None, "ppo_lstm"),
        AlgoEntry("influence_ppo", "sb3_influence.influence_ppo:InfluencePPO", "IIF (InfluencePPO)", "ppo", "ppo"),
        AlgoEntry("influence_a2c", "sb3_influence.influence_a2c:InfluenceA2C", "IIF (InfluenceA2C)", "a2c", "a2c"),
        AlgoEntry(
            "influence_maskable_ppo",
            "sb3_influence.influence_maskable_ppo:InfluenceMaskablePPO",
            "IIF (InfluenceMaskablePPO)",
            "ppo_mask",
            "ppo",
        ),
        AlgoEntry(
            "influence_recurrent_ppo",
            "sb3_influence.influence_recurrent_ppo:InfluenceRecurrentPPO",
            "IIF (InfluenceRecurrentPPO)",
            "ppo_lstm",
            "ppo_lstm",
        ),
    )
}


def get_algo(name: str) -> AlgoEntry:
    """
    Look an algorithm up by name.

    :param name: A key of :data:`ALGORITHMS`.
    :return: Its entry.
    :raises ValueError: For an unknown name (the message lists the known ones).
    """
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"Unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None


def influence_algos() -> list[AlgoEntry]:
    """
    The IIF algorithms, in registry order.

    :return: Entries with a baseline twin.
    """
    return [entry for entry in ALGORITHMS.values() if entry.is_influence]
