// The "Add panel" form: pick a panel type and the metric or fields it shows.
import type { PanelLayout, Value } from "./api";
import { h } from "./dom";

export function newPanelId(): string {
  return `p${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

export function linePanel(key: string): PanelLayout {
  return {
    id: newPanelId(),
    type: "line",
    x: 0,
    y: 0,
    w: 4,
    h: 4,
    options: { key, x: "step", smoothing: "none", parameter: 0 },
  };
}

/** The function that rebuilds the choices of each form that ``addPanelForm`` made. */
const refills = new WeakMap<HTMLElement, () => void>();

/**
 * Rebuild the choices of an open "Add panel" form when the metric keys or run
 * fields changed, keeping what is selected where it is still offered.
 */
export function refreshChoices(form: HTMLElement): void {
  if (form instanceof HTMLDetailsElement && form.open) refills.get(form)?.();
}

/** A form that builds a panel from the current metric keys and run fields. */
export function addPanelForm(
  keys: () => string[],
  fields: () => string[],
  add: (panel: PanelLayout) => void,
): HTMLElement {
  const type = h("select", { class: "panel-type", "aria-label": "panel type" });
  for (const name of ["line", "scatter", "bar", "scalar", "parallel"])
    type.append(h("option", { value: name }, name));
  const inputs = h("span", { class: "panel-inputs" });
  const select = (
    name: string,
    choices: string[],
    multiple = false,
  ): HTMLSelectElement => {
    const element = h("select", { name, "aria-label": name, multiple });
    for (const choice of choices)
      element.append(h("option", { value: choice }, choice));
    return element;
  };
  // The panel type and choices the inputs were built from, to rebuild only on a change.
  const signature = (): string =>
    JSON.stringify([type.value, keys(), fields()]);
  let shownSignature = "";
  const fill = (): void => {
    shownSignature = signature();
    const selected = new Map(
      [...inputs.querySelectorAll("select")].map((element) => [
        element.name,
        [...element.selectedOptions].map((option) => option.value),
      ]),
    );
    const kind = type.value;
    if (kind === "line") inputs.replaceChildren(select("key", keys()));
    if (kind === "scatter")
      inputs.replaceChildren(select("x", fields()), select("y", fields()));
    if (kind === "bar") inputs.replaceChildren(select("field", fields()));
    if (kind === "scalar")
      inputs.replaceChildren(
        select("field", fields()),
        select("aggregate", ["mean", "min", "max", "last"]),
      );
    if (kind === "parallel")
      inputs.replaceChildren(select("fields", fields(), true));
    for (const element of inputs.querySelectorAll("select")) {
      const values = selected.get(element.name) ?? [];
      const options = [...element.options];
      if (!options.some((option) => values.includes(option.value))) continue;
      for (const option of options)
        option.selected = values.includes(option.value);
    }
  };
  type.addEventListener("change", fill);
  const submit = h(
    "button",
    { type: "button", class: "add-panel" },
    "Add panel",
  );
  submit.addEventListener("click", () => {
    const options: Record<string, Value> = {};
    for (const element of inputs.querySelectorAll("select")) {
      options[element.name] = element.multiple
        ? [...element.selectedOptions].map((o) => o.value)
        : element.value;
    }
    if (type.value === "line") {
      add(linePanel(String(options.key)));
      return;
    }
    const kind = type.value as PanelLayout["type"];
    add({
      id: newPanelId(),
      type: kind,
      x: 0,
      y: 0,
      w: kind === "scalar" ? 3 : 4,
      h: kind === "scalar" ? 2 : 4,
      options,
    });
  });
  const details = h(
    "details",
    { class: "add-panel-form" },
    h("summary", {}, "Add panel"),
    type,
    inputs,
    submit,
  );
  details.addEventListener("toggle", fill);
  refills.set(details, () => {
    if (signature() !== shownSignature) fill();
  });
  return details;
}
