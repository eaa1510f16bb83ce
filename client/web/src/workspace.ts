// The project workspace: run table, panel grid and the live connection that feeds both.
import {
  ApiError,
  getLayout,
  getRun,
  listKeys,
  listRuns,
  listRunsets,
  putLayout,
  type Layout,
  type PanelLayout,
  type Run,
  type RunSet,
} from "./api";
import { addPanelForm, linePanel } from "./addpanel";
import { addToReportButton, searchFilter } from "./addtoreport";
import type { RunSet as ReportRunSet } from "./reportdoc";
import { newRunSet } from "./runsetbar";
import { debounce, h, throttle } from "./dom";
import { PanelGrid, type PanelView } from "./grid";
import { LinePanel } from "./lineplot";
import {
  LiveConnection,
  type EventMessage,
  type MembersMessage,
  type MembershipMessage,
  type PointsMessage,
} from "./live";
import { RunsetSidebar } from "./runsets";
import { BarPanel, ParallelPanel, ScalarPanel, ScatterPanel } from "./panels";
import { fieldColumns, RunTable } from "./runtable";
import { statusBadge, topBar } from "./chrome";

function reportError(error: unknown): void {
  // A failed reload or event fetch is retried by the next live event or reconnection.
  console.error("workspace update failed", error);
}

/** Line plots draw at most this many runs, from the top of the table. */
const MAX_LINES = 20;

export class Workspace {
  private runs = new Map<string, Run>();
  private keys: string[] = [];
  private layout: Layout = { auto: true, panels: [], columns: [] };
  private readonly table: RunTable;
  private grid: PanelGrid | null = null;
  private readonly live: LiveConnection;
  private readonly badge = statusBadge();
  private readonly sidebar: RunsetSidebar;
  /** Per run-set id, its members, as the live socket reports them. */
  private members = new Map<string, Set<string>>();
  private saves = 0;
  // Live events can arrive many times a second; these redraw at most every 300 ms.
  private readonly refreshPanels = throttle(
    () => this.grid?.views().forEach((view) => view.refresh()),
    300,
  );
  private readonly refreshRunPanels = throttle(
    () =>
      this.grid
        ?.views()
        .forEach((view) =>
          view instanceof LinePanel ? undefined : view.refresh(),
        ),
    300,
  );
  private readonly updateTable = throttle(
    () => this.table.update([...this.runs.values()]),
    250,
  );
  private readonly save = debounce(
    () => void this.saveLayout().catch(reportError),
    300,
  );

  constructor(
    private readonly root: HTMLElement,
    private readonly project: string,
  ) {
    this.table = new RunTable(project, (columnsChanged) => {
      if (columnsChanged) {
        this.layout.columns = this.table.chosenColumns();
        this.save();
      }
      this.refreshPanels();
    });
    this.sidebar = new RunsetSidebar(project, {
      runs: () => this.runs.values(),
      changed: (runsets) => this.runsetsChanged(runsets),
    });
    this.live = new LiveConnection(project, {
      subscribed: (fresh) =>
        fresh ? this.load().catch(reportError) : undefined,
      points: (message) => this.points(message),
      event: (message) => void this.event(message).catch(reportError),
      status: (state) => this.badge.set(state),
      members: (message) => this.receiveMembers(message),
      membership: (message) => this.receiveMembership(message),
    });
  }

  async start(): Promise<void> {
    try {
      await listRuns(this.project);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.root.replaceChildren(
          topBar(),
          h(
            "main",
            {},
            h("h1", {}, "Project not found"),
            h("p", {}, error.message),
          ),
        );
        return;
      }
      throw error;
    }
    this.live.start();
    (window as unknown as { assayLive: LiveConnection }).assayLive = this.live;
  }

  /** Load everything through the HTTP API; called after each fresh live subscription. */
  private async load(): Promise<void> {
    const [runs, keys, layout, runsets] = await Promise.all([
      listRuns(this.project),
      listKeys(this.project),
      getLayout(this.project),
      listRunsets(this.project),
    ]);
    this.runs = new Map(runs.map((run) => [run.id, run]));
    this.keys = keys;
    this.sidebar.set(runsets);
    this.watchRunsets(runsets);
    if (this.grid === null) {
      this.layout = layout ?? {
        auto: true,
        panels: keys.map(linePanel),
        columns: [],
      };
      this.table.setColumns(this.layout.columns);
      this.table.update([...this.runs.values()]);
      this.build(); // draws every panel
    } else {
      this.table.update([...this.runs.values()]);
      this.grid.views().forEach((view) => view.refresh());
      this.addAutomaticPanels(keys);
    }
    document.body.dataset.loaded = String(
      Number(document.body.dataset.loaded ?? 0) + 1,
    );
  }

  private build(): void {
    this.grid = new PanelGrid(
      this.layout,
      (panel) => this.createView(panel),
      () => this.save(),
      (panel) => [
        addToReportButton(
          this.project,
          () => panel,
          () => this.shownRunSets(),
        ),
      ],
    );
    const form = addPanelForm(
      () => this.keys,
      () => fieldColumns(this.runs.values()),
      (panel) => this.grid?.add(panel),
    );
    this.root.replaceChildren(
      topBar(
        h(
          "a",
          {
            href: `/projects/${encodeURIComponent(this.project)}/reports`,
            class: "reports-link",
          },
          "Reports",
        ),
        h(
          "a",
          {
            href: `/projects/${encodeURIComponent(this.project)}/members`,
            class: "reports-link members-link",
          },
          "Members",
        ),
        this.badge.element,
      ),
      h(
        "div",
        { class: "workspace-body" },
        this.sidebar.element,
        h(
          "main",
          { class: "workspace" },
          h("h1", {}, this.project),
          this.table.element,
          h("div", { class: "grid-tools" }, form),
          this.grid.element,
        ),
      ),
    );
    this.grid.render();
  }

  /**
   * Describe what the panels draw as report run sets: the active run sets,
   * or else the table's runs, with the search as a filter and the table's sort.
   */
  private shownRunSets(): ReportRunSet[] {
    const active = this.activeRunsets();
    if (active.length > 0) {
      return active.map((runset, index) => ({
        ...newRunSet(runset.name, runset.filter, index),
        // The same model as the workspace's, so a report keeps it unchanged.
        grouping: { ...runset.grouping, keys: [...runset.grouping.keys] },
        sort: { ...runset.sort },
        colour: runset.colour,
      }));
    }
    const search = this.table.searchText();
    const runSet = newRunSet(
      search ? `runs matching "${search}"` : "all runs",
      searchFilter(search),
      0,
    );
    runSet.sort = this.table.sortOrder();
    return [runSet];
  }

  /** Return the active run sets, in sidebar order. */
  private activeRunsets(): RunSet[] {
    return this.sidebar.all().filter((runset) => runset.active);
  }

  /** Return the table's runs, or with active run sets, those that belong to one of them. */
  private panelRuns(): Run[] {
    const active = this.activeRunsets();
    const visible = this.table.visibleRuns();
    if (active.length === 0) return visible;
    const chosen = new Set(
      active.flatMap((runset) => [...(this.members.get(runset.id) ?? [])]),
    );
    return visible.filter((run) => chosen.has(run.id));
  }

  private createView(panel: PanelLayout): PanelView {
    const runs = (): Run[] => this.panelRuns();
    switch (panel.type) {
      case "line":
        return new LinePanel(panel, {
          project: this.project,
          runsets: () => this.activeRunsets().map((runset) => runset.id),
          runIds: () =>
            this.activeRunsets().length > 0
              ? runs().map((run) => run.id)
              : runs()
                  .slice(0, MAX_LINES)
                  .map((run) => run.id),
          keys: () => this.keys,
          save: () => this.save(),
        });
      case "scatter":
        return new ScatterPanel(panel, { runs });
      case "bar":
        return new BarPanel(panel, { runs });
      case "scalar":
        return new ScalarPanel(panel, { runs });
      case "parallel":
        return new ParallelPanel(panel, { runs });
    }
  }

  private addAutomaticPanels(keys: string[]): void {
    const shown = new Set(
      this.layout.panels
        .filter((p) => p.type === "line")
        .map((p) => String(p.options.key)),
    );
    const missing = keys.filter((key) => !shown.has(key));
    if (!this.layout.auto || missing.length === 0) return;
    this.layout.panels.push(...missing.map(linePanel));
    this.grid?.render();
  }

  private points(message: PointsMessage): void {
    const fresh = Object.keys(message.metrics).filter(
      (key) => !this.keys.includes(key),
    );
    if (fresh.length) {
      this.keys = [...this.keys, ...fresh].sort();
      this.addAutomaticPanels(fresh);
    }
    for (const view of this.grid?.views() ?? [])
      if (view instanceof LinePanel) view.receive(message);
  }

  private async event(message: EventMessage): Promise<void> {
    const run = this.runs.get(message.run_id);
    if (message.event === "run.created" || !run) {
      this.runs.set(message.run_id, await getRun(this.project, message.run_id));
    } else if (message.event === "run.config") {
      Object.assign(run.config, message.data.config);
    } else if (message.event === "run.summary") {
      Object.assign(run.summary, message.data.summary);
    } else if (message.event === "run.state") {
      run.state = String(message.data.state);
    }
    this.updateTable();
    if (message.event === "run.created" || message.event === "run.state")
      this.refreshPanels();
    else this.refreshRunPanels();
  }

  private watchRunsets(runsets: RunSet[]): void {
    this.live.watch(
      Object.fromEntries(runsets.map((runset) => [runset.id, runset.filter])),
    );
  }

  private runsetsChanged(runsets: RunSet[]): void {
    this.watchRunsets(runsets);
    this.refreshPanels();
  }

  private receiveMembers(message: MembersMessage): void {
    this.members = new Map(
      Object.entries(message.runsets).map(([id, runIds]) => [
        id,
        new Set(runIds),
      ]),
    );
    this.showMembers();
    for (const [id, error] of Object.entries(message.errors))
      this.sidebar.showFilterError(id, error.message, error.column);
    // Without active run sets, panels draw the table's runs and are up to date.
    if (this.activeRunsets().length > 0) this.refreshPanels();
  }

  private receiveMembership(message: MembershipMessage): void {
    for (const [id, change] of Object.entries(message.changes)) {
      const members = this.members.get(id) ?? new Set<string>();
      change.entered.forEach((runId) => members.add(runId));
      change.left.forEach((runId) => members.delete(runId));
      this.members.set(id, members);
    }
    this.showMembers();
    if (Object.keys(message.changes).some((id) => this.isActive(id)))
      this.refreshPanels();
  }

  private isActive(id: string): boolean {
    return this.activeRunsets().some((runset) => runset.id === id);
  }

  private showMembers(): void {
    this.sidebar.setMemberCounts(
      new Map([...this.members].map(([id, runIds]) => [id, runIds.size])),
    );
    document.body.dataset.membership = String(
      Number(document.body.dataset.membership ?? 0) + 1,
    );
  }

  private async saveLayout(): Promise<void> {
    await putLayout(this.project, this.layout);
    this.saves += 1;
    document.body.dataset.layoutSaves = String(this.saves);
  }
}
