"""The SQL compiled from a filter and the in-memory predicate select the same runs.

Each example stores a population of one to five runs through the server's
storage functions, then checks several generated filters against it, on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from stored_runs import (
    Store,
    StoredRun,
    clear,
    read_runs,
    select_in_memory,
    select_with_sql,
    store_fixture,  # noqa: F401 (the fixture "store")
    store_runs,
)
from strategies import filter_trees, stored_runs

from assay_server import filters
from assay_server.filters.check import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_ESCAPED_KEYS,
    MAX_PATH_LENGTH,
)
from assay_server.filters.tree import Node

FILTERS_PER_POPULATION = 12


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    population=st.integers(1, 5).flatmap(stored_runs),
    trees=st.lists(filter_trees, min_size=FILTERS_PER_POPULATION, max_size=FILTERS_PER_POPULATION),
)
def test_sql_and_predicate_select_alike(
    store: Store, population: list[StoredRun], trees: list[Node]
) -> None:
    store.run(clear(store.db))
    store.run(store_runs(store.db, population))
    stored = store.run(read_runs(store.db))

    for tree in trees:
        text = filters.format_filter(tree)
        parsed = filters.parse_filter(text)
        assert parsed == tree, text
        by_sql = store.run(select_with_sql(store.db, parsed))
        in_memory = select_in_memory(parsed, stored)
        assert by_sql == in_memory, f"filter: {text}\nruns: {stored}"
        if not by_sql:
            event("filter selects no run")
        elif len(by_sql) == len(stored):
            event("filter selects every run")
        else:
            event("filter selects some runs")


def worst_case_field() -> str:
    """Return the longest config field, with as many escaped keys as allowed."""
    keys = [f'"k{index}é"' for index in range(MAX_ESCAPED_KEYS)]
    keys += [f"k{index}" for index in range(MAX_ESCAPED_KEYS, MAX_PATH_LENGTH)]
    return "config." + ".".join(keys)


@pytest.mark.parametrize("condition", ['contains "a"', '~ "^(a|b)+$"', "is null", "< 1"])
def test_deepest_filter_runs_on_database(store: Store, condition: str) -> None:
    # Each "not (… or" is two levels: the "not" and the parenthesis.
    levels = MAX_DEPTH // 2
    nested = "not (config.a = 1 or " * levels + f"{worst_case_field()} {condition}" + ")" * levels
    text = f"config.b = 1 or {nested}"
    tree = filters.parse_filter(text)
    store.run(clear(store.db))
    population = [StoredRun("r0", config={"a": 1}), StoredRun("r1", config={"a": 2})]
    store.run(store_runs(store.db, population))

    by_sql = store.run(select_with_sql(store.db, tree))

    assert by_sql == select_in_memory(tree, store.run(read_runs(store.db)))


def test_most_negations_run_on_database(store: Store) -> None:
    tree = filters.parse_filter("not " * MAX_DEPTH + f'{worst_case_field()} ~ "a"')
    store.run(clear(store.db))
    store.run(store_runs(store.db, [StoredRun("r0")]))

    # An even number of "not"s selects what the condition selects: nothing.
    assert store.run(select_with_sql(store.db, tree)) == []


def test_most_conditions_run_on_database(store: Store) -> None:
    kinds = [
        "summary.m{0} < 1",
        '{1} contains "a"',
        'summary."m{0}é" ~ "^(a|b)+$"',
        "summary.m{0}.max is finite",
    ]
    parts = [
        kinds[index % len(kinds)].format(index, worst_case_field())
        for index in range(MAX_CONDITIONS)
    ]
    tree = filters.parse_filter("not (" + " or ".join(parts) + ")")
    population = [StoredRun("r0", metrics={"m0": [0.5]}), StoredRun("r1")]
    store.run(clear(store.db))
    store.run(store_runs(store.db, population))

    by_sql = store.run(select_with_sql(store.db, tree))

    assert by_sql == select_in_memory(tree, store.run(read_runs(store.db)))
    assert by_sql == ["r1"]


# The table in docs/runsets.md: run id, then whether each condition selects it.
COMPARISON_TABLE = {
    "summary.loss < 0.1": ["small", "minus-inf"],
    "summary.loss != 0.1": ["small", "int", "inf", "minus-inf"],
    'summary.loss = "low"': ["text"],
    "summary.loss is null": ["null", "missing"],
    "summary.loss is not null": [
        "small",
        "int",
        "inf",
        "minus-inf",
        "nan",
        "text",
        "bool",
        "list",
    ],
    "summary.loss exists": [
        "small",
        "int",
        "inf",
        "minus-inf",
        "nan",
        "null",
        "text",
        "bool",
        "list",
    ],
    "summary.loss is nan": ["nan"],
    "summary.loss is inf": ["inf", "minus-inf"],
    "summary.loss is finite": ["small", "int"],
    "not (summary.loss < 0.1)": ["int", "inf", "nan", "null", "missing", "text", "bool", "list"],
}


@pytest.mark.parametrize(("text", "expected"), COMPARISON_TABLE.items())
def test_documented_comparison_table_holds(store: Store, text: str, expected: list[str]) -> None:
    logged = {
        "small": 0.05,
        "int": 2,
        "inf": math.inf,
        "minus-inf": -math.inf,
        "nan": math.nan,
        "null": None,
        "bool": True,
    }
    population = [StoredRun(run_id, metrics={"loss": [value]}) for run_id, value in logged.items()]
    population += [
        StoredRun("missing", metrics={"acc": [1.0]}),
        StoredRun("text", summary={"loss": "low"}),
        StoredRun("list", summary={"loss": [0.05]}),
    ]
    store.run(clear(store.db))
    store.run(store_runs(store.db, population))
    tree = filters.parse_filter(text)

    by_sql = store.run(select_with_sql(store.db, tree))

    assert by_sql == sorted(expected)
    assert select_in_memory(tree, store.run(read_runs(store.db))) == sorted(expected)
