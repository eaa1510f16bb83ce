"""The expression tree of a run-set filter.

Both evaluators take this tree: ``sql.to_sql`` turns it into a WHERE clause
and ``predicate.evaluate`` tests one run in memory. ``parser.parse_filter``
builds it from text and ``formatter.format_filter`` writes it back. Every
condition yields true or false, never an unknown: a value that is missing,
null, NaN or of another type than the literal makes a comparison false, and
``not`` turns false into true.

``column`` fields record where a node starts in the filter text, for error
messages. They take no part in equality, so a tree parsed from its own
formatted text equals the original.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

#: Run metadata fields, mapped to what their values are.
TEXT_METADATA = ("name", "state", "id", "group")
TIME_METADATA = ("created_at", "heartbeat_at", "finished_at")
LIST_METADATA = ("tags",)
METADATA = TEXT_METADATA + TIME_METADATA + LIST_METADATA
#: Metadata that may be null: a run without a group, a run not yet finished.
NULLABLE_METADATA = ("group", "finished_at")

#: Per-metric statistics reachable as ``summary.METRIC.STATISTIC``.
NUMBER_STATISTICS = ("min", "max")
FLAG_STATISTICS = ("has_nan", "has_inf", "has_null")
STATISTICS = NUMBER_STATISTICS + FLAG_STATISTICS

#: The key that marks NaN and infinities in stored JSON documents; see
#: ``assay.protocol.tag_floats``. A filter may not use it as a key.
RESERVED_KEY = "$float"

COMPARISON_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
ORDERING_OPERATORS = ("<", "<=", ">", ">=")
#: What ``field is …`` tests for.
VALUE_CLASSES = ("null", "nan", "inf", "finite")


@dataclass(frozen=True)
class ConfigField:
    """A value in the run's config, reached through nested objects by ``path``."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class SummaryField:
    """A metric's summary value, or with ``statistic`` one of its statistics.

    The summary value is the key's entry in ``runs.summary`` when there is one,
    otherwise the metric's last logged value. Statistics come from the
    ``metrics`` table only.
    """

    metric: str
    statistic: str | None = None


@dataclass(frozen=True)
class MetadataField:
    """A run attribute: one of ``METADATA``."""

    name: str


Field = ConfigField | SummaryField | MetadataField


@dataclass(frozen=True)
class Timestamp:
    """A date or datetime literal, as seconds since the epoch (UTC)."""

    seconds: float


#: A literal value: a number (always a float), a string, a boolean or a time.
Literal = float | str | bool | Timestamp


@dataclass(frozen=True)
class Comparison:
    """``field OP value`` with one of ``COMPARISON_OPERATORS``."""

    field: Field
    operator: str
    value: Literal
    column: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Membership:
    """``field in (values)``, or ``field not in (values)`` when ``negated``.

    The values share one type. ``not in`` still needs a value of that type:
    like ``!=``, it never selects a missing, null or NaN value.
    """

    field: Field
    values: tuple[Literal, ...]
    negated: bool = False
    column: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Contains:
    """``field contains value``: a substring of a string, or an element of a list."""

    field: Field
    value: Literal
    column: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Match:
    """``field ~ "pattern"``: a string, or any string element of a list, matches.

    ``pattern`` is in the subset that ``regex.translate`` accepts.
    """

    field: Field
    pattern: str
    column: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Is:
    """``field is null|nan|inf|finite``.

    ``null`` also selects a missing key; ``inf`` selects +Inf and -Inf;
    ``finite`` selects numbers that are neither NaN nor infinite.
    """

    field: Field
    value_class: str
    column: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Exists:
    """``field exists``: the key is present, whatever its value, null included."""

    field: Field
    column: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


Condition = Comparison | Membership | Contains | Match | Is | Exists
Node = Condition | And | Or | Not


def conditions(node: Node) -> list[Condition]:
    """List the conditions of ``node`` from left to right."""
    if isinstance(node, And | Or):
        return [found for operand in node.operands for found in conditions(operand)]
    if isinstance(node, Not):
        return conditions(node.operand)
    return [node]
