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
import { filterFields, GroupingControls, withCompletion } from "./runsetfields";

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
    const saveSoon = debounce(
      () => void this.save(item, runset, { filter: input.value }, "filter"),
      400,
    );
    input.addEventListener("input", saveSoon);
    const box = withCompletion(
      input,
      () => filterFields(this.handlers.runs()),
      saveSoon,
    );
    box.className = "runset-filter-box";
    return box;
  }

  private groupingEditor(item: HTMLElement, runset: RunSet): HTMLElement {
    const controls = new GroupingControls({
      runs: () => this.handlers.runs(),
      grouping: (grouping) =>
        void this.save(item, runset, { grouping }, "grouping"),
      // The server rejects an empty sort field with a message that names the fix.
      sort: (sort) =>
        void this.save(
          item,
          runset,
          { sort: sort ?? { field: "", direction: runset.sort.direction } },
          "sort",
        ),
    });
    controls.show(runset.grouping, runset.sort);
    return controls.element;
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

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
