// One block of a report as the page shows it: markdown, heading or panel grid, with its tools.
import type { EditorView } from "@codemirror/view";
import type { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import { h } from "./dom";
import { textEditor } from "./blockeditor";
import { renderMarkdown } from "./markdown";
import { PanelGridBlock, type GridContext } from "./reportgrid";
import { blockId, blockList, blockType, type Block } from "./reportdoc";
import { moveItem } from "./reportdoc";

const MAX_HEADING_LEVEL = 6;

export interface BlockContext extends GridContext {
  awareness: WebsocketProvider["awareness"];
}

/** The view of one block. The page keeps one per Y.Map and drops it when the block is deleted. */
export class BlockView {
  readonly element: HTMLElement;
  private editor: EditorView | null = null;
  readonly grid: PanelGridBlock | null = null;
  private readonly cleanups: (() => void)[] = [];

  constructor(
    readonly block: Block,
    private readonly context: BlockContext,
  ) {
    const type = blockType(block);
    this.element = h("section", {
      class: `block block-${type ?? "unknown"}`,
      "data-block-id": blockId(block),
      "data-block-type": type ?? "unknown",
    });
    const body = h("div", { class: "block-body" });
    if (type === "markdown") this.markdown(body);
    else if (type === "heading") this.heading(body);
    else if (type === "panel_grid") {
      this.grid = new PanelGridBlock(block, context);
      body.append(this.grid.element);
    } else {
      body.append(
        h(
          "p",
          { class: "error" },
          `Unknown block type ${String(block.get("type"))}`,
        ),
      );
    }
    this.element.append(this.tools(), body);
    this.grid?.start();
  }

  destroy(): void {
    this.editor?.destroy();
    this.grid?.destroy();
    this.cleanups.forEach((cleanup) => cleanup());
  }

  private text(): Y.Text | null {
    const text = this.block.get("text");
    return text instanceof Y.Text ? text : null;
  }

  private markdown(body: HTMLElement): void {
    const text = this.text();
    if (!text) return;
    this.editor = textEditor(text, this.context.awareness, {
      placeholder:
        "Markdown; $x^2$ is inline LaTeX, $$\\sum_i x_i$$ on its own line is display",
      readOnly: this.context.readOnly,
    });
    const rendered = h("div", { class: "rendered markdown-body" });
    const render = (): void => {
      rendered.innerHTML = renderMarkdown(text.toString());
      rendered.dataset.revision = String(
        Number(rendered.dataset.revision ?? 0) + 1,
      );
    };
    text.observe(render);
    this.cleanups.push(() => text.unobserve(render));
    render();
    body.append(h("div", { class: "block-editor" }, this.editor.dom), rendered);
  }

  private heading(body: HTMLElement): void {
    const text = this.text();
    if (!text) return;
    this.editor = textEditor(text, this.context.awareness, {
      placeholder: "Heading",
      singleLine: true,
      readOnly: this.context.readOnly,
    });
    const level = h("select", {
      class: "heading-level",
      "aria-label": "heading level",
      disabled: this.context.readOnly,
    });
    for (let value = 1; value <= MAX_HEADING_LEVEL; value += 1)
      level.append(h("option", { value }, `H${value}`));
    const show = (): void => {
      const value = Number(this.block.get("level")) || 2;
      level.value = String(value);
      this.element.dataset.level = String(value);
    };
    level.addEventListener("change", () =>
      this.block.set("level", Number(level.value)),
    );
    this.block.observe(show);
    this.cleanups.push(() => this.block.unobserve(show));
    show();
    body.append(h("div", { class: "heading-row" }, level, this.editor.dom));
  }

  private tools(): HTMLElement {
    if (this.context.readOnly) return h("div", { class: "block-tools" });
    const list = (): Y.Array<Block> | null =>
      this.block.doc ? blockList(this.block.doc) : null;
    const index = (): number => list()?.toArray().indexOf(this.block) ?? -1;
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
    return h(
      "div",
      { class: "block-tools" },
      button("↑", "move block up", () => {
        const blocks = list();
        if (blocks) moveItem(blocks, index(), index() - 1);
      }),
      button("↓", "move block down", () => {
        const blocks = list();
        if (blocks) moveItem(blocks, index(), index() + 1);
      }),
      button("✕", "delete block", () => {
        const blocks = list();
        const at = index();
        if (blocks && at >= 0) blocks.delete(at, 1);
      }),
    );
  }
}
