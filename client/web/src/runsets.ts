// The run-set sidebar: active toggle, name, colour, filter with key completion and inline
// errors, grouping, sort, clone, freeze and delete. Every edit is saved through the API.
import {
  ApiError,
  createRunset,
  deleteRunset,
  runsetAction,
  updateRunset,
  type Run,
  type RunSet,
  type Value,
} from "./api";
import { debounce, h } from "./dom";

const METADATA = [
  "name",
  "state",
  "id",
  "group",
  "tags",
  "created_at",
  "heartbeat_at",
  "finished_at",
];
const STATISTICS = ["min", "max", "has_nan", "has_inf", "has_null"];
const AGGREGATES = ["mean", "median", "min", "max"];
const BANDS = ["std", "stderr", "minmax", "none"];
/** Suggestions shown at once under the filter editor. */
const MAX_COMPLETIONS = 8;
const WORD = /^[A-Za-z_][A-Za-z0-9_\-/]*$/;
/** Characters of a field being typed, quotes included, as the completion replaces them. */
const FIELD_CHARACTER = /[A-Za-z0-9_.\-/"]/;

/** Write a key as the filter language needs it: bare when it is a WORD, else in quotes. */
export function quoteKey(key: string): string {
  if (WORD.test(key)) return key;
  return `"${key.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

function configFields(prefix: string, value: Value, found: Set<string>): void {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    return;
  for (const [key, inner] of Object.entries(value)) {
    const field = `${prefix}.${quoteKey(key)}`;
    found.add(field);
    configFields(field, inner, found);
  }
}

/** List every field a filter over ``runs`` can name: metadata, config paths, summary keys, statistics. */
export function filterFields(runs: Iterable<Run>): string[] {
  const config = new Set<string>();
  const summary = new Set<string>();
  for (const run of runs) {
    configFields("config", run.config, config);
    for (const key of Object.keys(run.summary)) {
      const field = `summary.${quoteKey(key)}`;
      summary.add(field);
      STATISTICS.forEach((statistic) => summary.add(`${field}.${statistic}`));
    }
  }
  return [...METADATA, ...[...config].sort(), ...[...summary].sort()];
}

/** Find the field being typed before ``cursor`` in ``text``: its start and its text. */
export function fieldAt(
  text: string,
  cursor: number,
): { start: number; prefix: string } {
  let start = cursor;
  while (start > 0 && FIELD_CHARACTER.test(text.charAt(start - 1))) start -= 1;
  return { start, prefix: text.slice(start, cursor) };
}

export interface SidebarHandlers {
  /** The runs whose keys the filter editor suggests. */
  runs(): Iterable<Run>;
  /** Called after any run set was created, changed or deleted, with the new list. */
  changed(runsets: RunSet[]): void;
}

export class RunsetSidebar {
  readonly element = h("aside", { class: "runsets" });
  private readonly list = h("div", { class: "runset-list" });
  private runsets: RunSet[] = [];
  private members = new Map<string, number>();
  /** Saves run one after another, so that the last edit is the one stored. */
  private saving: Promise<void> = Promise.resolve();

  constructor(
    private readonly project: string,
    private readonly handlers: SidebarHandlers,
  ) {
    const add = h(
      "button",
      { class: "runset-new", type: "button" },
      "New run set",
    );
    add.addEventListener("click", () => void this.create());
    this.element.append(
      h("div", { class: "runsets-head" }, h("h2", {}, "Run sets"), add),
      this.list,
    );
  }

  set(runsets: RunSet[]): void {
    this.runsets = runsets;
    this.render();
  }

  all(): RunSet[] {
    return this.runsets;
  }

  /** Show each run set's member count, from the live socket. */
  setMemberCounts(counts: Map<string, number>): void {
    this.members = counts;
    for (const item of this.list.querySelectorAll<HTMLElement>(".runset")) {
      const count = counts.get(item.dataset.runsetId ?? "");
      const label = item.querySelector(".runset-count");
      if (label)
        label.textContent =
          count === undefined ? "" : `${count} run${count === 1 ? "" : "s"}`;
    }
  }

  /** Show the error of a filter that the live socket rejected. */
  showFilterError(id: string, message: string, column: number): void {
    const item = this.item(id);
    if (item) this.showError(item, "filter", message, column);
  }

  private item(id: string): HTMLElement | null {
    return this.list.querySelector<HTMLElement>(
      `.runset[data-runset-id="${CSS.escape(id)}"]`,
    );
  }

  private render(): void {
    this.list.replaceChildren(
      ...this.runsets.map((runset) => this.renderItem(runset)),
    );
    this.setMemberCounts(this.members);
  }

  private renderItem(runset: RunSet): HTMLElement {
    const item = h("div", { class: "runset", "data-runset-id": runset.id });
    const active = h("input", {
      type: "checkbox",
      class: "runset-active",
      title: "draw this run set in the panels",
    });
    active.checked = runset.active;
    active.addEventListener(
      "change",
      () => void this.save(item, runset, { active: active.checked }),
    );
    const colour = h("input", {
      type: "color",
      class: "runset-colour",
      value: runset.colour,
      title: "colour",
    });
    colour.addEventListener(
      "change",
      () => void this.save(item, runset, { colour: colour.value }),
    );
    const name = h("input", {
      class: "runset-name",
      value: runset.name,
      "aria-label": "run-set name",
    });
    name.addEventListener(
      "change",
      () => void this.save(item, runset, { name: name.value }, "name"),
    );
    item.append(
      h(
        "div",
        { class: "runset-row" },
        active,
        colour,
        name,
        h("span", { class: "runset-count" }),
      ),
      this.filterEditor(item, runset),
      h("div", { class: "runset-error", hidden: true }),
      this.groupingEditor(item, runset),
      this.actions(item, runset),
    );
    return item;
  }

  private filterEditor(item: HTMLElement, runset: RunSet): HTMLElement {
    const input = h("input", {
      class: "runset-filter",
      value: runset.filter,
      placeholder: "filter, e.g. summary.loss is nan",
      spellcheck: "false",
      autocomplete: "off",
      "aria-label": "run-set filter",
    });
    const completions = h("ul", { class: "runset-completions", hidden: true });
    const saveSoon = debounce(
      () => void this.save(item, runset, { filter: input.value }, "filter"),
      400,
    );
    const accept = (field: string): void => {
      const cursor = input.selectionStart ?? input.value.length;
      const { start } = fieldAt(input.value, cursor);
      input.value =
        input.value.slice(0, start) + field + input.value.slice(cursor);
      const end = start + field.length;
      input.setSelectionRange(end, end);
      completions.hidden = true;
      input.focus();
      saveSoon();
    };
    const suggest = (): void => {
      const cursor = input.selectionStart ?? input.value.length;
      const { prefix } = fieldAt(input.value, cursor);
      const found =
        prefix === ""
          ? []
          : filterFields(this.handlers.runs())
              .filter((field) => field.startsWith(prefix) && field !== prefix)
              .slice(0, MAX_COMPLETIONS);
      completions.replaceChildren(
        ...found.map((field) => {
          const option = h("li", { class: "runset-completion" }, field);
          // mousedown, not click: the input must keep focus and its cursor.
          option.addEventListener("mousedown", (event) => {
            event.preventDefault();
            accept(field);
          });
          return option;
        }),
      );
      completions.hidden = found.length === 0;
    };
    input.addEventListener("input", () => {
      suggest();
      saveSoon();
    });
    input.addEventListener("keydown", (event) => {
      const first = completions.querySelector("li");
      if (event.key === "Tab" && !completions.hidden && first) {
        event.preventDefault();
        accept(first.textContent ?? "");
      } else if (event.key === "Escape") {
        completions.hidden = true;
      }
    });
    input.addEventListener("blur", () => (completions.hidden = true));
    return h("div", { class: "runset-filter-box" }, input, completions);
  }

  private groupingEditor(item: HTMLElement, runset: RunSet): HTMLElement {
    const keys = h("input", {
      class: "runset-group-keys",
      value: runset.grouping.keys.join(", "),
      placeholder: "group by, e.g. config.lr",
      "aria-label": "group by",
    });
    const aggregate = choice(
      "runset-aggregate",
      AGGREGATES,
      runset.grouping.aggregate,
    );
    const band = choice("runset-band", BANDS, runset.grouping.band);
    const saveGrouping = (): void => {
      const grouping = {
        keys: keys.value
          .split(",")
          .map((key) => key.trim())
          .filter((key) => key !== ""),
        aggregate: aggregate.value,
        band: band.value,
      };
      void this.save(item, runset, { grouping }, "grouping");
    };
    [keys, aggregate, band].forEach((control) =>
      control.addEventListener("change", saveGrouping),
    );
    const sortField = h("input", {
      class: "runset-sort-field",
      value: runset.sort.field,
      "aria-label": "sort by",
    });
    const direction = choice(
      "runset-sort-direction",
      ["asc", "desc"],
      runset.sort.direction,
    );
    const saveSort = (): void => {
      const sort = {
        field: sortField.value.trim(),
        direction: direction.value as "asc" | "desc",
      };
      void this.save(item, runset, { sort }, "sort");
    };
    [sortField, direction].forEach((control) =>
      control.addEventListener("change", saveSort),
    );
    return h(
      "div",
      { class: "runset-grouping" },
      h("label", {}, "group ", keys),
      aggregate,
      band,
      h("label", {}, "sort ", sortField),
      direction,
    );
  }

  private actions(item: HTMLElement, runset: RunSet): HTMLElement {
    const button = (label: string, run: () => Promise<void>): HTMLElement => {
      const element = h(
        "button",
        { type: "button", class: `runset-${label.toLowerCase()}` },
        label,
      );
      element.addEventListener("click", () => {
        run().catch((error: unknown) =>
          this.showError(item, "action", describe(error), null),
        );
      });
      return element;
    };
    return h(
      "div",
      { class: "runset-actions" },
      button("Clone", async () => {
        const copy = await runsetAction(this.project, runset.id, "clone");
        this.update([...this.runsets, copy]);
      }),
      button("Freeze", async () => {
        const frozen = await runsetAction(this.project, runset.id, "freeze");
        this.replace(frozen);
      }),
      button("Delete", async () => {
        await deleteRunset(this.project, runset.id);
        this.update(this.runsets.filter((one) => one.id !== runset.id));
      }),
    );
  }

  private async create(): Promise<void> {
    const taken = new Set(this.runsets.map((runset) => runset.name));
    let number = this.runsets.length + 1;
    while (taken.has(`run set ${number}`)) number += 1;
    const created = await createRunset(this.project, {
      name: `run set ${number}`,
    });
    this.update([...this.runsets, created]);
  }

  /** Save ``changes`` after earlier saves; keep the stored run set, or show the error. */
  private save(
    item: HTMLElement,
    runset: RunSet,
    changes: Partial<RunSet>,
    field = "",
  ): Promise<void> {
    this.saving = this.saving.then(() =>
      this.saveNow(item, runset, changes, field),
    );
    return this.saving;
  }

  private async saveNow(
    item: HTMLElement,
    runset: RunSet,
    changes: Partial<RunSet>,
    field: string,
  ): Promise<void> {
    try {
      const saved = await updateRunset(this.project, runset.id, changes);
      Object.assign(runset, saved);
      this.clearError(item);
      this.handlers.changed(this.runsets);
      item.dataset.saved = String(Number(item.dataset.saved ?? 0) + 1);
    } catch (error) {
      const column = error instanceof ApiError ? error.column : null;
      this.showError(item, field, describe(error), column);
    }
  }

  private replace(runset: RunSet): void {
    this.update(
      this.runsets.map((one) => (one.id === runset.id ? runset : one)),
    );
  }

  private update(runsets: RunSet[]): void {
    this.set(runsets);
    this.handlers.changed(this.runsets);
  }

  private clearError(item: HTMLElement): void {
    const box = item.querySelector<HTMLElement>(".runset-error");
    if (!box) return;
    box.hidden = true;
    box.replaceChildren();
    delete box.dataset.column;
    delete box.dataset.field;
  }

  private showError(
    item: HTMLElement,
    field: string,
    message: string,
    column: number | null,
  ): void {
    const box = item.querySelector<HTMLElement>(".runset-error");
    if (!box) return;
    box.hidden = false;
    box.dataset.field = field;
    box.replaceChildren(h("div", { class: "runset-error-message" }, message));
    if (column === null) {
      delete box.dataset.column;
      return;
    }
    box.dataset.column = String(column);
    const filter = item.querySelector<HTMLInputElement>(".runset-filter");
    if (field === "filter" && filter) {
      // The filter and a caret under the column the server named (1-based).
      const caret = " ".repeat(Math.max(0, column - 1)) + "^";
      box.append(
        h("pre", { class: "runset-caret" }, `${filter.value}\n${caret}`),
      );
    }
  }
}

function choice(
  className: string,
  options: string[],
  selected: string,
): HTMLSelectElement {
  const select = h("select", { class: className });
  for (const option of options) {
    const element = h("option", { value: option }, option);
    element.selected = option === selected;
    select.append(element);
  }
  return select;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
