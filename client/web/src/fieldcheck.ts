// The checks the server applies to a run set's grouping and sort, in the browser. A report
// edit the server rejects leaves the page stale until a reload, so the run-set bar writes
// only values that pass these. They follow the server's filter lexer and parser
// (server/assay_server/filters/) and runset_shape.check_grouping and check_sort.
import {
  AGGREGATES,
  BANDS,
  GROUP_METADATA,
  MAX_GROUP_KEYS,
  METADATA,
  type Grouping,
  type Sort,
} from "./runsetfields";

const KEYWORDS = new Set([
  "and",
  "or",
  "not",
  "in",
  "is",
  "contains",
  "exists",
  "true",
  "false",
  "null",
  "nan",
  "inf",
  "finite",
]);
const STATISTICS = ["min", "max", "has_nan", "has_inf", "has_null"];
const WORD = /^[A-Za-z_][A-Za-z0-9_/-]*/;
const WHITESPACE = /^[ \t\r\n]+/;
/** The server parses a field as the filter ``FIELD exists``, of at most this many characters. */
const MAX_FILTER_LENGTH = 10_000;
const MAX_PATH_LENGTH = 32;
/** Keys in one field with characters outside printable ASCII, or with ``"`` or ``\``. */
const MAX_ESCAPED_KEYS = 2;
/** The key that stored documents use to mark NaN and infinities. */
const RESERVED_KEY = "$float";
const STRING_ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  n: "\n",
  r: "\r",
  t: "\t",
};

export type Field =
  | { kind: "metadata"; name: string }
  | { kind: "config"; path: string[] }
  | { kind: "summary"; metric: string; statistic: string | null };

interface Token {
  kind: "word" | "string" | "dot" | "other" | "end";
  text: string;
  /** The decoded key of a string token. */
  value: string;
}

/** A field that the server would reject, with what is wrong. */
export class FieldError extends Error {}

/** Split ``text`` into the tokens a field is made of, and any other character into an ``other`` token. */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let position = 0;
  for (;;) {
    const space = WHITESPACE.exec(text.slice(position));
    if (space) position += space[0].length;
    if (position >= text.length) {
      tokens.push({ kind: "end", text: "", value: "" });
      return tokens;
    }
    const rest = text.slice(position);
    const word = WORD.exec(rest);
    let token: Token;
    if (rest.startsWith('"')) {
      const [value, end] = readString(text, position);
      token = { kind: "string", text: text.slice(position, end), value };
    } else if (word) {
      token = { kind: "word", text: word[0], value: word[0] };
    } else if (rest.startsWith(".")) {
      token = { kind: "dot", text: ".", value: "." };
    } else {
      token = { kind: "other", text: rest.charAt(0), value: "" };
    }
    tokens.push(token);
    position += token.text.length;
  }
}

/** Decode the string literal at ``start``, and return its value and the index after it. */
function readString(text: string, start: number): [string, number] {
  let value = "";
  let position = start + 1;
  while (position < text.length) {
    const char = text.charAt(position);
    if (char === '"') return [value, position + 1];
    if (char === "\0") throw new FieldError("NUL character in a string");
    if (char !== "\\" || position + 1 >= text.length) {
      value += char;
      position += 1;
      continue;
    }
    const escape = text.charAt(position + 1);
    const simple = STRING_ESCAPES[escape];
    if (simple !== undefined) {
      value += simple;
      position += 2;
    } else if (escape === "u") {
      const digits = text.slice(position + 2, position + 6);
      if (!/^[0-9A-Fa-f]{4}$/.test(digits))
        throw new FieldError("invalid \\u escape");
      const code = parseInt(digits, 16);
      if (code === 0 || (code >= 0xd800 && code <= 0xdfff))
        throw new FieldError(`\\u${digits} is not allowed`);
      value += String.fromCharCode(code);
      position += 6;
    } else {
      value += "\\";
      position += 1;
    }
  }
  throw new FieldError("unterminated string");
}

function describeToken(token: Token): string {
  return token.kind === "end" ? "end of field" : `'${token.text}'`;
}

/** Return whether ``key`` is printable ASCII without ``"`` or ``\``, as the server counts. */
function isPlainKey(key: string): boolean {
  return [...key].every(
    (char) => char >= " " && char <= "~" && char !== '"' && char !== "\\",
  );
}

/** Parse ``text`` as one filter field, such as ``config.lr``, or throw ``FieldError``. */
export function parseField(text: string): Field {
  if (text.length + " exists".length > MAX_FILTER_LENGTH)
    throw new FieldError(`field of ${text.length} characters is too long`);
  const tokens = tokenize(text);
  let index = 0;
  const next = (): Token => tokens[index] ?? tokens[tokens.length - 1]!;
  const advance = (): Token => {
    const token = next();
    if (token.kind !== "end") index += 1;
    return token;
  };
  const key = (): string => {
    const token = advance();
    if (token.kind === "word" || token.kind === "string") return token.value;
    throw new FieldError(
      `unexpected ${describeToken(token)} where a key belongs`,
    );
  };

  const head = advance();
  if (head.kind !== "word" || KEYWORDS.has(head.text.toLowerCase()))
    throw new FieldError(`unexpected ${describeToken(head)}`);
  let field: Field;
  if (METADATA.includes(head.text)) {
    field = { kind: "metadata", name: head.text };
  } else if (head.text === "config" || head.text === "summary") {
    if (advance().kind !== "dot")
      throw new FieldError(`'${head.text}' needs '.' and a key`);
    if (head.text === "config") {
      const path = [key()];
      while (next().kind === "dot") {
        advance();
        path.push(key());
      }
      field = { kind: "config", path };
    } else {
      const metric = key();
      let statistic: string | null = null;
      if (next().kind === "dot") {
        advance();
        const token = advance();
        if (token.kind !== "word" || !STATISTICS.includes(token.text))
          throw new FieldError(
            `unknown statistic ${describeToken(token)} of metric '${metric}'`,
          );
        statistic = token.text;
      }
      field = { kind: "summary", metric, statistic };
    }
  } else {
    throw new FieldError(`unknown field '${head.text}'`);
  }
  const rest = next();
  if (rest.kind !== "end")
    throw new FieldError(`unexpected ${describeToken(rest)} after the field`);
  checkKeys(field);
  return field;
}

/** Apply the server's limits on the keys of a config or summary field. */
function checkKeys(field: Field): void {
  if (field.kind === "metadata") return;
  const keys = field.kind === "config" ? field.path : [field.metric];
  if (keys.length > MAX_PATH_LENGTH)
    throw new FieldError(`config path of ${keys.length} keys`);
  if (keys.filter((key) => !isPlainKey(key)).length > MAX_ESCAPED_KEYS)
    throw new FieldError(
      `more than ${MAX_ESCAPED_KEYS} keys with characters outside printable ASCII, or with '"' or '\\'`,
    );
  if (keys.includes(RESERVED_KEY))
    throw new FieldError(`the key '${RESERVED_KEY}' is reserved`);
}

/** Return why the server would reject ``text`` as a field, or null when it accepts it. */
function fieldProblem(text: string, what: string): string | null {
  if (text.trim() === "")
    return `${what} must be a field such as config.lr, got an empty text`;
  try {
    parseField(text);
    return null;
  } catch (error) {
    if (!(error instanceof FieldError)) throw error;
    return (
      `invalid ${what} ${JSON.stringify(text)}: ${error.message}; ` +
      "expected a field such as config.lr, summary.loss or state"
    );
  }
}

/** Return why the server would reject ``grouping``, naming the value and the fix, or null. */
export function groupingProblem(grouping: Grouping): string | null {
  if (grouping.keys.length > MAX_GROUP_KEYS)
    return (
      `${grouping.keys.length} grouping keys are too many: ` +
      `group by at most ${MAX_GROUP_KEYS} fields`
    );
  for (const key of grouping.keys) {
    const problem = fieldProblem(key, "grouping key");
    if (problem !== null) return problem;
    const field = parseField(key);
    const allowed =
      field.kind === "config" ||
      (field.kind === "metadata" && GROUP_METADATA.includes(field.name));
    if (!allowed)
      return (
        `cannot group by ${JSON.stringify(key)}; group by config.KEY ` +
        `or one of ${GROUP_METADATA.join(", ")}`
      );
  }
  if (!AGGREGATES.includes(grouping.aggregate))
    return `invalid aggregate ${JSON.stringify(grouping.aggregate)}; choose one of ${AGGREGATES.join(", ")}`;
  if (!BANDS.includes(grouping.band))
    return `invalid band ${JSON.stringify(grouping.band)}; choose one of ${BANDS.join(", ")}`;
  return null;
}

/** Return why the server would reject ``sort``, naming the value and the fix, or null. */
export function sortProblem(sort: Sort | null): string | null {
  if (sort === null) return null;
  const problem = fieldProblem(sort.field, "sort field");
  if (problem !== null) return problem;
  if (sort.direction !== "asc" && sort.direction !== "desc")
    return `invalid sort direction ${JSON.stringify(sort.direction)}; choose asc or desc`;
  return null;
}
