// The panel grid: 12 columns, panels in layout order, packed first-fit; add, remove, move, resize.
import type { Layout, PanelLayout } from "./api";
import { h } from "./dom";

export const COLUMNS = 12;
const WIDTHS = [3, 4, 6, 8, 12];
const MIN_HEIGHT = 2;
const MAX_HEIGHT = 10;

/** The body of a panel. The grid owns the frame around it. */
export interface PanelView {
  readonly element: HTMLElement;
  title(): string;
  /** Redraw after the run table or the panel's options changed. */
  refresh(): void;
  resize(): void;
  destroy(): void;
}

/** Give each panel, in order, the first free place from the top left where it fits. */
export function pack(panels: PanelLayout[]): void {
  const taken: boolean[][] = [];
  const free = (x: number, y: number, w: number, height: number): boolean => {
    for (let row = y; row < y + height; row += 1) {
      for (let column = x; column < x + w; column += 1)
        if (taken[row]?.[column]) return false;
    }
    return true;
  };
  for (const panel of panels) {
    panel.w = Math.min(Math.max(panel.w, 1), COLUMNS);
    let placed = false;
    for (let y = 0; !placed; y += 1) {
      for (let x = 0; x + panel.w <= COLUMNS && !placed; x += 1) {
        if (!free(x, y, panel.w, panel.h)) continue;
        panel.x = x;
        panel.y = y;
        for (let row = y; row < y + panel.h; row += 1) {
          taken[row] ??= [];
          for (let column = x; column < x + panel.w; column += 1)
            (taken[row] as boolean[])[column] = true;
        }
        placed = true;
      }
    }
  }
}

export class PanelGrid {
  readonly element = h("div", { class: "panel-grid" });
  private readonly frames = new Map<
    string,
    { frame: HTMLElement; view: PanelView }
  >();

  constructor(
    readonly layout: Layout,
    private readonly createView: (panel: PanelLayout) => PanelView,
    private readonly changed: () => void,
    /** More buttons for each panel's header, such as "Add to report". */
    private readonly extraTools: (
      panel: PanelLayout,
    ) => HTMLElement[] = () => [],
    /** Whether the panels have no move, resize and remove buttons. */
    private readonly readOnly = false,
  ) {}

  views(): PanelView[] {
    return [...this.frames.values()].map((entry) => entry.view);
  }

  render(): void {
    pack(this.layout.panels);
    const wanted = new Set(this.layout.panels.map((panel) => panel.id));
    for (const [id, entry] of this.frames) {
      if (wanted.has(id)) continue;
      entry.view.destroy();
      entry.frame.remove();
      this.frames.delete(id);
    }
    for (const panel of this.layout.panels) {
      let entry = this.frames.get(panel.id);
      if (!entry) {
        const view = this.createView(panel);
        entry = { frame: this.frame(panel, view), view };
        this.frames.set(panel.id, entry);
        view.refresh();
      }
      entry.frame.style.gridColumn = `${panel.x + 1} / span ${panel.w}`;
      entry.frame.style.gridRow = `${panel.y + 1} / span ${panel.h}`;
      this.element.append(entry.frame);
      entry.view.resize();
    }
  }

  add(panel: PanelLayout): void {
    this.layout.panels.push(panel);
    this.edited();
  }

  /** Rebuild one panel's view, after its options changed. */
  rebuild(id: string): void {
    const entry = this.frames.get(id);
    if (!entry) return;
    entry.view.destroy();
    entry.frame.remove();
    this.frames.delete(id);
    this.render();
  }

  private edited(): void {
    this.layout.auto = false;
    this.render();
    this.changed();
  }

  private frame(panel: PanelLayout, view: PanelView): HTMLElement {
    const button = (
      label: string,
      title: string,
      action: () => void,
    ): HTMLElement =>
      h(
        "button",
        {
          type: "button",
          title,
          "aria-label": title,
          "data-action": title,
          onclick: action,
        },
        label,
      );
    const index = (): number => this.layout.panels.indexOf(panel);
    const move = (delta: number): void => {
      const from = index();
      const to = Math.min(
        Math.max(from + delta, 0),
        this.layout.panels.length - 1,
      );
      this.layout.panels.splice(from, 1);
      this.layout.panels.splice(to, 0, panel);
      this.edited();
    };
    const widen = (step: number): void => {
      const position = WIDTHS.findIndex((width) => width >= panel.w);
      const next =
        WIDTHS[Math.min(Math.max(position + step, 0), WIDTHS.length - 1)];
      panel.w = next ?? panel.w;
      this.edited();
    };
    const heighten = (step: number): void => {
      panel.h = Math.min(Math.max(panel.h + step, MIN_HEIGHT), MAX_HEIGHT);
      this.edited();
    };
    const tools = h("div", { class: "panel-tools" });
    if (!this.readOnly)
      tools.append(
        button("◀", "move earlier", () => move(-1)),
        button("▶", "move later", () => move(1)),
        button("⇤", "narrower", () => widen(-1)),
        button("⇥", "wider", () => widen(1)),
        button("⤒", "shorter", () => heighten(-1)),
        button("⤓", "taller", () => heighten(1)),
        button("✕", "remove", () => {
          this.layout.panels.splice(index(), 1);
          this.edited();
        }),
      );
    tools.append(...this.extraTools(panel));
    return h(
      "article",
      {
        class: "panel",
        "data-panel-id": panel.id,
        "data-panel-type": panel.type,
      },
      h("header", {}, h("h3", {}, view.title()), tools),
      view.element,
    );
  }
}
