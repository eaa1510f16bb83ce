"""The schema of a report's Yjs document, and the server's edits to it.

A document has two top-level types: the Y.Text ``title`` and the Y.Array
``blocks`` of Y.Map blocks, each with a string ``type`` and a string ``id``.
``check_document`` raises ``SchemaError`` for anything else, so the room can
validate a client's update on a shadow copy before it reaches the real
document. This module uses only pycrdt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pycrdt import Array, Doc, Map, Text

from assay_server import runset_shape
from assay_server.errors import BadRequest
from assay_server.layouts import check_layout

TITLE = "title"
BLOCKS = "blocks"
ROOTS = (TITLE, BLOCKS)
BLOCK_TYPES = ("markdown", "heading", "panel_grid")
MAX_ID_LENGTH = 64
MAX_TITLE_LENGTH = 500
MAX_HEADING_LEVEL = 6
RUN_SET_FIELDS = ("id", "name", "filter", "grouping", "sort", "colour", "active", "frozen")


class SchemaError(ValueError):
    """A document that breaks the report schema; the message names the place."""


def check_document(doc: Doc[Any]) -> None:
    """Raise ``SchemaError`` unless ``doc`` follows the report schema."""
    blocks = check_roots(doc)
    ids: set[str] = set()
    for index, block in enumerate(blocks):
        check_block(block, f"blocks[{index}]", ids)


def check_blocks(doc: Doc[Any], indices: set[int]) -> None:
    """Raise ``SchemaError`` unless the roots and the blocks at ``indices`` follow the schema.

    This is enough after an update that changed only the contents of those
    blocks, since block ids, and so their uniqueness, did not change.
    """
    blocks = check_roots(doc)
    for index in sorted(indices):
        if index < len(blocks):
            check_block(blocks[index], f"blocks[{index}]", set())


def check_roots(doc: Doc[Any]) -> Array[Any]:
    """Check the top-level types; return ``blocks``."""
    for name in doc.keys():
        if name not in ROOTS:
            raise SchemaError(
                f"unknown top-level type {name!r}; a report has only 'title' and 'blocks'"
            )
    check_root_text(doc, TITLE)
    return root_array(doc, BLOCKS)


def check_root_text(doc: Doc[Any], name: str) -> None:
    # Root types carry no type tag in an update, so the same root can be read
    # as a Text, an Array or a Map. Reading it as each shows what a client wrote.
    if len(doc.get(name, type=Map)) > 0:
        raise SchemaError(f"{name!r} must be a Y.Text, but it has map entries")
    text = doc.get(name, type=Text)
    if not is_plain_text(text):
        raise SchemaError(
            f"{name!r} must be a Y.Text of plain text, but it contains embedded values"
        )


def root_array(doc: Doc[Any], name: str) -> Array[Any]:
    if len(doc.get(name, type=Map)) > 0:
        raise SchemaError(f"{name!r} must be a Y.Array, but it has map entries")
    # Check the text view first: reading text content as an array can hang in
    # pycrdt 0.14 when it contains characters outside the basic multilingual plane.
    if len(doc.get(name, type=Text)) > 0 and str(doc.get(name, type=Text)):
        raise SchemaError(f"{name!r} must be a Y.Array, but it contains text")
    blocks: Array[Any] = doc.get(name, type=Array)
    return blocks


def is_plain_text(text: Text) -> bool:
    # ``len`` counts UTF-8 bytes plus one per embedded value, which ``str`` leaves out.
    return len(text) == len(str(text).encode())


def check_block(block: Any, where: str, ids: set[str]) -> None:
    if not isinstance(block, Map):
        raise SchemaError(f"{where} must be a Y.Map, got {type_name(block)}")
    block_id = check_id(block.get("id"), where, ids)
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        raise SchemaError(
            f"{where} (id {block_id!r}) has unknown type {kind!r}; "
            f"expected one of {', '.join(BLOCK_TYPES)}"
        )
    BLOCK_CHECKS[kind](block, f"{where} ({kind} {block_id!r})")


def check_id(value: Any, where: str, ids: set[str]) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        raise SchemaError(
            f"{where} needs a string 'id' of 1 to {MAX_ID_LENGTH} characters, got {value!r}"
        )
    if value in ids:
        raise SchemaError(f"{where} repeats the id {value!r}; ids must be unique")
    ids.add(value)
    return value


def check_markdown(block: Map[Any], where: str) -> None:
    check_block_text(block, where)


def check_heading(block: Map[Any], where: str) -> None:
    level = whole_number(block.get("level"))
    if level is None or not 1 <= level <= MAX_HEADING_LEVEL:
        raise SchemaError(
            f"{where} 'level' must be an integer from 1 to {MAX_HEADING_LEVEL}, "
            f"got {block.get('level')!r}"
        )
    check_block_text(block, where)


def check_block_text(block: Map[Any], where: str) -> None:
    text = block.get("text")
    if not isinstance(text, Text):
        raise SchemaError(f"{where} 'text' must be a Y.Text, got {type_name(text)}")
    if not is_plain_text(text):
        raise SchemaError(f"{where} 'text' must be plain text, but it contains embedded values")


def check_panel_grid(block: Map[Any], where: str) -> None:
    run_sets = block.get("run_sets")
    if not isinstance(run_sets, Array):
        raise SchemaError(f"{where} 'run_sets' must be a Y.Array, got {type_name(run_sets)}")
    ids: set[str] = set()
    for index, run_set in enumerate(run_sets):
        check_run_set(run_set, f"{where} run_sets[{index}]", ids)
    panels = block.get("panels")
    if not isinstance(panels, Array):
        raise SchemaError(f"{where} 'panels' must be a Y.Array, got {type_name(panels)}")
    check_panels(panels, where)


def check_run_set(run_set: Any, where: str, ids: set[str]) -> None:
    if not isinstance(run_set, Map):
        raise SchemaError(f"{where} must be a Y.Map, got {type_name(run_set)}")
    values = run_set.to_py() or {}
    check_id(values.get("id"), where, ids)
    unknown = sorted(set(values) - set(RUN_SET_FIELDS))
    if unknown:
        raise SchemaError(f"{where} has unknown fields {unknown}; expected {RUN_SET_FIELDS}")
    for name in ("name", "filter", "colour"):
        if not isinstance(values.get(name), str):
            raise SchemaError(f"{where} {name!r} must be a string, got {values.get(name)!r}")
    for name in ("active", "frozen"):
        if not isinstance(values.get(name), bool):
            raise SchemaError(f"{where} {name!r} must be true or false, got {values.get(name)!r}")
    grouping = values.get("grouping")
    if isinstance(grouping, list):
        # The earlier form: a list of keys, aggregated by mean with a std band.
        grouping = {"keys": grouping}
    try:
        runset_shape.check_grouping(grouping)
    except BadRequest as exc:
        raise SchemaError(f"{where} {exc.message}") from None
    check_sort(values.get("sort"), where)


def check_sort(sort: Any, where: str) -> None:
    if sort is None:
        return
    if isinstance(sort, dict) and set(sort) == {"key", "order"}:
        # The earlier form of {"field", "direction"}.
        sort = {"field": sort["key"], "direction": sort["order"]}
    try:
        runset_shape.check_sort(sort)
    except BadRequest as exc:
        raise SchemaError(f"{where} {exc.message}") from None


def runset_spec(run_set: dict[str, Any]) -> dict[str, Any]:
    """Return a checked report run set in the workspace's model, earlier forms converted.

    A null sort is the workspace's default, newest first.
    """
    grouping = run_set.get("grouping") or []
    if isinstance(grouping, list):
        grouping = {"keys": grouping}
    sort = run_set.get("sort")
    if sort is None:
        sort = {"field": "created_at", "direction": "desc"}
    elif set(sort) == {"key", "order"}:
        sort = {"field": sort["key"], "direction": sort["order"]}
    return {
        "id": run_set["id"],
        "name": run_set["name"],
        "filter": run_set["filter"],
        "grouping": runset_shape.check_grouping(grouping),
        "sort": runset_shape.check_sort(sort),
        "colour": run_set["colour"],
        "active": run_set["active"],
        "frozen": run_set["frozen"],
    }


def check_panels(panels: Array[Any], where: str) -> None:
    items = []
    for index, panel in enumerate(panels):
        if not isinstance(panel, Map):
            raise SchemaError(f"{where} panels[{index}] must be a Y.Map, got {type_name(panel)}")
        items.append(whole_numbers(panel.to_py() or {}))
    try:
        check_layout({"panels": items})
    except BadRequest as exc:
        raise SchemaError(f"{where} {exc.message}") from None


def whole_number(value: Any) -> int | None:
    """``value`` as an int when it is an integral number, since JavaScript has only floats."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def whole_numbers(panel: dict[str, Any]) -> dict[str, Any]:
    converted = dict(panel)
    for name in ("x", "y", "w", "h"):
        number = whole_number(converted.get(name))
        if number is not None:
            converted[name] = number
    return converted


def type_name(value: Any) -> str:
    if isinstance(value, Text):
        return "a Y.Text"
    if isinstance(value, Array):
        return "a Y.Array"
    if isinstance(value, Map):
        return "a Y.Map"
    return repr(value)


BLOCK_CHECKS: dict[str, Callable[[Map[Any], str], None]] = {
    "markdown": check_markdown,
    "heading": check_heading,
    "panel_grid": check_panel_grid,
}


def to_json(doc: Doc[Any]) -> dict[str, Any]:
    """Return the document as JSON: ``{"title": str, "blocks": [...]}``."""
    return {"title": read_title(doc), "blocks": doc.get(BLOCKS, type=Array).to_py() or []}


def read_title(doc: Doc[Any]) -> str:
    return str(doc.get(TITLE, type=Text))


def set_title(doc: Doc[Any], title: str) -> None:
    """Replace the title text in one transaction; the caller encodes the change."""
    text = doc.get(TITLE, type=Text)
    with doc.transaction():
        del text[:]
        text += title


def copy_content(source: Doc[Any], target: Doc[Any]) -> None:
    """Make ``target`` show ``source``'s title and blocks, as new CRDT edits.

    Restoring a saved version goes through here: the room's document keeps its
    history, so clients that hold it merge the restore like any other edit.
    """
    with target.transaction():
        set_title(target, read_title(source))
        blocks = target.get(BLOCKS, type=Array)
        del blocks[:]
        for block in root_array(source, BLOCKS):
            blocks.append(Map(prelim_map(block)))


def prelim_map(source: Map[Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in source.items():
        if isinstance(value, Text):
            values[key] = Text(str(value))
        elif isinstance(value, Array):
            values[key] = Array([Map(prelim_map(item)) for item in value])
        elif isinstance(value, Map):
            values[key] = Map(prelim_map(value))
        else:
            values[key] = value
    return values
