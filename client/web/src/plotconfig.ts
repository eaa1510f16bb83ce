// The plotly.js options that every chart of the app draws with.

/**
 * The config passed to every ``Plotly.react``. plotly.js 4 shows a toolbar
 * button that posts the chart's data to Plotly's cloud service unless
 * ``showSendToCloud`` is false. A self-hosted tracker sends no run data to
 * another host, so that button is off and the cloud address is empty.
 */
export const PLOT_CONFIG = {
  responsive: true,
  displaylogo: false,
  showSendToCloud: false,
  plotlyServerURL: "",
};
