"""Checking and flattening what ``Run.log`` receives.

Nested dicts become keys joined by ``/``: ``{"train": {"loss": 1.0}}`` is
logged as ``train/loss``. Keys that join to the same name, such as
``{"a/b": 1.0, "a": {"b": 2.0}}``, and keys that leave an empty segment
in the name, such as ``{"a": {"": 1.0}}`` or ``{"x/": 1.0}``, raise
``InvalidValueError``. Values are
float (NaN and infinities included), int (within 2**53, to stay exact), bool
or None; NumPy scalars and zero-dimensional arrays are converted to these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from assay import protocol
from assay._errors import InvalidValueError

_PLAIN = (float, int, bool, type(None))


def flatten_metrics(metrics: Mapping[str, Any], known_keys: set[str]) -> dict[str, Any]:
    """Return a flat, checked copy of ``metrics``.

    ``known_keys`` caches names already checked, since the same names arrive
    on every call; the function adds the new ones.
    """
    if not isinstance(metrics, Mapping):
        raise InvalidValueError(
            f"log() takes a dict of metrics, got {type(metrics).__name__}; "
            "for example run.log({'loss': 0.5})"
        )
    flat: dict[str, Any] = {}
    _flatten_into(flat, "", (), metrics, known_keys, metrics)
    if len(flat) > protocol.MAX_KEYS_PER_BATCH:
        raise InvalidValueError(
            f"log() received {len(flat)} metric names in one call; "
            f"the maximum is {protocol.MAX_KEYS_PER_BATCH}"
        )
    return flat


def _flatten_into(
    flat: dict[str, Any],
    prefix: str,
    keys: tuple[str, ...],
    metrics: Mapping[str, Any],
    known_keys: set[str],
    root: Mapping[str, Any],
) -> None:
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise InvalidValueError(
                f"metric names must be strings, got {type(key).__name__} {key!r}"
            )
        name = prefix + key
        if isinstance(value, Mapping):
            if value:
                _flatten_into(flat, name + "/", (*keys, key), value, known_keys, root)
            elif protocol.has_empty_segment(name):
                # An empty dict logs nothing, but its key is rejected as a value's key would be.
                raise InvalidValueError(_empty_segment_error((*keys, key), name))
            continue
        if name in flat:
            raise InvalidValueError(
                f"log() received {describe_clash(root, name)}; rename keys so that "
                "each metric name occurs once. Nothing from this call was logged"
            )
        if name not in known_keys:
            if name and protocol.has_empty_segment(name):
                raise InvalidValueError(_empty_segment_error((*keys, key), name))
            try:
                protocol.check_key(name)
            except protocol.ProtocolError as exc:
                raise InvalidValueError(exc.message) from None
            known_keys.add(name)
        flat[name] = value if type(value) in _PLAIN else _convert(name, value)
        if type(value) is int and abs(value) > protocol.MAX_EXACT_INT:
            _convert(name, value)


def _empty_segment_error(keys: tuple[str, ...], name: str) -> str:
    return (
        f"log() received {describe_empty_segment(keys, name)}; give every key a name "
        "that is not empty and does not start or end with '/'. Nothing from this call was logged"
    )


def describe_empty_segment(keys: tuple[str, ...], name: str) -> str:
    """Describe the key path ``keys`` whose joined metric name ``name`` has an empty segment."""
    return (
        f"the key {format_key_path(keys)}, whose metric name {name!r} has an empty segment "
        "(a leading, trailing or doubled '/', or an empty key)"
    )


def format_key_path(keys: tuple[str, ...]) -> str:
    """Write a key path as the subscripts that reach it: ``['a']['b']``."""
    return "".join(f"[{key!r}]" for key in keys)


def describe_clash(metrics: Mapping[str, Any], name: str) -> str:
    """Describe the keys of ``metrics`` that all flatten to the metric name ``name``."""
    paths = [format_key_path(path) for path in _key_paths(metrics, name)]
    listing = ", ".join(paths[:-1]) + " and " + paths[-1]
    return (
        f"{len(paths)} keys that flatten to the same metric name {name!r}, {listing}, "
        "because nested keys are joined with '/'"
    )


def _key_paths(
    metrics: Mapping[str, Any], name: str, prefix: str = "", keys: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Return the key path of each value in ``metrics`` whose flattened name is ``name``."""
    paths: list[tuple[str, ...]] = []
    for key, value in metrics.items():
        if not isinstance(key, str):
            continue
        joined = prefix + key
        if isinstance(value, Mapping):
            if name.startswith(joined + "/"):
                paths.extend(_key_paths(value, name, joined + "/", (*keys, key)))
        elif joined == name:
            paths.append((*keys, key))
    return paths


def _convert(name: str, value: object) -> Any:
    try:
        payload, kind = protocol.encode_value(value)
    except protocol.ProtocolError as exc:
        raise InvalidValueError(f"metric {name!r}: {exc.message}") from None
    return protocol.decode_value(payload, kind)


def check_document(value: Any, what: str) -> None:
    try:
        protocol.check_document(value, what)
    except protocol.ProtocolError as exc:
        raise InvalidValueError(exc.message) from None
    size = len(protocol.pack({"document": value}))
    if size > protocol.MAX_DOCUMENT_BYTES:
        limit = protocol.MAX_DOCUMENT_BYTES // 2**20
        raise InvalidValueError(
            f"invalid {what}: {size} bytes encoded, over the {limit} MiB one {what} update "
            "may take; save large data as a file and put its path in the run instead"
        )
