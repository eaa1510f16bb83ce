"""The run-set document: a plain JSON object, checked field by field.

A run set is stored, sent and (later) kept inside report documents as the same
object, described in ``docs/runsets.md``::

    {"id": "3f9a0c1b2d4e", "name": "diverged", "filter": "summary.loss is nan",
     "grouping": {"keys": ["config.lr"], "aggregate": "mean", "band": "std"},
     "sort": {"field": "created_at", "direction": "desc"},
     "colour": "#d62728", "active": true, "position": 0}

Nothing here touches the database, so the same checks serve the HTTP API and
any other holder of run sets.
"""

from __future__ import annotations

import re
from typing import Any

from assay_server import filters
from assay_server.errors import BadRequest
from assay_server.filters.tree import ConfigField, Exists, MetadataField, SummaryField

AGGREGATES = ("mean", "median", "min", "max")
#: ``std`` is the sample standard deviation, ``stderr`` the standard error of
#: the mean, ``minmax`` the range from minimum to maximum.
BANDS = ("std", "stderr", "minmax", "none")
DIRECTIONS = ("asc", "desc")
#: Metadata a run set may group by; times would make a group per run.
GROUP_METADATA = ("name", "state", "id", "group", "tags")
MAX_NAME_LENGTH = 128
MAX_GROUP_KEYS = 5
COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
#: Colours given to new run sets in turn (plotly's default qualitative palette).
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
#: The fields a client may set; ``id`` and ``position`` are the server's.
EDITABLE = ("name", "filter", "grouping", "sort", "colour", "active")


def default_runset(name: str, position: int) -> dict[str, Any]:
    """Return a run set that selects every run, ungrouped, newest first."""
    return {
        "name": name,
        "filter": "",
        "grouping": {"keys": [], "aggregate": "mean", "band": "std"},
        "sort": {"field": "created_at", "direction": "desc"},
        "colour": PALETTE[position % len(PALETTE)],
        "active": True,
    }


def check_changes(body: Any, max_filter_length: int) -> dict[str, Any]:
    """Return the editable fields of ``body``, each checked; raise ``BadRequest`` otherwise.

    Fields that ``body`` leaves out are left out of the result, so the same
    check serves creation (over ``default_runset``) and partial updates.
    """
    if not isinstance(body, dict):
        raise BadRequest(
            'a run set must be a JSON object, such as {"name": "diverged"}',
            code="invalid_runset",
        )
    unknown = sorted(set(body) - set(EDITABLE) - {"id", "position"})
    if unknown:
        raise BadRequest(
            f"unknown run-set field {unknown[0]!r}; the fields are {', '.join(EDITABLE)}",
            code="invalid_runset",
        )
    checks = {
        "name": check_name,
        "grouping": check_grouping,
        "sort": check_sort,
        "colour": check_colour,
        "active": check_active,
    }
    changes: dict[str, Any] = {}
    for field, value in body.items():
        if field == "filter":
            changes[field] = check_filter(value, max_filter_length)
        elif field in checks:
            changes[field] = checks[field](value)
    return changes


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(
            f"run-set 'name' must be a non-blank string, got {value!r:.60}",
            code="invalid_runset",
        )
    # Control characters are checked before the spaces around the name are
    # trimmed, so that a trailing newline is rejected rather than dropped.
    name = value.strip(" ")
    control = any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in value)
    if len(name) > MAX_NAME_LENGTH or control:
        raise BadRequest(
            f"run-set 'name' must have 1 to {MAX_NAME_LENGTH} characters and no control "
            f"characters, got {name!r:.60}",
            code="invalid_runset",
        )
    return name


def check_filter(value: Any, max_filter_length: int) -> str:
    """Return the filter text when it parses; an empty text selects every run."""
    if not isinstance(value, str):
        raise BadRequest(
            f"run-set 'filter' must be a string in the filter language, got {value!r:.60}",
            code="invalid_runset",
        )
    parse_optional(value, max_filter_length)
    return value


def parse_optional(text: str, max_filter_length: int) -> filters.Node | None:
    """Parse ``text``; return None for a blank one, which selects every run.

    Raises ``BadRequest`` with the filter error's code, message and column.
    """
    if not text.strip():
        return None
    try:
        return filters.parse_filter(text, max_filter_length)
    except filters.FilterError as exc:
        raise FilterRejected(exc) from None


class FilterRejected(BadRequest):
    """A run-set or query filter that ``filters.parse_filter`` rejected."""

    def __init__(self, error: filters.FilterError) -> None:
        super().__init__(f"invalid filter: {error}", code=error.code)
        self.column = error.column


def check_grouping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) - {"keys", "aggregate", "band"}:
        raise BadRequest(
            "run-set 'grouping' must be an object with 'keys', 'aggregate' and 'band', "
            f"got {value!r:.80}",
            code="invalid_runset",
        )
    keys = value.get("keys", [])
    if not isinstance(keys, list) or len(keys) > MAX_GROUP_KEYS:
        raise BadRequest(
            f"grouping 'keys' must be a list of at most {MAX_GROUP_KEYS} fields, got {keys!r:.80}",
            code="invalid_runset",
        )
    aggregate = value.get("aggregate", "mean")
    if aggregate not in AGGREGATES:
        raise BadRequest(
            f"grouping 'aggregate' must be one of {', '.join(AGGREGATES)}, got {aggregate!r:.40}",
            code="invalid_runset",
        )
    band = value.get("band", "std")
    if band not in BANDS:
        raise BadRequest(
            f"grouping 'band' must be one of {', '.join(BANDS)}, got {band!r:.40}",
            code="invalid_runset",
        )
    return {"keys": [check_group_key(key) for key in keys], "aggregate": aggregate, "band": band}


def check_group_key(key: Any) -> str:
    field = _field(key, "grouping key")
    if isinstance(field, ConfigField):
        return str(key)
    if isinstance(field, MetadataField) and field.name in GROUP_METADATA:
        return str(key)
    raise BadRequest(
        f"cannot group by {key!r:.60}; group by config.KEY or one of {', '.join(GROUP_METADATA)}",
        code="invalid_runset",
    )


def check_sort(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or set(value) != {"field", "direction"}:
        raise BadRequest(
            "run-set 'sort' must be an object with 'field' and 'direction', such as "
            f'{{"field": "summary.loss", "direction": "asc"}}, got {value!r:.80}',
            code="invalid_runset",
        )
    _field(value["field"], "sort field")
    if value["direction"] not in DIRECTIONS:
        raise BadRequest(
            f"sort 'direction' must be asc or desc, got {value['direction']!r:.40}",
            code="invalid_runset",
        )
    return {"field": value["field"], "direction": value["direction"]}


def _field(text: Any, what: str) -> ConfigField | SummaryField | MetadataField:
    """Parse ``text`` as a filter field, such as ``config.lr`` or ``state``."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(
            f"{what} must be a field such as config.lr, got {text!r:.60}", code="invalid_runset"
        )
    try:
        node = filters.parse_filter(f"{text} exists")
    except filters.FilterError as exc:
        raise BadRequest(
            f"invalid {what} {text!r:.60}: {exc.problem}; expected a field such as config.lr, "
            "summary.loss or state",
            code="invalid_runset",
        ) from None
    if not isinstance(node, Exists):
        raise BadRequest(
            f"invalid {what} {text!r:.60}: expected one field such as config.lr, "
            "summary.loss or state",
            code="invalid_runset",
        )
    return node.field


def check_colour(value: Any) -> str:
    if not isinstance(value, str) or not COLOUR.fullmatch(value):
        raise BadRequest(
            f"run-set 'colour' must be a hex colour such as \"#d62728\", got {value!r:.40}",
            code="invalid_runset",
        )
    return value.lower()


def check_active(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(
            f"run-set 'active' must be true or false, got {value!r:.40}", code="invalid_runset"
        )
    return value
