"""What a share link's report draws: the run-set filters and field names of its grids."""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Doc, Map

from assay_server.access import report_scope


def grid_doc(panels: list[dict[str, Any]]) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    blocks = doc.get("blocks", type=Array)
    run_set = Map({"id": "s1", "filter": " config.lr >= 0.5 ", "grouping": ["config.seed"]})
    blocks.append(
        Map(
            {
                "id": "g1",
                "type": "panel_grid",
                "run_sets": Array([run_set]),
                "panels": Array([Map(panel) for panel in panels]),
            }
        )
    )
    return doc


def test_scope_names_metric_x_axis() -> None:
    doc = grid_doc(
        [{"id": "p1", "type": "line", "options": {"key": "loss", "x": "metric:tokens"}}]
    )

    scope = report_scope("r1", doc)

    assert scope.allows_key("loss")
    assert scope.allows_key("tokens")
    assert not scope.allows_key("metric")
    assert scope.allows_filter("config.lr >= 0.5")
    assert scope.allows_key("config.seed")


def test_scope_without_metric_x_axis() -> None:
    doc = grid_doc([{"id": "p1", "type": "line", "options": {"key": "loss", "x": "step"}}])

    scope = report_scope("r1", doc)

    assert scope.allows_key("loss")
    assert not scope.allows_key("tokens")
