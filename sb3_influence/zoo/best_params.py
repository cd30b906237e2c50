"""
The ``best-params`` tool: the hyperparameters of an rl-zoo3 ``-optimize`` study's best trial (or of any trial) as a
zoo config entry, printed or written into a config with ``ruamel.yaml`` round-trip editing (the rest of the file,
its comments and the order of its entries are kept).
"""

import argparse
import io
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from sb3_influence.configs import config_path
from sb3_influence.zoo.plugin import ALGO_NAME, read_entries, trial_hyperparams


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
        entry = dict(read_entries(base_config).get(env_id) or {})
    entry.update(trial_hyperparams(trial.params, algo, entry.get("policy_kwargs")))
    return entry


# --- YAML round-trip editing ------------------------------------------------------------------------------------------


class _Representer(RoundTripRepresenter):
    """ruamel's round-trip representer, with new floats written as PyYAML (YAML 1.1, what rl-zoo3 reads) reads them."""

    def represent_float(self, data: Any) -> ScalarNode:
        """
        A float as ruamel writes it, with ``.0`` before an exponent without a dot (``1e-05`` -> ``1.0e-05``): PyYAML
        reads ``1e-05`` as a string. Floats read from the file (``ScalarFloat``) keep their own format.

        :param data: The float.
        :return: Its YAML node.
        """
        node = super().represent_float(data)
        if "e" in node.value and "." not in node.value:
            node.value = node.value.replace("e", ".0e", 1)
        return node


_Representer.add_representer(float, _Representer.represent_float)


def _round_trip() -> YAML:
    """A ruamel round-trip loader/dumper in the layout of the packaged configs (which it reproduces byte for byte)."""
    rt = YAML(typ="rt")
    rt.Representer = _Representer
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.width = 2**16  # long policy_kwargs strings on one line
    rt.preserve_quotes = True
    return rt


def _to_node(value: Any, key: Any = None) -> Any:
    """
    A value as ruamel collections (that can hold comments). ``policy_kwargs`` strings are double-quoted, as in the
    configs; strings that YAML 1.1 (PyYAML, rl-zoo3) would read as another type (``yes``, ``off``) single-quoted.
    """
    if isinstance(value, dict):
        return CommentedMap((k, _to_node(v, k)) for k, v in value.items())
    if isinstance(value, list):
        return CommentedSeq(_to_node(v) for v in value)
    if isinstance(value, str):
        if key == "policy_kwargs":
            return DoubleQuotedScalarString(value)
        if yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False)) != "tag:yaml.org,2002:str":
            return SingleQuotedScalarString(value)
    return value


def _last_item(parent: CommentedMap | CommentedSeq, key: Any) -> tuple[CommentedMap | CommentedSeq, Any]:
    """The deepest last item under ``parent[key]``: where ruamel keeps the comments that follow that value."""
    value = parent[key]
    while isinstance(value, CommentedMap | CommentedSeq) and len(value) and not value.fa.flow_style():
        parent, key = value, (list(value)[-1] if isinstance(value, CommentedMap) else len(value) - 1)
        value = parent[key]
    return parent, key


def _comment_slot(parent: CommentedMap | CommentedSeq, key: Any) -> tuple[list[Any], int]:
    """The comment list of an item, and the index of the comment after its value (end of line and following lines)."""
    return parent.ca.items.setdefault(key, [None, None, None, None]), 0 if isinstance(parent, CommentedSeq) else 2


def _pop_following_comments(parent: CommentedMap | CommentedSeq, key: Any) -> str:
    """
    Remove the comments after ``parent[key]`` and return the lines after its end-of-line comment: ruamel keeps the
    comments and blank lines before the next entry there.
    """
    slots, index = _comment_slot(*_last_item(parent, key))
    token, slots[index] = slots[index], None
    if token is None or "\n" not in token.value:
        return ""
    return str(token.value.split("\n", 1)[1])


def _append_comment_lines(parent: CommentedMap | CommentedSeq, key: Any, lines: str) -> None:
    """Add comment (or blank) lines after ``parent[key]``, after any end-of-line comment it has."""
    if not lines:
        return
    slots, index = _comment_slot(*_last_item(parent, key))
    if slots[index] is None:
        slots[index] = CommentToken("\n" + lines, CommentMark(0), None)
    else:
        value = slots[index].value
        slots[index].value = (value if value.endswith("\n") else value + "\n") + lines


def _dump(data: Any) -> str:
    stream = io.StringIO()
    _round_trip().dump(data, stream)
    return stream.getvalue()


def _dump_entry(env_id: str, entry: dict[str, Any]) -> str:
    """The YAML block of one config entry (block style, keys in entry order, policy_kwargs on one line)."""
    return _dump(CommentedMap([(env_id, _to_node(entry))]))


def write_entry(path: str | Path, env_id: str, entry: dict[str, Any]) -> None:
    """
    Write ``entry`` under ``env_id`` in a YAML config: the env's block is replaced (or appended), the rest of
    the file, comments and the order of the entries included, is left as it was. Comments inside the replaced
    block are not kept.

    :param path: The config to create or update.
    :param env_id: The top-level key.
    :param entry: The hyperparameters.
    :raises ValueError: When the file is not a mapping.
    :raises RuntimeError: When the written file would not read back (with PyYAML, as rl-zoo3 reads it) as the old
        entries with ``entry`` under ``env_id``; the file is then left unchanged.
    """
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    data = _round_trip().load(text) if text.strip() else None
    prefix = ""
    if data is None:  # a new or empty file, or one of comments only (which ruamel does not keep: put them back)
        data = CommentedMap()
        if text.strip():
            prefix = (text if text.endswith("\n") else text + "\n") + "\n"
    elif not isinstance(data, CommentedMap):
        raise ValueError(f"{path} is not an rl-zoo3 config (a mapping from env ids to hyperparameters)")
    node = _to_node(entry)
    if env_id in data:
        following = _pop_following_comments(data, env_id)
        data[env_id] = node
        _append_comment_lines(data, env_id, following)
    else:
        if data:
            _append_comment_lines(data, list(data)[-1], "\n")  # a blank line before the new block
        data[env_id] = node
    new_text = prefix + _dump(data)
    old_entries = dict(yaml.safe_load(text) or {}) if text.strip() else {}
    new_entries = yaml.safe_load(new_text) or {}
    if new_entries != {**old_entries, env_id: entry}:
        raise RuntimeError(
            f"Could not write {env_id} into {path} (unexpected layout): write it by hand:\n{_dump_entry(env_id, entry)}"
        )
    path.write_text(new_text)


def best_params_main(argv: Sequence[str]) -> None:
    """
    Command line of ``sb3-influence-zoo best-params``: print a study's best entry, or write it into a config.

    :param argv: The arguments after ``best-params`` (``--help`` lists them).
    """
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
    if base is None and args.output is not None and Path(args.output).is_file() and args.env in read_entries(args.output):
        base = args.output
    entry = best_params(args.source, args.env, args.algo, args.study_name, args.trial_id, base)
    if args.output is None:
        print(_dump_entry(args.env, entry), end="")
    else:
        write_entry(args.output, args.env, entry)
        print(f"Wrote {args.env} to {args.output}")
