// The run sets of a report's panel grid: toggle, rename, filter, group, sort, freeze, add
// and remove.
import * as Y from "yjs";
import type { Run } from "./api";
import { h } from "./dom";
import { groupingProblem, sortProblem } from "./fieldcheck";
import {
  NO_GROUPING,
  newId,
  readRunSet,
  runSetMap,
  type RunSet,
} from "./reportdoc";
import { describeGrouping, GroupingControls } from "./runsetfields";

const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

export function newRunSet(name: string, filter: string, index: number): RunSet {
  return {
    id: newId("s"),
    name,
    filter,
    grouping: { ...NO_GROUPING },
    sort: null,
    colour: COLOURS[index % COLOURS.length] ?? "#1f77b4",
    active: true,
    frozen: false,
  };
}

/**
 * Return ``text`` narrowed to runs created at or before ``now`` (milliseconds
 * since the epoch), written as the server's freeze writes it: UTC to the
 * millisecond, rounded up, so a run created in the same millisecond stays in.
 *
 * NOTE: the page passes the browser's clock, so a browser whose clock is
 * behind the server's leaves out the runs created in that gap.
 */
export function frozenFilter(text: string, now: number): string {
  const condition = `created_at <= ${new Date(Math.floor(now) + 1).toISOString()}`;
  return text.trim() ? `(${text}) and ${condition}` : condition;
}

const FROZEN_BOUND = /^\((.*)\) and created_at <= \d{4}-\d\d-\d\dT[\d:.]+Z$/s;
const BOUND_ONLY = /^created_at <= \d{4}-\d\d-\d\dT[\d:.]+Z$/;

/** Return ``text`` without the bound ``frozenFilter`` added, or unchanged without one. */
export function thawedFilter(text: string): string {
  if (BOUND_ONLY.test(text)) return "";
  return FROZEN_BOUND.exec(text)?.[1] ?? text;
}

/** The run count the bar shows for a run set, or the reason its filter failed. */
export interface RunSetStatus {
  count: number | null;
  error: string | null;
}

/**
 * The run-set rows of one grid. Every change is a ``Y.Map.set`` of one key, so
 * two people toggling two run sets at once both win.
 */
export class RunSetBar {
  readonly element = h("div", { class: "run-sets" });
  private readonly rows = new Map<string, HTMLElement>();
  /** The grouping and sort controls of each row, by run-set id; none when read-only. */
  private readonly groupings = new Map<string, GroupingControls>();

  constructor(
    private readonly runSets: Y.Array<Y.Map<unknown>>,
    private readonly readOnly: boolean,
    /** The runs whose keys the grouping and sort inputs suggest. */
    private readonly knownRuns: () => Iterable<Run>,
  ) {}

  render(status: (id: string) => RunSetStatus): void {
    const maps = this.runSets.toArray();
    const wanted = new Set(maps.map((map) => readRunSet(map).id));
    for (const [id, row] of this.rows) {
      if (wanted.has(id)) continue;
      row.remove();
      this.rows.delete(id);
      this.groupings.delete(id);
    }
    maps.forEach((map, index) => {
      const runSet = readRunSet(map);
      let row = this.rows.get(runSet.id);
      if (!row) {
        row = this.row(map, runSet);
        this.rows.set(runSet.id, row);
      }
      this.fill(row, runSet, status(runSet.id));
      // Moving a row in the DOM takes the focus from its inputs, and the
      // blur commits a filter half typed, so rows in place stay put.
      const current = this.element.children.item(index);
      if (current !== row) this.element.insertBefore(row, current);
    });
    if (!this.readOnly && !this.element.querySelector(".add-run-set"))
      this.element.append(this.addButton());
    const add = this.element.querySelector(".add-run-set");
    if (add) this.element.append(add);
  }

  private row(map: Y.Map<unknown>, runSet: RunSet): HTMLElement {
    const disabled = this.readOnly;
    const active = h("input", {
      type: "checkbox",
      class: "run-set-active",
      "aria-label": `show ${runSet.name}`,
      disabled,
    });
    active.addEventListener("change", () => map.set("active", active.checked));

    const name = h("input", {
      class: "run-set-name",
      "aria-label": "run set name",
      disabled,
    });
    name.addEventListener("change", () => map.set("name", name.value));

    const filter = h("input", {
      class: "run-set-filter",
      "aria-label": "run set filter",
      placeholder: "every run; e.g. summary.loss is nan or config.lr >= 0.1",
      disabled,
    });
    filter.addEventListener("change", () => map.set("filter", filter.value));

    const frozen = h("input", {
      type: "checkbox",
      class: "run-set-frozen",
      "aria-label": "frozen: takes no new runs",
      disabled,
    });
    frozen.addEventListener("change", () => {
      // Freezing narrows the filter to the runs created by now, as the
      // workspace's Freeze does, so that every later reader of the document
      // takes no new runs. Thawing removes that bound again.
      const text = readRunSet(map).filter;
      map.doc?.transact(() => {
        map.set(
          "filter",
          frozen.checked ? frozenFilter(text, Date.now()) : thawedFilter(text),
        );
        map.set("frozen", frozen.checked);
      });
    });

    const remove = h(
      "button",
      { type: "button", class: "remove-run-set", title: "remove run set" },
      "✕",
    );
    remove.addEventListener("click", () => {
      const index = this.runSets.toArray().indexOf(map);
      if (index >= 0) this.runSets.delete(index, 1);
    });

    return h(
      "div",
      { class: "run-set", "data-run-set-id": runSet.id },
      h("span", { class: "swatch" }),
      active,
      name,
      filter,
      h("label", { class: "frozen-label" }, frozen, " frozen"),
      h("span", { class: "run-set-count" }),
      this.readOnly ? null : remove,
      this.readOnly
        ? h("span", { class: "run-set-grouping-summary" })
        : this.groupingControls(map, runSet.id),
      h("p", { class: "run-set-error" }),
      ...(["grouping", "sort"] as const).map((part) =>
        h("p", {
          class: "run-set-field-error",
          "data-part": part,
          role: "alert",
          hidden: true,
        }),
      ),
    );
  }

  /**
   * Build the grouping and sort controls of one run set. A value is written
   * to the run set's ``Y.Map`` only when it passes the server's checks,
   * because the server rejects an update that breaks them and the page must
   * then be reloaded. A rejected value stays in its input with the reason
   * under the row.
   */
  private groupingControls(map: Y.Map<unknown>, id: string): HTMLElement {
    const controls = new GroupingControls(
      {
        runs: this.knownRuns,
        grouping: (grouping) => {
          const problem = groupingProblem(grouping);
          this.showProblem(id, controls, "grouping", problem);
          const stored = JSON.stringify(readRunSet(map).grouping);
          if (problem === null && stored !== JSON.stringify(grouping))
            map.set("grouping", grouping);
        },
        sort: (sort) => {
          const problem = sortProblem(sort);
          this.showProblem(id, controls, "sort", problem);
          const stored = JSON.stringify(readRunSet(map).sort);
          if (problem === null && stored !== JSON.stringify(sort))
            map.set("sort", sort);
        },
      },
      "newest first",
    );
    this.groupings.set(id, controls);
    return controls.element;
  }

  /** Show or clear the reason the grouping or the sort of run set ``id`` was not written. */
  private showProblem(
    id: string,
    controls: GroupingControls,
    part: "grouping" | "sort",
    problem: string | null,
  ): void {
    controls.markInvalid(part, problem !== null);
    const box = this.rows
      .get(id)
      ?.querySelector<HTMLElement>(`.run-set-field-error[data-part="${part}"]`);
    if (!box) return;
    box.textContent = problem ?? "";
    box.hidden = problem === null;
  }

  /** Show ``runSet`` in ``row``, leaving alone an input that has the focus. */
  private fill(row: HTMLElement, runSet: RunSet, status: RunSetStatus): void {
    const set = (selector: string, value: string | boolean): void => {
      const input = row.querySelector<HTMLInputElement>(selector);
      if (!input || input === document.activeElement) return;
      if (typeof value === "boolean") input.checked = value;
      else input.value = value;
    };
    set(".run-set-active", runSet.active);
    set(".run-set-name", runSet.name);
    set(".run-set-filter", runSet.filter);
    set(".run-set-frozen", runSet.frozen);
    row.dataset.active = String(runSet.active);
    const swatch = row.querySelector<HTMLElement>(".swatch");
    if (swatch) swatch.style.background = runSet.colour;
    const count = row.querySelector(".run-set-count");
    if (count)
      count.textContent = status.count === null ? "" : `${status.count} runs`;
    const error = row.querySelector(".run-set-error");
    if (error) error.textContent = status.error ?? "";
    this.groupings.get(runSet.id)?.show(runSet.grouping, runSet.sort);
    const summary = row.querySelector(".run-set-grouping-summary");
    if (summary)
      summary.textContent = describeGrouping(runSet.grouping, runSet.sort);
  }

  private addButton(): HTMLElement {
    const button = h(
      "button",
      { type: "button", class: "add-run-set" },
      "Add run set",
    );
    button.addEventListener("click", () => {
      const index = this.runSets.length;
      const runSet = newRunSet(`run set ${index + 1}`, "", index);
      this.runSets.push([runSetMap(runSet)]);
    });
    return button;
  }
}
