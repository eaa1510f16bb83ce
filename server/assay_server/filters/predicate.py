"""Evaluate a filter tree against one run in memory, as the SQL compiled by ``sql`` does.

The run is a dict shaped like ``runs.get_run``'s result, with config and
summary values already untagged (NaN and infinities as floats), and ``stats``
is ``runs.metric_stats``'s result for the same run. Live views use this to
decide whether an updated run still belongs to a filtered run set without
asking the database again.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from assay_server.filters import regex
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

Stats = Mapping[str, Mapping[str, Any]]

#: The value of a key that a run does not have.
MISSING: Any = object()

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


Predicate = Callable[[Mapping[str, Any], Stats], bool]


def evaluate(node: Node, run: Mapping[str, Any], stats: Stats) -> bool:
    """Return whether ``node`` selects the run; ``node`` must pass ``check.check``."""
    return compile_predicate(node)(run, stats)


def compile_predicate(node: Node) -> Predicate:
    """Return a function of a run and its statistics that evaluates ``node``.

    The tree is walked once here rather than on every run, so a caller that
    evaluates one filter over many runs compiles it once. (Nodes are not a
    cache key: ``0``, ``0.0`` and ``false`` literals compare equal.)
    """
    if isinstance(node, And):
        operands = tuple(compile_predicate(operand) for operand in node.operands)
        return lambda run, stats: all(operand(run, stats) for operand in operands)
    if isinstance(node, Or):
        operands = tuple(compile_predicate(operand) for operand in node.operands)
        return lambda run, stats: any(operand(run, stats) for operand in operands)
    if isinstance(node, Not):
        inner = compile_predicate(node.operand)
        return lambda run, stats: not inner(run, stats)
    read = _reader(node.field)
    if isinstance(node, Comparison):
        compare, literal = _OPERATORS[node.operator], node.value
        return lambda run, stats: _compare_with(read(run, stats), compare, literal)
    if isinstance(node, Membership):
        values, negated = node.values, node.negated
        return lambda run, stats: _membership(read(run, stats), values, negated)
    if isinstance(node, Contains):
        literal = node.value
        return lambda run, stats: _contains(read(run, stats), literal)
    if isinstance(node, Match):
        pattern = node.pattern
        return lambda run, stats: _match(read(run, stats), pattern)
    if isinstance(node, Is):
        value_class = node.value_class
        return lambda run, stats: _value_class(read(run, stats), value_class)
    assert isinstance(node, Exists)
    return lambda run, stats: read(run, stats) is not MISSING


def _reader(field: Field) -> Callable[[Mapping[str, Any], Stats], Any]:
    """Return a function that reads ``field`` from a run, as ``field_value`` does."""
    if isinstance(field, MetadataField):
        name = field.name
        return lambda run, stats: run[name]
    if isinstance(field, ConfigField):
        return lambda run, stats: field_value(field, run, stats)
    metric, statistic = field.metric, field.statistic
    if statistic is None:
        return lambda run, stats: run["summary"].get(metric, MISSING)

    def read_statistic(run: Mapping[str, Any], stats: Stats) -> Any:
        found = stats.get(metric)
        return MISSING if found is None else found[statistic]

    return read_statistic


def field_value(field: Field, run: Mapping[str, Any], stats: Stats) -> Any:
    """Return the field's value in ``run``, or ``MISSING``."""
    if isinstance(field, MetadataField):
        return run[field.name]
    if isinstance(field, ConfigField):
        value: Any = run["config"]
        for key in field.path:
            if not isinstance(value, dict) or key not in value:
                return MISSING
            value = value[key]
        return value
    if field.statistic is None:
        return run["summary"].get(field.metric, MISSING)
    metric = stats.get(field.metric)
    return MISSING if metric is None else metric[field.statistic]


def _number(value: Any) -> float | None:
    """Return the value as a float if it is a number other than NaN; booleans are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _typed(value: Any, literal: Literal) -> tuple[Any, Any]:
    """Return the value read as the literal's type (None when it has another) and the literal."""
    if isinstance(literal, bool):
        return (value if isinstance(value, bool) else None), literal
    if isinstance(literal, str):
        return (value if isinstance(value, str) else None), literal
    if isinstance(literal, Timestamp):
        return _number(value), literal.seconds
    return _number(value), float(literal)


def _compare(value: Any, operator_text: str, literal: Literal) -> bool:
    return _compare_with(value, _OPERATORS[operator_text], literal)


def _compare_with(value: Any, compare: Callable[[Any, Any], bool], literal: Literal) -> bool:
    typed, expected = _typed(value, literal)
    return typed is not None and compare(typed, expected)


def _membership(value: Any, values: tuple[Literal, ...], negated: bool) -> bool:
    typed, _ = _typed(value, values[0])
    if typed is None:
        return False
    found = any(typed == _typed(value, item)[1] for item in values)
    return not found if negated else found


def _contains(value: Any, literal: Literal) -> bool:
    if isinstance(value, str) and isinstance(literal, str):
        return literal in value
    if isinstance(value, list):
        return any(_compare(element, "=", literal) for element in value)
    return False


def _match(value: Any, pattern: str) -> bool:
    if isinstance(value, str):
        return regex.search(pattern, value)
    if isinstance(value, list):
        return any(isinstance(item, str) and regex.search(pattern, item) for item in value)
    return False


def _value_class(value: Any, value_class: str) -> bool:
    if value_class == "null":
        return value is MISSING or value is None
    if value_class == "nan":
        return isinstance(value, float) and math.isnan(value)
    number = _number(value)
    if number is None:
        return False
    return math.isinf(number) if value_class == "inf" else math.isfinite(number)
