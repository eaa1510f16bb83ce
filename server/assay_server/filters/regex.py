"""Regular expressions for ``field ~ "pattern"``: a subset that matches alike everywhere.

PostgreSQL runs ``~`` with its own engine (advanced regular expressions), and
SQLite and the in-memory predicate run RE2 (the ``google-re2`` package). Both
engines search in time linear in the text, so no pattern can backtrack for
ever, which Python's ``re`` would. The subset is what the two engines read the
same way; ``translate`` checks a pattern against it and writes it out for each:

- literal characters, and ``\\`` before any punctuation for that character;
- ``.`` (any character, newline included), ``^`` and ``$`` (start and end of
  the whole text), groups ``( )`` and ``(?: )``, alternation ``|``;
- classes ``[abc]``, ``[^a-z]``; ``\\d``, ``\\w``, ``\\s`` (ASCII only:
  ``[0-9]``, ``[0-9A-Za-z_]``, tab, newline, vertical tab, form feed,
  carriage return and space) and ``\\D``, ``\\W``, ``\\S`` outside classes;
  ``\\n``, ``\\r``, ``\\t``;
- quantifiers ``*``, ``+``, ``?``, ``{m}``, ``{m,}``, ``{m,n}`` with counts up
  to ``MAX_REPEAT``, and no quantifier right after another.

Matching is case-sensitive. Backreferences, lookaround, word boundaries,
POSIX classes, flags and lazy quantifiers are rejected.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]

from assay_server.filters.errors import RegexError

MAX_PATTERN_LENGTH = 256
MAX_REPEAT = 100
#: Bound on the pattern's size once counted repetitions are expanded, which
#: keeps PostgreSQL from rejecting it as "too complex" at query time.
MAX_PATTERN_SIZE = 1000

_METACHARACTERS = set("\\.^$|?*+()[]{}")
_CLASS_SPECIAL = set("\\]^-[")
_DIGITS = [("0", "9")]
_WORD = [("0", "9"), ("A", "Z"), ("a", "z"), ("_", "_")]
_SPACE = [(char, char) for char in "\t\n\x0b\x0c\r "]
_CLASS_ESCAPES = {"d": _DIGITS, "w": _WORD, "s": _SPACE}
_CHARACTER_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}
_EXPECTED = "a pattern in the supported subset (see docs/runsets.md)"


@dataclass(frozen=True)
class Regex:
    """A checked pattern, written out for each engine."""

    source: str
    #: For PostgreSQL's ``~``.
    postgres: str
    #: For RE2, with the flag that lets ``.`` match a newline as PostgreSQL's does.
    re2: str


@functools.lru_cache(maxsize=256)
def translate(pattern: str) -> Regex:
    """Check ``pattern`` against the subset; raise ``RegexError`` (column = 1-based offset)."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexError(
            f"pattern of {len(pattern)} characters is too long",
            MAX_PATTERN_LENGTH + 1,
            f"at most {MAX_PATTERN_LENGTH} characters",
        )
    body, size = _PatternParser(pattern).parse()
    if size > MAX_PATTERN_SIZE:
        raise RegexError(
            f"pattern expands to {size} elements",
            1,
            f"at most {MAX_PATTERN_SIZE} once counted repetitions such as a{{10}} are expanded",
        )
    regex = Regex(pattern, body, "(?s)" + body)
    try:
        re2.compile(regex.re2)
    except re2.error as exc:
        raise RegexError(f"pattern rejected by RE2 ({exc})", 1, _EXPECTED) from None
    return regex


@functools.lru_cache(maxsize=256)
def compiled(pattern: str) -> Any:
    """Return the RE2 program of a pattern that ``translate`` accepts."""
    return re2.compile(translate(pattern).re2)


def search(pattern: str, text: str) -> bool:
    """Return whether ``pattern`` matches somewhere in ``text``."""
    return compiled(pattern).search(text) is not None


class _PatternParser:
    """Recursive descent over the pattern, emitting the common syntax and a size."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.position = 0

    def fail(self, problem: str, expected: str = _EXPECTED) -> RegexError:
        return RegexError(problem, self.position + 1, expected)

    def peek(self) -> str | None:
        return self.pattern[self.position] if self.position < len(self.pattern) else None

    def parse(self) -> tuple[str, int]:
        body, size = self.alternation()
        if self.position < len(self.pattern):
            raise self.fail("unbalanced ')'", "a '(' before it, or \\) for the character")
        return body, size

    def alternation(self) -> tuple[str, int]:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.position += 1
            branches.append(self.sequence())
        return "|".join(body for body, _ in branches), sum(size for _, size in branches)

    def sequence(self) -> tuple[str, int]:
        parts: list[str] = []
        total = 0
        while self.peek() not in (None, "|", ")"):
            body, size = self.quantified()
            parts.append(body)
            total += size
        return "".join(parts), total

    def quantified(self) -> tuple[str, int]:
        start = self.position
        body, size, repeatable = self.atom()
        quantifier = self.quantifier()
        if quantifier is None:
            return body, size
        if not repeatable:
            self.position = start
            raise self.fail("nothing to repeat", "a character, class or group before a quantifier")
        text, factor = quantifier
        if self.peek() in ("*", "+", "?", "{"):
            raise self.fail("a quantifier after a quantifier", "one quantifier per element")
        return body + text, size * factor

    def quantifier(self) -> tuple[str, int] | None:
        char = self.peek()
        if char in ("*", "?"):
            self.position += 1
            return char, 1
        if char == "+":
            self.position += 1
            return char, 2
        if char != "{":
            return None
        close = self.pattern.find("}", self.position)
        inner = self.pattern[self.position + 1 : close] if close > 0 else ""
        low_text, comma, high_text = inner.partition(",")
        if not low_text.isdigit() or not (high_text == "" or high_text.isdigit()):
            raise self.fail("invalid repetition", "{m}, {m,} or {m,n}; write \\{ for a brace")
        low = int(low_text)
        high = int(high_text) if high_text else None
        if low > MAX_REPEAT or (high is not None and high > MAX_REPEAT):
            raise self.fail("repetition count too large", f"counts of at most {MAX_REPEAT}")
        if high is not None and high < low:
            raise self.fail("repetition {m,n} with n below m", "m <= n")
        self.position = close + 1
        factor = max(low, high or 0) + (1 if comma and high is None else 0)
        return "{" + inner + "}", max(factor, 1)

    def atom(self) -> tuple[str, int, bool]:
        """Parse one element; return its text, its size and whether it may be repeated."""
        char = self.peek()
        assert char is not None
        if char == "(":
            return self.group()
        if char == "[":
            return self.bracket() + (True,)
        if char in ("^", "$"):
            self.position += 1
            return char, 1, False
        if char == ".":
            self.position += 1
            return ".", 1, True
        if char == "\\":
            return self.escape() + (True,)
        if char in "*+?{":
            raise self.fail("nothing to repeat", "a character, class or group before a quantifier")
        if char in "]}":
            raise self.fail(f"unescaped {char!r}", f"\\{char} for the character")
        self.position += 1
        return char, 1, True

    def group(self) -> tuple[str, int, bool]:
        self.position += 1
        if self.pattern.startswith("?:", self.position):
            self.position += 2
        elif self.peek() == "?":
            raise self.fail("unsupported group (?", "( or (?: ; lookaround and flags are rejected")
        body, size = self.alternation()
        if self.peek() != ")":
            raise self.fail("missing ')'", "')' closing the group")
        self.position += 1
        return f"(?:{body})", size + 1, True

    def escape(self) -> tuple[str, int]:
        escaped = self.pattern[self.position + 1 : self.position + 2]
        if not escaped:
            raise self.fail("pattern ends with a backslash", "a character after \\")
        if escaped in _CLASS_ESCAPES:
            self.position += 2
            return _class_text(_CLASS_ESCAPES[escaped], negated=False), 1
        if escaped.lower() in _CLASS_ESCAPES:
            self.position += 2
            return _class_text(_CLASS_ESCAPES[escaped.lower()], negated=True), 1
        return _literal(self.escaped_character()), 1

    def escaped_character(self) -> str:
        """Read ``\\X`` standing for one character, outside or inside a class."""
        escaped = self.pattern[self.position + 1 : self.position + 2]
        if escaped in _CHARACTER_ESCAPES:
            self.position += 2
            return _CHARACTER_ESCAPES[escaped]
        if escaped and not escaped.isalnum() and escaped.isascii():
            self.position += 2
            return escaped
        raise self.fail(
            f"unsupported escape \\{escaped}",
            "\\d, \\w, \\s, \\D, \\W, \\S, \\n, \\r, \\t or \\ before punctuation",
        )

    def bracket(self) -> tuple[str, int]:
        self.position += 1
        negated = self.peek() == "^"
        if negated:
            self.position += 1
        ranges: list[tuple[str, str]] = []
        while self.peek() != "]":
            char = self.peek()
            if char is None:
                raise self.fail("missing ']'", "']' closing the class")
            if char == "[":
                raise self.fail("'[' inside a class", "\\[ for the character; POSIX classes")
            if char == "\\" and self.pattern[self.position + 1 : self.position + 2] in (
                "d",
                "w",
                "s",
            ):
                ranges.extend(_CLASS_ESCAPES[self.pattern[self.position + 1]])
                self.position += 2
                continue
            low = self.class_character()
            if self.peek() == "-" and self.pattern[self.position + 1 : self.position + 2] not in (
                "]",
                "",
            ):
                self.position += 1
                high = self.class_character()
                if high < low:
                    raise self.fail(
                        f"range {low}-{high} runs backwards", "a range from low to high"
                    )
                ranges.append((low, high))
            else:
                ranges.append((low, low))
        if not ranges:
            raise self.fail("empty class []", "at least one character; write \\] for ']'")
        self.position += 1
        return _class_text(ranges, negated), 1

    def class_character(self) -> str:
        char = self.peek()
        assert char is not None
        if char != "\\":
            self.position += 1
            return char
        if self.pattern[self.position + 1 : self.position + 2] in ("D", "W", "S"):
            raise self.fail("negated class escape inside a class", "\\d, \\w or \\s")
        return self.escaped_character()


def _literal(char: str) -> str:
    return "\\" + char if char in _METACHARACTERS else char


def _class_member(char: str) -> str:
    return "\\" + char if char in _CLASS_SPECIAL else char


def _class_text(ranges: list[tuple[str, str]], negated: bool) -> str:
    members = "".join(
        _class_member(low) if low == high else f"{_class_member(low)}-{_class_member(high)}"
        for low, high in ranges
    )
    return f"[{'^' if negated else ''}{members}]"
