// The part of plotly.js's API that the app uses; plotly.js-dist-min ships no types.
declare module "plotly.js-dist-min" {
  export type Datum = number | string | null;
  export interface Trace {
    uid?: string;
    x?: Datum[];
    y?: Datum[];
    customdata?: unknown[];
    [attribute: string]: unknown;
  }
  export interface Figure {
    data: Trace[];
    layout: Record<string, unknown>;
  }
  export interface PlotElement extends HTMLDivElement {
    data: Trace[];
    layout: Record<string, unknown>;
    on(
      event: "plotly_relayout",
      handler: (update: Record<string, unknown>) => void,
    ): void;
  }
  export interface Config {
    responsive?: boolean;
    displaylogo?: boolean;
    [option: string]: unknown;
  }
  const Plotly: {
    react(
      element: HTMLElement,
      data: Trace[],
      layout: Record<string, unknown>,
      config?: Config,
    ): Promise<PlotElement>;
    extendTraces(
      element: HTMLElement,
      update: Record<string, unknown[][]>,
      indices: number[],
    ): Promise<PlotElement>;
    restyle(
      element: HTMLElement,
      update: Record<string, unknown[]>,
      indices: number[],
    ): Promise<PlotElement>;
    purge(element: HTMLElement): void;
    Plots: { resize(element: HTMLElement): Promise<void> };
  };
  export default Plotly;
}
