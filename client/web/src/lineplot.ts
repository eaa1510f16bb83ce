// A line-plot panel: draws the server's figure, extends it with live points, refetches on zoom.
import Plotly from "plotly.js-dist-min";
import type { PlotElement, Trace } from "plotly.js-dist-min";
import { getFigure, type FigureResponse, type PanelLayout } from "./api";
import { resizePlot } from "./plotresize";
import { h, throttle } from "./dom";
import type { PanelView } from "./grid";
import type { PointsMessage } from "./live";
import { lineControls } from "./linecontrols";
import {
  appendPoints,
  emptyState,
  lineOptions,
  smoothedLine,
  type LineOptions,
  type LineState,
} from "./linedata";
import { PLOT_CONFIG } from "./plotconfig";

export interface LineContext {
  project: string;
  /** The runs to draw, in table order, or the members of the active run sets. */
  runIds(): string[];
  /** The active run sets, in sidebar order; when there are any, they are drawn instead. */
  runsets(): string[];
  /**
   * In a report, the panel grid whose active run sets are drawn, and the runs
   * they are limited to (the kept runs of frozen sets), or null for no limit.
   */
  reportGrid?(): { report: string; grid: string; runs: string[] | null };
  /** Metric keys that can serve as x. */
  keys(): string[];
  save(): void;
  /** Whether the smoothing, axis and scale controls are disabled. */
  readOnly?: boolean;
}

export class LinePanel implements PanelView {
  readonly element = h("div", { class: "panel-body line-panel" });
  private readonly plot = h("div", { class: "plot" });
  private lines = new Map<string, LineState>();
  /** Runs drawn inside a grouped line, which live points change only through a refetch. */
  private grouped = new Set<string>();
  private loaded = false;
  /** Refresh counter. Only the newest refresh draws its figure, so an older one never reopens the panel. */
  private generation = 0;
  private pending: PointsMessage[] = [];
  private zoom: { min: number; max: number } | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private revision = 0;
  private destroyed = false;
  readonly scheduleRefresh = throttle(() => this.refresh(), 300);

  constructor(
    private readonly panel: PanelLayout,
    private readonly context: LineContext,
  ) {
    this.element.append(this.controls(), this.plot);
    this.plot.dataset.key = this.options.key;
  }

  get options(): LineOptions {
    return lineOptions(this.panel);
  }

  title(): string {
    return this.options.key;
  }

  refresh(): void {
    this.loaded = false;
    const generation = ++this.generation;
    const current = (): boolean =>
      !this.destroyed && generation === this.generation;
    this.run(async () => {
      if (!current()) return;
      // Without runs the server would pick the newest ones, so draw no lines instead.
      const figure: FigureResponse =
        this.context.runIds().length === 0
          ? { figure: { data: [], layout: {} }, runs: {} }
          : await getFigure(this.context.project, this.query());
      // When a newer refresh is queued behind this one, live points wait for its figure.
      if (current()) await this.draw(figure);
    });
  }

  resize(): void {
    if (this.plot.classList.contains("js-plotly-plot")) resizePlot(this.plot);
  }

  destroy(): void {
    this.destroyed = true;
    Plotly.purge(this.plot);
  }

  receive(message: PointsMessage): void {
    if (!(this.options.key in message.metrics)) return;
    if (!this.loaded) {
      this.pending.push(message);
      return;
    }
    if (this.grouped.has(message.run_id)) this.scheduleRefresh();
    const state = this.lines.get(message.run_id);
    if (!state || this.options.x.startsWith("metric:")) {
      // A run not drawn yet, or an x that needs another metric: ask the server again.
      if (this.context.runIds().includes(message.run_id))
        this.scheduleRefresh();
      return;
    }
    this.run(() => this.extend(message));
  }

  /** Chain plot updates, so that plotly never runs two on one plot at once. */
  private run(step: () => Promise<void>): void {
    this.queue = this.queue.then(step).catch((error: unknown) => {
      console.error("line panel update failed", error);
      this.plot.dataset.error = String(error);
    });
  }

  private query(): URLSearchParams {
    const o = this.options;
    const query = new URLSearchParams({
      key: o.key,
      x: o.x,
      smoothing: o.smoothing,
      parameter: String(o.parameter),
    });
    if (o.log_x) query.set("log_x", "1");
    if (o.log_y) query.set("log_y", "1");
    const grid = this.context.reportGrid?.();
    const runsets = this.context.runsets();
    if (grid !== undefined) {
      query.set("report", grid.report);
      query.set("grid", grid.grid);
      for (const runId of grid.runs ?? []) query.append("runs", runId);
    } else {
      for (const id of runsets) query.append("runsets", id);
      if (runsets.length === 0)
        for (const runId of this.context.runIds()) query.append("runs", runId);
    }
    if (this.zoom) {
      query.set("min_step", String(this.zoom.min));
      query.set("max_step", String(this.zoom.max));
    }
    return query;
  }

  private async draw(response: FigureResponse): Promise<void> {
    const { data, layout } = response.figure;
    const first = !this.plot.classList.contains("js-plotly-plot");
    // The panel's header shows the title, so the plot gives its room to the data.
    const margin = { ...(layout.margin as Record<string, number>), t: 10 };
    const shown = { ...layout, title: { text: "" }, margin, autosize: true };
    await Plotly.react(this.plot, data, shown, PLOT_CONFIG);
    if (first)
      (this.plot as PlotElement).on("plotly_relayout", (update) =>
        this.relayout(update),
      );
    this.lines = new Map();
    this.grouped = new Set(
      Object.values(response.runsets ?? {}).flatMap((one) =>
        one.grouped ? one.drawn : [],
      ),
    );
    data.forEach((trace: Trace, index: number) => {
      // uid is ROLE-RUN_ID; roles have no "-", run ids may. Grouped lines
      // (group-, band-, ...) are not extended live, so they are skipped here.
      const uid = String(trace.uid);
      const role = uid.slice(0, uid.indexOf("-"));
      const runId = uid.slice(uid.indexOf("-") + 1);
      if (role !== "line" && role !== "raw" && role !== "marks") return;
      const state =
        this.lines.get(runId) ??
        emptyState(response.runs[runId]?.created_at ?? 0);
      if (role === "line") state.line = index;
      if (role === "raw") state.raw = index;
      if (role === "marks") state.marks = index;
      if (role === "raw" || (role === "line" && state.raw === null)) {
        state.x = (trace.x ?? []) as number[];
        state.y = (trace.y ?? []) as (number | null)[];
        state.steps = (trace.customdata ?? []) as number[];
        state.lastStep = state.steps.reduce((a, b) => Math.max(a, b), -1);
      }
      this.lines.set(runId, state);
    });
    this.loaded = true;
    this.bump();
    const pending = this.pending;
    this.pending = [];
    for (const message of pending) this.receive(message);
  }

  private bump(): void {
    this.revision += 1;
    this.plot.dataset.revision = String(this.revision);
  }

  /**
   * Draw the message's new points. The line is looked up when the update runs,
   * not when the message arrived, because a figure drawn in between replaces
   * the lines and may contain these points already.
   */
  private async extend(message: PointsMessage): Promise<void> {
    const state = this.lines.get(message.run_id);
    const column = message.metrics[this.options.key];
    if (!state || !column) return;
    const add = appendPoints(state, column, this.options);
    if (add.x.length === 0) return;
    const extension = { x: [add.x], y: [add.y], customdata: [add.steps] };
    if (state.raw === null) {
      await Plotly.extendTraces(this.plot, extension, [state.line]);
    } else {
      // Smoothing may change earlier smoothed values, so the line is replaced.
      await Plotly.extendTraces(this.plot, extension, [state.raw]);
      const y = smoothedLine(state, this.options);
      const line = { x: [state.x], y: [y], customdata: [state.steps] };
      await Plotly.restyle(this.plot, line, [state.line]);
    }
    const marks = add.marks;
    if (marks.x.length > 0) {
      const update = {
        x: [marks.x],
        y: [marks.y],
        customdata: [marks.text],
        "marker.symbol": [marks.symbol],
      };
      await Plotly.extendTraces(this.plot, update, [state.marks]);
    }
    this.bump();
  }

  private relayout(update: Record<string, unknown>): void {
    if (this.options.x !== "step") return;
    const low = update["xaxis.range[0]"];
    const high = update["xaxis.range[1]"];
    let zoom: { min: number; max: number } | null = this.zoom;
    if (typeof low === "number" && typeof high === "number") {
      const scale = (v: number): number => (this.options.log_x ? 10 ** v : v);
      zoom = {
        min: Math.max(0, Math.floor(scale(low))),
        max: Math.max(0, Math.ceil(scale(high))),
      };
    } else if (update["xaxis.autorange"] === true) {
      zoom = null;
    }
    if (JSON.stringify(zoom) === JSON.stringify(this.zoom)) return;
    this.zoom = zoom;
    this.refresh();
  }

  private controls(): HTMLElement {
    const set = (changes: Partial<LineOptions>): void => {
      if (changes.x !== undefined) this.zoom = null;
      Object.assign(this.panel.options, changes);
      this.context.save();
      this.refresh();
    };
    return lineControls(
      this.options,
      this.context.keys(),
      set,
      this.context.readOnly ?? false,
    );
  }
}
