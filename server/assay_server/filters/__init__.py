"""Run-set filters: a small language that selects runs by config, summary and metadata.

``parse_filter`` turns text such as ``config.lr >= 0.1 and state = finished``
into a checked tree (``tree``); ``to_sql`` compiles that tree into a WHERE
clause over ``runs`` and ``evaluate`` tests one run in memory, with the same
result. docs/runsets.md describes the language.
"""

from assay_server.filters.check import check
from assay_server.filters.errors import (
    FilterError,
    FilterSyntaxError,
    FilterTooLongError,
    FilterTypeError,
    RegexError,
    UnknownFieldError,
)
from assay_server.filters.formatter import format_filter
from assay_server.filters.parser import MAX_FILTER_LENGTH, parse_filter
from assay_server.filters.predicate import compile_predicate, evaluate
from assay_server.filters.sql import prepare_connection, to_sql
from assay_server.filters.tree import Node

__all__ = [
    "MAX_FILTER_LENGTH",
    "FilterError",
    "FilterSyntaxError",
    "FilterTooLongError",
    "FilterTypeError",
    "Node",
    "RegexError",
    "UnknownFieldError",
    "check",
    "compile_predicate",
    "evaluate",
    "format_filter",
    "parse_filter",
    "prepare_connection",
    "to_sql",
]
