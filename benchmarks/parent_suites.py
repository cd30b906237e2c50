"""
The parents' own test suites with the IIF classes in the parents' place.

Runs selected test files of Stable-Baselines3's and sb3-contrib's test suites under pytest with ``InfluencePPO``,
``InfluenceA2C``, ``InfluenceMaskablePPO`` and ``InfluenceRecurrentPPO`` substituted for ``PPO``, ``A2C``,
``MaskablePPO`` and ``RecurrentPPO``, in two modes:

- ``default``: the IIF classes as they are (when ``parent_suites.md`` was measured, every class defaulted to
  ``filter_mode="adaptive"``; InfluencePPO now defaults to ``"reliability"``);
- ``off``: thin subclasses whose ``filter_fraction`` defaults to 0 (scores are computed, nothing is dropped);
- ``drop`` (optional): thin subclasses with a fixed rule that drops records in most updates (a stress test of the
  filtered-buffer path);
- ``parent`` (optional): the control, the same tests with the parents' own classes.

This file is both the driver and the pytest plugin (loaded in each pytest run with ``-p parent_suites``). Before
collection the plugin rebinds the parents' names in their packages (``stable_baselines3.PPO``,
``stable_baselines3.ppo.PPO``, ``stable_baselines3.A2C``, ``sb3_contrib.MaskablePPO``, ...), so a test module's
``from stable_baselines3 import PPO`` (and every ``parametrize`` list built from it) gets the IIF class; after
collection it checks that no test module still holds a parent class. It then keeps only the tests that exercise one
of the four algorithms: a test parametrized with algorithms (classes, or their names as strings) is kept if one of
them is substituted; an unparametrized test is kept if its code names one of them; the files listed with
``all_tests`` are kept whole. (``-k ppo`` would not do: it also matches ``MlpPolicy``.) Markers the parents' CI
deselects (``expensive``, ``slow``) are deselected too.

Each file runs in its own pytest process (one process at a time, no xdist) under a wall-clock limit; per-test outcomes
are streamed to a log, so a file that runs past its limit still reports what it finished. Not part of the test
suite in ``tests/`` and not run by CI. Usage::

    # the parents' tests/ folders, at the commits closest to the installed versions (read-only git)
    python benchmarks/parent_suites.py extract --git-dir /work/.mirror/DLR-RM+stable-baselines3/repo \\
        --rev e05d2dbe --dest /tmp/parent_suites/sb3
    python benchmarks/parent_suites.py extract --git-dir /work/.mirror/Stable-Baselines-Team+stable-baselines3-contrib/repo \\
        --rev 0ca7fdd --dest /tmp/parent_suites/sb3_contrib
    # default and off (--mode both), or every mode (--mode all), every selected file, on a copy of sb3_influence/
    # (--snapshot); writes the markdown report (keeping its hand-written "## Analysis") and the raw results as JSON
    python benchmarks/parent_suites.py run --suites-dir /tmp/parent_suites --mode all --snapshot \\
        --output benchmarks/parent_suites.md --json /tmp/parent_suites/results.json
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MODE_ENV = "SB3_INFLUENCE_PARENT_SUITES_MODE"
LOG_ENV = "SB3_INFLUENCE_PARENT_SUITES_LOG"
ALL_TESTS_ENV = "SB3_INFLUENCE_PARENT_SUITES_ALL_TESTS"
#: The constructor defaults each mode overrides: ``default`` the IIF classes as they are, ``off`` no record dropped,
#: ``drop`` (optional, not in ``--mode both``) the paper's fixed rule with a large fraction and no rounding to whole
#: minibatches, so that records are dropped in most updates (still never below one minibatch); ``parent`` (optional)
#: the control run of the same tests with the parents' own classes.
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "default": {},
    "off": {"filter_fraction": 0.0},
    "drop": {"filter_mode": "negative", "filter_fraction": 0.5, "filter_whole_minibatches": False},
    "parent": {},  # the control: nothing substituted (the parents' own classes, same selection)
}
MODES = tuple(MODE_DEFAULTS)

#: The parent algorithms that are substituted, with the package modules that re-export them.
PATCHED_MODULES: dict[str, tuple[str, ...]] = {
    "PPO": ("stable_baselines3", "stable_baselines3.ppo"),
    "A2C": ("stable_baselines3", "stable_baselines3.a2c"),
    "MaskablePPO": ("sb3_contrib", "sb3_contrib.ppo_mask"),
    "RecurrentPPO": ("sb3_contrib", "sb3_contrib.ppo_recurrent"),
}
#: Every algorithm name of both packages (to read a test's parametrization).
ALGORITHM_NAMES = (
    "A2C",
    "DDPG",
    "DQN",
    "PPO",
    "SAC",
    "TD3",
    "ARS",
    "CrossQ",
    "QRDQN",
    "TQC",
    "TRPO",
    "MaskablePPO",
    "RecurrentPPO",
)


@dataclass(frozen=True)
class SuiteFile:
    suite: str  # folder under --suites-dir: "sb3" or "sb3_contrib"
    path: str  # relative to the suite folder
    all_tests: bool = False  # keep every test of the file (it tests one substituted algorithm only)


#: The files run: every SB3 test file that names PPO or A2C (test_vec_envs.py left out: it tests VecEnvs, PPO only
#: as a user of them), and every sb3-contrib file that names MaskablePPO or RecurrentPPO (its test_save_load.py
#: names neither: their save/load tests are in test_invalid_actions.py and test_lstm.py).
FILES: tuple[SuiteFile, ...] = (
    *(
        SuiteFile("sb3", f"tests/{name}.py")
        for name in (
            "test_buffers",
            "test_callbacks",
            "test_cnn",
            "test_custom_policy",
            "test_deterministic",
            "test_dict_env",
            "test_distributions",
            "test_gae",
            "test_identity",
            "test_logger",
            "test_predict",
            "test_run",
            "test_save_load",
            "test_sde",
            "test_spaces",
            "test_tensorboard",
            "test_train_eval_mode",
            "test_utils",
            "test_vec_extract_dict_obs",
            "test_vec_monitor",
        )
    ),
    SuiteFile("sb3_contrib", "tests/test_invalid_actions.py", all_tests=True),
    SuiteFile("sb3_contrib", "tests/test_lstm.py", all_tests=True),
    *(
        SuiteFile("sb3_contrib", f"tests/{name}.py")
        for name in ("test_cnn", "test_deterministic", "test_run", "test_train_eval_mode")
    ),
)

#: The parents' pytest configuration (pyproject.toml at the extracted commits), and the marker their CI deselects.
PYTEST_INI: dict[str, tuple[str, list[str], list[str]]] = {
    "sb3": (
        "not expensive",
        [
            "ignore::DeprecationWarning:multiprocessing.popen_fork",
            "ignore:You are trying to run (PPO|A2C) on the GPU",
            "ignore::DeprecationWarning:tensorboard",
            "ignore::UserWarning:gymnasium",
            "ignore::DeprecationWarning:gymnasium.envs.registration",
            "ignore:rich is experimental",
        ],
        ["expensive: marks tests as expensive (deselect with '-m \"not expensive\"')"],
    ),
    "sb3_contrib": (
        "not slow",
        ["ignore::DeprecationWarning:tensorboard", "ignore:rich is experimental"],
        ["slow: marks tests as slow (deselect with '-m \"not slow\"')"],
    ),
}

#: Why a failure happens: (regex on ``"<suite>/<file>::<test>[params] <crash message>"``, category, explanation).
#: Categories: 1 = incompatibility of the IIF class, 2 = the test checks identity with the parent or exact numbers,
#: 3 = environment/infrastructure. Reviewed by hand from the runs recorded in parent_suites.md.
CLASSIFICATION: tuple[tuple[str, int, str], ...] = (
    (
        r"No module named '(ale_py|cv2|mujoco|Box2D|box2d)'",
        3,
        "optional dependency not installed in this venv (the parents' CI installs `[extra]`)",
    ),
    (
        r"test_tensorboard\.py::test_tensorboard\[(ppo|a2c)\]",
        2,
        "checks the log folder `PPO_1`/`A2C_1`: the IIF classes' `learn()` defaults to `tb_log_name` = their own "
        "class name (folder `InfluencePPO_1`), by design",
    ),
    (
        r"test_ppo_warnings .*You are trying to run PPO on the GPU",
        2,
        "SB3's `_maybe_recommend_cpu` names `self.__class__.__name__`: the warning says `InfluencePPO`, the regex wants "
        "`run PPO on`",
    ),
    (
        r"test_ppo_warnings .*n_folds must be an integer",
        1,
        "`n_steps=1` < `influence_folds=3`: the adaptive rule's cross-fitting raised in `train()` (fixed in 4fd1fd8, see "
        "Analysis)",
    ),
    (
        r"test_vec_monitor_ppo .*torch\.jit\.script. is deprecated",
        1,
        "the first forward-mode AD call (`fwAD.make_dual`) imports `torch._decomp.decompositions_for_jvp`, whose "
        "`torch.jit.script` warns on torch 2.13; the test asserts that `learn()` warns nothing (see Analysis)",
    ),
    (
        r"test_load_invalid_object .*assert 1 == 0",
        1,
        "`load()` of a Box-action model re-emitted the adaptive rule's abstention warning from `_setup_model` (fixed "
        "in 4fd1fd8, see Analysis)",
    ),
    (
        r"Mean reward below threshold",
        2,
        "a learning-result threshold tuned for the parent's run under one seed; filtering changes which updates are "
        "made (passes in mode `off`, where training is the parent's bit for bit; see Analysis for seed sweeps)",
    ),
)

CATEGORY_NAMES = {
    1: "(1) incompatibility of the IIF class",
    2: "(2) identity/exact-number check against the parent",
    3: "(3) environment/infrastructure",
}


# ================================================================================================ the pytest plugin
_SUBSTITUTES: dict[type, str] = {}  # substitute class -> parent name
_ORIGINALS: dict[str, type] = {}  # parent name -> parent class
_IIF_STEPS: Counter[str] = Counter()  # of the running test: IIF steps, records scored, records dropped


def _count_iif_steps() -> None:
    """Count the IIF steps of each test (instrumentation only: the step itself is the library's, unchanged)."""
    from sb3_influence.iif import InfluenceFilterMixin

    original = InfluenceFilterMixin._filter_rollout

    def _filter_rollout(self: Any) -> Any:
        report = original(self)
        _IIF_STEPS.update(steps=1, records=report.kept.size, dropped=report.n_dropped)
        return report

    InfluenceFilterMixin._filter_rollout = _filter_rollout  # type: ignore[method-assign]


def _with_defaults(cls: type, **defaults: Any) -> type:
    """A thin subclass of ``cls`` (same name) with other defaults for some constructor arguments."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for name, value in defaults.items():
            kwargs.setdefault(name, value)
        cls.__init__(self, *args, **kwargs)  # type: ignore[misc]

    signature = inspect.signature(cls.__init__)  # type: ignore[misc]
    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(default=defaults[p.name]) if p.name in defaults else p for p in signature.parameters.values()]
    )
    namespace = {"__init__": __init__, "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
    return type(cls.__name__, (cls,), namespace)


def install(mode: str) -> dict[str, type]:
    """Rebind the parents' names in their packages to the IIF classes (with the mode's defaults, see MODE_DEFAULTS)."""
    import importlib

    import sb3_contrib
    import stable_baselines3

    import sb3_influence

    iif = {
        "PPO": (stable_baselines3.PPO, sb3_influence.InfluencePPO),
        "A2C": (stable_baselines3.A2C, sb3_influence.InfluenceA2C),
        "MaskablePPO": (sb3_contrib.MaskablePPO, sb3_influence.InfluenceMaskablePPO),
        "RecurrentPPO": (sb3_contrib.RecurrentPPO, sb3_influence.InfluenceRecurrentPPO),
    }
    substitutes = {}
    for name, (parent, cls) in iif.items():
        if not issubclass(cls, parent) or cls is parent:
            raise RuntimeError(f"{cls.__name__} is not a subclass of {parent.__name__} (already patched?)")
        _ORIGINALS[name] = parent
        if mode == "parent":
            _SUBSTITUTES[parent] = name
            substitutes[name] = parent
            continue
        substitute = _with_defaults(cls, **MODE_DEFAULTS[mode]) if MODE_DEFAULTS[mode] else cls
        for module_name in PATCHED_MODULES[name]:
            module = importlib.import_module(module_name)
            if getattr(module, name) is not parent:
                raise RuntimeError(f"{module_name}.{name} is not {parent.__name__}")
            setattr(module, name, substitute)
        _SUBSTITUTES[substitute] = name
        substitutes[name] = substitute
    return substitutes


def _log(record: dict[str, Any]) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a") as file:
            file.write(json.dumps(record) + "\n")


def _algorithm_markers(value: Any) -> set[str]:
    """The algorithm names a parametrization value stands for (classes, names as strings, tuples of them)."""
    if isinstance(value, type):
        if value in _SUBSTITUTES:
            return {_SUBSTITUTES[value]}
        return {value.__name__} if value.__name__ in ALGORITHM_NAMES else set()
    if isinstance(value, str):
        return {name for name in ALGORITHM_NAMES if name.lower() == value.lower()}
    if isinstance(value, (tuple, list)):
        return set().union(*(_algorithm_markers(v) for v in value)) if value else set()
    return set()


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _selected(item: Any) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    markers = set().union(*(_algorithm_markers(v) for v in params.values())) if params else set()
    if markers:
        return bool(markers & set(PATCHED_MODULES))
    function = getattr(item, "function", None)
    code = getattr(function, "__code__", None)
    return code is not None and bool(_code_names(code) & set(PATCHED_MODULES))


def pytest_configure(config: Any) -> None:
    mode = os.environ.get(MODE_ENV)
    if mode is None:
        return
    if mode not in MODES:
        raise ValueError(f"{MODE_ENV} must be one of {MODES}, got {mode!r}")
    substitutes = install(mode)
    _count_iif_steps()
    import sb3_influence

    classes = {k: f"{v.__module__}.{v.__qualname__}" for k, v in substitutes.items()}
    _log({"event": "installed", "mode": mode, "classes": classes, "sb3_influence": sb3_influence.__file__})


@pytest.hookimpl(trylast=True)  # after the -m deselection
def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    mode = os.environ.get(MODE_ENV)
    if mode is None:
        return
    # every parent class a test module still holds (a name bound some other way than from the package)
    unpatched = set()
    for module in {item.module for item in items if getattr(item, "module", None) is not None}:
        for attr, value in vars(module).items():
            if isinstance(value, type) and value in _ORIGINALS.values():
                unpatched.add(f"{module.__name__}.{attr}")
    for item in items:
        for value in getattr(getattr(item, "callspec", None), "params", {}).values():
            if isinstance(value, type) and value in _ORIGINALS.values():
                unpatched.add(item.nodeid)
    if unpatched and mode != "parent":
        raise RuntimeError(f"parent classes still in use after patching: {sorted(unpatched)}")
    keep_all = os.environ.get(ALL_TESTS_ENV) == "1"
    kept = [item for item in items if keep_all or _selected(item)]
    dropped = [item for item in items if not (keep_all or _selected(item))]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    _log({"event": "selected", "kept": [i.nodeid for i in kept], "dropped": len(dropped)})


def _crash(report: Any) -> tuple[str, str, list[str]]:
    """(first line of the error, its location, the traceback's frames in sb3_influence)."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # skip: (path, lineno, reason)
        return str(longrepr[2]), f"{longrepr[0]}:{longrepr[1]}", []
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        message = crash.message
    else:
        text = str(longrepr).strip().splitlines() if longrepr else []
        message = text[-1] if text else ""
    location = f"{crash.path}:{crash.lineno}" if crash is not None else ""
    frames = []
    for entry in getattr(getattr(longrepr, "reprtraceback", None), "reprentries", []):
        fileloc = getattr(entry, "reprfileloc", None)
        if fileloc is not None and "sb3_influence" in str(fileloc.path):
            frames.append(f"{fileloc.path}:{fileloc.lineno}")
    return message, location, frames


def pytest_runtest_setup(item: Any) -> None:
    _IIF_STEPS.clear()


def pytest_runtest_logreport(report: Any) -> None:
    if os.environ.get(MODE_ENV) is None:
        return
    record = {"event": "report", "nodeid": report.nodeid, "when": report.when, "outcome": report.outcome}
    if report.when == "teardown":
        record["iif"] = dict(_IIF_STEPS)
    record["duration"] = round(report.duration, 3)
    if hasattr(report, "wasxfail"):
        record["xfail"] = True
    if report.outcome != "passed":
        record["message"], record["location"], record["frames"] = _crash(report)
    _log(record)


def pytest_collectreport(report: Any) -> None:
    if os.environ.get(MODE_ENV) is not None and report.outcome == "failed":
        message, location, frames = _crash(report)
        _log({"event": "collect_error", "nodeid": report.nodeid, "message": message, "location": location, "frames": frames})


# ======================================================================================================= the driver
def extract(git_dir: str, rev: str, dest: str) -> None:
    """``git archive <rev> tests`` into ``dest`` (read-only on the repository), with a note of the commit."""
    commit = subprocess.run(
        ["git", f"--git-dir={git_dir}", "rev-parse", f"{rev}^{{commit}}"], check=True, capture_output=True, text=True
    )
    sha = commit.stdout.strip()
    info: dict[str, Any] = {"git_dir": git_dir, "rev": rev, "commit": sha}
    for version_file in ("stable_baselines3/version.txt", "sb3_contrib/version.txt"):
        shown = subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"{sha}:{version_file}"], capture_output=True, text=True
        )
        if shown.returncode == 0:
            info["version_at_commit"] = shown.stdout.strip()
    described = subprocess.run(["git", f"--git-dir={git_dir}", "describe", "--tags", sha], capture_output=True, text=True)
    info["describe"] = described.stdout.strip()
    info["date"] = subprocess.run(
        ["git", f"--git-dir={git_dir}", "log", "-1", "--format=%cs", sha], capture_output=True, text=True
    ).stdout.strip()
    Path(dest).mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", f"--git-dir={git_dir}", "archive", sha, "tests"], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {sha} tests failed")
    (Path(dest) / "PARENT_SUITE.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))


def _write_ini(directory: Path, suite: str) -> Path:
    _marker, filterwarnings, markers = PYTEST_INI[suite]
    lines = [
        "[pytest]",
        "filterwarnings =",
        *(f"    {w}" for w in filterwarnings),
        "markers =",
        *(f"    {m}" for m in markers),
    ]
    path = directory / f"pytest_{suite}.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def _outcomes(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per test: outcome (passed/failed/error/skipped/xfailed/xpassed), duration and the first problem's details."""
    tests: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["event"] != "report":
            continue
        test = tests.setdefault(record["nodeid"], {"phases": {}, "duration": 0.0})
        test["phases"][record["when"]] = record
        test["duration"] += record["duration"]
        if "iif" in record:
            test["iif"] = record["iif"]
    for test in tests.values():
        phases = test["phases"]
        failed = [p for p in ("setup", "call", "teardown") if p in phases and phases[p]["outcome"] == "failed"]
        skipped = [p for p in ("setup", "call") if p in phases and phases[p]["outcome"] == "skipped"]
        if failed:
            problem = phases[failed[0]]
            test["outcome"] = "failed" if failed[0] == "call" else "error"
        elif skipped:
            problem = phases[skipped[0]]
            test["outcome"] = "xfailed" if problem.get("xfail") else "skipped"
        elif "call" in phases:
            problem = None
            test["outcome"] = "xpassed" if phases["call"].get("xfail") else "passed"
        else:
            problem, test["outcome"] = None, "incomplete"
        if problem is not None:
            test.update({k: problem.get(k) for k in ("message", "location", "frames")})
        del test["phases"]
    return tests


def run_file(
    suites_dir: Path, entry: SuiteFile, mode: str, timeout: float, workdir: Path, source: Path | None = None
) -> dict[str, Any]:
    """One pytest process for one file in one mode; the outcome of each test that ran."""
    root = suites_dir / entry.suite
    log = workdir / f"{entry.suite}_{Path(entry.path).stem}_{mode}.jsonl"
    log.unlink(missing_ok=True)
    marker = PYTEST_INI[entry.suite][0]
    command = [
        sys.executable,
        "-m",
        "pytest",
        entry.path,
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "parent_suites",
        "-c",
        str(_write_ini(workdir, entry.suite)),
        "--rootdir",
        str(root),
        "-m",
        marker,
        "--tb=short",
        "-o",
        "console_output_style=classic",
    ]
    env = dict(os.environ)
    env.update({MODE_ENV: mode, LOG_ENV: str(log), "PYTHONHASHSEED": "0"})
    paths = (str(source) if source else None, str(Path(__file__).resolve().parent), env.get("PYTHONPATH"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    env[ALL_TESTS_ENV] = "1" if entry.all_tests else "0"
    start = time.monotonic()
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    timed_out = False
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        timed_out = True
    seconds = time.monotonic() - start
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    tests = _outcomes(records)
    selected = next((r for r in records if r["event"] == "selected"), None)
    installed = next((r for r in records if r["event"] == "installed"), None)
    if source is not None and installed is not None and not installed["sb3_influence"].startswith(str(source)):
        raise RuntimeError(f"the run imported {installed['sb3_influence']}, not the snapshot in {source}")
    if timed_out:
        for nodeid in selected["kept"] if selected else []:
            if nodeid not in tests:
                tests[nodeid] = {"outcome": "not run (timeout)", "duration": 0.0}
            elif tests[nodeid]["outcome"] == "incomplete":
                tests[nodeid].update(outcome="timeout", message=f"killed at the {timeout:.0f} s limit of the file")
    return {
        "suite": entry.suite,
        "file": entry.path,
        "mode": mode,
        "returncode": None if timed_out else process.returncode,
        "timed_out": timed_out,
        "seconds": round(seconds, 1),
        "n_selected": len(selected["kept"]) if selected else 0,
        "n_deselected": selected["dropped"] if selected else 0,
        "collect_errors": [r for r in records if r["event"] == "collect_error"],
        "tests": tests,
        "output_tail": output.decode(errors="replace")[-3000:],
    }


def classify(nodeid: str, message: str | None) -> tuple[int | None, str]:
    text = f"{nodeid} {message or ''}"
    for pattern, category, why in CLASSIFICATION:
        if re.search(pattern, text, flags=re.DOTALL):
            return category, why
    return None, "unclassified"


def _source_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.py")):
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _versions() -> dict[str, str]:
    """Package versions, and the commit and a digest of the sources of sb3_influence."""
    from importlib.metadata import version

    versions = {
        name: version(name) for name in ("stable_baselines3", "sb3_contrib", "sb3-influence", "torch", "gymnasium", "pytest")
    }
    versions["python"] = platform.python_version()
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--", "sb3_influence"], capture_output=True, text=True
    )
    versions["sb3-influence commit"] = head.stdout.strip() + (" (sb3_influence/ modified)" if dirty.stdout.strip() else "")
    versions["sb3_influence/ sources (sha256 of *.py)"] = _source_digest(repo / "sb3_influence")
    return versions


def _iif_summary(result: dict[str, Any]) -> str:
    """IIF steps, records dropped of records scored, and tests that dropped any, over a file's tests."""
    total: Counter[str] = Counter()
    dropping = 0
    for test in result["tests"].values():
        total.update(test.get("iif", {}))
        dropping += test.get("iif", {}).get("dropped", 0) > 0
    return f"{total['steps']}; {total['dropped']}/{total['records']}; {dropping}"


def _counts(result: dict[str, Any]) -> str:
    counts = Counter(t["outcome"] for t in result["tests"].values())
    text = " / ".join(str(counts.pop(k, 0)) for k in ("passed", "failed", "skipped"))
    extra = [f"{n} {k}" for k, n in sorted(counts.items())]
    if result["collect_errors"]:
        extra.append("collection error")
    if result["timed_out"]:
        extra.append(f"timeout {result['seconds']:.0f} s")
    return text + (f" ({', '.join(extra)})" if extra else "")


def _short(path: str) -> str:
    """A traceback location without the folders above ``sb3_influence/`` or a suite's ``tests/``."""
    match = re.search(r"(sb3_influence/.*|(?:sb3|sb3_contrib)/tests/.*|site-packages/(.*))$", path)
    return (match.group(2) or match.group(1)) if match else path


def markdown(
    results: list[dict[str, Any]], suites: dict[str, dict[str, Any]], command: str, modes: list[str], versions: dict[str, str]
) -> str:
    """The report; a ``## Analysis`` section of an earlier report at the same path is kept by the caller."""
    lines = [
        "# The parents' test suites with the IIF classes in the parents' place",
        "",
        "Generated by `benchmarks/parent_suites.py` (not part of `tests/`, not run by CI). Each selected test file of",
        "Stable-Baselines3's and sb3-contrib's own test suites ran under pytest with `InfluencePPO`, `InfluenceA2C`,",
        "`InfluenceMaskablePPO` and `InfluenceRecurrentPPO` bound to the names `PPO`, `A2C`, `MaskablePPO` and",
        "`RecurrentPPO` in the parents' packages before collection (so every `from stable_baselines3 import PPO` and every",
        "`parametrize` list of a test module holds the IIF class; checked after collection). Mode `default`: the IIF",
        "classes' defaults (`filter_mode='adaptive'`). Mode `off`: a thin subclass with `filter_fraction=0.0` as default",
        "(scored, nothing dropped). Mode `drop` (where run): a thin subclass with `filter_mode='negative'`,",
        "`filter_fraction=0.5`, `filter_whole_minibatches=False` as defaults, to drop records in most updates (never",
        "below one minibatch, so none where the buffer is one minibatch). Mode `parent` (where run): the control, the",
        "same tests with the parents' own classes.",
        "",
        "Tests kept: those parametrized with a substituted algorithm (class or name) and unparametrized tests whose code",
        "names one; `test_invalid_actions.py` and `test_lstm.py` whole. Markers the parents' CI deselects",
        "(`expensive`, `slow`) are deselected. One pytest process per file and mode, no xdist, `OMP_NUM_THREADS=1`.",
        "",
        "The parents' `tests/` folders were extracted with `parent_suites.py extract` (`git archive <commit> tests`,",
        "commits below: the newest of each repository's mirror; neither has a v2.9.2 tag there).",
        "",
        "```",
        command,
        "```",
        "",
        "## Versions",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in versions.items()]
    for name, info in suites.items():
        lines.append(
            f"| parent suite `{name}/tests` | commit `{info.get('commit', '?')[:10]}` ({info.get('date', '?')}, "
            f"`git describe`: {info.get('describe', '?')}, version.txt there: {info.get('version_at_commit', '?')}) |"
        )
    filtering = [m for m in modes if m not in ("off", "parent")]
    lines += [
        "",
        "## Results",
        "",
        "Counts are passed / failed / skipped. *IIF (mode)*: IIF steps run; records dropped / records scored; tests in",
        "which a record was dropped (in mode `off` nothing is ever dropped).",
        "",
    ]
    header = ["file", "selected (deselected)", *modes, *(f"{m} s" for m in modes), *(f"IIF ({m})" for m in filtering)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_file: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for result in results:
        by_file.setdefault((result["suite"], result["file"]), {})[result["mode"]] = result
    totals: dict[str, Counter[str]] = {m: Counter() for m in modes}
    for (suite, file), per_mode in by_file.items():
        first = next(iter(per_mode.values()))
        row = [f"{suite}/{file}", f"{first['n_selected']} ({first['n_deselected']})"]
        row += [_counts(per_mode[m]) if m in per_mode else "" for m in modes]
        row += [f"{per_mode[m]['seconds']:.0f}" if m in per_mode else "" for m in modes]
        row += [_iif_summary(per_mode[m]) if m in per_mode else "" for m in filtering]
        lines.append("| " + " | ".join(row) + " |")
        for m in modes:
            if m in per_mode:
                totals[m].update(t["outcome"] for t in per_mode[m]["tests"].values())
    total_row = ["**total**", ""] + [" / ".join(str(totals[m][k]) for k in ("passed", "failed", "skipped")) for m in modes]
    lines.append("| " + " | ".join(total_row + [""] * (len(header) - len(total_row))) + " |")
    lines += ["", "## Failures and errors", ""]
    problems: dict[tuple[str, str], dict[str, Any]] = {}  # (test, first line of its error) -> modes, details
    for result in results:
        found = [(e["nodeid"] + " (collection)", e) for e in result["collect_errors"]]
        found += [(n, t) for n, t in result["tests"].items() if t["outcome"] in ("failed", "error", "timeout", "xpassed")]
        for nodeid, test in found:
            message = (test.get("message") or "").strip()
            key = message.splitlines()[0][:200] if message else test.get("outcome", "")
            problem = problems.setdefault((f"{result['suite']}/{nodeid}", key), {"modes": [], "test": test})
            problem["modes"].append(result["mode"])
    if not problems:
        lines.append("None.")
    else:
        lines += ["| test | modes | category | key line | cause |", "|---|---|---|---|---|"]
        for (nodeid, key), problem in sorted(problems.items()):
            test = problem["test"]
            category, why = classify(nodeid, test.get("message"))
            where = ", ".join(_short(f) for f in test.get("frames") or []) or _short(test.get("location") or "")
            quoted = key.replace("`", "'")
            key_line = (f"`{quoted}`" + (f" at {where}" if where else "")).replace("|", "\\|")
            name = CATEGORY_NAMES[category] if category is not None else "unclassified"
            lines.append(f"| `{nodeid}` | {', '.join(problem['modes'])} | {name} | {key_line} | {why} |")
    lines += ["", "## Skips", ""]
    skips: Counter[tuple[str, str]] = Counter()
    for result in results:
        for test in result["tests"].values():
            if test["outcome"] == "skipped":
                skips[(result["mode"], (test.get("message") or "").strip())] += 1
    if not skips:
        lines.append("None.")
    else:
        lines += ["| mode | reason | tests |", "|---|---|---|"]
        for (mode, reason), n in sorted(skips.items()):
            reason = reason.replace("|", "\\|")
            lines.append(f"| {mode} | {reason} | {n} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    extract_parser = commands.add_parser("extract", help="git archive <rev> tests into a folder")
    extract_parser.add_argument("--git-dir", required=True)
    extract_parser.add_argument("--rev", required=True)
    extract_parser.add_argument("--dest", required=True)
    run_parser = commands.add_parser("run", help="run the selected parent test files")
    run_parser.add_argument("--suites-dir", type=Path, required=True, help="holds sb3/tests and sb3_contrib/tests")
    run_parser.add_argument(
        "--mode", choices=[*MODES, "both", "all"], default="both", help="both: default and off; all: every mode"
    )
    run_parser.add_argument("--files", nargs="*", help="run only these files (suite/tests/name.py or name substrings)")
    run_parser.add_argument("--timeout", type=float, default=330.0, help="wall-clock limit of one file in one mode (s)")
    run_parser.add_argument("--output", type=Path, help="write the markdown report here")
    run_parser.add_argument("--json", type=Path, help="write the raw results here")
    run_parser.add_argument(
        "--snapshot",
        action="store_true",
        help="run every file on a copy of sb3_influence/ taken at the start (for a tree being edited)",
    )
    args = parser.parse_args(argv)
    if args.command == "extract":
        extract(args.git_dir, args.rev, args.dest)
        return
    modes = {"both": ["default", "off"], "all": list(MODES)}.get(args.mode, [args.mode])
    entries = [e for e in FILES if not args.files or any(f in f"{e.suite}/{e.path}" for f in args.files)]
    suites = {}
    for suite in sorted({e.suite for e in entries}):
        info_path = args.suites_dir / suite / "PARENT_SUITE.json"
        suites[suite] = json.loads(info_path.read_text()) if info_path.exists() else {}
    versions = _versions()
    repo = Path(__file__).resolve().parent.parent
    results = []
    with tempfile.TemporaryDirectory(prefix="parent_suites_") as tmp:
        source = None
        if args.snapshot:
            source = Path(tmp) / "source"
            shutil.copytree(repo / "sb3_influence", source / "sb3_influence", ignore=shutil.ignore_patterns("__pycache__"))
            versions["sb3_influence/ sources (sha256 of *.py)"] = _source_digest(source / "sb3_influence") + " (snapshot run)"
        for entry in entries:
            for mode in modes:
                result = run_file(args.suites_dir, entry, mode, args.timeout, Path(tmp), source)
                results.append(result)
                print(f"{mode:8s} {entry.suite}/{entry.path}: {_counts(result)} in {result['seconds']:.0f} s", flush=True)
                if not result["tests"] and not result["collect_errors"]:
                    print(result["output_tail"], flush=True)
    if not args.snapshot and _versions() != versions:
        for key in ("sb3-influence commit", "sb3_influence/ sources (sha256 of *.py)"):
            versions[key] += f" at the start; {_versions()[key]} at the end: **the sources changed during the run**"
    command = "python " + " ".join(["benchmarks/parent_suites.py", *(argv if argv is not None else sys.argv[1:])])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.output:
        report = markdown(results, suites, command, modes, versions)
        previous = args.output.read_text() if args.output.exists() else ""
        if "\n## Analysis" in previous:  # the hand-written part of an earlier report
            report += previous[previous.index("\n## Analysis") :]
        args.output.write_text(report)


if __name__ == "__main__":
    main()
