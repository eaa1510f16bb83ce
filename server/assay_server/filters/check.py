"""Type rules of filters: which operators and literals suit which fields.

A field whose type is known (metadata, statistics) rejects literals of another
type, so ``name < 3`` is an error rather than a filter that selects nothing.
Config and summary values may hold any JSON type, so any literal suits them
and a comparison selects only the values of the literal's type.
"""

from __future__ import annotations

import math
from enum import Enum

from assay_server.filters.errors import (
    FilterTooLongError,
    FilterTypeError,
    RegexError,
    UnknownFieldError,
    quoted,
)
from assay_server.filters.formatter import format_field
from assay_server.filters.regex import translate
from assay_server.filters.tree import (
    METADATA,
    NUMBER_STATISTICS,
    ORDERING_OPERATORS,
    RESERVED_KEY,
    TEXT_METADATA,
    TIME_METADATA,
    VALUE_CLASSES,
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
    SummaryField,
    Timestamp,
    conditions,
)

# The limits keep the SQL within what SQLite's parser accepts. Deeper nesting
# fails with "parser stack overflow" (measured with SQLite 3.40).
MAX_CONDITIONS = 100
#: Levels of nested parentheses and ``not``.
MAX_DEPTH = 20
MAX_LIST_LENGTH = 100
MAX_PATH_LENGTH = 32
#: Keys in one field that are not plain (see ``is_plain_key``). SQLite finds
#: each in a nested subquery.
MAX_ESCAPED_KEYS = 2

#: The run states, as ``runs.STATES`` has them.
STATES = ("running", "finished", "failed", "crashed")


class FieldType(Enum):
    TEXT = "text"
    TIME = "time"
    TAGS = "tags"
    NUMBER = "number"
    FLAG = "flag"
    #: A config or summary value: any JSON value, NaN and infinities included.
    DOCUMENT = "document"


def field_type(field: Field) -> FieldType:
    if isinstance(field, MetadataField):
        if field.name in TEXT_METADATA:
            return FieldType.TEXT
        return FieldType.TIME if field.name in TIME_METADATA else FieldType.TAGS
    if isinstance(field, SummaryField) and field.statistic is not None:
        return FieldType.NUMBER if field.statistic in NUMBER_STATISTICS else FieldType.FLAG
    return FieldType.DOCUMENT


def is_plain_key(key: str) -> bool:
    """Return whether ``key`` is printable ASCII without ``"`` or ``\\``.

    Stored JSON writes such a key as it is, with no escapes, so SQLite can
    reach it with a JSON path.
    """
    return all(" " <= char <= "~" and char not in '"\\' for char in key)


def check(node: Node) -> None:
    """Raise ``FilterError`` unless every condition of ``node`` is well typed.

    ``parser.parse_filter`` calls this; call it on trees built in code.
    """
    found = conditions(node)
    if len(found) > MAX_CONDITIONS:
        raise FilterTooLongError(
            "filter has too many conditions", 0, f"at most {MAX_CONDITIONS} conditions"
        )
    # A top-level "and" or "or" needs no parentheses, hence the 1.
    if _depth(node) > MAX_DEPTH + 1:
        raise FilterTooLongError(
            "filter nests too deeply", 0, f"at most {MAX_DEPTH} levels of parentheses and 'not'"
        )
    for condition in found:
        _check_field(condition.field, condition.column)
        if isinstance(condition, Comparison):
            _check_comparison(
                condition.field, condition.operator, condition.value, condition.column
            )
        elif isinstance(condition, Membership):
            _check_membership(condition)
        elif isinstance(condition, Contains):
            _check_contains(condition)
        elif isinstance(condition, Match):
            _check_match(condition)
        elif isinstance(condition, Is):
            _check_is(condition)
        else:
            assert isinstance(condition, Exists)


def _depth(node: Node) -> int:
    if isinstance(node, And | Or):
        return 1 + max(_depth(operand) for operand in node.operands)
    if isinstance(node, Not):
        return 1 + _depth(node.operand)
    return 0


def _check_field(field: Field, column: int) -> None:
    if isinstance(field, MetadataField):
        if field.name not in METADATA:
            raise UnknownFieldError(
                f"unknown field {quoted(field.name)}", column, ", ".join(METADATA)
            )
        return
    keys = field.path if isinstance(field, ConfigField) else (field.metric,)
    if not keys or len(keys) > MAX_PATH_LENGTH:
        raise FilterTypeError(
            f"config path of {len(keys)} keys", column, f"1 to {MAX_PATH_LENGTH} keys"
        )
    escaped = [key for key in keys if not is_plain_key(key)]
    if len(escaped) > MAX_ESCAPED_KEYS:
        raise FilterTypeError(
            f"{len(escaped)} keys with characters outside printable ASCII, or with '\"' or '\\'",
            column,
            f"at most {MAX_ESCAPED_KEYS} such keys in one field",
        )
    for key in keys:
        if key == RESERVED_KEY:
            raise FilterTypeError(
                f"the key {RESERVED_KEY!r} is reserved",
                column,
                "another key; stored documents use it to mark NaN and infinities",
            )
        if "\x00" in key:
            raise FilterTypeError("NUL character in a key", column, "a key without NUL")


def _check_literal(value: Literal, column: int) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise FilterTypeError("NUL character in a string", column, "a string without NUL")
        return
    number = value.seconds if isinstance(value, Timestamp) else value
    if not isinstance(number, float | int):
        raise FilterTypeError(f"unsupported value {value!r}", column, "a number, string or bool")
    if math.isnan(number):
        raise FilterTypeError("NaN is not a value to compare with", column, "'is nan'")


def _describe(value: Literal) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    return "a date" if isinstance(value, Timestamp) else "a number"


_KIND_NAMES = {
    FieldType.TEXT: ("text", 'a string, such as "sweep-1"'),
    FieldType.TIME: (
        "a time",
        "a date such as 2026-12-03, a UTC time such as 2026-12-03T08:30:00Z, "
        "or seconds since the epoch",
    ),
    FieldType.NUMBER: ("a number", "a number"),
    FieldType.FLAG: ("true or false", "true or false"),
    FieldType.DOCUMENT: (
        "a config or summary value",
        f"a number, a string or a boolean; dates suit {', '.join(TIME_METADATA)}",
    ),
}


def _is_number(value: Literal) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool)


def _suits(kind: FieldType, value: Literal) -> bool:
    if kind is FieldType.TEXT:
        return isinstance(value, str)
    if kind is FieldType.TIME:
        return isinstance(value, Timestamp) or _is_number(value)
    if kind is FieldType.NUMBER:
        return _is_number(value)
    if kind is FieldType.FLAG:
        return isinstance(value, bool)
    return not isinstance(value, Timestamp)


def _check_comparison(field: Field, operator: str, value: Literal, column: int) -> None:
    _check_literal(value, column)
    kind = field_type(field)
    name = format_field(field)
    if isinstance(value, bool) and operator in ORDERING_OPERATORS:
        raise FilterTypeError(f"{operator} with a boolean", column, "= or != for true and false")
    if kind is FieldType.TAGS:
        raise FilterTypeError(
            f"{operator} on tags, a list of strings", column, 'tags contains "baseline"'
        )
    if not _suits(kind, value):
        description, expected = _KIND_NAMES[kind]
        raise FilterTypeError(
            f"{name} is {description} and cannot be compared with {_describe(value)}",
            column,
            expected,
        )
    if field == MetadataField("state") and operator in ("=", "!=") and value not in STATES:
        raise FilterTypeError(f"unknown state {quoted(str(value))}", column, ", ".join(STATES))


def _check_membership(condition: Membership) -> None:
    if not condition.values or len(condition.values) > MAX_LIST_LENGTH:
        raise FilterTypeError(
            f"list of {len(condition.values)} values",
            condition.column,
            f"1 to {MAX_LIST_LENGTH} values",
        )
    kinds = {_describe(value).replace("a date", "a number") for value in condition.values}
    if len(kinds) > 1:
        raise FilterTypeError(
            f"list mixes {' and '.join(sorted(kinds))}",
            condition.column,
            "values of one type",
        )
    for value in condition.values:
        _check_comparison(condition.field, "=", value, condition.column)


def _check_contains(condition: Contains) -> None:
    value = condition.value
    _check_literal(value, condition.column)
    kind = field_type(condition.field)
    name = format_field(condition.field)
    if kind in (FieldType.TEXT, FieldType.TAGS) and not isinstance(value, str):
        raise FilterTypeError(
            f"{name} contains {_describe(value)}", condition.column, 'a string, such as "base"'
        )
    if kind in (FieldType.TIME, FieldType.NUMBER, FieldType.FLAG):
        raise FilterTypeError(
            f"contains on {name}, which is not a string or a list",
            condition.column,
            "a config value, a summary value, name, state, id, group or tags",
        )
    if isinstance(value, Timestamp):
        raise FilterTypeError(
            f"{name} contains a date", condition.column, "a number, a string or a boolean"
        )


def _check_match(condition: Match) -> None:
    kind = field_type(condition.field)
    name = format_field(condition.field)
    if kind in (FieldType.TIME, FieldType.NUMBER, FieldType.FLAG):
        raise FilterTypeError(
            f"~ on {name}, which is not text",
            condition.column,
            "a config value, a summary value, name, state, id, group or tags",
        )
    try:
        translate(condition.pattern)
    except RegexError as exc:
        raise RegexError(
            f"invalid regular expression {quoted(condition.pattern)} "
            f"({exc.problem} at its character {exc.column})",
            condition.column,
            exc.expected,
        ) from None


def _check_is(condition: Is) -> None:
    if condition.value_class not in VALUE_CLASSES:
        raise FilterTypeError(
            f"unknown value class {condition.value_class!r}",
            condition.column,
            ", ".join(VALUE_CLASSES),
        )
    kind = field_type(condition.field)
    if condition.value_class != "null" and kind not in (FieldType.DOCUMENT, FieldType.NUMBER):
        name = format_field(condition.field)
        raise FilterTypeError(
            f"{name} is {condition.value_class}: {name} is never NaN or infinite",
            condition.column,
            "'is null', 'is not null' or 'exists' for this field",
        )
