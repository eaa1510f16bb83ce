// The connection to a report's room: a stock y-websocket provider, presence and errors.
import * as decoding from "lib0/decoding";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import { shareToken } from "./share";

const MESSAGE_AUTH = 2;
const PERMISSION_DENIED = 0;

export type RoomState = "connecting" | "connected" | "disconnected";

export interface RoomHandlers {
  status(state: RoomState): void;
  /** The first sync with the server finished: the document shows the stored report. */
  synced(): void;
  /**
   * Called when the server rejected an edit (``code`` null) or closed the room
   * for good (``code`` is the close code), with its message.
   */
  error(reason: string, code: number | null): void;
}

/** Derive a colour from a person's name, the same on every screen, for cursors and name tags. */
export function personColour(name: string): { color: string; light: string } {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  const hue = hash % 360;
  return {
    color: `hsl(${hue} 70% 40%)`,
    light: `hsl(${hue} 70% 40% / 0.2)`,
  };
}

/** Connect ``doc`` to the room of ``reportId`` on this server with the session cookie. */
export function connectRoom(
  reportId: string,
  doc: Y.Doc,
  userName: string,
  handlers: RoomHandlers,
): WebsocketProvider {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const provider = new WebsocketProvider(
    `${scheme}//${location.host}/yjs/reports`,
    encodeURIComponent(reportId),
    doc,
    // BroadcastChannel would sync tabs of one browser with each other past the
    // server, which then checks nothing they send.
    {
      disableBc: true,
      params: shareToken === null ? {} : { share: shareToken },
    },
  );
  const { color, light } = personColour(userName);
  provider.awareness.setLocalStateField("user", {
    name: userName,
    color,
    colorLight: light,
  });
  provider.messageHandlers[MESSAGE_AUTH] = (_encoder, decoder) => {
    // The server reports a rejected update as "permission denied" with a reason.
    if (decoding.readVarUint(decoder) !== PERMISSION_DENIED) return;
    handlers.error(decoding.readVarString(decoder), null);
  };
  provider.on("status", ({ status }) => handlers.status(status));
  provider.on("sync", (synced: boolean) => {
    if (synced) handlers.synced();
  });
  provider.on("closed", ({ code, reason }) =>
    handlers.error(
      `The server closed the report (code ${code}${reason ? `: ${reason}` : ""}).`,
      code,
    ),
  );
  return provider;
}
