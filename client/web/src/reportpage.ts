// The report page: the title, the blocks in order, and the tools to add blocks and save.
import type { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import { ApiError, listKeys } from "./api";
import { textEditor } from "./blockeditor";
import { statusBadge, topBar } from "./chrome";
import { h } from "./dom";
import { LiveConnection } from "./live";
import { BlockView } from "./reportblocks";
import { getReport, whoAmI } from "./reportapi";
import { VersionList } from "./reportversions";
import { connectRoom } from "./reportconnection";
import {
  blockList,
  headingBlock,
  markdownBlock,
  panelGridBlock,
  titleText,
  type Block,
} from "./reportdoc";
import { newRunSet } from "./runsetbar";

export class ReportPage {
  readonly doc = new Y.Doc();
  private provider: WebsocketProvider | null = null;
  private live: LiveConnection | null = null;
  private readonly views = new Map<Block, BlockView>();
  private readonly blocksElement = h("div", { class: "blocks" });
  private readonly messages = h("div", {
    class: "report-messages",
    role: "status",
  });
  private readonly badge = statusBadge();
  private keys: string[] = [];

  constructor(
    private readonly root: HTMLElement,
    private readonly project: string,
    private readonly reportId: string,
  ) {}

  async start(): Promise<void> {
    let user: string;
    try {
      await getReport(this.project, this.reportId);
      user = (await whoAmI()).name;
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      this.root.replaceChildren(
        topBar(),
        h(
          "main",
          {},
          h("h1", {}, "Report not found"),
          h("p", {}, error.message),
        ),
      );
      return;
    }
    this.provider = connectRoom(this.reportId, this.doc, user, {
      status: (state) =>
        this.badge.set(state === "connected" ? "subscribed" : state),
      synced: () => this.synced(),
      error: (reason) => this.showRoomError(reason),
    });
    this.live = new LiveConnection(this.project, {
      subscribed: () => this.refreshGrids(),
      points: (message) =>
        this.gridViews().forEach((grid) => grid.points(message)),
      event: (message) =>
        this.gridViews().forEach((grid) => grid.event(message)),
      status: (state) => {
        document.body.dataset.runsLive = state;
      },
    });
    this.keys = await listKeys(this.project);
    this.build(this.provider);
    (window as unknown as { assayReport: ReportPage }).assayReport = this;
  }

  private build(provider: WebsocketProvider): void {
    const title = textEditor(titleText(this.doc), provider.awareness, {
      placeholder: "Untitled report",
      singleLine: true,
    });
    const reportsLink = h(
      "a",
      {
        href: `/projects/${encodeURIComponent(this.project)}/reports`,
        class: "reports-link",
      },
      "Reports",
    );
    this.root.replaceChildren(
      topBar(reportsLink, this.badge.element),
      h(
        "main",
        { class: "report" },
        h("div", { class: "report-title" }, title.dom),
        this.messages,
        this.blocksElement,
        this.toolbar(),
      ),
    );
    blockList(this.doc).observe(() => this.renderBlocks());
  }

  private synced(): void {
    this.renderBlocks();
    if (this.live === null || document.body.dataset.loaded) return;
    this.live.start();
    document.body.dataset.loaded = "1";
  }

  private toolbar(): HTMLElement {
    const add = (label: string, create: () => Block): HTMLElement =>
      h(
        "button",
        {
          type: "button",
          class: "add-block",
          onclick: () => blockList(this.doc).push([create()]),
        },
        label,
      );
    const versions = new VersionList(
      this.project,
      this.reportId,
      (text, isError) =>
        isError ? this.showError(text) : this.showMessage(text),
    );
    return h(
      "div",
      { class: "report-tools" },
      add("Add text", () => markdownBlock()),
      add("Add heading", () => headingBlock()),
      add("Add panel grid", () =>
        panelGridBlock([newRunSet("all runs", "", 0)], []),
      ),
      versions.element,
    );
  }

  /** Keep one view per block Y.Map, in document order. */
  private renderBlocks(): void {
    const blocks = blockList(this.doc).toArray();
    const wanted = new Set(blocks);
    for (const [block, view] of this.views) {
      if (wanted.has(block)) continue;
      view.destroy();
      view.element.remove();
      this.views.delete(block);
    }
    for (const block of blocks) {
      let view = this.views.get(block);
      if (!view) {
        view = new BlockView(block, {
          project: this.project,
          keys: () => this.keys,
          // NOTE: every signed-in user may edit every report until share links
          // bring view-only roles, so the read-only views are not yet used or tested.
          readOnly: false,
          awareness: this.provider!.awareness,
        });
        this.views.set(block, view);
      }
      this.blocksElement.append(view.element);
    }
    this.blocksElement.dataset.count = String(blocks.length);
  }

  private gridViews(): NonNullable<BlockView["grid"]>[] {
    return [...this.views.values()].flatMap((view) =>
      view.grid ? [view.grid] : [],
    );
  }

  private refreshGrids(): void {
    this.gridViews().forEach((grid) => grid.event(null));
  }

  private showMessage(text: string): void {
    this.messages.replaceChildren(h("p", { class: "message" }, text));
  }

  private showError(reason: string): void {
    this.messages.replaceChildren(h("p", { class: "error" }, reason));
  }

  /** Show a room error. After one, this page may no longer match the server's document. */
  private showRoomError(reason: string): void {
    console.warn("report room error", reason);
    this.showError(
      `${reason} Reload the page to see the report as the server stores it.`,
    );
  }
}
