// Resizing a plotly plot that may be hidden or gone by the time plotly looks at it.
import Plotly from "plotly.js-dist-min";

/**
 * Resize ``plot`` to its container. Plotly checks the plot in a later task
 * and rejects when it is no longer displayed, as on a page that is closing.
 * Such a plot has nothing to resize, so that rejection is only logged.
 */
export function resizePlot(plot: HTMLElement): void {
  if (!plot.isConnected) return;
  Plotly.Plots.resize(plot).catch((error: unknown) =>
    console.warn("plot resize skipped", error),
  );
}
