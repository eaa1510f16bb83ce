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


def evaluate(node: Node, run: Mapping[str, Any], stats: Stats) -> bool:
    """Return whether ``node`` selects the run; ``node`` must pass ``check.check``."""
    if isinstance(node, And):
        return all(evaluate(operand, run, stats) for operand in node.operands)
    if isinstance(node, Or):
        return any(evaluate(operand, run, stats) for operand in node.operands)
    if isinstance(node, Not):
        return not evaluate(node.operand, run, stats)
    value = field_value(node.field, run, stats)
    if isinstance(node, Comparison):
        return _compare(value, node.operator, node.value)
    if isinstance(node, Membership):
        return _membership(value, node.values, node.negated)
    if isinstance(node, Contains):
        return _contains(value, node.value)
    if isinstance(node, Match):
        return _match(value, node.pattern)
    if isinstance(node, Is):
        return _value_class(value, node.value_class)
    assert isinstance(node, Exists)
    return value is not MISSING


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
    typed, expected = _typed(value, literal)
    return typed is not None and _OPERATORS[operator_text](typed, expected)


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
