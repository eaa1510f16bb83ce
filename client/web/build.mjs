// Bundle the app into server/assay_server/static/, where the server and the wheel find it.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, "../../server/assay_server/static");

await esbuild.build({
  // main.ts imports style.css, so esbuild writes app.css beside app.js.
  entryPoints: { app: path.join(here, "src/main.ts") },
  bundle: true,
  format: "esm",
  minify: true,
  sourcemap: false,
  target: ["es2022"],
  outdir,
  entryNames: "[name]",
  // KaTeX's stylesheet names its fonts, so they are copied beside the bundle and
  // served by our server, never from a CDN.
  loader: { ".woff2": "file", ".woff": "file", ".ttf": "file" },
  assetNames: "fonts/[name]-[hash]",
  logLevel: "warning",
});
console.log(`built the web app into ${outdir}`);
