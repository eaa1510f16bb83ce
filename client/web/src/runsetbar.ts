// The run sets of a report's panel grid: toggle, rename, filter, freeze, add and remove.
import * as Y from "yjs";
import { h } from "./dom";
import {
  NO_GROUPING,
  newId,
  readRunSet,
  runSetMap,
  type RunSet,
} from "./reportdoc";

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

  constructor(
    private readonly runSets: Y.Array<Y.Map<unknown>>,
    private readonly readOnly: boolean,
  ) {}

  render(status: (id: string) => RunSetStatus): void {
    const maps = this.runSets.toArray();
    const wanted = new Set(maps.map((map) => readRunSet(map).id));
    for (const [id, row] of this.rows) {
      if (wanted.has(id)) continue;
      row.remove();
      this.rows.delete(id);
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
    frozen.addEventListener("change", () => map.set("frozen", frozen.checked));

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
      h("p", { class: "run-set-error" }),
    );
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
