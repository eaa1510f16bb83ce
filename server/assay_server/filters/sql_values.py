"""SQL expressions that read one field of a run, for PostgreSQL and for SQLite.

A field's value is read through accessors that each return SQL for one
question: is the key present, is the value null, is it NaN, and its value as a
number, a string or a boolean. Each of the last three is NULL unless the value
has that type, so a comparison with a literal of another type yields NULL,
which the compiler turns into false. Numbers are read as float64 everywhere,
booleans are never numbers, and NaN and infinities are recognised in the
``{"$float": …}`` form that ``assay.protocol.tag_floats`` stores them in.

PostgreSQL reads JSONB with ``->`` (which returns NULL for a missing key or a
non-object) and ``jsonb_typeof``. SQLite reads JSON with ``json_type`` and
``json_extract`` for keys of printable ASCII other than ``"`` and ``\\``. SQLite
3.40 matches a path label against a key's text as stored, escapes included,
and the server stores JSON with non-ASCII characters escaped, so other keys are
found with ``json_each``, whose ``key`` column is unescaped.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Double,
    Text,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from assay_server import schema
from assay_server.filters.check import is_plain_key
from assay_server.schema import SQL_KIND_BOOL, SQL_KIND_NAN, SQL_KIND_NULL

Expression = ColumnElement[Any]


def _number(value: float) -> Expression:
    return literal(value, Double())


def _text(value: str) -> Expression:
    return literal(value, Text())


def known(expression: Expression) -> ColumnElement[bool]:
    """Turn SQL's unknown (NULL) into false, so that ``not`` inverts as in Python."""
    return func.coalesce(expression, false(), type_=Boolean())


class SqlValue(ABC):
    """Accessors of one field's value; see the module docstring."""

    @abstractmethod
    def present(self) -> Expression: ...

    @abstractmethod
    def is_null(self) -> Expression: ...

    @abstractmethod
    def is_nan(self) -> Expression: ...

    @abstractmethod
    def number(self) -> Expression | None: ...

    @abstractmethod
    def text(self) -> Expression | None: ...

    @abstractmethod
    def boolean(self) -> Expression | None: ...

    def elements(self) -> SqlValue | None:
        """Return the value of one element of a list, for use inside ``EXISTS``."""
        return None


class PostgresJson(SqlValue):
    """A JSONB value; SQL NULL when the key is missing."""

    def __init__(self, value: Expression) -> None:
        self.value = value
        self.kind = func.jsonb_typeof(value, type_=Text())

    def _scalar_text(self) -> Expression:
        # #>> with an empty path returns a JSON scalar as text, unquoted.
        return self.value.op("#>>", return_type=Text())(literal([], ARRAY(Text())))

    def _is_tag(self, token: str) -> Expression:
        return self.value == literal({"$float": token}, JSONB())

    def present(self) -> Expression:
        return self.value.is_not(None)

    def is_null(self) -> Expression:
        return known(self.kind == "null")

    def is_nan(self) -> Expression:
        return known(self._is_tag("NaN"))

    def number(self) -> Expression:
        return case(
            (self.kind == "number", cast(self._scalar_text(), Double())),
            (self._is_tag("Infinity"), _number(math.inf)),
            (self._is_tag("-Infinity"), _number(-math.inf)),
        )

    def text(self) -> Expression:
        return case((self.kind == "string", self._scalar_text()))

    def boolean(self) -> Expression:
        return case((self.kind == "boolean", self._scalar_text() == "true"))

    def elements(self) -> SqlValue:
        array = case((self.kind == "array", self.value))
        return PostgresJson(func.jsonb_array_elements(array, type_=JSONB()).column_valued())


class SqliteJson(SqlValue):
    """A value read by ``json_each``: its JSON type name (NULL when missing) and SQL value.

    ``json_each`` returns objects as minified JSON text, so a stored
    ``{"$float": "NaN"}`` reads as ``{"$float":"NaN"}``.
    """

    def __init__(self, kind: Expression, value: Expression) -> None:
        self.kind = kind
        self.value = value

    def _is_tag(self, token: str) -> Expression:
        return and_(self.kind == "object", self.value == _text(f'{{"$float":"{token}"}}'))

    def present(self) -> Expression:
        return self.kind.is_not(None)

    def is_null(self) -> Expression:
        return known(self.kind == "null")

    def is_nan(self) -> Expression:
        return known(self._is_tag("NaN"))

    def number(self) -> Expression:
        return case(
            (self.kind.in_(["integer", "real"]), cast(self.value, Double())),
            (self._is_tag("Infinity"), _number(math.inf)),
            (self._is_tag("-Infinity"), _number(-math.inf)),
        )

    def text(self) -> Expression:
        return case((self.kind == "text", self.value))

    def boolean(self) -> Expression:
        return case((self.kind == "true", true()), (self.kind == "false", false()))

    def elements(self) -> SqlValue:
        entries = func.json_each(case((self.kind == "array", self.value))).table_valued(
            "value", "type"
        )
        return SqliteJson(entries.c.type, entries.c.value)


class MetricValue(SqlValue):
    """A metric's last logged value, read from ``metrics`` as ``runs.sql_value`` reads it."""

    def __init__(self, metric: str) -> None:
        self.exists = _metric_column(schema.metrics.c.id, metric).is_not(None)
        self.kind = func.coalesce(_metric_column(schema.metrics.c.last_kind, metric), 0)
        self.value = _metric_column(schema.metrics.c.last_value, metric)

    def present(self) -> Expression:
        return self.exists

    def is_null(self) -> Expression:
        return and_(
            self.exists,
            self.kind != SQL_KIND_NAN,
            or_(self.kind == SQL_KIND_NULL, self.value.is_(None)),
        )

    def is_nan(self) -> Expression:
        return self.kind == SQL_KIND_NAN

    def number(self) -> Expression:
        special = (SQL_KIND_NULL, SQL_KIND_BOOL, SQL_KIND_NAN)
        return case((self.kind.not_in(special), self.value))

    def text(self) -> None:
        return None

    def boolean(self) -> Expression:
        return case((self.kind == SQL_KIND_BOOL, self.value != 0))


class Preferred(SqlValue):
    """``first`` where its key is present, otherwise ``second``: a summary key over a metric."""

    def __init__(self, first: SqlValue, second: SqlValue) -> None:
        self.first = first
        self.second = second
        self.first_present = first.present()

    def _pick(self, first: Expression | None, second: Expression | None) -> Expression | None:
        if first is None and second is None:
            return None
        return case((self.first_present, first), else_=second)

    def present(self) -> Expression:
        return or_(self.first_present, self.second.present())

    def is_null(self) -> Expression:
        return case((self.first_present, self.first.is_null()), else_=self.second.is_null())

    def is_nan(self) -> Expression:
        return case((self.first_present, self.first.is_nan()), else_=self.second.is_nan())

    def number(self) -> Expression | None:
        return self._pick(self.first.number(), self.second.number())

    def text(self) -> Expression | None:
        return self._pick(self.first.text(), self.second.text())

    def boolean(self) -> Expression | None:
        return self._pick(self.first.boolean(), self.second.boolean())

    def elements(self) -> SqlValue | None:
        # Metrics hold no lists, and a missing first value has no elements.
        return self.first.elements()


class ColumnValue(SqlValue):
    """A typed column: run metadata, or a metric statistic."""

    def __init__(self, column: Expression, kind: str, present: Expression | None = None) -> None:
        self.column = column
        self.kind = kind
        self._present = true() if present is None else present

    def present(self) -> Expression:
        return self._present

    def is_null(self) -> Expression:
        return and_(self._present, self.column.is_(None))

    def is_nan(self) -> Expression:
        return false()

    def number(self) -> Expression | None:
        return self.column if self.kind == "number" else None

    def text(self) -> Expression | None:
        return self.column if self.kind == "text" else None

    def boolean(self) -> Expression | None:
        return self.column if self.kind == "boolean" else None


def _metric_column(column: Any, metric: str) -> Expression:
    return (
        select(column)
        .where(schema.metrics.c.run_pk == schema.runs.c.pk, schema.metrics.c.key == _text(metric))
        .scalar_subquery()
    )


def statistic_value(metric: str, statistic: str) -> SqlValue:
    column = {
        "min": schema.metrics.c.min_value,
        "max": schema.metrics.c.max_value,
        "has_nan": schema.metrics.c.has_nan,
        "has_inf": schema.metrics.c.has_inf,
        "has_null": schema.metrics.c.has_null,
    }[statistic]
    kind = "number" if statistic in ("min", "max") else "boolean"
    exists = _metric_column(schema.metrics.c.id, metric).is_not(None)
    return ColumnValue(_metric_column(column, metric), kind, exists)


def postgres_lookup(document: Expression, path: tuple[str, ...]) -> SqlValue:
    value = document
    for key in path:
        value = value.op("->", return_type=JSONB())(_text(key))
    return PostgresJson(value)


def sqlite_lookup(document: Expression, path: tuple[str, ...]) -> SqlValue:
    """Read ``path`` through nested objects.

    Runs of plain keys become one JSON path. Each other key is matched in a
    nested ``json_each`` subquery over its parent object, so
    ``check.MAX_ESCAPED_KEYS`` bounds their number.
    """
    parent = document
    prefix = "$"
    for key in path[:-1]:
        if is_plain_key(key):
            prefix += f'."{key}"'
            continue
        entries = func.json_each(parent, _text(prefix)).table_valued("key", "value", "type")
        parent = (
            select(entries.c.value)
            .where(entries.c.key == _text(key), entries.c.type == "object")
            .scalar_subquery()
        )
        prefix = "$"
    last = path[-1]
    if is_plain_key(last):
        full_path = _text(f'{prefix}."{last}"')
        return SqliteJson(
            func.json_type(parent, full_path, type_=Text()), func.json_extract(parent, full_path)
        )
    entries = func.json_each(parent, _text(prefix)).table_valued("key", "value", "type")
    kind = select(entries.c.type).where(entries.c.key == _text(last)).scalar_subquery()
    value = select(entries.c.value).where(entries.c.key == _text(last)).scalar_subquery()
    return SqliteJson(kind, value)


def metadata_value(name: str, is_postgres: bool) -> SqlValue:
    runs = schema.runs.c
    if name == "tags":
        if is_postgres:
            return PostgresJson(runs.tags)
        return SqliteJson(_text("array"), runs.tags)
    columns = {
        "name": (runs.name, "text"),
        "state": (runs.state, "text"),
        "id": (runs.run_id, "text"),
        "group": (runs.group_name, "text"),
        "created_at": (runs.created_at, "number"),
        "heartbeat_at": (runs.heartbeat_at, "number"),
        "finished_at": (runs.finished_at, "number"),
    }
    column, kind = columns[name]
    return ColumnValue(column, kind)
