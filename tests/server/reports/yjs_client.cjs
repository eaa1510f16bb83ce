// A Node Yjs client for the report tests: the npm `yjs` and `y-websocket`
// packages from client/web, connected to /yjs/reports/{id} like a browser.
//
//   node yjs_client.cjs write URL REPORT_ID TOKEN TEXT
//       adds a markdown block holding TEXT, prints {"event":"written"}, and
//       stays connected until its stdin closes.
//   node yjs_client.cjs read URL REPORT_ID TOKEN TEXT TIMEOUT_MS
//       prints {"event":"seen","ms":…,"content":…} once the document holds
//       TEXT, and exits 0; exits 1 after TIMEOUT_MS.
//   node yjs_client.cjs bad URL REPORT_ID TOKEN
//       adds a block of an unknown type and prints the server's rejection as
//       {"event":"denied","reason":…}.
//   node yjs_client.cjs append URL REPORT_ID TOKEN
//       stays connected, reconnecting as y-websocket does, until its stdin
//       closes. Prints {"event":"synced"} after each sync with the server and
//       {"event":"texts","texts":[…]} with every block's text after each
//       change. Each line read from stdin becomes a new markdown block.
//   node yjs_client.cjs edit URL REPORT_ID TOKEN NAME
//       edits on commands read from stdin, one a line: `start MS` makes an
//       edit every MS milliseconds, `stop` stops, `state` prints
//       {"event":"state",…}. Each edit inserts a unique token [NAME<k>]:
//       into the markdown block "shared", into the title, or as a new block.
//       See editCommands below for what `state` prints.
//
// Each line of output is one JSON object.
const path = require("path");
const { createRequire } = require("module");

const web = createRequire(
  path.resolve(__dirname, "../../../client/web/package.json"),
);
const Y = web("yjs");
const { WebsocketProvider } = web("y-websocket");
const WebSocket = web("ws");

const [mode, url, reportId, token, text, timeoutMs] = process.argv.slice(2);
const started = Date.now();
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");

// y-websocket reports the server's auth message through console.warn.
console.warn = (...args) => print({ event: "denied", reason: args.join(" ") });

const doc = new Y.Doc();
const provider = new WebsocketProvider(url, reportId, doc, {
  params: { token },
  WebSocketPolyfill: WebSocket,
  disableBc: true,
});
provider.on("connection-close", (event) => {
  if (event)
    print({ event: "closed", code: event.code, reason: String(event.reason) });
});

const content = () => ({
  title: doc.getText("title").toString(),
  blocks: doc.getArray("blocks").toJSON(),
});

function addBlock(type, body) {
  const block = new Y.Map();
  block.set("id", `b${doc.clientID}-${doc.getArray("blocks").length}`);
  block.set("type", type);
  block.set("text", new Y.Text(body));
  doc.getArray("blocks").push([block]);
}

function whenSynced(callback) {
  if (provider.synced) callback();
  else provider.once("sync", callback);
}

if (mode === "write") {
  whenSynced(() => {
    addBlock("markdown", text);
    print({ event: "written" });
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
} else if (mode === "read") {
  const check = () => {
    const { title, blocks } = content();
    const texts = [title, ...blocks.map((block) => String(block.text ?? ""))];
    if (texts.some((body) => body.includes(text))) {
      print({ event: "seen", ms: Date.now() - started, content: content() });
      process.exit(0);
    }
  };
  whenSynced(() => {
    check();
    doc.on("update", check);
  });
  setTimeout(() => {
    print({ event: "timeout", content: content() });
    process.exit(1);
  }, Number(timeoutMs));
} else if (mode === "bad") {
  whenSynced(() => addBlock("video", "not a block type"));
  setTimeout(() => process.exit(1), 10000);
  const original = console.warn;
  console.warn = (...args) => {
    original(...args);
    process.exit(0);
  };
} else if (mode === "append") {
  const texts = () => content().blocks.map((block) => String(block.text ?? ""));
  provider.on("sync", (synced) => {
    if (synced) print({ event: "synced" });
  });
  doc.on("update", () => print({ event: "texts", texts: texts() }));
  let input = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    input += chunk;
    const lines = input.split("\n");
    input = lines.pop();
    lines.forEach((line) => addBlock("markdown", line));
  });
  process.stdin.on("end", () => process.exit(0));
} else if (mode === "edit") {
  editCommands(text);
} else {
  process.stderr.write(
    `unknown mode ${mode}; expected write, read, bad, append or edit\n`,
  );
  process.exit(2);
}

// The edit mode, for the fault tests. `state` prints what this client made
// (`made`: token, wall-clock ms, whether the socket was open), when it first
// saw each other client's token (`seen`: token to wall-clock ms), its content
// and whether the provider is connected and synced.
function editCommands(name) {
  const made = [];
  const seen = {};
  const own = `[${name}`;
  let timer = null;
  let count = 0;

  const tokensIn = () => {
    const { title, blocks } = content();
    const texts = [title, ...blocks.map((block) => String(block.text ?? ""))];
    return texts.join("").match(/\[[a-z]+\d+\]/g) ?? [];
  };
  doc.on("update", (update, origin) => {
    if (origin !== provider) return;
    const now = Date.now();
    for (const token of tokensIn()) {
      if (!token.startsWith(own) && !(token in seen)) seen[token] = now;
    }
  });

  const blockText = (id) => {
    for (const block of doc.getArray("blocks")) {
      if (block.get("id") === id) return block.get("text");
    }
    return null;
  };
  const edit = () => {
    const token = `[${name}${count}]`;
    const kind = count % 8;
    const shared = blockText("shared");
    if (kind === 5) {
      const title = doc.getText("title");
      title.insert(title.length, token);
    } else if (kind === 6 || shared === null) {
      const block = new Y.Map();
      block.set("id", `${name}${count}`);
      block.set("type", "markdown");
      block.set("text", new Y.Text(token));
      doc.getArray("blocks").push([block]);
    } else {
      // Tokens go at either end, never inside another client's token.
      shared.insert(count % 2 === 0 ? 0 : shared.length, token);
    }
    made.push([token, Date.now(), provider.wsconnected]);
    count += 1;
  };

  const handle = (line) => {
    const [command, argument] = line.trim().split(/\s+/);
    if (command === "start") {
      clearInterval(timer);
      timer = setInterval(edit, Number(argument));
      print({ event: "started" });
    } else if (command === "stop") {
      clearInterval(timer);
      print({ event: "stopped", made: made.length });
    } else if (command === "state") {
      print({
        event: "state",
        made,
        seen,
        content: content(),
        connected: provider.wsconnected,
        synced: provider.synced,
      });
    } else if (command) {
      print({ event: "error", message: `unknown command ${command}` });
    }
  };
  let buffered = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      handle(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
    }
  });
  process.stdin.on("end", () => process.exit(0));
  provider.on("status", ({ status }) => print({ event: status }));
}
