"""Errors raised for a filter that cannot be parsed, type-checked or run."""

from __future__ import annotations


def quoted(text: str, limit: int = 40) -> str:
    """Return ``repr(text)``, cut to ``limit`` characters, for echoing input in a message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


class FilterError(ValueError):
    """A filter that is rejected before it reaches the database.

    ``column`` is the 1-based position in the filter text where the problem
    starts (0 for a tree built in code), ``expected`` describes what would have been
    valid there, and ``code`` is the error code the HTTP API returns.
    """

    code = "invalid_filter"

    def __init__(self, problem: str, column: int, expected: str) -> None:
        where = f" at column {column}" if column else ""
        super().__init__(f"{problem}{where}: expected {expected}")
        self.problem = problem
        self.column = column
        self.expected = expected


class FilterSyntaxError(FilterError):
    """The text does not follow the grammar."""


class FilterTypeError(FilterError):
    """A value or operator that does not suit the field, such as ``name < 3``."""

    code = "filter_type_mismatch"


class UnknownFieldError(FilterError):
    """A field that is neither run metadata nor under ``config.`` or ``summary.``."""

    code = "unknown_field"


class RegexError(FilterError):
    """A regular expression outside the supported subset, or too large."""

    code = "invalid_regex"


class FilterTooLongError(FilterError):
    """A filter text over ``MAX_FILTER_LENGTH`` characters, or with too many parts."""

    code = "filter_too_long"
