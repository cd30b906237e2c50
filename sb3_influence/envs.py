"""
Gymnasium ids for environments the configs and benchmarks use that no installed package registers: sb3-contrib's
invalid-action identity tasks (an env with action masks for ``influence_maskable_ppo``). Registered when
``sb3_influence`` is imported (idempotent, no heavy imports).
"""

import gymnasium as gym

#: Registered id -> (entry point, kwargs).
ENVS: dict[str, tuple[str, dict[str, int]]] = {
    # Observation: the target action (one of 16); reward 1 for taking it; 8 of the 15 other actions masked per step.
    "sb3_influence/MaskedIdentity-v0": (
        "sb3_contrib.common.envs:InvalidActionEnvDiscrete",
        dict(dim=16, ep_length=32, n_invalid_actions=8),
    ),
}


def register_envs() -> None:
    """Register :data:`ENVS` with gymnasium (ids already registered are left as they are)."""
    for env_id, (entry_point, kwargs) in ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs)
