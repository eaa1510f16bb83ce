// The run page: state, config, summary and a line plot of every metric, kept live.
import { ApiError, getRun, runKeys, type PanelLayout, type Run } from "./api";
import { linePanel } from "./addpanel";
import { statusBadge, topBar } from "./chrome";
import { formatTime, formatValue, h, throttle } from "./dom";
import { LinePanel } from "./lineplot";
import { LiveConnection } from "./live";

function reportError(error: unknown): void {
  // The next live event or reconnection loads the page again.
  console.error("run page update failed", error);
}

function table(document: Record<string, unknown>, name: string): HTMLElement {
  const rows = Object.entries(document)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, value]) =>
      h("tr", {}, h("th", {}, key), h("td", {}, formatValue(value))),
    );
  return h(
    "section",
    { class: `document ${name}` },
    h("h2", {}, name),
    rows.length ? h("table", {}, ...rows) : h("p", {}, "empty"),
  );
}

export class RunPage {
  private run: Run | null = null;
  private panels = new Map<string, LinePanel>();
  private readonly details = h("div", { class: "run-details" });
  private readonly charts = h("div", { class: "panel-grid" });
  private readonly badge = statusBadge();
  private readonly live: LiveConnection;
  private readonly renderDetails = throttle(() => this.showDetails(), 250);
  private readonly reload = throttle(
    () => void this.load().catch(reportError),
    300,
  );

  constructor(
    private readonly root: HTMLElement,
    private readonly project: string,
    private readonly runId: string,
  ) {
    this.live = new LiveConnection(project, {
      subscribed: (fresh) =>
        fresh ? void this.load().catch(reportError) : undefined,
      points: (message) => {
        if (message.run_id !== this.runId) return;
        this.addPanels(Object.keys(message.metrics));
        this.panels.forEach((panel) => panel.receive(message));
      },
      event: (message) => {
        if (message.run_id !== this.runId || !this.run) return;
        if (message.event === "run.summary") {
          Object.assign(this.run.summary, message.data.summary);
        } else if (message.event === "run.config") {
          Object.assign(this.run.config, message.data.config);
        } else {
          // A state change also changes the line style, so reload it all.
          this.reload();
          return;
        }
        this.renderDetails();
      },
      status: (state) => this.badge.set(state),
    });
  }

  async start(): Promise<void> {
    const back = h(
      "a",
      { href: `/projects/${encodeURIComponent(this.project)}` },
      `← ${this.project}`,
    );
    try {
      this.run = await getRun(this.project, this.runId);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      this.root.replaceChildren(
        topBar(),
        h(
          "main",
          { class: "run-page" },
          back,
          h("h1", {}, "Run not found"),
          h("p", {}, error.message),
        ),
      );
      return;
    }
    this.root.replaceChildren(
      topBar(this.badge.element),
      h("main", { class: "run-page" }, back, this.details, this.charts),
    );
    this.live.start();
  }

  private async load(): Promise<void> {
    const [run, keys] = await Promise.all([
      getRun(this.project, this.runId),
      runKeys(this.project, this.runId),
    ]);
    this.run = run;
    this.showDetails();
    this.panels.forEach((panel) => panel.refresh());
    this.addPanels(keys);
    document.body.dataset.loaded = String(
      Number(document.body.dataset.loaded ?? 0) + 1,
    );
  }

  private showDetails(): void {
    const run = this.run;
    if (!run) return;
    this.details.replaceChildren(
      h("h1", {}, run.name),
      h(
        "p",
        { class: "run-meta" },
        h(
          "span",
          { class: `state state-${run.state}`, "data-state": run.state },
          run.state,
        ),
        ` · id ${run.id} · started ${formatTime(run.created_at)}`,
        run.finished_at ? ` · ended ${formatTime(run.finished_at)}` : "",
      ),
      h(
        "div",
        { class: "documents" },
        table(run.config, "config"),
        table(run.summary, "summary"),
      ),
    );
  }

  private addPanels(keys: string[]): void {
    for (const key of keys.sort()) {
      if (this.panels.has(key)) continue;
      const layout: PanelLayout = { ...linePanel(key), w: 6 };
      const panel = new LinePanel(layout, {
        project: this.project,
        runIds: () => [this.runId],
        runsets: () => [],
        keys: () => [...this.panels.keys()],
        save: () => undefined,
      });
      this.panels.set(key, panel);
      panel.refresh();
      const frame = h(
        "article",
        { class: "panel", "data-panel-type": "line" },
        h("header", {}, h("h3", {}, key)),
        panel.element,
      );
      frame.style.gridColumn = "span 6";
      frame.style.gridRow = "span 4";
      this.charts.append(frame);
    }
  }
}
