"""The text form of filters: parsing, type checks, error positions and formatting."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from strategies import filter_trees

from assay_server import filters, runs
from assay_server.filters.check import MAX_CONDITIONS, MAX_DEPTH, STATES
from assay_server.filters.tree import (
    And,
    Comparison,
    ConfigField,
    Contains,
    Exists,
    Is,
    Match,
    Membership,
    MetadataField,
    Not,
    Or,
    SummaryField,
    Timestamp,
)

LOSS = SummaryField("loss")


def test_nan_or_null_parses_to_or() -> None:
    node = filters.parse_filter("summary.loss is nan or summary.loss is null")

    assert node == Or((Is(LOSS, "nan"), Is(LOSS, "null")))


def test_and_binds_tighter_than_or() -> None:
    node = filters.parse_filter("name = a or name = b and state = failed")

    assert isinstance(node, Or)
    assert node.operands[0] == Comparison(MetadataField("name"), "=", "a")
    assert node.operands[1] == And(
        (
            Comparison(MetadataField("name"), "=", "b"),
            Comparison(MetadataField("state"), "=", "failed"),
        )
    )


def test_parentheses_and_not_group() -> None:
    node = filters.parse_filter("not (config.lr >= 0.1 and config.batch_size < 32)")

    assert node == Not(
        And(
            (
                Comparison(ConfigField(("lr",)), ">=", 0.1),
                Comparison(ConfigField(("batch_size",)), "<", 32.0),
            )
        )
    )


def test_keywords_ignore_case() -> None:
    node = filters.parse_filter("NOT tags CONTAINS x AND name Is Null")

    assert node == And(
        (Not(Contains(MetadataField("tags"), "x")), Is(MetadataField("name"), "null"))
    )


def test_bare_words_are_strings() -> None:
    node = filters.parse_filter("state in (crashed, failed)")

    assert node == Membership(MetadataField("state"), ("crashed", "failed"))


def test_not_in_negates_membership() -> None:
    node = filters.parse_filter('config.optimizer not in ("adam", sgd)')

    assert node == Membership(ConfigField(("optimizer",)), ("adam", "sgd"), negated=True)


def test_nested_config_path_splits_on_dots() -> None:
    node = filters.parse_filter("config.optimizer.lr > 1e-3")

    assert node == Comparison(ConfigField(("optimizer", "lr")), ">", 0.001)


def test_quoted_keys_keep_dots_and_spaces() -> None:
    node = filters.parse_filter('config."a.b"."c d" = 1')

    assert node == Comparison(ConfigField(("a.b", "c d")), "=", 1.0)


def test_slash_needs_no_quotes() -> None:
    node = filters.parse_filter("summary.train/loss < 0.5")

    assert node == Comparison(SummaryField("train/loss"), "<", 0.5)


def test_statistics_follow_metric_name() -> None:
    node = filters.parse_filter("summary.loss.min < 0.1 and summary.loss.has_nan = true")

    assert node == And(
        (
            Comparison(SummaryField("loss", "min"), "<", 0.1),
            Comparison(SummaryField("loss", "has_nan"), "=", True),
        )
    )


def test_quoted_metric_with_dot_is_metric() -> None:
    node = filters.parse_filter('summary."loss.min" exists')

    assert node == Exists(SummaryField("loss.min"))


def test_infinities_are_number_literals() -> None:
    node = filters.parse_filter("summary.loss = inf or summary.loss = -inf")

    assert node == Or((Comparison(LOSS, "=", math.inf), Comparison(LOSS, "=", -math.inf)))


def test_is_not_wraps_in_not() -> None:
    node = filters.parse_filter("summary.loss is not finite")

    assert node == Not(Is(LOSS, "finite"))


def test_date_is_utc_midnight() -> None:
    node = filters.parse_filter("created_at <= 2026-12-03")

    expected = datetime(2026, 12, 3, tzinfo=UTC).timestamp()
    assert node == Comparison(MetadataField("created_at"), "<=", Timestamp(expected))


def test_datetime_offset_converts_to_utc() -> None:
    node = filters.parse_filter("heartbeat_at > 2026-12-03T10:30:00+02:00")

    expected = datetime(2026, 12, 3, 8, 30, tzinfo=UTC).timestamp()
    assert node == Comparison(MetadataField("heartbeat_at"), ">", Timestamp(expected))


def test_string_escapes_decode() -> None:
    node = filters.parse_filter(r'name = "a\"b\\c\n\u00e9"')

    assert node == Comparison(MetadataField("name"), "=", 'a"b\\c\né')


def test_regex_backslashes_need_no_doubling() -> None:
    node = filters.parse_filter(r'name ~ "^sweep\.\d+$"')

    assert node == Match(MetadataField("name"), r"^sweep\.\d+$")


def test_states_match_run_states() -> None:
    assert STATES == runs.STATES


@settings(max_examples=300, deadline=None)
@given(filter_trees)
def test_formatted_tree_parses_back(tree: filters.Node) -> None:
    text = filters.format_filter(tree)

    assert filters.parse_filter(text) == tree


@pytest.mark.parametrize(
    ("text", "column", "expected"),
    [
        ("config.lr >", 12, "a value"),
        ("config.lr 0.1", 11, "an operator"),
        ("(state = failed", 16, "')'"),
        ("state = failed or", 18, "a field"),
        ("name = 'x'", 8, "double quotes"),
        ('name = "abc', 8, "closing double quote"),
        ("config. = 1", 9, "a key"),
        ("config.lr = nan", 13, "'is nan'"),
        ("config.lr = null", 13, "'is null'"),
        ("summary.loss is empty", 17, "null, nan, inf or finite"),
        ("state not (a)", 11, "'in' after 'not'"),
        ("config.lr = 3abc", 14, "a number"),
        ("created_at < 2026-13-40", 14, "a real date"),
        ("config.lr = 1e999", 13, "a finite number"),
        ("name = a )", 10, "'and', 'or' or the end"),
        ("config.a in ()", 14, "a value"),
        ("name # 1", 6, "a field, an operator"),
    ],
)
def test_syntax_error_names_column(text: str, column: int, expected: str) -> None:
    with pytest.raises(filters.FilterSyntaxError) as caught:
        filters.parse_filter(text)

    assert caught.value.column == column
    assert expected in caught.value.expected
    assert f"at column {column}" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name < 3", "a string"),
        ("state = 1", "a string"),
        ("name = true", "a string"),
        ("created_at > abc", "a date"),
        ("summary.loss.min > abc", "a number"),
        ("summary.loss.has_nan = 1", "true or false"),
        ("config.flag < true", "= or !="),
        ("tags = baseline", "tags contains"),
        ("config.start = 2026-01-01", "dates suit"),
        ("name is nan", "'is null'"),
        ("created_at contains 1", "a config value"),
        ('summary.loss.min ~ "a"', "a config value"),
        ("config.a in (1, x)", "values of one type"),
        ("state = runing", "running, finished, failed, crashed"),
        ('config."$float" = 1', "another key"),
        ("name contains 3", "a string"),
    ],
)
def test_type_error_says_expected(text: str, expected: str) -> None:
    with pytest.raises(filters.FilterTypeError) as caught:
        filters.parse_filter(text)

    assert expected in caught.value.expected
    assert caught.value.column == 1


@pytest.mark.parametrize(
    ("text", "column"),
    [("foo.bar = 1", 1), ("state = a and metrics.x = 1", 15), ("summary.loss.mean > 1", 14)],
)
def test_unknown_field_is_rejected(text: str, column: int) -> None:
    with pytest.raises(filters.UnknownFieldError) as caught:
        filters.parse_filter(text)

    assert caught.value.column == column
    assert caught.value.code == "unknown_field"


def test_statistic_error_suggests_quoting() -> None:
    with pytest.raises(filters.UnknownFieldError) as caught:
        filters.parse_filter("summary.loss.ema > 1")

    assert 'summary."loss.min"' in caught.value.expected


def test_long_filter_is_rejected() -> None:
    text = "name = a or " * 10_000 + "name = b"

    with pytest.raises(filters.FilterTooLongError) as caught:
        filters.parse_filter(text)

    assert caught.value.code == "filter_too_long"
    assert "10,000 characters" in caught.value.expected


def test_deep_nesting_is_rejected() -> None:
    depth = MAX_DEPTH + 1
    text = "(" * depth + "name = a" + ")" * depth

    with pytest.raises(filters.FilterTooLongError) as caught:
        filters.parse_filter(text)

    assert caught.value.column == MAX_DEPTH + 1


def test_many_conditions_are_rejected() -> None:
    text = " or ".join(f"config.k{index} = 1" for index in range(MAX_CONDITIONS + 1))

    with pytest.raises(filters.FilterTooLongError) as caught:
        filters.parse_filter(text)

    assert f"at most {MAX_CONDITIONS} conditions" in caught.value.expected


def test_built_tree_is_checked() -> None:
    tree = Comparison(MetadataField("name"), "<", 3.0)

    with pytest.raises(filters.FilterTypeError):
        filters.check(tree)


def test_nan_literal_in_tree_rejected() -> None:
    tree = Comparison(ConfigField(("lr",)), "=", math.nan)

    with pytest.raises(filters.FilterTypeError):
        filters.check(tree)
