// The live socket (docs/live.md): subscribe with cursors, reconnect with back-off, resync.
import { decode, encode } from "@msgpack/msgpack";
import type { Run, Value } from "./api";
import { withShare } from "./share";

export interface PointsMessage {
  type: "points";
  stream: string;
  id: string;
  run_id: string;
  metrics: Record<
    string,
    { steps: number[]; times: number[]; values: (number | boolean | null)[] }
  >;
}

export interface EventMessage {
  type: "event";
  stream: string;
  id: string;
  run_id: string;
  event: "run.created" | "run.config" | "run.summary" | "run.state";
  data: Record<string, Value>;
  time: number;
}

/** Run-set members: the full lists, and the filters the server rejected. */
export interface MembersMessage {
  type: "members";
  runsets: Record<string, string[]>;
  errors: Record<string, { code: string; message: string; column: number }>;
}

export interface MembershipMessage {
  type: "membership";
  changes: Record<string, { entered: string[]; left: string[] }>;
}

/** One run set of a followed report, with its members or the reason its filter was rejected. */
export interface FollowedRunSet {
  filter: string;
  frozen: boolean;
  members: string[];
  error: { code: string; message: string; column: number } | null;
  /** The run set's ``grouping`` and ``sort`` as the server's copy of the document contains them. */
  grouping: unknown;
  sort: unknown;
  /** Whether the server's copy draws the run set. A toggle on the page reaches it later. */
  active: boolean;
}

/**
 * The runs of a followed report's run sets. ``grids`` maps every panel-grid
 * block id to its run sets by id. ``runs`` contains every member when ``full``
 * is true, and otherwise only members that are new to the socket or changed.
 * Through a share link each run carries only some of its fields.
 */
export interface ReportRunsMessage {
  type: "report_runs";
  report: string;
  full: boolean;
  grids: Record<string, Record<string, FollowedRunSet>>;
  runs: Record<string, Partial<Run>>;
}

export interface LiveHandlers {
  /** Called after each subscription; ``fresh`` means the page must reload what it shows. */
  subscribed(fresh: boolean): void;
  points(message: PointsMessage): void;
  event(message: EventMessage): void;
  status(state: "connecting" | "subscribed" | "offline"): void;
  members?(message: MembersMessage): void;
  membership?(message: MembershipMessage): void;
  reportRuns?(message: ReportRunsMessage): void;
}

interface LiveMessage {
  type: string;
  stream?: string;
  id?: string;
  messages?: LiveMessage[];
}

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;

export class LiveConnection {
  private socket: WebSocket | null = null;
  private cursors: Record<string, string> = {};
  private attempts = 0;
  private closed = false;
  private timer: number | undefined;
  /** Whether the last subscribe sent empty cursors, so the page must reload. */
  private fresh = true;
  /** The run-set filters to watch, sent again after each reconnection. */
  private watched: Record<string, string> | null = null;
  /** The report to follow, sent again after each reconnection. */
  private followed: string | null = null;

  constructor(
    private readonly project: string,
    private readonly handlers: LiveHandlers,
  ) {}

  start(): void {
    this.closed = false;
    this.connect();
  }

  stop(): void {
    this.closed = true;
    window.clearTimeout(this.timer);
    this.socket?.close();
  }

  /** Watch run-set membership: run-set id to filter text; replaces the previous watch. */
  watch(runsets: Record<string, string>): void {
    this.watched = runsets;
    if (this.socket?.readyState === WebSocket.OPEN)
      this.socket.send(encode({ type: "watch", runsets }));
  }

  /**
   * Follow a report, so that the server sends the runs of its run sets in
   * ``report_runs`` messages and again whenever they change. ``null`` stops.
   */
  follow(reportId: string | null): void {
    this.followed = reportId;
    if (this.socket?.readyState === WebSocket.OPEN)
      this.socket.send(encode({ type: "follow", report: reportId }));
  }

  /** Subscribe again with the current cursors, so the server adds the streams of new runs. */
  resubscribe(): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.subscribe();
  }

  /** Drop the connection as a network failure would; for tests of reconnection. */
  dropForTest(): void {
    this.socket?.close();
  }

  private connect(): void {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const path = withShare(
      `/api/v1/projects/${encodeURIComponent(this.project)}/live`,
    );
    const url = `${scheme}//${location.host}${path}`;
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.handlers.status("connecting");
    socket.onopen = () => {
      this.subscribe();
      if (this.watched !== null)
        socket.send(encode({ type: "watch", runsets: this.watched }));
      if (this.followed !== null)
        socket.send(encode({ type: "follow", report: this.followed }));
    };
    socket.onmessage = (event: MessageEvent<ArrayBuffer>) =>
      this.receive(event.data);
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.handlers.status("offline");
      if (!this.closed) this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    // Exponential back-off with full jitter, so many pages do not return at once.
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempts);
    this.attempts += 1;
    this.timer = window.setTimeout(
      () => this.connect(),
      ceiling / 2 + (Math.random() * ceiling) / 2,
    );
  }

  private subscribe(): void {
    this.fresh = Object.keys(this.cursors).length === 0;
    this.socket?.send(encode({ type: "subscribe", cursors: this.cursors }));
  }

  private receive(data: ArrayBuffer): void {
    const message = decode(new Uint8Array(data)) as LiveMessage;
    if (message.type === "batch") {
      // Entries that queued up on the server while it was sending arrive together.
      for (const inner of message.messages ?? []) this.handle(inner);
      return;
    }
    this.handle(message);
  }

  private handle(message: LiveMessage): void {
    if (message.stream !== undefined && message.id !== undefined) {
      this.cursors[message.stream] = message.id;
    }
    switch (message.type) {
      case "subscribed":
        // Where the server started the streams we had no cursor for, so that
        // a reconnect resumes them from there.
        for (const [stream, id] of Object.entries(
          (message as { cursors?: Record<string, string> }).cursors ?? {},
        )) {
          this.cursors[stream] ??= id;
        }
        this.attempts = 0;
        this.handlers.status("subscribed");
        this.handlers.subscribed(this.fresh);
        break;
      case "points":
        this.handlers.points(message as unknown as PointsMessage);
        break;
      case "event":
        this.handlers.event(message as unknown as EventMessage);
        break;
      case "members":
        this.handlers.members?.(message as unknown as MembersMessage);
        break;
      case "membership":
        this.handlers.membership?.(message as unknown as MembershipMessage);
        break;
      case "report_runs":
        this.handlers.reportRuns?.(message as unknown as ReportRunsMessage);
        break;
      case "resync":
        // The server dropped the subscription: start again from now, then reload.
        this.cursors = {};
        this.subscribe();
        break;
      case "error":
        console.warn("live socket error", message);
        break;
    }
  }
}
