"""Write a filter tree as text that ``parser.parse_filter`` reads back to an equal tree."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from assay_server.filters.tree import (
    And,
    Comparison,
    ConfigField,
    Contains,
    Exists,
    Field,
    Is,
    Literal,
    Match,
    Membership,
    MetadataField,
    Node,
    Not,
    Or,
    Timestamp,
)

#: Keys that may be written without quotes; the lexer reads the same set.
BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_/\-]*")

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def format_filter(node: Node) -> str:
    if isinstance(node, And | Or):
        joiner = " and " if isinstance(node, And) else " or "
        return joiner.join(_operand(operand) for operand in node.operands)
    if isinstance(node, Not):
        inner = node.operand
        if isinstance(inner, Is):
            return f"{format_field(inner.field)} is not {inner.value_class}"
        return f"not {_operand(inner)}"
    return _condition(node)


def format_field(field: Field) -> str:
    if isinstance(field, MetadataField):
        return field.name
    if isinstance(field, ConfigField):
        return "config." + ".".join(format_key(key) for key in field.path)
    text = "summary." + format_key(field.metric)
    if field.statistic is not None:
        text += "." + field.statistic
    return text


def format_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else quote(key)


def format_literal(value: Literal) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, Timestamp):
        return _format_time(value.seconds)
    return _format_number(value)


def quote(text: str) -> str:
    escaped = "".join(_ESCAPES.get(char, _escape_control(char)) for char in text)
    return f'"{escaped}"'


def _escape_control(char: str) -> str:
    return f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char


def _format_number(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(float(value))


def _format_time(seconds: float) -> str:
    """Write an ISO 8601 UTC time, or the plain number when no ISO text parses back to it."""
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return _format_number(seconds)
    if moment.timestamp() != seconds:
        return _format_number(seconds)
    if moment.time() == datetime.min.time():
        return moment.strftime("%Y-%m-%d")
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def _operand(node: Node) -> str:
    text = format_filter(node)
    return f"({text})" if isinstance(node, And | Or) else text


def _condition(node: Node) -> str:
    assert not isinstance(node, And | Or | Not)
    field = format_field(node.field)
    if isinstance(node, Comparison):
        return f"{field} {node.operator} {format_literal(node.value)}"
    if isinstance(node, Membership):
        values = ", ".join(format_literal(value) for value in node.values)
        operator = "not in" if node.negated else "in"
        return f"{field} {operator} ({values})"
    if isinstance(node, Contains):
        return f"{field} contains {format_literal(node.value)}"
    if isinstance(node, Match):
        return f"{field} ~ {quote(node.pattern)}"
    if isinstance(node, Is):
        return f"{field} is {node.value_class}"
    assert isinstance(node, Exists)
    return f"{field} exists"
