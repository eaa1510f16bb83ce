"""Run-set sorting, grouping and per-step aggregation, against values computed by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from assay_server import grouping

NAN = math.nan
INF = math.inf


def run(run_id: str, **config: Any) -> dict[str, Any]:
    return {"id": run_id, "name": run_id, "state": "finished", "config": config, "summary": {}}


def ids(runs: list[dict[str, Any]]) -> list[str]:
    return [one["id"] for one in runs]


def aggregate_one_step(values: list[float], method: str, band: str) -> grouping.GroupSeries:
    """Aggregate one value per run, each logged at step 0."""
    return grouping.aggregate(
        [np.array([0])] * len(values),
        [np.array([0.0])] * len(values),
        [np.array([value]) for value in values],
        method,
        band,
    )


@pytest.mark.parametrize(
    ("method", "expected"),
    [("mean", 2.5), ("median", 2.5), ("min", 1.0), ("max", 4.0)],
)
def test_aggregate_of_four_values(method: str, expected: float) -> None:
    series = aggregate_one_step([4.0, 1.0, 3.0, 2.0], method, "none")

    assert series.centre.tolist() == [expected]
    assert series.counts.tolist() == [4]
    assert series.left_out.tolist() == [0]


def test_median_of_odd_count() -> None:
    series = aggregate_one_step([5.0, 1.0, 2.0], "median", "none")

    assert series.centre.tolist() == [2.0]


def test_std_band_is_sample_deviation() -> None:
    # Values 1, 2, 3, 4: mean 2.5, squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5,
    # sample variance 5 / 3, so the deviation is sqrt(5/3) = 1.2909944487358056.
    series = aggregate_one_step([1.0, 2.0, 3.0, 4.0], "mean", "std")

    assert series.lower[0] == pytest.approx(2.5 - 1.2909944487358056)
    assert series.upper[0] == pytest.approx(2.5 + 1.2909944487358056)


def test_stderr_band_divides_by_root_n() -> None:
    # sqrt(5/3) / sqrt(4) = 0.6454972243679028.
    series = aggregate_one_step([1.0, 2.0, 3.0, 4.0], "mean", "stderr")

    assert series.lower[0] == pytest.approx(2.5 - 0.6454972243679028)
    assert series.upper[0] == pytest.approx(2.5 + 0.6454972243679028)


def test_band_surrounds_median_line() -> None:
    # Values 1, 2, 9: median 2; mean 4, deviations 9 + 4 + 25 = 38, variance 19.
    series = aggregate_one_step([1.0, 2.0, 9.0], "median", "std")

    assert series.centre[0] == 2.0
    assert series.lower[0] == pytest.approx(2.0 - math.sqrt(19))
    assert series.upper[0] == pytest.approx(2.0 + math.sqrt(19))


def test_minmax_band_spans_values() -> None:
    series = aggregate_one_step([3.0, -1.0, 7.0], "mean", "minmax")

    assert series.centre[0] == 3.0
    assert series.lower[0] == -1.0
    assert series.upper[0] == 7.0


def test_std_band_needs_two_values() -> None:
    series = aggregate_one_step([3.0], "mean", "std")

    assert series.centre[0] == 3.0
    assert math.isnan(series.lower[0])
    assert math.isnan(series.upper[0])


def test_nan_inf_and_null_are_left_out() -> None:
    # Null arrives as NaN (see runset_figures.group_series); the four kinds are
    # all left out and counted, and only 2.0 and 4.0 are aggregated.
    series = aggregate_one_step([2.0, NAN, INF, -INF, 4.0], "mean", "minmax")

    assert series.centre.tolist() == [3.0]
    assert series.lower.tolist() == [2.0]
    assert series.upper.tolist() == [4.0]
    assert series.counts.tolist() == [2]
    assert series.left_out.tolist() == [3]


def test_infinity_does_not_reach_min_or_max() -> None:
    low = aggregate_one_step([1.0, -INF], "min", "none")
    high = aggregate_one_step([1.0, INF], "max", "none")

    assert low.centre.tolist() == [1.0]
    assert high.centre.tolist() == [1.0]


def test_step_without_finite_value_is_gap() -> None:
    series = aggregate_one_step([NAN, INF], "mean", "minmax")

    assert math.isnan(series.centre[0])
    assert math.isnan(series.lower[0])
    assert series.counts.tolist() == [0]
    assert series.left_out.tolist() == [2]


def test_runs_with_different_steps() -> None:
    # Run a logs steps 0, 10, 20 and run b logs 10, 20, 30.
    series = grouping.aggregate(
        [np.array([0, 10, 20]), np.array([10, 20, 30])],
        [np.array([0.0, 10.0, 20.0]), np.array([10.0, 20.0, 30.0])],
        [np.array([1.0, 2.0, 3.0]), np.array([4.0, 6.0, 8.0])],
        "mean",
        "minmax",
    )

    assert series.steps.tolist() == [0, 10, 20, 30]
    assert series.centre.tolist() == [1.0, 3.0, 4.5, 8.0]
    assert series.lower.tolist() == [1.0, 2.0, 3.0, 8.0]
    assert series.upper.tolist() == [1.0, 4.0, 6.0, 8.0]
    assert series.counts.tolist() == [1, 2, 2, 1]


def test_group_x_is_mean_of_runs_x() -> None:
    series = grouping.aggregate(
        [np.array([5]), np.array([5])],
        [np.array([100.0]), np.array([300.0])],
        [np.array([1.0]), np.array([1.0])],
        "mean",
        "none",
    )

    assert series.x.tolist() == [200.0]


def test_aggregate_of_no_runs_is_empty() -> None:
    series = grouping.aggregate([], [], [], "mean", "std")

    assert series.steps.tolist() == []
    assert series.centre.tolist() == []


def test_sort_numbers_then_blanks_last() -> None:
    runs = [
        run("missing"),
        run("nan", lr=NAN),
        run("two", lr=2),
        run("null", lr=None),
        run("inf", lr=INF),
        run("half", lr=0.5),
        run("text", lr="high"),
    ]

    ascending = grouping.sort_runs(runs, "config.lr", "asc")
    descending = grouping.sort_runs(runs, "config.lr", "desc")

    assert ids(ascending) == ["half", "two", "inf", "text", "missing", "nan", "null"]
    assert ids(descending) == ["text", "inf", "two", "half", "missing", "nan", "null"]


def test_sort_keeps_ties_in_order() -> None:
    runs = [run("a", lr=1), run("b", lr=1.0), run("c", lr=0)]

    assert ids(grouping.sort_runs(runs, "config.lr", "asc")) == ["c", "a", "b"]
    assert ids(grouping.sort_runs(runs, "config.lr", "desc")) == ["a", "b", "c"]


def test_sort_by_statistic_reads_stats() -> None:
    runs = [run("a"), run("b")]
    stats = {"a": {"loss": {"min": 0.5}}, "b": {"loss": {"min": 0.1}}}

    assert ids(grouping.sort_runs(runs, "summary.loss.min", "asc", stats)) == ["b", "a"]


def test_groups_by_two_keys_in_value_order() -> None:
    runs = [
        run("a", lr=0.1, bs=16),
        run("b", lr=0.01, bs=16),
        run("c", lr=0.1, bs=8),
        run("d", lr=0.1, bs=16),
    ]

    groups = grouping.group_runs(runs, ["config.lr", "config.bs"])

    assert [group.label for group in groups] == [
        "config.lr=0.01, config.bs=16",
        "config.lr=0.1, config.bs=8",
        "config.lr=0.1, config.bs=16",
    ]
    assert [ids(group.runs) for group in groups] == [["b"], ["c"], ["a", "d"]]


def test_equal_numbers_share_a_group() -> None:
    groups = grouping.group_runs([run("a", bs=1), run("b", bs=1.0)], ["config.bs"])

    assert len(groups) == 1
    assert ids(groups[0].runs) == ["a", "b"]


def test_nan_null_and_missing_are_separate_groups() -> None:
    runs = [run("m"), run("n", lr=None), run("x", lr=NAN), run("v", lr=0.1), run("i", lr=INF)]

    groups = grouping.group_runs(runs, ["config.lr"])

    assert [group.label for group in groups] == [
        "config.lr=0.1",
        "config.lr=+Inf",
        "config.lr=NaN",
        "config.lr=null",
        "config.lr=missing",
    ]


def test_group_by_metadata_and_text() -> None:
    runs = [run("a", opt="sgd"), run("b", opt="adam"), run("c", opt="sgd")]
    runs[1]["state"] = "crashed"

    by_text = grouping.group_runs(runs, ["config.opt"])
    by_state = grouping.group_runs(runs, ["state"])

    assert [group.label for group in by_text] == ["config.opt=adam", "config.opt=sgd"]
    assert [group.label for group in by_state] == ["state=crashed", "state=finished"]
