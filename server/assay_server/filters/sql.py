"""Compile a filter tree into a WHERE clause over ``runs``, for PostgreSQL or SQLite.

Every key, string and number of the filter reaches the database as a bound
parameter. Each condition compiles to an expression that is true or false,
never NULL (see ``sql_values.known``), so ``not`` selects exactly the runs that
its operand does not, as ``predicate.evaluate`` does.

Regular expressions run in PostgreSQL's own engine, and in SQLite through the
``assay_regexp`` function that ``prepare_connection`` registers, which runs
RE2 as ``predicate`` does.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable
from typing import Any

from sqlalchemy import Boolean, Double, Text, and_, exists, false, func, literal, not_, or_, text
from sqlalchemy.ext.asyncio import AsyncConnection

from assay_server import schema
from assay_server.filters import regex
from assay_server.filters.check import check
from assay_server.filters.errors import RegexError
from assay_server.filters.sql_values import (
    Expression,
    MetricValue,
    Preferred,
    SqlValue,
    known,
    metadata_value,
    postgres_lookup,
    sqlite_lookup,
    statistic_value,
)
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
    conditions,
)

log = logging.getLogger(__name__)

#: Name of the SQLite function that ``prepare_connection`` registers.
SQLITE_REGEXP = "assay_regexp"

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def to_sql(node: Node, dialect: str) -> Expression:
    """Compile ``node`` for ``dialect`` (``"postgresql"`` or ``"sqlite"``)."""
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"filters support postgresql and sqlite, not {dialect!r}")
    check(node)
    return _Compiler(dialect == "postgresql").compile(node)


def uses_regex(node: Node) -> bool:
    return any(isinstance(condition, Match) for condition in conditions(node))


async def prepare_connection(connection: AsyncConnection, node: Node) -> None:
    """Prepare ``connection`` for a filtered query over runs.

    On PostgreSQL, turn JIT compilation off for the current transaction. A
    filter over many runs has a high estimated cost, so PostgreSQL would
    JIT-compile it, which took 400 ms of a 750 ms query over 100,000 runs
    (PostgreSQL 15, ``bench/runsets.py first-query``).

    On SQLite, register ``assay_regexp`` when ``node`` needs it. Registration
    is per connection, and the server opens a new SQLite connection for each
    request, so this runs before each filtered query.
    """
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SET LOCAL jit = off"))
        return
    if connection.dialect.name != "sqlite" or not uses_regex(node):
        return
    raw = await connection.get_raw_connection()
    await raw.driver_connection.create_function(  # type: ignore[union-attr]
        SQLITE_REGEXP, 2, _sqlite_regexp, deterministic=True
    )


def _sqlite_regexp(pattern: object, text: object) -> int | None:
    # An exception here would fail the whole query, so anything else is no match.
    if not isinstance(pattern, str) or not isinstance(text, str):
        return None
    try:
        return int(regex.search(pattern, text))
    except RegexError:
        log.warning("%s got pattern %r, which the filter check rejects", SQLITE_REGEXP, pattern)
        return None


class _Compiler:
    def __init__(self, is_postgres: bool) -> None:
        self.is_postgres = is_postgres

    def compile(self, node: Node) -> Expression:
        if isinstance(node, And):
            return and_(*(self.compile(operand) for operand in node.operands))
        if isinstance(node, Or):
            return or_(*(self.compile(operand) for operand in node.operands))
        if isinstance(node, Not):
            return not_(self.compile(node.operand))
        value = self.value(node.field)
        if isinstance(node, Comparison):
            return self.compare(value, node.operator, node.value)
        if isinstance(node, Membership):
            return self.membership(value, node.values, node.negated)
        if isinstance(node, Contains):
            return self.contains(value, node.value)
        if isinstance(node, Match):
            return self.match(value, node.pattern)
        if isinstance(node, Is):
            return self.value_class(value, node.value_class)
        assert isinstance(node, Exists)
        return value.present()

    def value(self, field: Field) -> SqlValue:
        runs = schema.runs.c
        lookup = postgres_lookup if self.is_postgres else sqlite_lookup
        if isinstance(field, MetadataField):
            return metadata_value(field.name, self.is_postgres)
        if isinstance(field, ConfigField):
            return lookup(runs.config, field.path)
        if field.statistic is not None:
            return statistic_value(field.metric, field.statistic)
        return Preferred(lookup(runs.summary, (field.metric,)), MetricValue(field.metric))

    def typed(self, value: SqlValue, literal_value: Literal) -> tuple[Expression | None, Any]:
        """Return the accessor for the literal's type and the literal as a bound parameter."""
        if isinstance(literal_value, bool):
            return value.boolean(), literal(literal_value, Boolean())
        if isinstance(literal_value, str):
            text = value.text()
            if text is not None and self.is_postgres:
                # Byte order of UTF-8, which is code point order, as Python compares.
                text = text.collate("C")
            return text, literal(literal_value, Text())
        if isinstance(literal_value, Timestamp):
            return value.number(), literal(literal_value.seconds, Double())
        return value.number(), literal(float(literal_value), Double())

    def compare(self, value: SqlValue, operator_text: str, literal_value: Literal) -> Expression:
        accessor, bound = self.typed(value, literal_value)
        if accessor is None:
            return false()
        return known(_OPERATORS[operator_text](accessor, bound))

    def membership(
        self, value: SqlValue, values: tuple[Literal, ...], negated: bool
    ) -> Expression:
        accessor, _ = self.typed(value, values[0])
        if accessor is None:
            return false()
        bound = [self.typed(value, item)[1] for item in values]
        return known(accessor.not_in(bound) if negated else accessor.in_(bound))

    def contains(self, value: SqlValue, literal_value: Literal) -> Expression:
        found: list[Expression] = []
        if isinstance(literal_value, str):
            text = value.text()
            if text is not None:
                position = func.strpos if self.is_postgres else func.instr
                found.append(known(position(text, literal(literal_value, Text())) > 0))
        element = value.elements()
        if element is not None:
            found.append(exists().where(self.compare(element, "=", literal_value)))
        return or_(false(), *found)

    def match(self, value: SqlValue, pattern: str) -> Expression:
        found: list[Expression] = []
        text = value.text()
        if text is not None:
            found.append(self.regex(text, pattern))
        element = value.elements()
        element_text = None if element is None else element.text()
        if element_text is not None:
            found.append(exists().where(self.regex(element_text, pattern)))
        return or_(false(), *found)

    def regex(self, text: Expression, pattern: str) -> Expression:
        translated = regex.translate(pattern)
        matched: Expression
        if self.is_postgres:
            matched = text.op("~", return_type=Boolean())(literal(translated.postgres, Text()))
        else:
            # SQLITE_REGEXP translates the source pattern itself, as ``predicate`` does.
            matched = func.assay_regexp(literal(pattern, Text()), text, type_=Boolean())
        return known(matched)

    def value_class(self, value: SqlValue, value_class: str) -> Expression:
        if value_class == "null":
            return or_(not_(value.present()), value.is_null())
        if value_class == "nan":
            return value.is_nan()
        number = value.number()
        if number is None:
            return false()
        positive: Expression = literal(math.inf, Double())
        negative: Expression = literal(-math.inf, Double())
        if value_class == "inf":
            return known(or_(number == positive, number == negative))
        return known(and_(number > negative, number < positive))
