"""Where the packaged rl-zoo3 configs live (no heavy imports: used by the zoo launcher and the benchmark runner)."""

from pathlib import Path


def config_dir() -> Path:
    """
    Folder of the packaged rl-zoo3 configs: ``sb3_influence/zoo_configs`` (package data, a link to the
    repository's top-level ``zoo_configs/`` in a checkout), else the checkout's ``zoo_configs/``.

    :return: The folder holding ``influence_ppo.yml``, ``ppo.yml`` and their variants.
    """
    packaged = Path(__file__).resolve().parent / "zoo_configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "zoo_configs"


def config_path(name: str) -> Path | None:
    """
    Path of a packaged config.

    :param name: Algorithm or config name, with or without ``.yml`` (``"influence_ppo"``, ``"ppo_adam.yml"``).
    :return: The config file, or ``None`` when the package has none of that name.
    """
    path = config_dir() / (name if name.endswith((".yml", ".yaml")) else f"{name}.yml")
    return path if path.is_file() and path.parent == config_dir() else None
