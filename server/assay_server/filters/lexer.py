"""Split filter text into tokens, each with the 1-based column where it starts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from assay_server.filters.errors import FilterSyntaxError
from assay_server.filters.tree import Timestamp


class Kind(Enum):
    WORD = "word"
    STRING = "string"
    NUMBER = "number"
    TIME = "time"
    OPERATOR = "operator"
    PUNCTUATION = "punctuation"
    END = "end"


@dataclass(frozen=True)
class Token:
    kind: Kind
    #: The source text of the token (for STRING, with its quotes).
    text: str
    #: The decoded value: a str for STRING, float for NUMBER, Timestamp for TIME.
    value: str | float | Timestamp | None
    column: int


_WHITESPACE = re.compile(r"[ \t\r\n]+")
# A word is a bare key or a bare value; it may contain "/" and "-" because
# metric names such as "train/loss" and values such as "sweep-3" are common.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_/\-]*")
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?"
)
_NUMBER = re.compile(r"[-+]?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?")
_OPERATORS = ("!=", "<=", ">=", "=", "<", ">", "~")
_PUNCTUATION = "(),.-"
_STRING_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def tokenize(text: str) -> list[Token]:
    """Return the tokens of ``text``, ending with an END token."""
    tokens: list[Token] = []
    position = 0
    while True:
        space = _WHITESPACE.match(text, position)
        if space:
            position = space.end()
        if position >= len(text):
            tokens.append(Token(Kind.END, "", None, position + 1))
            return tokens
        token = _next_token(text, position)
        tokens.append(token)
        position += len(token.text)


def _next_token(text: str, position: int) -> Token:
    column = position + 1
    char = text[position]
    if char == '"':
        value, end = _read_string(text, position)
        return Token(Kind.STRING, text[position:end], value, column)
    for operator in _OPERATORS:
        if text.startswith(operator, position):
            return Token(Kind.OPERATOR, operator, None, column)
    found = _TIME.match(text, position)
    if found:
        _reject_glued(text, found.end(), "a date such as 2026-12-03 or 2026-12-03T08:30:00Z")
        return Token(Kind.TIME, found.group(), _parse_time(found.group(), column), column)
    found = _NUMBER.match(text, position)
    if found:
        _reject_glued(text, found.end(), "a number such as 0.1, -3 or 1e-4")
        return Token(Kind.NUMBER, found.group(), _parse_number(found.group(), column), column)
    found = _WORD.match(text, position)
    if found:
        return Token(Kind.WORD, found.group(), None, column)
    if char in _PUNCTUATION:
        return Token(Kind.PUNCTUATION, char, None, column)
    if char == "'":
        raise FilterSyntaxError(
            "single quote", column, 'a string in double quotes, such as "adam"'
        )
    raise FilterSyntaxError(
        f"unexpected character {char!r}", column, "a field, an operator, a value or a parenthesis"
    )


def _reject_glued(text: str, end: int, expected: str) -> None:
    """Reject a number or date run into letters, such as ``3abc`` or ``1.5.2``."""
    if end < len(text) and (text[end].isalnum() or text[end] in "_.:"):
        raise FilterSyntaxError(f"unexpected character {text[end]!r}", end + 1, expected)


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Decode the string literal at ``start``; return its value and the index after it.

    ``\\"``, ``\\\\``, ``\\n``, ``\\r``, ``\\t`` and ``\\uXXXX`` are escapes. Any
    other backslash stays in the value, so ``"^a\\.b"`` is the regular
    expression ``^a\\.b`` without doubling the backslash.
    """
    parts: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == '"':
            return "".join(parts), position + 1
        if char == "\x00":
            raise FilterSyntaxError("NUL character in a string", position + 1, "text without NUL")
        if char != "\\" or position + 1 >= len(text):
            parts.append(char)
            position += 1
            continue
        escape = text[position + 1]
        if escape in _STRING_ESCAPES:
            parts.append(_STRING_ESCAPES[escape])
            position += 2
        elif escape == "u":
            parts.append(_unicode_escape(text, position))
            position += 6
        else:
            parts.append("\\")
            position += 1
    raise FilterSyntaxError("unterminated string", start + 1, 'a closing double quote (")')


def _unicode_escape(text: str, position: int) -> str:
    digits = text[position + 2 : position + 6]
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
        raise FilterSyntaxError("invalid \\u escape", position + 1, "four hex digits after \\u")
    code = int(digits, 16)
    if code == 0 or 0xD800 <= code <= 0xDFFF:
        raise FilterSyntaxError(
            f"\\u{digits} is not allowed",
            position + 1,
            "a character other than NUL or a surrogate",
        )
    return chr(code)


def _parse_number(text: str, column: int) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise FilterSyntaxError(
            f"number {text} is out of range", column, "a finite number, or inf or -inf"
        )
    return value


def _parse_time(text: str, column: int) -> Timestamp:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FilterSyntaxError(
            f"invalid date {text}", column, "a real date such as 2026-12-03"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Timestamp(moment.timestamp())
