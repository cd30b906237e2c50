"""Sphinx configuration of the sb3-influence documentation (``make docs``).

The build is offline: no intersphinx, no remote images or scripts (no math extension, so no MathJax from a CDN),
and warnings are errors (``sphinx-build -W``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the package itself when it is not installed (it normally is: pip install -e)

from sb3_influence.version import __version__  # noqa: E402

project = "sb3-influence"
author = "sb3-influence contributors"
copyright = "sb3-influence contributors"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# --- MyST (Markdown pages, and the included README-style files of the repository) ---------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 3  # `[text](#a-heading)` links inside a page
# benchmarks/RESULTS.md and CHANGELOG.md are included as they are; their headings start at level 1 on their own page.

# --- autodoc ----------------------------------------------------------------------------------------------------------
autodoc_typehints = "description"  # types go into the parameter list, signatures stay readable
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True  # show `filter_mode='adaptive'`, not the evaluated object
autodoc_default_options: dict[str, Any] = {"show-inheritance": True}
# References to SB3, numpy or torch objects are not resolved (no intersphinx: the build stays offline); they render as
# code. nitpicky stays off (the default), so such references are not warnings.
nitpicky = False
python_use_unqualified_type_names = True

# --- HTML -----------------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"sb3-influence {release}"
html_static_path = ["_static"] if (DOCS / "_static").is_dir() else []
html_show_sourcelink = False
html_copy_source = False
html_theme_options: dict[str, Any] = {"navigation_with_keys": True}


def _resolve_aliases(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """
    Resolve a Python reference through the package's public aliases.

    The docstrings name the public objects both by their home module (``sb3_influence.scoring.CrossFitScores``) and by
    the package (``sb3_influence.InfluencePPO``), sometimes unqualified (``CrossFitScores.noise_std``). The API page
    documents each object once, under the name users import, so a reference that does not resolve is retried as
    ``sb3_influence.<name>`` with the submodule part dropped, and under the home module of a package-level name.
    """
    if node.get("refdomain") != "py":
        return None
    target: str = node.get("reftarget", "")
    domain = env.get_domain("py")
    parts = target.split(".")
    candidates = []
    if parts[0] == "sb3_influence":
        candidates += [".".join(["sb3_influence", *parts[i:]]) for i in range(2, len(parts))]
    else:
        candidates.append(f"sb3_influence.{target}")
    found = [candidate for candidate in candidates if candidate in domain.objects]
    if not found and "." not in target:  # an unqualified name documented under its module (e.g. explain.collect_rollout)
        found = [name for name in domain.objects if name.startswith("sb3_influence.") and name.endswith(f".{target}")]
    if len(found) == 1 or (found and candidates and found[0] == candidates[0]):
        return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], found[0], node, contnode)
    return None


def setup(app: Any) -> dict[str, Any]:
    app.connect("missing-reference", _resolve_aliases)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
