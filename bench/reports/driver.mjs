// Load driver for bench/reports.py: COUNT of TOTAL editors on one document,
// numbered from FIRST, each making RATE edits per second for SECONDS. Usage:
//
//   node driver.mjs KIND URL ROOM TOKEN TOTAL FIRST COUNT RATE SECONDS OBSERVE
//
// KIND is `y-websocket` (assay and @y/websocket-server) or `hocuspocus`.
// Every editor owns one markdown block and appends "|client:seq:time" to its
// text, where time is the wall clock in milliseconds. With OBSERVE=1, up to
// five editors of this process record the fan-out latency of the others'
// edits. bench/reports.py runs several drivers, because one Node process
// cannot apply 50 editors' updates at 5 per second each by itself. The result
// is one JSON line on stdout.
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { HocuspocusProvider } from "@hocuspocus/provider";
import WebSocket from "ws";

const [
  kind,
  url,
  room,
  token,
  totalArg,
  firstArg,
  countArg,
  rateArg,
  secondsArg,
  observeArg,
] = process.argv.slice(2);
const total = Number(totalArg);
const first = Number(firstArg);
const count = Number(countArg);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const observers = observeArg === "1" ? Math.min(5, count) : 0;
const now = () => performance.timeOrigin + performance.now();
const latencies = [];
// Each provider adds a listener for process exit.
process.setMaxListeners(count + 10);

function connect(index) {
  const doc = new Y.Doc();
  const provider =
    kind === "hocuspocus"
      ? new HocuspocusProvider({
          url,
          name: room,
          document: doc,
          WebSocketPolyfill: WebSocket,
        })
      : new WebsocketProvider(url, room, doc, {
          params: { token },
          WebSocketPolyfill: WebSocket,
          disableBc: true,
        });
  const synced = new Promise((resolve) => {
    if (kind === "hocuspocus") provider.on("synced", resolve);
    else provider.once("sync", resolve);
  });
  return { index, doc, provider, synced };
}

function observe(editor) {
  editor.doc.getArray("blocks").observeDeep((events, transaction) => {
    if (transaction.local) return;
    const received = now();
    for (const event of events) {
      if (!(event.target instanceof Y.Text)) continue;
      for (const change of event.delta) {
        if (typeof change.insert !== "string") continue;
        for (const token of change.insert.split("|")) {
          const sent = Number(token.split(":")[2]);
          if (sent > 0) latencies.push(received - sent);
        }
      }
    }
  });
}

const editors = Array.from({ length: count }, (_, index) =>
  connect(first + index),
);
await Promise.all(editors.map((editor) => editor.synced));

// Each editor creates its block; wait until this process's editors see all of them.
for (const editor of editors) {
  const block = new Y.Map();
  block.set("id", `editor-${editor.index}`);
  block.set("type", "markdown");
  block.set("text", new Y.Text(""));
  editor.doc.getArray("blocks").push([block]);
  editor.text = block.get("text");
}
const start = Date.now();
while (editors.some((e) => e.doc.getArray("blocks").length < total)) {
  if (Date.now() - start > 60000)
    throw new Error("editors did not see each other within 60 s");
  await new Promise((resolve) => setTimeout(resolve, 50));
}
editors.slice(0, observers).forEach(observe);

let sent = 0;
const interval = 1000 / rate;
const timers = editors.map((editor) =>
  setTimeout(() => {
    let seq = 0;
    editor.timer = setInterval(() => {
      const token = `${editor.index}:${seq++}:${now().toFixed(3)}`;
      editor.text.insert(editor.text.length, `|${token}`);
      sent += 1;
    }, interval);
  }, Math.random() * interval),
);
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
timers.forEach(clearTimeout);
editors.forEach((editor) => clearInterval(editor.timer));
await new Promise((resolve) => setTimeout(resolve, 1000));

// Exit only once the line is written: stdout to a pipe is asynchronous in Node.
process.stdout.write(
  JSON.stringify({ sent, observers, latencies }) + "\n",
  () => process.exit(0),
);
