// The report's Yjs document (docs/reports.md): a Y.Text title and a Y.Array of Y.Map blocks.
import * as Y from "yjs";
import type { PanelLayout, Value } from "./api";

export type BlockType = "markdown" | "heading" | "panel_grid";

import type { Grouping, Sort } from "./runsetfields";

export type { Grouping, Sort };

export interface RunSet {
  id: string;
  name: string;
  /** Text in the run-set filter language. An empty filter selects every run. */
  filter: string;
  grouping: Grouping;
  /** Null for the default, newest first. */
  sort: Sort | null;
  colour: string;
  active: boolean;
  frozen: boolean;
}

/** One line per run. */
export const NO_GROUPING: Grouping = {
  keys: [],
  aggregate: "mean",
  band: "std",
};

export type Block = Y.Map<unknown>;

export function newId(prefix: string): string {
  const random = Math.floor(Math.random() * 2 ** 32).toString(36);
  return `${prefix}${Date.now().toString(36)}${random}`;
}

export function titleText(doc: Y.Doc): Y.Text {
  return doc.getText("title");
}

export function blockList(doc: Y.Doc): Y.Array<Block> {
  return doc.getArray<Block>("blocks");
}

export function blockType(block: Block): BlockType | null {
  const type = block.get("type");
  return type === "markdown" || type === "heading" || type === "panel_grid"
    ? type
    : null;
}

export function blockId(block: Block): string {
  return String(block.get("id"));
}

export function markdownBlock(source = ""): Block {
  const block = new Y.Map<unknown>();
  block.set("id", newId("b"));
  block.set("type", "markdown");
  block.set("text", new Y.Text(source));
  return block;
}

export function headingBlock(source = "", level = 2): Block {
  const block = markdownBlock(source);
  block.set("type", "heading");
  block.set("level", level);
  return block;
}

export function runSetMap(runSet: RunSet): Y.Map<unknown> {
  const map = new Y.Map<unknown>();
  for (const [key, value] of Object.entries(runSet)) map.set(key, value);
  return map;
}

export function panelMap(panel: PanelLayout): Y.Map<unknown> {
  const map = new Y.Map<unknown>();
  for (const [key, value] of Object.entries(panel)) map.set(key, value);
  return map;
}

export function panelGridBlock(
  runSets: RunSet[],
  panels: PanelLayout[],
): Block {
  const block = new Y.Map<unknown>();
  block.set("id", newId("b"));
  block.set("type", "panel_grid");
  block.set("run_sets", Y.Array.from(runSets.map(runSetMap)));
  block.set("panels", Y.Array.from(panels.map(panelMap)));
  return block;
}

export function readRunSet(map: Y.Map<unknown>): RunSet {
  const stored = map.toJSON() as Record<string, unknown>;
  return {
    ...(stored as unknown as RunSet),
    grouping: readGrouping(stored.grouping),
    sort: readSort(stored.sort),
  };
}

/** Read a grouping, also in the earlier form of a bare list of keys. */
function readGrouping(value: unknown): Grouping {
  if (Array.isArray(value)) return { ...NO_GROUPING, keys: value.map(String) };
  if (value === null || typeof value !== "object") return { ...NO_GROUPING };
  return { ...NO_GROUPING, ...(value as Partial<Grouping>) };
}

/** Read a sort, also in the earlier form of ``{key, order}``. */
function readSort(value: unknown): Sort | null {
  if (value === null || typeof value !== "object") return null;
  const sort = value as Record<string, string>;
  if ("key" in sort)
    return {
      field: sort.key ?? "",
      direction: sort.order === "asc" ? "asc" : "desc",
    };
  return {
    field: sort.field ?? "",
    direction: sort.direction === "asc" ? "asc" : "desc",
  };
}

export function readPanel(map: Y.Map<unknown>): PanelLayout {
  // Y.Map.toJSON returns stored JSON values by reference, and the grid
  // changes a panel's options in place, so they are copied: a change made in
  // place would alter the document's value without an update to send.
  const panel = structuredClone(map.toJSON()) as PanelLayout;
  panel.options = (panel.options ?? {}) as Record<string, Value>;
  return panel;
}

/** Copy a block into new Yjs types, for inserting elsewhere, because a Yjs type cannot move. */
export function copyBlock(block: Block): Block {
  const copy = new Y.Map<unknown>();
  block.forEach((value, key) => copy.set(key, copyValue(value)));
  return copy;
}

function copyValue(value: unknown): unknown {
  if (value instanceof Y.Text) return new Y.Text(value.toString());
  if (value instanceof Y.Array)
    return Y.Array.from(value.toArray().map(copyValue) as Y.Map<unknown>[]);
  if (value instanceof Y.Map) return copyBlock(value as Block);
  return value;
}

/**
 * Move the block or panel at ``from`` to ``to`` in one transaction, as a delete
 * and an insert of a copy with a new id. Two people moving the same block at
 * once get two copies rather than two blocks with one id, which the server
 * rejects. An edit made inside the block while the move travels is lost,
 * because it lands in the deleted original.
 */
export function moveItem(
  list: Y.Array<Y.Map<unknown>>,
  from: number,
  to: number,
): void {
  if (from === to || to < 0 || to >= list.length) return;
  const doc = list.doc;
  const move = (): void => {
    // Copy first: a deleted Y.Map reads as empty.
    const original = list.get(from);
    const copy = copyBlock(original);
    copy.set("id", newId(String(original.get("id")).slice(0, 1) || "b"));
    list.delete(from, 1);
    list.insert(to, [copy]);
  };
  if (doc) doc.transact(move);
  else move();
}

/** Find the index of the block or panel with ``id``, or -1. */
export function indexOf(list: Y.Array<Y.Map<unknown>>, id: string): number {
  return list.toArray().findIndex((item) => item.get("id") === id);
}

/** Return the metrics that the line panels of ``doc`` draw, as y or as x, sorted. */
export function drawnMetrics(doc: Y.Doc): string[] {
  const metrics = new Set<string>();
  for (const block of blockList(doc).toArray()) {
    if (blockType(block) !== "panel_grid") continue;
    const panels = block.get("panels");
    if (!(panels instanceof Y.Array)) continue;
    for (const map of panels.toArray() as Y.Map<unknown>[]) {
      const panel = readPanel(map);
      if (panel.type !== "line") continue;
      const { key, x } = panel.options;
      if (typeof key === "string" && key) metrics.add(key);
      if (typeof x === "string" && x.startsWith("metric:"))
        metrics.add(x.slice("metric:".length));
    }
  }
  return [...metrics].sort();
}
