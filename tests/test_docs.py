"""Every public name is documented in the API reference, and every algorithm of the registry has its config pair."""

from pathlib import Path

import sb3_influence
from sb3_influence.configs import config_path
from sb3_influence.registry import ALGORITHMS, influence_algos

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_public_name_is_in_the_api_reference():
    text = (DOCS / "api.rst").read_text()
    missing = [name for name in sb3_influence.__all__ if name != "__version__" and f"sb3_influence.{name}" not in text]
    assert not missing


def test_every_public_name_has_a_docstring():
    undocumented = [
        name for name in sb3_influence.__all__ if name != "__version__" and not getattr(sb3_influence, name).__doc__
    ]
    assert not undocumented


def test_every_registry_algorithm_loads_and_has_a_config():
    for entry in ALGORITHMS.values():
        assert entry.load().__name__ == entry.class_path.split(":")[1]
    for entry in influence_algos():
        assert config_path(entry.name) is not None and config_path(entry.baseline) is not None
