// The controls above a line plot: smoothing and its parameter, x axis, log scales.
import { h } from "./dom";
import type { LineOptions } from "./linedata";
import type { Method } from "./smoothing";

const DEFAULT_PARAMETER: Record<Method, number> = {
  none: 0,
  ema: 0.6,
  average: 5,
  gaussian: 5,
};

/** Build the controls; ``set`` receives each change of options. With ``readOnly`` all are disabled. */
export function lineControls(
  o: LineOptions,
  keys: string[],
  set: (changes: Partial<LineOptions>) => void,
  readOnly = false,
): HTMLElement {
  const smoothing = h("select", {
    class: "smoothing",
    "aria-label": "smoothing",
  });
  for (const [value, label] of [
    ["none", "no smoothing"],
    ["ema", "EMA (weight)"],
    ["average", "running average (± points)"],
    ["gaussian", "gaussian (sigma, x units)"],
  ] as const) {
    smoothing.append(
      h("option", { value, selected: value === o.smoothing }, label),
    );
  }
  const parameter = h("input", {
    type: "number",
    class: "smoothing-parameter",
    "aria-label": "smoothing parameter",
    min: 0,
    step: "any",
    value: o.parameter,
    disabled: o.smoothing === "none",
  });
  smoothing.addEventListener("change", () => {
    const method = smoothing.value as Method;
    parameter.value = String(DEFAULT_PARAMETER[method]);
    parameter.disabled = method === "none";
    set({ smoothing: method, parameter: DEFAULT_PARAMETER[method] });
  });
  parameter.addEventListener("change", () =>
    set({ parameter: Number(parameter.value) }),
  );
  const x = h("select", { class: "x-axis", "aria-label": "x axis" });
  const choices = [
    "step",
    "time",
    "relative",
    ...keys.filter((k) => k !== o.key).map((k) => `metric:${k}`),
  ];
  // A page that may not list the keys, such as one opened by a share link,
  // still shows the panel's own x axis.
  if (!choices.includes(o.x)) choices.push(o.x);
  for (const choice of choices)
    x.append(h("option", { value: choice, selected: choice === o.x }, choice));
  x.addEventListener("change", () => set({ x: x.value }));
  const check = (name: "log_x" | "log_y", label: string): HTMLElement => {
    const box = h("input", {
      type: "checkbox",
      class: name,
      checked: o[name],
    });
    box.addEventListener("change", () => set({ [name]: box.checked }));
    return h("label", {}, box, ` ${label}`);
  };
  const controls = h(
    "div",
    { class: "panel-controls" },
    smoothing,
    parameter,
    x,
    check("log_x", "log x"),
    check("log_y", "log y"),
  );
  if (readOnly)
    controls
      .querySelectorAll<HTMLInputElement | HTMLSelectElement>("input, select")
      .forEach((control) => (control.disabled = true));
  return controls;
}
