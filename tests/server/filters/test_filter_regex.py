"""The regular-expression subset: what it accepts, and that PostgreSQL and RE2 agree on it."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import PATTERN_PARTS, PATTERNS

from assay_server import filters
from assay_server.filters.regex import MAX_PATTERN_LENGTH, search, translate


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("^sweep-", "sweep-3", True),
        ("^sweep-", "a sweep-3", False),
        ("a.b", "a\nb", True),
        ("b$", "ab\n", False),
        (r"\d+\.\d", "lr 0.5", True),
        (r"\w", "é", False),
        (r"\s", "\x0b", True),
        ("[^a]", "\n", True),
        ("[a-c]{2,3}", "xbcx", True),
        (r"\(x\)", "(x)", True),
        ("(?:ab|cd)+$", "abcd", True),
        ("", "anything", True),
    ],
)
def test_subset_matches_as_documented(pattern: str, text: str, matches: bool) -> None:
    assert search(pattern, text) is matches


def test_classes_expand_to_ascii() -> None:
    translated = translate(r"\d\W[\s-]")

    assert translated.postgres == "[0-9][^0-9A-Za-z_][\t\n\x0b\x0c\r \\-]"
    assert translated.re2 == "(?s)" + translated.postgres


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"(a)\1", r"unsupported escape \1"),
        (r"\bword", r"unsupported escape \b"),
        ("(?=a)", "unsupported group"),
        ("(?i)a", "unsupported group"),
        ("[[:alpha:]]", "'[' inside a class"),
        ("a**", "a quantifier after a quantifier"),
        ("a*?", "a quantifier after a quantifier"),
        ("*a", "nothing to repeat"),
        ("^*", "nothing to repeat"),
        ("a{101}", "repetition count too large"),
        ("a{3,2}", "n below m"),
        ("a{x}", "invalid repetition"),
        ("(a", "missing ')'"),
        ("a)", "unbalanced ')'"),
        ("[a", "missing ']'"),
        ("[]", "empty class"),
        ("[z-a]", "runs backwards"),
        ("a\\", "ends with a backslash"),
        ("(a{100}){11}", "expands to"),
    ],
)
def test_unsupported_pattern_is_rejected(pattern: str, problem: str) -> None:
    with pytest.raises(filters.RegexError) as caught:
        translate(pattern)

    assert problem in caught.value.problem


def test_long_pattern_is_rejected() -> None:
    with pytest.raises(filters.RegexError) as caught:
        translate("a" * (MAX_PATTERN_LENGTH + 1))

    assert f"at most {MAX_PATTERN_LENGTH} characters" in caught.value.expected


def test_filter_regex_error_points_at_condition() -> None:
    with pytest.raises(filters.RegexError) as caught:
        filters.parse_filter(r'state = failed and name ~ "(x)\1"')

    assert caught.value.column == 20
    assert "at its character 4" in caught.value.problem


def test_nested_quantifier_runs_linear() -> None:
    # Python's re backtracks for ever on this pattern and text; RE2 does not.
    assert search("(a+)+$", "a" * 100_000 + "!") is False


@pytest.fixture
def postgres(postgres_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        yield connection


patterns = st.lists(st.sampled_from(PATTERNS + PATTERN_PARTS), min_size=1, max_size=4).map("".join)
texts = st.text(alphabet="ab.-/ é1\n_sx(", max_size=8)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pattern=patterns, text=texts)
def test_postgres_and_re2_agree(postgres: psycopg.Connection, pattern: str, text: str) -> None:
    try:
        translated = translate(pattern)
    except filters.RegexError:
        return
    row = postgres.execute("SELECT %s::text ~ %s::text", (text, translated.postgres)).fetchone()

    assert row is not None
    assert row[0] is search(pattern, text), (pattern, text)
