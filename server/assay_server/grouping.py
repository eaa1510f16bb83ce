"""Sorting and grouping the runs of a run set, and aggregating a group's series by step.

The rules, also in ``docs/runsets.md``:

- Sort values rank as numbers (by value, infinities included), then strings
  (by code point), then other values (booleans, lists, objects, by their JSON
  text); NaN, null and a missing value come last in both directions.
- A group is the runs with equal values of every grouping key. Numbers equal
  as numbers (``1`` and ``1.0`` are one group); NaN, null and missing are
  three groups of their own. Groups are ordered by their key values, as
  sorting in ascending order does.
- At each step, the aggregate and the band use the finite values that the
  group's runs logged at that step. NaN, +Inf, -Inf and null are left out and
  counted, so that the hover shows how many; a step where no run has a finite
  value is a gap in the line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from assay_server import filters
from assay_server.filters.predicate import MISSING, field_value
from assay_server.filters.tree import Exists, Field

AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "mean": lambda values: float(np.mean(values)),
    "median": lambda values: float(np.median(values)),
    "min": lambda values: float(np.min(values)),
    "max": lambda values: float(np.max(values)),
}


def parse_field(text: str) -> Field:
    """Parse a stored grouping or sort field such as ``config.lr``; it was checked on save."""
    node = filters.parse_filter(f"{text} exists")
    assert isinstance(node, Exists)
    return node.field


def rank(value: Any) -> tuple[Any, ...]:
    """Return the ascending sort key of a field value, before the last-place values."""
    if isinstance(value, bool):
        return (2, json.dumps(value))
    if isinstance(value, int | float):
        return (0, float(value))
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True, default=str))


def is_blank(value: Any) -> bool:
    """Return whether the value sorts last: missing, null or NaN."""
    if value is MISSING or value is None:
        return True
    return isinstance(value, float) and math.isnan(value)


def sort_runs(
    runs: Sequence[dict[str, Any]],
    field_text: str,
    direction: str,
    stats: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Return ``runs`` sorted by the field; ties keep their given order.

    ``stats`` maps run ids to ``runs.metric_stats`` results, needed only when
    the field is a statistic such as ``summary.loss.min``.
    """
    field = parse_field(field_text)
    values = [field_value(field, run, (stats or {}).get(run["id"], {})) for run in runs]
    present = [i for i, value in enumerate(values) if not is_blank(value)]
    blank = [i for i, value in enumerate(values) if is_blank(value)]
    # Python's sort keeps ties in their given order with reverse=True too.
    present.sort(key=lambda i: rank(values[i]), reverse=direction == "desc")
    return [runs[i] for i in present + blank]


def group_identity(value: Any) -> tuple[Any, ...]:
    """Return a hashable identity under which equal values fall into one group."""
    if value is MISSING:
        return ("missing",)
    if value is None:
        return ("null",)
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return rank(value)


def group_label(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


@dataclass
class Group:
    """Runs that share the values of the grouping keys, and a label naming those values."""

    label: str
    runs: list[dict[str, Any]]


def group_runs(runs: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[Group]:
    """Split ``runs`` into groups by the values of ``keys``, ordered by those values.

    Within a group, runs keep their given order.
    """
    fields = [parse_field(key) for key in keys]
    found: dict[tuple[Any, ...], tuple[list[Any], list[dict[str, Any]]]] = {}
    for run in runs:
        values = [field_value(field, run, {}) for field in fields]
        identity = tuple(group_identity(value) for value in values)
        found.setdefault(identity, (values, []))[1].append(run)
    ordered = sorted(found, key=_group_order)
    return [
        Group(
            ", ".join(
                f"{key}={group_label(value)}"
                for key, value in zip(keys, found[identity][0], strict=True)
            ),
            found[identity][1],
        )
        for identity in ordered
    ]


def _group_order(identity: tuple[Any, ...]) -> tuple[Any, ...]:
    # Values rank first; NaN, null and missing groups follow, in that order.
    last = {"nan": (3, 0), "null": (3, 1), "missing": (3, 2)}
    return tuple(
        last.get(part[0], part) if isinstance(part[0], str) else part for part in identity
    )


@dataclass
class GroupSeries:
    """A group's aggregated line by step; NaN in ``centre``, ``lower`` and ``upper`` is a gap.

    ``counts`` is the number of finite values behind each step, and
    ``left_out`` the number of NaN, +Inf, -Inf and null values left out there.
    """

    steps: np.ndarray
    x: np.ndarray
    centre: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    counts: np.ndarray
    left_out: np.ndarray


def aggregate(
    steps: Sequence[np.ndarray],
    x: Sequence[np.ndarray],
    values: Sequence[np.ndarray],
    method: str,
    band: str,
) -> GroupSeries:
    """Aggregate per step the runs' ``values`` (float64, NaN for null) logged at ``steps``.

    ``x`` gives each point's x value; the group's x at a step is the mean of
    its runs' x there. ``method`` is mean, median, min or max. The band is
    ``std`` (centre ± the sample standard deviation, which needs two values),
    ``stderr`` (centre ± std/√n, also two values), ``minmax`` (the minimum to
    the maximum) or ``none``.
    """
    all_steps = np.concatenate(
        [np.asarray(s, dtype=np.int64) for s in steps] or [np.zeros(0, dtype=np.int64)]
    )
    all_x = np.concatenate([np.asarray(v, dtype=np.float64) for v in x] or [np.zeros(0)])
    all_values = np.concatenate([np.asarray(v, dtype=np.float64) for v in values] or [np.zeros(0)])
    unique, inverse = np.unique(all_steps, return_inverse=True)
    size = len(unique)
    result = GroupSeries(
        steps=unique.astype(np.int64),
        x=np.full(size, np.nan),
        centre=np.full(size, np.nan),
        lower=np.full(size, np.nan),
        upper=np.full(size, np.nan),
        counts=np.zeros(size, dtype=np.int64),
        left_out=np.zeros(size, dtype=np.int64),
    )
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(size + 1))
    reduce = AGGREGATES[method]
    for index in range(size):
        members = order[bounds[index] : bounds[index + 1]]
        result.x[index] = float(np.mean(all_x[members]))
        found = all_values[members]
        finite = found[np.isfinite(found)]
        result.counts[index] = len(finite)
        result.left_out[index] = len(found) - len(finite)
        if not len(finite):
            continue
        centre = reduce(finite)
        result.centre[index] = centre
        if band == "minmax":
            result.lower[index] = float(np.min(finite))
            result.upper[index] = float(np.max(finite))
        elif band in ("std", "stderr") and len(finite) >= 2:
            spread = float(np.std(finite, ddof=1))
            if band == "stderr":
                spread /= math.sqrt(len(finite))
            result.lower[index] = centre - spread
            result.upper[index] = centre + spread
    return result
