// A panel-grid block: its run sets and the workspace's panels drawing their runs, live.
import * as Y from "yjs";
import type { Layout, PanelLayout, Run } from "./api";
import { addPanelForm, refreshChoices } from "./addpanel";
import { h } from "./dom";
import { PanelGrid, type PanelView } from "./grid";
import { LinePanel } from "./lineplot";
import type { FollowedRunSet, PointsMessage } from "./live";
import { BarPanel, ParallelPanel, ScalarPanel, ScatterPanel } from "./panels";
import {
  blockId,
  indexOf,
  panelMap,
  readPanel,
  readRunSet,
  type Block,
} from "./reportdoc";
import { fieldColumns } from "./runtable";
import { RunSetBar, type RunSetStatus } from "./runsetbar";

export interface GridContext {
  project: string;
  reportId: string;
  keys(): string[];
  readOnly: boolean;
  /** The run sets of a grid block by id, as the server last sent them, if it has. */
  runSets(blockId: string): Record<string, FollowedRunSet> | undefined;
  /** A run from the page's store of followed runs. */
  run(id: string): Run | undefined;
  /** Every run in the page's store, whose keys the run-set bar suggests. */
  knownRuns(): Iterable<Run>;
}

export class PanelGridBlock {
  readonly element = h("div", { class: "report-grid" });
  private readonly runSets: Y.Array<Y.Map<unknown>>;
  private readonly panels: Y.Array<Y.Map<unknown>>;
  private readonly bar: RunSetBar;
  private readonly layout: Layout = { auto: false, panels: [], columns: [] };
  private readonly grid: PanelGrid;
  /** The "Add panel" form, or null when read-only. Its run fields change with the runs. */
  private readonly form: HTMLElement | null;
  private readonly observer = (): void => this.documentChanged();
  /** The runs the panels last drew, to redraw only when they change. */
  private drawn = "";
  /** The grouping and sort of the run sets the panels last drew, as the server sent them. */
  private drawnShape = "";

  constructor(
    private readonly block: Block,
    private readonly context: GridContext,
  ) {
    this.runSets = block.get("run_sets") as Y.Array<Y.Map<unknown>>;
    this.panels = block.get("panels") as Y.Array<Y.Map<unknown>>;
    this.bar = new RunSetBar(this.runSets, context.readOnly, () =>
      context.knownRuns(),
    );
    this.grid = new PanelGrid(
      this.layout,
      (panel) => this.createView(panel),
      () => this.writePanels(),
      () => [],
      context.readOnly,
    );
    this.form = context.readOnly
      ? null
      : addPanelForm(
          () => context.keys(),
          () => fieldColumns(this.runs()),
          (panel) => this.grid.add(panel),
        );
    this.element.append(
      this.bar.element,
      h("div", { class: "grid-tools" }, this.form),
      this.grid.element,
    );
    block.observeDeep(this.observer);
  }

  start(): void {
    this.readPanels();
    this.grid.render();
    this.documentChanged();
  }

  /** The id of the grid's block, which keys its run sets in ``report_runs`` messages. */
  get id(): string {
    return blockId(this.block);
  }

  destroy(): void {
    this.block.unobserveDeep(this.observer);
    this.grid.views().forEach((view) => view.destroy());
  }

  /** Return the runs of the active run sets, each run once, in run-set order. */
  runs(): Run[] {
    const followed = this.context.runSets(this.id) ?? {};
    const seen = new Map<string, Run>();
    for (const map of this.runSets.toArray()) {
      const runSet = readRunSet(map);
      if (!runSet.active) continue;
      for (const id of followed[runSet.id]?.members ?? []) {
        const run = this.context.run(id);
        if (run !== undefined && !seen.has(id)) seen.set(id, run);
      }
    }
    return [...seen.values()];
  }

  points(message: PointsMessage): void {
    for (const view of this.grid.views())
      if (view instanceof LinePanel) view.receive(message);
  }

  /**
   * Draw the runs that the page's store contains now, after a ``report_runs`` message.
   * ``changed`` names the runs whose data the message brought.
   */
  runsChanged(changed: ReadonlySet<string>): void {
    this.renderBar();
    this.drawRuns(changed);
  }

  /**
   * Return the runs of the active run sets when one of them is frozen, because
   * the figure must draw the runs it kept. Return null when the filters decide.
   */
  private frozenLimit(): string[] | null {
    const frozen = this.runSets
      .toArray()
      .some((map) => readRunSet(map).active && readRunSet(map).frozen);
    return frozen ? this.runs().map((run) => run.id) : null;
  }

  /** Fetch the data of every panel again, after the live socket subscribed. */
  refresh(): void {
    this.grid.views().forEach((view) => view.refresh());
  }

  private documentChanged(): void {
    this.renderBar();
    if (this.readPanels()) this.grid.render();
    // Toggling a run set changes what is drawn without a message from the server.
    this.drawRuns(new Set());
  }

  private renderBar(): void {
    const followed = this.context.runSets(this.id) ?? {};
    this.bar.render((id): RunSetStatus => {
      const runSet = followed[id];
      return {
        count: runSet === undefined ? null : runSet.members.length,
        error: runSet?.error?.message ?? null,
      };
    });
  }

  /**
   * Refresh the panels when the drawn runs, their states or their data
   * changed, or when the server's copy of the document groups, sorts or
   * draws a run set differently. The figure is drawn from the server's copy,
   * so a grouping edit or a run-set toggle redraws once a ``report_runs``
   * message shows the server has it. The redraw at a local toggle may still
   * show the server's older copy.
   */
  private drawRuns(changed: ReadonlySet<string>): void {
    const runs = this.runs();
    const drawn = runs.map((run) => `${run.id}:${run.state}`).join(",");
    const shape = JSON.stringify(
      Object.entries(this.context.runSets(this.id) ?? {}).map(
        ([id, runSet]) => [
          id,
          runSet.grouping ?? null,
          runSet.sort ?? null,
          runSet.active ?? true,
        ],
      ),
    );
    if (
      drawn !== this.drawn ||
      shape !== this.drawnShape ||
      runs.some((run) => changed.has(run.id))
    ) {
      this.drawn = drawn;
      this.drawnShape = shape;
      this.refresh();
      if (this.form !== null) refreshChoices(this.form);
    }
    this.element.dataset.runs = String(runs.length);
  }

  /** Copy the document's panels into the grid's layout, and return whether anything changed. */
  private readPanels(): boolean {
    const fresh = this.panels.toArray().map(readPanel);
    const before = JSON.stringify(this.layout.panels);
    if (JSON.stringify(fresh) === before) return false;
    // The grid's buttons find their panel by identity, so known panels are
    // updated in place rather than replaced.
    const known = new Map(this.layout.panels.map((p) => [p.id, p]));
    const rebuild: string[] = [];
    const panels = fresh.map((panel) => {
      const previous = known.get(panel.id);
      if (!previous) return panel;
      if (JSON.stringify(previous.options) !== JSON.stringify(panel.options))
        rebuild.push(panel.id);
      return Object.assign(previous, panel);
    });
    this.layout.panels.splice(0, this.layout.panels.length, ...panels);
    rebuild.forEach((id) => this.grid.rebuild(id));
    return true;
  }

  /** Write the grid's layout, after a local move, resize or removal, to the document. */
  private writePanels(): void {
    const doc = this.panels.doc;
    const write = (): void => {
      const wanted = this.layout.panels;
      const ids = new Set(wanted.map((panel) => panel.id));
      for (let index = this.panels.length - 1; index >= 0; index -= 1)
        if (!ids.has(String(this.panels.get(index).get("id"))))
          this.panels.delete(index, 1);
      wanted.forEach((panel, position) => {
        const index = indexOf(this.panels, panel.id);
        if (index === position) {
          setChanged(this.panels.get(index), panel);
          return;
        }
        if (index >= 0) this.panels.delete(index, 1);
        this.panels.insert(position, [panelMap(panel)]);
      });
    };
    if (doc) doc.transact(write);
    else write();
  }

  private createView(panel: PanelLayout): PanelView {
    const runs = (): Run[] => this.runs();
    const save = (): void => this.writePanels();
    switch (panel.type) {
      case "line":
        return new LinePanel(panel, {
          project: this.context.project,
          runIds: () => runs().map((run) => run.id),
          // A report's run sets live in its document, not in the stored run sets.
          runsets: () => [],
          reportGrid: () => ({
            report: this.context.reportId,
            grid: this.id,
            runs: this.frozenLimit(),
          }),
          keys: () => this.context.keys(),
          save,
          readOnly: this.context.readOnly,
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
}

/** Set the keys of ``map`` whose values differ from ``panel``'s, one ``set`` per key. */
function setChanged(map: Y.Map<unknown>, panel: PanelLayout): void {
  for (const [key, value] of Object.entries(panel)) {
    if (JSON.stringify(map.get(key)) !== JSON.stringify(value))
      map.set(key, structuredClone(value));
  }
}
