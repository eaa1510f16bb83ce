// The report page: the title, the blocks in order, and the tools to add blocks and save.
import type { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import {
  ApiError,
  completeRun,
  listKeys,
  setRateLimitWait,
  type Run,
} from "./api";
import { textEditor } from "./blockeditor";
import { statusBadge, topBar } from "./chrome";
import { h } from "./dom";
import { LiveConnection, type ReportRunsMessage } from "./live";
import { BlockView } from "./reportblocks";
import { getReport, whoAmI, type ReportDetail } from "./reportapi";
import { VersionList } from "./reportversions";
import { pageRetryAfter, RateLimitNotice, retryNotice } from "./retrynotice";
import { connectRoom } from "./reportconnection";
import {
  blockList,
  drawnMetrics,
  headingBlock,
  markdownBlock,
  panelGridBlock,
  titleText,
  type Block,
} from "./reportdoc";
import { newRunSet } from "./runsetbar";
import { shareToken } from "./share";
import { shareButton } from "./sharedialog";

/** The name other editors see beside the cursor of someone who opened a share link. */
const LINK_VISITOR = "Guest with a link";
/** The name shown for a visitor of a public project who is not signed in. */
const ANONYMOUS_VISITOR = "Guest";
/** The close code of a report socket whose share link was revoked or expired. */
const CLOSE_ACCESS_LOST = 4403;

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
  private readonly rateLimit = new RateLimitNotice();
  private keys: string[] = [];
  /** Whether the caller may only read: a view link, or a viewer of the project. */
  private readOnly = true;
  /** The runs of the followed report's run sets by id, from ``report_runs`` messages. */
  private readonly runs = new Map<string, Run>();
  /** Per grid block id, its run sets by id, from the last ``report_runs`` message. */
  private grids: ReportRunsMessage["grids"] = {};
  /**
   * The runs whose points a share link's socket streams, which are the runs
   * its report selected at the last subscribe. ``null`` until the first full message.
   */
  private streamed: Set<string> | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly project: string,
    private readonly reportId: string,
  ) {}

  async start(): Promise<void> {
    let report: ReportDetail;
    let user: string;
    try {
      report = await getReport(this.project, this.reportId);
      // whoami returns 401 to a link holder without an account, so it is not called.
      user = shareToken === null ? await userName() : LINK_VISITOR;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 404) {
        this.showFailure("Report not found", error.message);
        return;
      }
      if (error.code === "invalid_share") {
        this.showFailure("This share link no longer works", error.message);
        return;
      }
      if (error.status === 429) {
        // When the page itself returned 429, it carries the wait as well.
        const wait = error.retryAfter ?? pageRetryAfter(this.root);
        this.root.replaceChildren(topBar(), retryNotice(wait, error.message));
        return;
      }
      throw error;
    }
    // Past the first request, a share link's requests that reach the rate
    // limit wait under a notice above the report, then are sent again.
    if (shareToken !== null)
      setRateLimitWait((error) =>
        this.rateLimit.wait(error.retryAfter, error.message),
      );
    this.readOnly = !report.can_edit;
    document.body.dataset.readOnly = String(this.readOnly);
    // Both are read before the room connects, because the first sync draws
    // the blocks, and line panels build their x-axis choices from the keys.
    // Metric keys offer other x axes and line panels to add; a share link may not list them.
    this.keys = shareToken === null ? await listKeys(this.project) : [];
    const share =
      shareToken === null && !this.readOnly
        ? await shareButton(this.reportId)
        : null;
    this.provider = connectRoom(this.reportId, this.doc, user, {
      status: (state) =>
        this.badge.set(state === "connected" ? "subscribed" : state),
      synced: () => this.synced(),
      error: (reason, code) => this.showRoomError(reason, code),
    });
    this.live = new LiveConnection(this.project, {
      subscribed: () => this.gridViews().forEach((grid) => grid.refresh()),
      points: (message) =>
        this.gridViews().forEach((grid) => grid.points(message)),
      // Run events reach the grids as ``report_runs`` messages of the follow.
      event: () => undefined,
      reportRuns: (message) => this.reportRunsReceived(message),
      status: (state) => {
        document.body.dataset.runsLive = state;
      },
    });
    this.build(this.provider, share);
    (window as unknown as { assayReport: ReportPage }).assayReport = this;
  }

  /** Store the runs of a ``report_runs`` message, and redraw the grids. */
  private reportRunsReceived(message: ReportRunsMessage): void {
    if (message.full) this.runs.clear();
    for (const [id, run] of Object.entries(message.runs))
      this.runs.set(id, completeRun({ ...run, id }));
    this.grids = message.grids;
    const changed = new Set(Object.keys(message.runs));
    this.gridViews().forEach((grid) => grid.runsChanged(changed));
    if (shareToken !== null) this.streamNewMembers(message.full);
  }

  /**
   * Subscribe again when the run sets name a run that a share link's socket
   * does not stream yet, so the server adds its points. The ``subscribed``
   * message that follows refreshes the grids. A signed-in socket streams
   * every run of the project, so it needs none of this.
   */
  private streamNewMembers(full: boolean): void {
    const members = Object.values(this.grids).flatMap((runSets) =>
      Object.values(runSets).flatMap((runSet) => runSet.members),
    );
    const streamed = this.streamed;
    this.streamed = new Set([...(full ? [] : (streamed ?? [])), ...members]);
    // A full message replies to the follow sent right after the subscribe,
    // so the socket streams its members already.
    if (full || streamed === null) return;
    if (members.some((id) => !streamed.has(id))) this.live?.resubscribe();
  }

  private showFailure(title: string, reason: string): void {
    this.root.replaceChildren(
      topBar(),
      h(
        "main",
        { class: "report-failure" },
        h("h1", {}, title),
        h("p", {}, reason),
      ),
    );
  }

  private build(provider: WebsocketProvider, share: HTMLElement | null): void {
    const title = textEditor(titleText(this.doc), provider.awareness, {
      placeholder: "Untitled report",
      singleLine: true,
      readOnly: this.readOnly,
    });
    // A share link opens no other page of the project, so it gets no link to the list.
    const reportsLink =
      shareToken === null
        ? h(
            "a",
            {
              href: `/projects/${encodeURIComponent(this.project)}/reports`,
              class: "reports-link",
            },
            "Reports",
          )
        : null;
    const notice = this.readOnly
      ? h(
          "p",
          { class: "read-only-notice", role: "note" },
          "Read-only: you can read this report and follow its charts, but not change it.",
        )
      : null;
    this.root.replaceChildren(
      topBar(
        ...[reportsLink, share].filter((item) => item !== null),
        this.badge.element,
      ),
      h(
        "main",
        { class: "report" },
        notice,
        this.rateLimit.element,
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
    this.live.follow(this.reportId);
    document.body.dataset.loaded = "1";
  }

  private toolbar(): HTMLElement {
    const versions = new VersionList(
      this.project,
      this.reportId,
      (text, isError) =>
        isError ? this.showError(text) : this.showMessage(text),
      this.readOnly,
    );
    if (this.readOnly)
      return h("div", { class: "report-tools" }, versions.element);
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
    blocks.forEach((block, index) => {
      let view = this.views.get(block);
      if (!view) {
        view = new BlockView(block, {
          project: this.project,
          reportId: this.reportId,
          // A share link may not list the project's metric keys, but it may
          // draw every metric the report draws already.
          keys: () =>
            shareToken === null ? this.keys : drawnMetrics(this.doc),
          readOnly: this.readOnly,
          awareness: this.provider!.awareness,
          runSets: (id) => this.grids[id],
          run: (id) => this.runs.get(id),
          knownRuns: () => this.runs.values(),
        });
        this.views.set(block, view);
      }
      // Moving an element in the DOM takes the focus from an input inside it,
      // and with it the text typed so far, so blocks in place stay put.
      const current = this.blocksElement.children.item(index);
      if (current !== view.element)
        this.blocksElement.insertBefore(view.element, current);
    });
    this.blocksElement.dataset.count = String(blocks.length);
  }

  private gridViews(): NonNullable<BlockView["grid"]>[] {
    return [...this.views.values()].flatMap((view) =>
      view.grid ? [view.grid] : [],
    );
  }

  private showMessage(text: string): void {
    this.messages.replaceChildren(h("p", { class: "message" }, text));
  }

  private showError(reason: string): void {
    this.messages.replaceChildren(h("p", { class: "error" }, reason));
  }

  /** Show a room error. After one, this page may no longer match the server's document. */
  private showRoomError(reason: string, code: number | null): void {
    console.warn("report room error", reason);
    if (code === CLOSE_ACCESS_LOST && shareToken !== null) {
      this.live?.stop();
      document.body.dataset.linkRevoked = "1";
      this.showError(
        "This share link no longer works: it was revoked or has expired. " +
          "Ask the report's owner for a new link.",
      );
      return;
    }
    this.showError(
      `${reason} Reload the page to see the report as the server stores it.`,
    );
  }
}

/** Return the signed-in user's name, or a guest name for a visitor of a public project. */
async function userName(): Promise<string> {
  try {
    return (await whoAmI()).name;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401)
      return ANONYMOUS_VISITOR;
    throw error;
  }
}
