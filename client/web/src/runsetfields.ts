// Run-set fields shared by the workspace sidebar and the report's run-set bar: key
// completion, the grouping and sort controls, and the checks the server applies to them.
import type { Run, Value } from "./api";
import { h } from "./dom";

export const METADATA = [
  "name",
  "state",
  "id",
  "group",
  "tags",
  "created_at",
  "heartbeat_at",
  "finished_at",
];
/** Metadata a run set may group by. Times would make one group per run. */
export const GROUP_METADATA = ["name", "state", "id", "group", "tags"];
const STATISTICS = ["min", "max", "has_nan", "has_inf", "has_null"];
export const AGGREGATES = ["mean", "median", "min", "max"];
export const BANDS = ["std", "stderr", "minmax", "none"];
export const DIRECTIONS = ["asc", "desc"] as const;
export const MAX_GROUP_KEYS = 5;
/** Suggestions shown at once under an input. */
const MAX_COMPLETIONS = 8;
const WORD = /^[A-Za-z_][A-Za-z0-9_\-/]*$/;
/** Characters of a field being typed, quotes included, as the completion replaces them. */
const FIELD_CHARACTER = /[A-Za-z0-9_.\-/"]/;

export interface Grouping {
  keys: string[];
  aggregate: string;
  band: string;
}

export interface Sort {
  field: string;
  direction: "asc" | "desc";
}

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

/** List the fields a run set over ``runs`` may group by: metadata without times, and config paths. */
export function groupFields(runs: Iterable<Run>): string[] {
  const config = new Set<string>();
  for (const run of runs) configFields("config", run.config, config);
  return [...GROUP_METADATA, ...[...config].sort()];
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

/**
 * Suggest the ``fields`` that start with the field typed before the cursor
 * in ``input``. Tab or a click puts the suggestion in place of the typed
 * part, then ``accepted`` runs. Returns the box that contains the input and the list.
 */
export function withCompletion(
  input: HTMLInputElement,
  fields: () => string[],
  accepted: () => void,
): HTMLElement {
  const completions = h("ul", { class: "runset-completions", hidden: true });
  const accept = (field: string): void => {
    const cursor = input.selectionStart ?? input.value.length;
    const { start } = fieldAt(input.value, cursor);
    input.value =
      input.value.slice(0, start) + field + input.value.slice(cursor);
    const end = start + field.length;
    input.setSelectionRange(end, end);
    completions.hidden = true;
    input.focus();
    accepted();
  };
  const suggest = (): void => {
    const cursor = input.selectionStart ?? input.value.length;
    const { prefix } = fieldAt(input.value, cursor);
    const found =
      prefix === ""
        ? []
        : fields()
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
  input.addEventListener("input", suggest);
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
  return h("span", { class: "runset-completion-box" }, input, completions);
}

export function choice(
  className: string,
  options: readonly string[],
  selected: string,
  label: string,
): HTMLSelectElement {
  const select = h("select", { class: className, "aria-label": label });
  for (const option of options) {
    const element = h("option", { value: option }, option);
    element.selected = option === selected;
    select.append(element);
  }
  return select;
}

/**
 * Split a list of grouping keys at the commas outside double quotes, so that
 * ``config."a,b"`` stays one key. Blank entries are dropped.
 */
export function splitKeys(text: string): string[] {
  const keys: string[] = [];
  let current = "";
  let quoted = false;
  for (let index = 0; index < text.length; index += 1) {
    const char = text.charAt(index);
    if (quoted && char === "\\" && index + 1 < text.length) {
      current += char + text.charAt(index + 1);
      index += 1;
      continue;
    }
    if (char === '"') quoted = !quoted;
    if (char === "," && !quoted) {
      keys.push(current);
      current = "";
    } else current += char;
  }
  keys.push(current);
  return keys.map((key) => key.trim()).filter((key) => key !== "");
}

export interface GroupingHandlers {
  /** The runs whose keys the inputs suggest. */
  runs(): Iterable<Run>;
  /** Called with the grouping after an edit of its keys, aggregate or band. */
  grouping(grouping: Grouping): void;
  /** Called with the sort after an edit of its field or direction, or with null for an empty field. */
  sort(sort: Sort | null): void;
}

/**
 * The grouping and sort of one run set: group keys with completion,
 * aggregate, band, sort field with completion and direction. It reports
 * edits to its handlers and writes nothing itself.
 */
export class GroupingControls {
  readonly element: HTMLElement;
  private readonly keys = h("input", {
    class: "runset-group-keys",
    placeholder: "group by, e.g. config.lr",
    spellcheck: "false",
    autocomplete: "off",
    "aria-label": "group by",
  });
  private readonly aggregate: HTMLSelectElement;
  private readonly band: HTMLSelectElement;
  private readonly sortField = h("input", {
    class: "runset-sort-field",
    spellcheck: "false",
    autocomplete: "off",
    "aria-label": "sort by",
  });
  private readonly direction: HTMLSelectElement;

  constructor(
    private readonly handlers: GroupingHandlers,
    sortPlaceholder = "",
  ) {
    this.aggregate = choice(
      "runset-aggregate",
      AGGREGATES,
      "mean",
      "aggregate",
    );
    this.band = choice("runset-band", BANDS, "std", "band");
    this.direction = choice(
      "runset-sort-direction",
      DIRECTIONS,
      "desc",
      "sort direction",
    );
    this.sortField.placeholder = sortPlaceholder;
    const grouping = (): void => this.handlers.grouping(this.grouping());
    const sort = (): void => this.handlers.sort(this.sort());
    [this.keys, this.aggregate, this.band].forEach((control) =>
      control.addEventListener("change", grouping),
    );
    [this.sortField, this.direction].forEach((control) =>
      control.addEventListener("change", sort),
    );
    this.element = h(
      "div",
      { class: "runset-grouping" },
      h(
        "label",
        {},
        "group ",
        withCompletion(
          this.keys,
          () => groupFields(this.handlers.runs()),
          grouping,
        ),
      ),
      this.aggregate,
      this.band,
      h(
        "label",
        {},
        "sort ",
        withCompletion(
          this.sortField,
          () => filterFields(this.handlers.runs()),
          sort,
        ),
      ),
      this.direction,
    );
  }

  grouping(): Grouping {
    return {
      keys: splitKeys(this.keys.value),
      aggregate: this.aggregate.value,
      band: this.band.value,
    };
  }

  sort(): Sort | null {
    const field = this.sortField.value.trim();
    if (field === "") return null;
    return {
      field,
      direction: this.direction.value === "asc" ? "asc" : "desc",
    };
  }

  /**
   * Show ``grouping`` and ``sort``, leaving alone a control that has the
   * focus or contains a rejected value, so that its text can be fixed.
   */
  show(grouping: Grouping, sort: Sort | null): void {
    const set = (
      control: HTMLInputElement | HTMLSelectElement,
      value: string,
    ): void => {
      if (control === document.activeElement) return;
      if (control.getAttribute("aria-invalid") === "true") return;
      control.value = value;
    };
    set(this.keys, grouping.keys.join(", "));
    set(this.aggregate, grouping.aggregate);
    set(this.band, grouping.band);
    set(this.sortField, sort?.field ?? "");
    set(this.direction, sort?.direction ?? "desc");
  }

  /** Mark the grouping or the sort controls as containing a rejected value, or clear the mark. */
  markInvalid(part: "grouping" | "sort", invalid: boolean): void {
    const controls =
      part === "grouping"
        ? [this.keys, this.aggregate, this.band]
        : [this.sortField, this.direction];
    for (const control of controls)
      if (invalid) control.setAttribute("aria-invalid", "true");
      else control.removeAttribute("aria-invalid");
  }
}

/** Describe ``grouping`` in words, for readers who may not change it. */
export function describeGrouping(
  grouping: Grouping,
  sort: Sort | null,
): string {
  const grouped =
    grouping.keys.length === 0
      ? "one line per run"
      : `grouped by ${grouping.keys.join(", ")}: ${grouping.aggregate}` +
        (grouping.band === "none" ? ", no band" : `, band ${grouping.band}`);
  const sorted =
    sort === null
      ? "newest first"
      : `sorted by ${sort.field} ${sort.direction === "asc" ? "ascending" : "descending"}`;
  return `${grouped}; ${sorted}`;
}
