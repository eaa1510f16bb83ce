// The run table: search, sort by any column, and a column picker for config and summary keys.
import type { Run, Value } from "./api";
import { runColour } from "./colours";
import { formatTime, formatValue, h } from "./dom";

const FIXED = ["name", "state", "created"];
const DEFAULT_EXTRA = 4;

/** The value of a column such as "state", "config.lr" or "summary.loss" for a run. */
export function fieldValue(run: Run, column: string): Value | undefined {
  if (column === "name") return run.name;
  if (column === "state") return run.state;
  if (column === "created") return run.created_at;
  if (column.startsWith("config.")) return run.config[column.slice(7)];
  if (column.startsWith("summary.")) return run.summary[column.slice(8)];
  return undefined;
}

/** Every config and summary column that some run has. */
export function fieldColumns(runs: Iterable<Run>): string[] {
  const config = new Set<string>();
  const summary = new Set<string>();
  for (const run of runs) {
    Object.keys(run.config).forEach((key) => config.add(`config.${key}`));
    Object.keys(run.summary).forEach((key) => summary.add(`summary.${key}`));
  }
  return [...[...config].sort(), ...[...summary].sort()];
}

function compare(a: Value | undefined, b: Value | undefined): number {
  // Missing values sort last in either direction's natural order; numbers before text.
  if (a === undefined || a === null)
    return b === undefined || b === null ? 0 : 1;
  if (b === undefined || b === null) return -1;
  if (typeof a === "number" && typeof b === "number") {
    if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
    if (Number.isNaN(b)) return -1;
    return a - b;
  }
  return String(a).localeCompare(String(b));
}

export class RunTable {
  readonly element = h("section", { class: "run-table" });
  private search = "";
  private sortColumn = "created";
  private descending = true;
  private columns: string[] = [];
  private runs: Run[] = [];

  constructor(
    private readonly project: string,
    private readonly onChange: (columnsChanged: boolean) => void,
  ) {}

  setColumns(columns: string[]): void {
    this.columns = columns;
  }

  chosenColumns(): string[] {
    return this.columns;
  }

  update(runs: Run[]): void {
    this.runs = runs;
    if (this.columns.length === 0) {
      this.columns = fieldColumns(runs).slice(0, DEFAULT_EXTRA);
    }
    this.render();
  }

  searchText(): string {
    return this.search;
  }

  /** Return the table's sort as a run set's sort, in the filter language's field names. */
  sortOrder(): { field: string; direction: "asc" | "desc" } {
    const field =
      this.sortColumn === "created" ? "created_at" : this.sortColumn;
    return { field, direction: this.descending ? "desc" : "asc" };
  }

  /** The runs that match the search, in table order. */
  visibleRuns(): Run[] {
    const needle = this.search.toLowerCase();
    const matching = this.runs.filter((run) =>
      [run.name, run.id, run.state, run.group ?? "", ...run.tags].some((text) =>
        text.toLowerCase().includes(needle),
      ),
    );
    const sign = this.descending ? -1 : 1;
    return matching.sort((a, b) => {
      const order = compare(
        fieldValue(a, this.sortColumn),
        fieldValue(b, this.sortColumn),
      );
      return order === 0 ? 0 : sign * order;
    });
  }

  private built = false;

  private render(): void {
    if (!this.built) {
      // Built once, so that live updates never take the focus from the search box.
      const input = h("input", {
        type: "search",
        class: "run-search",
        placeholder: "Search runs by name, id, state, tag or group",
      });
      input.addEventListener("input", () => {
        this.search = input.value;
        this.renderRows();
        this.onChange(false);
      });
      this.element.append(
        h(
          "div",
          { class: "table-tools" },
          input,
          h("span", { class: "picker-slot" }),
        ),
      );
      this.element.append(h("div", { class: "table-scroll" }, h("table")));
      this.built = true;
    }
    const slot = this.element.querySelector(".picker-slot");
    const open = slot?.querySelector("details")?.open ?? false;
    slot?.replaceChildren(this.columnPicker(open));
    this.renderRows();
  }

  private columnPicker(open: boolean): HTMLElement {
    const list = h("div", { class: "column-list" });
    for (const column of fieldColumns(this.runs)) {
      const box = h("input", {
        type: "checkbox",
        value: column,
        checked: this.columns.includes(column),
      });
      box.addEventListener("change", () => {
        this.columns = box.checked
          ? [...this.columns, column]
          : this.columns.filter((c) => c !== column);
        this.renderRows();
        this.onChange(true);
      });
      list.append(h("label", {}, box, ` ${column}`));
    }
    return h(
      "details",
      { class: "column-picker", open },
      h("summary", {}, "Columns"),
      list,
    );
  }

  private renderRows(): void {
    const table = this.element.querySelector("table");
    if (!table) return;
    const head = h("tr", {}, h("th", {}, ""));
    for (const column of [...FIXED, ...this.columns]) {
      const arrow =
        column === this.sortColumn ? (this.descending ? " ▼" : " ▲") : "";
      head.append(
        h(
          "th",
          {
            "data-column": column,
            onclick: () => {
              this.descending =
                column === this.sortColumn ? !this.descending : false;
              this.sortColumn = column;
              this.renderRows();
              this.onChange(false);
            },
          },
          column + arrow,
        ),
      );
    }
    const body = h("tbody");
    for (const run of this.visibleRuns()) {
      const link = h(
        "a",
        {
          href: `/projects/${encodeURIComponent(this.project)}/runs/${encodeURIComponent(run.id)}`,
        },
        run.name,
      );
      const row = h(
        "tr",
        { "data-run-id": run.id, "data-state": run.state },
        h(
          "td",
          {},
          h("span", {
            class: "swatch",
            style: `background:${runColour(run.id)}`,
          }),
        ),
        h("td", {}, link),
        h("td", { class: `state state-${run.state}` }, run.state),
        h("td", {}, formatTime(run.created_at)),
      );
      for (const column of this.columns)
        row.append(h("td", {}, formatValue(fieldValue(run, column))));
      body.append(row);
    }
    table.replaceChildren(h("thead", {}, head), body);
  }
}
