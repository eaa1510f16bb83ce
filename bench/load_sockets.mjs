// Live sockets for bench/load.py, decoded as the browser workspace decodes them.
//
//   ASSAY_API_KEY=KEY node bench/load_sockets.mjs URL FIRST COUNT MEASURED WARMUP OUTPUT
//
// Opens COUNT live sockets to URL, numbered from FIRST, and subscribes each to
// the whole project. Sockets numbered below MEASURED record the latencies of
// the points logged WARMUP seconds or more after the first one. Prints
// "ready" once every socket is subscribed. Reads lines on stdin: "expect N"
// ends the sockets once each has received N points, and "stop" (or the end of
// stdin) ends them at once. Then it writes one tally per socket to OUTPUT as
// JSON, in the shape of load.py's SocketTally, and exits.
//
// A socket that closes or fails opens again after a pause, as the web app's
// live.ts does, and subscribes with the cursor of every stream it has
// followed, so that it receives each point once. The tally's "reconnects"
// lists the cause of each reconnection. After RECONNECT_ATTEMPTS failures in a
// row without a subscription, the socket records an error and stays closed. LOAD_SOCKETS_FIRST_DELAY_MS in the environment sets the first
// pause (default 500), so that a test of that path ends soon.
//
// The packages are the web app's own: `ws` and `@msgpack/msgpack` in
// client/web, installed by `make install`. The frames therefore go through
// the msgpack decoder that the browser workspace uses.

import { closeSync, openSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const webApp = new URL("../client/web/package.json", import.meta.url);
const require = createRequire(webApp);
const WebSocket = require("ws");
const { decode, encode } = require("@msgpack/msgpack");

const [url, firstArg, countArg, measuredArg, warmupArg, output] =
  process.argv.slice(2);
if (output === undefined) {
  console.error(
    "usage: ASSAY_API_KEY=KEY node load_sockets.mjs URL FIRST COUNT MEASURED WARMUP OUTPUT",
  );
  process.exit(2);
}
const first = Number(firstArg);
const count = Number(countArg);
const measured = Number(measuredArg);
const warmup = Number(warmupArg);
const key = process.env.ASSAY_API_KEY ?? "";

// The pauses before a reconnection, as live.ts makes them: doubling from
// FIRST_DELAY_MS up to MAX_DELAY_MS, each a random point in its upper half.
const FIRST_DELAY_MS = Number(process.env.LOAD_SOCKETS_FIRST_DELAY_MS ?? 500);
const MAX_DELAY_MS = 15_000;
const RECONNECT_ATTEMPTS = 10;

// Seconds since the epoch, with a fraction, on the clock run.log() reads.
const now = () => (performance.timeOrigin + performance.now()) / 1000;

const tallies = [];
// Points each socket received, kept apart so that its tally keeps SocketTally's shape.
const totals = [];
const sockets = new Set();
let subscribed = 0;
let expected = -1;
let stopping = false;

function tally(message, own, link, received) {
  // Like live.ts, every message that names a stream and an entry moves that
  // stream's cursor: points, events and the "watch" of a run's new stream.
  if (message.stream !== undefined && message.id !== undefined)
    link.cursors[message.stream] = message.id;
  switch (message.type) {
    case "batch":
      for (const inner of message.messages ?? [])
        tally(inner, own, link, received);
      break;
    case "subscribed":
      // The streams the server started from now have a cursor from here on.
      for (const [stream, id] of Object.entries(message.cursors ?? {}))
        link.cursors[stream] ??= id;
      link.attempts = 0;
      if (link.subscribed) break;
      link.subscribed = true;
      subscribed += 1;
      if (subscribed === count) process.stdout.write("ready\n");
      break;
    case "resync":
    case "error":
      own.errors.push(`${message.type}: ${JSON.stringify(message)}`);
      break;
    case "points": {
      const runId = message.run_id;
      const appended = Number(message.id.split("-")[0]) / 1000;
      let counted = false;
      for (const column of Object.values(message.metrics)) {
        own.points[runId] = (own.points[runId] ?? 0) + column.steps.length;
        totals[link.slot] += column.steps.length;
        if (!link.measure) continue;
        for (const logged of column.times) {
          own.first_logged ??= logged;
          if (logged < own.first_logged + warmup) continue;
          counted = true;
          own.latencies.push(received - logged);
          own.ingest.push(appended - logged);
        }
      }
      if (counted) own.fanout.push(received - appended);
      break;
    }
  }
}

function open(index) {
  const own = {
    points: {},
    latencies: [],
    ingest: [],
    fanout: [],
    errors: [],
    reconnects: [],
    first_logged: null,
  };
  const slot = tallies.push(own) - 1;
  totals.push(0);
  // One socket's state across its reconnections.
  const link = {
    slot,
    measure: index < measured,
    cursors: {},
    attempts: 0,
    subscribed: false,
  };
  connect(own, link);
}

function connect(own, link) {
  // Like a browser, the socket takes messages of any size.
  const socket = new WebSocket(url, {
    headers: { Authorization: `Bearer ${key}` },
    maxPayload: 0,
    perMessageDeflate: false,
    handshakeTimeout: 60_000,
  });
  socket.binaryType = "nodebuffer";
  sockets.add(socket);
  let failure = null;

  socket.on("open", () =>
    socket.send(encode({ type: "subscribe", cursors: link.cursors })),
  );
  socket.on("message", (data) => {
    const received = now();
    tally(decode(data), own, link, received);
  });
  socket.on("error", (error) => {
    failure = `socket failed: ${error}`;
  });
  socket.on("close", (code, reason) => {
    sockets.delete(socket);
    if (stopping) return;
    const cause =
      failure ?? `socket closed by the server: ${code} ${reason}`.trimEnd();
    if (link.attempts >= RECONNECT_ATTEMPTS) {
      own.errors.push(`${cause}, after ${link.attempts} reconnections`);
      return;
    }
    own.reconnects.push(cause);
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** link.attempts);
    link.attempts += 1;
    setTimeout(
      () => stopping || connect(own, link),
      ceiling / 2 + (Math.random() * ceiling) / 2,
    );
  });
}

function finish() {
  if (stopping) return;
  stopping = true;
  for (const socket of sockets) socket.terminate();
  // One socket at a time. As one string, the tallies of a 12-minute run
  // would pass V8's limit of about 2**29 characters (an estimate: 50 measured
  // sockets, 2 figures of about 19 characters per point).
  const file = openSync(output, "w");
  tallies.forEach((own, index) => {
    writeSync(file, (index ? "," : "[") + JSON.stringify(own));
  });
  writeSync(file, tallies.length ? "]" : "[]");
  closeSync(file);
  process.exit(0);
}

createInterface({ input: process.stdin })
  .on("line", (line) => {
    const [word, value] = line.trim().split(" ");
    if (word === "expect") expected = Number(value);
    else if (word === "stop") finish();
  })
  .on("close", finish);

setInterval(() => {
  if (expected >= 0 && totals.every((total) => total >= expected)) finish();
}, 200);

for (let index = first; index < first + count; index += 1) {
  open(index);
  // Spreads the handshakes a little.
  if (index % 50 === 49) await new Promise((done) => setTimeout(done, 50));
}
