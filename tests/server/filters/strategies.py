"""Hypothesis strategies for stored runs and for filter trees that reach their values."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from hypothesis import strategies as st
from stored_runs import StoredRun

from assay_server import filters, runs
from assay_server.filters.check import STATES, FieldType, field_type
from assay_server.filters.tree import (
    COMPARISON_OPERATORS,
    FLAG_STATISTICS,
    METADATA,
    NUMBER_STATISTICS,
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
)

# Small pools, so that generated filters often reach generated values. Keys
# include a dot, a quote and a non-ASCII letter, which need quoting in filters
# and care in SQLite's JSON paths.
CONFIG_KEYS = ["a", "b", "ü", 'q"k']
NESTED_KEYS = ["a", "c.d"]
METRICS = ["loss", "train/loss", "loss.min"]
TAGS = ["baseline", "x", "a/b"]
NAMES = ["sweep-1", "Sweep-1", "base", "é", "a\nb"]
STRINGS = ["", "a", "ab", "B", "é", "a\nb", "1", "true"]
NUMBERS = [0.0, -0.0, 0.1, 1.0, -3.0, 1e300, 5e-324, math.inf, -math.inf]
BIG_INTEGERS = [2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1]
TIMES = [datetime(2020, 1, 1, tzinfo=UTC), datetime(2026, 12, 3, 8, 30, tzinfo=UTC)]
CREATED = [moment.timestamp() + offset for moment in TIMES for offset in (-1.0, 0.0, 0.5)]
PATTERNS = ["a", "^a", "b$", ".", "\\d", "[a-c]", "[^a]", "é", "\\n", "(a|b)", "^$", "^.$"]
PATTERN_PARTS = ["\\.", "\\w+", "s*", "(?:ab)?", "[0-9]{1,2}", "-", "\\s", "[\\-/]"]

numbers = st.sampled_from(NUMBERS) | st.integers(-1, 1) | st.sampled_from(BIG_INTEGERS)
# Each kind of value about equally likely, the special ones included.
scalars = st.one_of(st.none(), st.booleans(), numbers, st.just(math.nan), st.sampled_from(STRINGS))
lists = st.lists(scalars, max_size=3)
documents = st.recursive(
    scalars | lists,
    lambda inner: st.dictionaries(st.sampled_from(NESTED_KEYS), inner, max_size=2),
    max_leaves=3,
)
logged_values = st.sampled_from([0.5, -1.0, math.nan, math.inf, -math.inf, None, True, False, 2])


@st.composite
def stored_runs(draw: st.DrawFn, count: int) -> list[StoredRun]:
    return [draw(stored_run(f"r{index}")) for index in range(count)]


@st.composite
def stored_run(draw: st.DrawFn, run_id: str) -> StoredRun:
    metric_names = draw(st.lists(st.sampled_from(METRICS), unique=True, max_size=2))
    return StoredRun(
        run_id=run_id,
        name=draw(st.sampled_from(NAMES)),
        state=draw(st.sampled_from(runs.STATES)),
        config=draw(st.dictionaries(st.sampled_from(CONFIG_KEYS), documents, max_size=3)),
        tags=draw(st.lists(st.sampled_from(TAGS), unique=True, max_size=2)),
        group=draw(st.sampled_from([None, "g1", "g2"])),
        created_at=draw(st.sampled_from(CREATED)),
        metrics={
            name: draw(st.lists(logged_values, min_size=1, max_size=3)) for name in metric_names
        },
        batch_size=draw(st.integers(1, 3)),
        summary=draw(st.dictionaries(st.sampled_from(METRICS), scalars | lists, max_size=1)),
    )


config_fields = st.builds(
    ConfigField,
    st.sampled_from(CONFIG_KEYS + ["missing"]).map(lambda key: (key,))
    | st.tuples(st.sampled_from(CONFIG_KEYS), st.sampled_from(NESTED_KEYS)),
)
summary_fields = st.builds(
    SummaryField,
    st.sampled_from(METRICS + ["absent"]),
    st.sampled_from([None, None, None, *NUMBER_STATISTICS, *FLAG_STATISTICS]),
)
fields: st.SearchStrategy[Field] = (
    config_fields | summary_fields | st.sampled_from(METADATA).map(MetadataField)
)
patterns = st.sampled_from(PATTERNS) | st.lists(
    st.sampled_from(PATTERNS + PATTERN_PARTS), min_size=1, max_size=3
).map("".join).filter(lambda pattern: _is_valid_pattern(pattern))
times = st.sampled_from(CREATED).map(Timestamp)


def _is_valid_pattern(pattern: str) -> bool:
    try:
        filters.regex.translate(pattern)
    except filters.RegexError:
        return False
    return True


def literal_types(field: Field) -> list[st.SearchStrategy[Literal]]:
    """Return one strategy per literal type that suits ``field``, each of a single type."""
    kind = field_type(field)
    if field == MetadataField("state"):
        return [st.sampled_from(STATES)]
    if field == MetadataField("name"):
        return [st.sampled_from(NAMES + ["sweep"])]
    if kind in (FieldType.TEXT, FieldType.TAGS):
        return [st.sampled_from(STRINGS + TAGS + ["g1"])]
    if kind is FieldType.TIME:
        return [times | st.sampled_from(CREATED)]
    numbers = (
        st.sampled_from(NUMBERS).map(float)
        | st.integers(-1, 1).map(float)
        | st.sampled_from(BIG_INTEGERS).map(float)
    )
    if kind is FieldType.NUMBER:
        return [numbers]
    if kind is FieldType.FLAG:
        return [st.booleans()]
    return [numbers, st.booleans(), st.sampled_from(STRINGS)]


@st.composite
def conditions(draw: st.DrawFn) -> Node:
    field = draw(fields)
    kind = field_type(field)
    literals = draw(st.sampled_from(literal_types(field)))
    shapes = ["exists", "null"]
    if kind is not FieldType.TAGS:
        shapes += ["compare", "compare", "in"]
    if kind in (FieldType.DOCUMENT, FieldType.TEXT, FieldType.TAGS):
        shapes += ["contains", "match"]
    if kind in (FieldType.DOCUMENT, FieldType.NUMBER):
        shapes += ["nan", "inf", "finite"]
    shape = draw(st.sampled_from(shapes))
    if shape == "exists":
        return Exists(field)
    if shape in ("null", "nan", "inf", "finite"):
        return Is(field, shape)
    if shape == "match":
        return Match(field, draw(patterns))
    if shape == "contains":
        return Contains(field, draw(literals))
    if shape == "in":
        values = draw(st.lists(literals, min_size=1, max_size=3))
        return Membership(field, tuple(values), draw(st.booleans()))
    value = draw(literals)
    operators = ["=", "!="] if isinstance(value, bool) else list(COMPARISON_OPERATORS)
    return Comparison(field, draw(st.sampled_from(operators)), value)


def _combine(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    operands = st.lists(children, min_size=2, max_size=3).map(tuple)
    return operands.map(And) | operands.map(Or) | children.map(Not)


filter_trees: st.SearchStrategy[Node] = st.recursive(conditions(), _combine, max_leaves=4)
