"""Config documents: JSON and YAML files read safely and made into JSON values."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import yaml

from assay import protocol
from assay.importers._model import Report

#: The tags that PyYAML's own unsafe loaders use to build Python objects.
PYTHON_TAG_PREFIX = "tag:yaml.org,2002:python/"
BINARY_TAG = "tag:yaml.org,2002:binary"
TUPLE_TAG = PYTHON_TAG_PREFIX + "tuple"


class Opaque(str):
    """The text standing in for a YAML value whose tag would build a Python object."""


def _short_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag


class _OpaqueLoader(yaml.SafeLoader):
    """PyYAML's safe loader, keeping unsafe and unknown tags as text.

    Real ``hparams.yaml`` files written by PyTorch Lightning carry
    ``!!python/object`` and ``!!binary`` (pickled tensors) values. This loader
    never imports or calls anything they name: such a node becomes an
    ``Opaque`` string holding its tag and, for a scalar, its text. A
    ``!!python/tuple`` of plain values becomes a list, since building one runs
    no code.
    """


def _construct_opaque(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Opaque:
    short = _short_tag(node.tag)
    if isinstance(node, yaml.ScalarNode) and node.value:
        return Opaque(f"{short} {node.value}")
    return Opaque(short)


def _construct_unknown(loader: yaml.SafeLoader, node: yaml.Node) -> Opaque:
    return _construct_opaque(loader, "", node)


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> list[Any]:
    if not isinstance(node, yaml.SequenceNode):
        return [_construct_opaque(loader, "", node)]
    return list(loader.construct_sequence(node, deep=True))


def _construct_binary(loader: yaml.SafeLoader, node: yaml.Node) -> Opaque:
    text = node.value if isinstance(node, yaml.ScalarNode) else ""
    size = len("".join(str(text).split())) * 3 // 4
    return Opaque(f"!!binary (about {size} bytes, not decoded)")


_OpaqueLoader.add_constructor(TUPLE_TAG, _construct_tuple)
_OpaqueLoader.add_constructor(BINARY_TAG, _construct_binary)
_OpaqueLoader.add_multi_constructor(PYTHON_TAG_PREFIX, _construct_opaque)
_OpaqueLoader.add_constructor(None, _construct_unknown)


def load_yaml(path: Path, report: Report) -> Any:
    """Parse a YAML file with the safe loader; None (with a warning) if it is not YAML."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        report.warn(path, f"cannot be read: {exc.strerror or exc}")
        return None
    try:
        # _OpaqueLoader is a SafeLoader: it builds only plain values.
        return yaml.load(text, Loader=_OpaqueLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        report.warn(path, f"is not valid YAML ({problem}); skipped", where)
        return None


def load_json(path: Path, report: Report) -> Any:
    """Parse a JSON file (NaN and Infinity tokens allowed); None with a warning on failure."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        report.warn(path, f"cannot be read: {exc.strerror or exc}")
        return None
    if not data.strip():
        report.warn(path, "is empty; skipped")
        return None
    try:
        return json.loads(data.decode("utf-8-sig", errors="replace"))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        report.warn(path, f"is not valid JSON ({exc.msg}); skipped", where)
        return None
    except RecursionError:
        report.warn(path, "is nested too deeply to parse; skipped")
        return None


def load_config(path: Path, report: Report) -> dict[str, Any]:
    """Read a config file (``.json``, else YAML) into a JSON-compatible dict."""
    document = load_json(path, report) if path.suffix == ".json" else load_yaml(path, report)
    if document is None:
        return {}
    if not isinstance(document, dict):
        report.warn(
            path, f"holds a {type(document).__name__}, not a mapping of names to values; skipped"
        )
        return {}
    return to_config(document, report, path)


def to_config(document: dict[Any, Any], report: Report, path: Path) -> dict[str, Any]:
    """Make ``document`` a valid ``config``: string keys and JSON values only.

    Values that JSON cannot hold become text, and each opaque YAML value gets
    a warning naming its key.
    """
    converted = _convert(document, report, path, "", 0)
    assert isinstance(converted, dict)
    protocol.check_document(converted, "config")
    return converted


def _convert(value: Any, report: Report, path: Path, where: str, depth: int) -> Any:
    if isinstance(value, Opaque):
        report.warn(
            path,
            f"{where or 'the document'} holds a {value.split(' ', 1)[0]} value; it is kept "
            f"as the text {_clip(str(value))!r} and never executed",
        )
        return str(value)
    if value is None or isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else str(value)
    if depth >= protocol.MAX_DOCUMENT_DEPTH:
        report.warn(
            path,
            f"{where} is nested deeper than {protocol.MAX_DOCUMENT_DEPTH} levels; kept as text",
        )
        return _clip(repr(value), 1000)
    if isinstance(value, dict):
        converted: dict[str, Any] = {}
        for key, item in value.items():
            name = key if isinstance(key, str) else str(key)
            if name == "$float":
                name = "$float (key)"
            inner = f"{where}.{name}" if where else name
            converted[name] = _convert(item, report, path, inner, depth + 1)
        return converted
    if isinstance(value, list | tuple):
        return [
            _convert(item, report, path, f"{where}.{index}", depth + 1)
            for index, item in enumerate(value)
        ]
    if isinstance(value, set | frozenset):
        return sorted((_convert(item, report, path, where, depth + 1) for item in value), key=repr)
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes, not decoded>"
    return str(value)


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def read_text(path: Path, report: Report) -> str | None:
    """Read a text file as UTF-8; bytes that are not UTF-8 are replaced, with a warning."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        report.warn(path, f"cannot be read: {exc.strerror or exc}")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.warn(
            path,
            f"is not valid UTF-8 (first bad byte at offset {exc.start}); "
            "bad bytes are replaced by U+FFFD",
        )
        return data.decode("utf-8-sig", errors="replace")


def modified_time(path: Path) -> float:
    """Return the file's modification time, the wall time of points in formats without one."""
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()
