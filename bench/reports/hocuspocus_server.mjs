// An in-memory Hocuspocus v3 server for bench/reports.py: node hocuspocus_server.mjs PORT
import { Server } from "@hocuspocus/server";

const server = new Server({
  port: Number(process.argv[2]),
  address: "127.0.0.1",
  quiet: true,
});
await server.listen();
process.stdout.write("listening\n");
