// A stock y-websocket client that opens a report through a share link, as an
// anonymous browser would: the token goes in the `share` query parameter.
//
//   node share_client.cjs URL REPORT_ID SHARE_TOKEN
//
// Prints one JSON object per line: {"event":"synced","content":…} once the
// document has loaded, {"event":"denied","reason":…} for each rejection the
// server sends, and {"event":"closed","code":…,"reason":…} when the socket
// closes (the client then exits). Each line read from stdin is added to the
// document as a markdown block, followed by {"event":"sent"}.
const path = require("path");
const readline = require("readline");
const { createRequire } = require("module");

const web = createRequire(
  path.resolve(__dirname, "../../../client/web/package.json"),
);
const Y = web("yjs");
const { WebsocketProvider } = web("y-websocket");
const WebSocket = web("ws");

const [url, reportId, share] = process.argv.slice(2);
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");
console.warn = (...args) => print({ event: "denied", reason: args.join(" ") });

const doc = new Y.Doc();
const provider = new WebsocketProvider(url, reportId, doc, {
  params: { share },
  WebSocketPolyfill: WebSocket,
  disableBc: true,
});
const content = () => ({
  title: doc.getText("title").toString(),
  blocks: doc.getArray("blocks").toJSON(),
});

provider.on("connection-close", (event) => {
  print({
    event: "closed",
    code: event ? event.code : null,
    reason: event ? String(event.reason) : "",
  });
  provider.destroy();
  process.exit(0);
});
provider.once("sync", () => print({ event: "synced", content: content() }));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const block = new Y.Map();
  block.set("id", `s${doc.clientID}-${doc.getArray("blocks").length}`);
  block.set("type", "markdown");
  block.set("text", new Y.Text(line));
  doc.getArray("blocks").push([block]);
  print({ event: "sent" });
});
