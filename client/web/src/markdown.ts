// Markdown to safe HTML: markdown-it for the text, KaTeX for $…$ and $$…$$, DOMPurify last.
import DOMPurify from "dompurify";
import katex from "katex";
import MarkdownIt, { type StateBlock, type StateInline } from "markdown-it";
import "katex/dist/katex.min.css";

// trust: false disables \href, \url, \includegraphics and \htmlData, the macros
// that load or link URLs. maxExpand stops macros that expand without end.
const KATEX_OPTIONS = {
  throwOnError: false,
  trust: false,
  strict: "ignore",
  maxExpand: 1000,
  maxSize: 50,
  output: "htmlAndMathml",
} as const;

const DOLLAR = 0x24;

function renderMath(source: string, displayMode: boolean): string {
  try {
    return katex.renderToString(source, { ...KATEX_OPTIONS, displayMode });
  } catch (error) {
    // throwOnError: false renders parse errors, too many expansions included, as red
    // source. This catches any other error KaTeX raises.
    const message = error instanceof Error ? error.message : String(error);
    const escaped = markdown.utils.escapeHtml(source);
    return `<code class="math-error" title="${markdown.utils.escapeHtml(message)}">${escaped}</code>`;
  }
}

/** Inline math: $$…$$ anywhere, or $…$ with no space just inside either dollar. */
function inlineMath(state: StateInline, silent: boolean): boolean {
  const { src, pos, posMax } = state;
  if (src.charCodeAt(pos) !== DOLLAR) return false;
  const display = src.charCodeAt(pos + 1) === DOLLAR;
  const start = pos + (display ? 2 : 1);
  const end = display
    ? src.indexOf("$$", start)
    : closingDollar(src, start, posMax);
  if (end < 0 || end > posMax || end === start) return false;
  if (!silent) {
    const token = state.push(display ? "math_display" : "math_inline", "", 0);
    token.content = src.slice(start, end);
    token.markup = display ? "$$" : "$";
  }
  state.pos = end + (display ? 2 : 1);
  return true;
}

function closingDollar(src: string, start: number, max: number): number {
  if (/\s/.test(src.charAt(start))) return -1;
  for (let index = start; index < max; index += 1) {
    const char = src.charAt(index);
    if (char === "\\") {
      index += 1;
      continue;
    }
    if (char !== "$") continue;
    // "$5 and $6" stays text: a closing dollar follows no space and precedes no digit.
    if (/\s/.test(src.charAt(index - 1)) || /\d/.test(src.charAt(index + 1)))
      return -1;
    return index;
  }
  return -1;
}

/** Display math: a paragraph that starts with $$ and runs to the line ending with $$. */
function blockMath(
  state: StateBlock,
  startLine: number,
  endLine: number,
  silent: boolean,
): boolean {
  const lineText = (line: number): string =>
    state.src.slice(
      state.bMarks[line]! + state.tShift[line]!,
      state.eMarks[line],
    );

  if (state.sCount[startLine]! - state.blkIndent >= 4) return false;
  const first = lineText(startLine).trimEnd();
  if (!first.startsWith("$$")) return false;

  let last = startLine;
  let body: string;
  if (first.length > 2 && first.endsWith("$$")) {
    body = first.slice(2, -2);
  } else {
    const lines = [first.slice(2)];
    for (last = startLine + 1; last < endLine; last += 1) {
      const text = lineText(last).trimEnd();
      if (text.endsWith("$$")) {
        lines.push(text.slice(0, -2));
        break;
      }
      lines.push(text);
    }
    if (last >= endLine) return false;
    body = lines.join("\n");
  }

  if (silent) return true;
  const token = state.push("math_block", "", 0);
  token.block = true;
  token.content = body;
  token.markup = "$$";
  token.map = [startLine, last + 1];
  state.line = last + 1;
  return true;
}

// html: false escapes raw HTML in the source; markdown-it also rejects
// javascript:, vbscript: and most data: links. DOMPurify runs after both.
const markdown = new MarkdownIt({ html: false, linkify: false });
markdown.inline.ruler.after("escape", "math_inline", inlineMath);
markdown.block.ruler.before("fence", "math_block", blockMath, {
  alt: ["paragraph", "reference", "blockquote", "list"],
});
markdown.renderer.rules.math_inline = (tokens, index) =>
  renderMath(tokens[index]?.content ?? "", false);
markdown.renderer.rules.math_display = (tokens, index) =>
  renderMath(tokens[index]?.content ?? "", true);
markdown.renderer.rules.math_block = (tokens, index) =>
  `<div class="math-block">${renderMath(tokens[index]?.content ?? "", true)}</div>\n`;

/** Render markdown with LaTeX to sanitised HTML. */
export function renderMarkdown(source: string): string {
  return DOMPurify.sanitize(markdown.render(source));
}
