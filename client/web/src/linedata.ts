// The data behind one line-plot panel's traces, and how live points extend it.
import type { PanelLayout } from "./api";
import type { PointsMessage } from "./live";
import { smooth, type Method } from "./smoothing";

/** A line panel's options, as stored in the layout. */
export interface LineOptions {
  key: string;
  x: string;
  smoothing: Method;
  parameter: number;
  log_x: boolean;
  log_y: boolean;
}

/** One run's line as drawn, kept to extend it and to smooth it again. */
export interface LineState {
  line: number;
  raw: number | null;
  marks: number;
  createdAt: number;
  x: number[];
  y: (number | null)[];
  steps: number[];
  lastStep: number;
}

export function emptyState(createdAt: number): LineState {
  return {
    line: -1,
    raw: null,
    marks: -1,
    createdAt,
    x: [],
    y: [],
    steps: [],
    lastStep: -1,
  };
}

const SYMBOLS: Record<string, string> = {
  NaN: "x",
  "+Inf": "triangle-up",
  "-Inf": "triangle-down",
  null: "circle-open",
  nonpositive: "diamond-open",
};

export function lineOptions(panel: PanelLayout): LineOptions {
  const o = panel.options;
  return {
    key: String(o.key ?? ""),
    x: typeof o.x === "string" ? o.x : "step",
    smoothing: (typeof o.smoothing === "string"
      ? o.smoothing
      : "none") as Method,
    parameter: typeof o.parameter === "number" ? o.parameter : 0,
    log_x: o.log_x === true,
    log_y: o.log_y === true,
  };
}

/** Why a value cannot sit on the line (the marks trace's label), or null when it can. */
function labelOf(value: number | boolean | null, logY: boolean): string | null {
  if (value === null) return "null";
  const number = Number(value);
  if (Number.isNaN(number)) return "NaN";
  if (number === Infinity) return "+Inf";
  if (number === -Infinity) return "-Inf";
  if (logY && number <= 0) return "nonpositive";
  return null;
}

function markText(label: string, value: number | boolean | null): string {
  if (label === "nonpositive")
    return `${value} (zero or negative: not drawable on a log y axis)`;
  return `${label}, drawn at the previous drawable value`;
}

type Column = PointsMessage["metrics"][string];

/** New points for the line traces and the marks trace, from one live entry. */
export interface Extension {
  x: number[];
  y: (number | null)[];
  steps: number[];
  marks: {
    x: number[];
    y: number[];
    text: [string, number][];
    symbol: string[];
  };
}

/**
 * Append the column's points after ``state.lastStep`` to ``state`` and return
 * them as trace extensions. Points at or before the last drawn step are
 * skipped: the figure or an earlier entry drew them already.
 */
export function appendPoints(
  state: LineState,
  column: Column,
  o: LineOptions,
): Extension {
  const add: Extension = {
    x: [],
    y: [],
    steps: [],
    marks: { x: [], y: [], text: [], symbol: [] },
  };
  let previous = [...state.y].reverse().find((v) => v !== null) ?? null;
  column.steps.forEach((step, i) => {
    if (step <= state.lastStep) return;
    const time = column.times[i] ?? 0;
    const x =
      o.x === "time"
        ? time * 1000
        : o.x === "relative"
          ? time - state.createdAt
          : step;
    if (o.log_x && x <= 0) return;
    const value = column.values[i] ?? null;
    const label = labelOf(value, o.log_y);
    add.x.push(x);
    add.steps.push(step);
    add.y.push(label === null ? Number(value) : null);
    state.lastStep = step;
    if (label === null) {
      previous = Number(value);
      return;
    }
    add.marks.x.push(x);
    add.marks.y.push(previous ?? (o.log_y ? 1 : 0));
    add.marks.text.push([markText(label, value), step]);
    add.marks.symbol.push(SYMBOLS[label] ?? "x");
  });
  state.x = state.x.concat(add.x);
  state.y = state.y.concat(add.y);
  state.steps = state.steps.concat(add.steps);
  return add;
}

/** The smoothed line over the drawable points, null where the raw line has a gap. */
export function smoothedLine(
  state: LineState,
  o: LineOptions,
): (number | null)[] {
  const drawable = state.y.flatMap((value, index) =>
    value === null ? [] : [index],
  );
  const values = smooth(
    o.smoothing,
    o.parameter,
    drawable.map((index) => state.x[index] ?? 0),
    drawable.map((index) => state.y[index] ?? 0),
  );
  const result: (number | null)[] = state.y.map(() => null);
  drawable.forEach(
    (index, position) => (result[index] = values[position] ?? null),
  );
  return result;
}
