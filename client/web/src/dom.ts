// Small helpers for building the DOM without a framework.

type Child = Node | string | null | undefined | false;
type Attributes = Record<
  string,
  string | number | boolean | EventListener | undefined
>;

/** Create an element with attributes (``on*`` keys become listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(
      typeof child === "string" ? document.createTextNode(child) : child,
    );
  }
}

export function clear(element: Element): void {
  element.replaceChildren();
}

/** Format a value as the tables show it: NaN and infinities by name, null as "null". */
export function formatValue(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "";
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "NaN";
    if (value === Infinity) return "+Inf";
    if (value === -Infinity) return "-Inf";
    if (Number.isInteger(value)) return String(value);
    return Math.abs(value) >= 1e-3 && Math.abs(value) < 1e6
      ? value.toPrecision(5)
      : value.toExponential(4);
  }
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function formatTime(seconds: number): string {
  return new Date(seconds * 1000).toLocaleString();
}

/** Run ``action`` once, ``delay`` ms after the last call. */
export function debounce(action: () => void, delay: number): () => void {
  let timer: number | undefined;
  return () => {
    if (timer !== undefined) window.clearTimeout(timer);
    timer = window.setTimeout(() => {
      timer = undefined;
      action();
    }, delay);
  };
}

/** Run ``action`` at most once per ``interval`` ms, at the end of each interval with calls. */
export function throttle(action: () => void, interval: number): () => void {
  let timer: number | undefined;
  return () => {
    if (timer !== undefined) return;
    timer = window.setTimeout(() => {
      timer = undefined;
      action();
    }, interval);
  };
}
