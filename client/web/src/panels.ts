// Panels drawn from the run table's data: scatter, bar, scalar and parallel coordinates.
import Plotly from "plotly.js-dist-min";
import type { PanelLayout, Run } from "./api";
import { runColour } from "./colours";
import { formatValue, h } from "./dom";
import { resizePlot } from "./plotresize";
import type { PanelView } from "./grid";
import { fieldValue } from "./runtable";
import { PLOT_CONFIG } from "./plotconfig";

export interface RunsContext {
  /** The runs to draw, in table order. */
  runs(): Run[];
}

const MARGIN = { l: 50, r: 10, t: 10, b: 40 };

/** A finite number for a field, or null (text, missing, NaN and infinities are not plotted). */
function numeric(run: Run, field: string): number | null {
  const value = fieldValue(run, field);
  if (typeof value === "boolean") return value ? 1 : 0;
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function option(panel: PanelLayout, name: string): string {
  const value = panel.options[name];
  return typeof value === "string" ? value : "";
}

/** Shared frame: a plot area and a note naming how many runs were left out, and why. */
abstract class RunsPanel implements PanelView {
  readonly element = h("div", { class: "panel-body" });
  protected readonly plot = h("div", { class: "plot" });
  protected readonly note = h("p", { class: "panel-note" });

  constructor(
    protected readonly panel: PanelLayout,
    protected readonly context: RunsContext,
  ) {
    this.element.append(this.plot, this.note);
  }

  abstract title(): string;
  protected abstract draw(runs: Run[]): Promise<void>;

  refresh(): void {
    void this.draw(this.context.runs()).then(() => {
      this.plot.dataset.revision = String(
        Number(this.plot.dataset.revision ?? 0) + 1,
      );
    });
  }

  resize(): void {
    if (this.plot.classList.contains("js-plotly-plot")) resizePlot(this.plot);
  }

  destroy(): void {
    Plotly.purge(this.plot);
  }

  protected skipped(count: number, fields: string[]): void {
    this.note.textContent = count
      ? `${count} runs without a finite number for ${fields.join(", ")} are not shown`
      : "";
  }
}

export class ScatterPanel extends RunsPanel {
  title(): string {
    return `${option(this.panel, "y")} vs ${option(this.panel, "x")}`;
  }

  protected async draw(runs: Run[]): Promise<void> {
    const [xField, yField] = [option(this.panel, "x"), option(this.panel, "y")];
    const shown = runs.filter(
      (run) => numeric(run, xField) !== null && numeric(run, yField) !== null,
    );
    this.skipped(runs.length - shown.length, [xField, yField]);
    const trace = {
      type: "scatter",
      mode: "markers",
      x: shown.map((run) => numeric(run, xField)),
      y: shown.map((run) => numeric(run, yField)),
      text: shown.map((run) => run.name),
      marker: { size: 10, color: shown.map((run) => runColour(run.id)) },
      hovertemplate: `<b>%{text}</b><br>${xField} %{x}<br>${yField} %{y}<extra></extra>`,
    };
    const layout = {
      margin: MARGIN,
      xaxis: { title: { text: xField } },
      yaxis: { title: { text: yField } },
    };
    await Plotly.react(this.plot, [trace], layout, PLOT_CONFIG);
  }
}

export class BarPanel extends RunsPanel {
  title(): string {
    return option(this.panel, "field");
  }

  protected async draw(runs: Run[]): Promise<void> {
    const field = option(this.panel, "field");
    const shown = runs.filter((run) => numeric(run, field) !== null);
    this.skipped(runs.length - shown.length, [field]);
    const trace = {
      type: "bar",
      orientation: "h",
      y: shown.map((run) => run.name),
      x: shown.map((run) => numeric(run, field)),
      marker: { color: shown.map((run) => runColour(run.id)) },
      hovertemplate: `<b>%{y}</b><br>${field} %{x}<extra></extra>`,
    };
    const layout = {
      margin: { ...MARGIN, l: 120 },
      yaxis: { automargin: true },
    };
    await Plotly.react(this.plot, [trace], layout, PLOT_CONFIG);
  }
}

const AGGREGATES: Record<string, (values: number[]) => number> = {
  mean: (v) => v.reduce((a, b) => a + b, 0) / v.length,
  min: (v) => Math.min(...v),
  max: (v) => Math.max(...v),
  last: (v) => v[0] ?? NaN,
};

/** One number over the shown runs: mean, min, max, or the first run's value ("last", newest first). */
export class ScalarPanel extends RunsPanel {
  title(): string {
    return `${option(this.panel, "aggregate") || "mean"} of ${option(this.panel, "field")}`;
  }

  protected async draw(runs: Run[]): Promise<void> {
    const field = option(this.panel, "field");
    const aggregate =
      AGGREGATES[option(this.panel, "aggregate")] ?? AGGREGATES.mean!;
    const values = runs
      .map((run) => numeric(run, field))
      .filter((v): v is number => v !== null);
    this.skipped(runs.length - values.length, [field]);
    const text = values.length ? formatValue(aggregate(values)) : "no value";
    this.plot.replaceChildren(h("div", { class: "scalar" }, text));
  }

  override resize(): void {}

  override destroy(): void {}
}

export class ParallelPanel extends RunsPanel {
  fields(): string[] {
    const fields = this.panel.options.fields;
    return Array.isArray(fields) ? fields.map(String) : [];
  }

  title(): string {
    return `parallel coordinates: ${this.fields().join(", ")}`;
  }

  protected async draw(runs: Run[]): Promise<void> {
    const fields = this.fields();
    const shown = runs.filter((run) =>
      fields.every((field) => numeric(run, field) !== null),
    );
    this.skipped(runs.length - shown.length, fields);
    const last = fields[fields.length - 1] ?? "";
    const trace = {
      type: "parcoords",
      line: {
        color: shown.map((run) => numeric(run, last)),
        colorscale: "Viridis",
        showscale: true,
      },
      dimensions: fields.map((field) => ({
        label: field,
        values: shown.map((run) => numeric(run, field)),
      })),
    };
    await Plotly.react(
      this.plot,
      [trace],
      { margin: { l: 60, r: 60, t: 50, b: 20 } },
      PLOT_CONFIG,
    );
  }
}
