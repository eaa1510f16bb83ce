// The browser app's markdown renderer, bundled on its own for the renderer fuzz
// test (tests/faults/test_markdown_fuzz.py), which calls it from Chromium.
import { renderMarkdown } from "../../client/web/src/markdown";

(globalThis as { renderMarkdown?: (source: string) => string }).renderMarkdown =
  renderMarkdown;
