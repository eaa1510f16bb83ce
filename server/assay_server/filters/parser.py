"""Parse the text form of a filter into a checked tree.

The grammar, with keywords matched case-insensitively::

    filter      = disjunction END
    disjunction = conjunction { "or" conjunction }
    conjunction = negation { "and" negation }
    negation    = "not" negation | "(" disjunction ")" | condition
    condition   = field ( ("=" | "!=" | "<" | "<=" | ">" | ">=") literal
                        | ["not"] "in" "(" literal { "," literal } ")"
                        | "contains" literal | "~" STRING
                        | "is" ["not"] ("null" | "nan" | "inf" | "finite") | "exists" )
    field       = METADATA | "config" "." key { "." key }
                | "summary" "." key [ "." STATISTIC ]
    key         = WORD | STRING
    literal     = NUMBER | "inf" | "-" "inf" | STRING | WORD | TIME | "true" | "false"

See docs/runsets.md for what each part means.
"""

from __future__ import annotations

from assay_server.filters.check import MAX_CONDITIONS, MAX_DEPTH, check
from assay_server.filters.errors import (
    FilterSyntaxError,
    FilterTooLongError,
    UnknownFieldError,
    quoted,
)
from assay_server.filters.lexer import Kind, Token, tokenize
from assay_server.filters.tree import (
    COMPARISON_OPERATORS,
    METADATA,
    STATISTICS,
    VALUE_CLASSES,
    And,
    Comparison,
    ConfigField,
    Contains,
    Exists,
    Field,
    Is,
    Literal,
    Match,
    Membership,
    MetadataField,
    Node,
    Not,
    Or,
    SummaryField,
)

#: Maximum length of a filter text, in characters.
MAX_FILTER_LENGTH = 10_000

KEYWORDS = frozenset(
    ["and", "or", "not", "in", "is", "contains", "exists", "true", "false"]
    + ["null", "nan", "inf", "finite"]
)

_FIELD = "a field such as config.lr, summary.loss or state, or 'not' or '('"
_OPERATOR = "an operator: =, !=, <, <=, >, >=, in, not in, contains, ~, is or exists"
_VALUE = 'a value: a number, a "string", a word, a date, true or false'
_FIELD_NAMES = ", ".join(METADATA)


def parse_filter(text: str, max_length: int = MAX_FILTER_LENGTH) -> Node:
    """Parse and type-check ``text``; raise ``FilterError`` naming the column on failure.

    ``max_length`` is the server's ``ASSAY_MAX_FILTER_LENGTH``.
    """
    if len(text) > max_length:
        raise FilterTooLongError(
            f"filter of {len(text):,} characters is too long",
            max_length + 1,
            f"at most {max_length:,} characters (the server's ASSAY_MAX_FILTER_LENGTH)",
        )
    node = _Parser(tokenize(text)).parse()
    check(node)
    return node


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0
        self.condition_count = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.END:
            self.index += 1
        return token

    def keyword(self) -> str | None:
        """Return the current token as a lowercase keyword, or None when it is not one."""
        if self.token.kind is Kind.WORD and self.token.text.lower() in KEYWORDS:
            return self.token.text.lower()
        return None

    def is_punctuation(self, char: str) -> bool:
        return self.token.kind is Kind.PUNCTUATION and self.token.text == char

    def fail(self, expected: str, token: Token | None = None) -> FilterSyntaxError:
        found = token or self.token
        got = "end of filter" if found.kind is Kind.END else quoted(found.text)
        return FilterSyntaxError(f"unexpected {got}", found.column, expected)

    def expect_punctuation(self, char: str, expected: str) -> None:
        if not self.is_punctuation(char):
            raise self.fail(expected)
        self.advance()

    def parse(self) -> Node:
        node = self.disjunction()
        if self.token.kind is not Kind.END:
            raise self.fail("'and', 'or' or the end of the filter")
        return node

    def disjunction(self) -> Node:
        operands = [self.conjunction()]
        while self.keyword() == "or":
            self.advance()
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunction(self) -> Node:
        operands = [self.negation()]
        while self.keyword() == "and":
            self.advance()
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def negation(self) -> Node:
        if self.keyword() == "not":
            self.enter()
            self.advance()
            node: Node = Not(self.negation())
        elif self.is_punctuation("("):
            self.enter()
            self.advance()
            node = self.disjunction()
            self.expect_punctuation(")", "')', 'and' or 'or'")
        else:
            return self.condition()
        self.depth -= 1
        return node

    def enter(self) -> None:
        """Count one more level of 'not' or parentheses."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterTooLongError(
                "filter nests too deeply",
                self.token.column,
                f"at most {MAX_DEPTH} levels of parentheses and 'not'",
            )

    def condition(self) -> Node:
        column = self.token.column
        self.condition_count += 1
        if self.condition_count > MAX_CONDITIONS:
            raise FilterTooLongError(
                "filter has too many conditions", column, f"at most {MAX_CONDITIONS} conditions"
            )
        field = self.field()

        token = self.token
        if token.kind is Kind.OPERATOR and token.text in COMPARISON_OPERATORS:
            self.advance()
            return Comparison(field, token.text, self.literal(), column)
        if token.kind is Kind.OPERATOR and token.text == "~":
            self.advance()
            if self.token.kind is not Kind.STRING:
                raise self.fail('a regular expression in double quotes, such as "^sweep-"')
            pattern = self.advance().value
            assert isinstance(pattern, str)
            return Match(field, pattern, column)

        word = self.keyword()
        if word == "not":
            self.advance()
            if self.keyword() != "in":
                raise self.fail("'in' after 'not', as in: state not in (failed, crashed)")
            word = "in"
            negated = True
        else:
            negated = False

        if word == "in":
            self.advance()
            return Membership(field, self.literal_list(), negated, column)
        if word == "contains":
            self.advance()
            return Contains(field, self.literal(), column)
        if word == "exists":
            self.advance()
            return Exists(field, column)
        if word == "is":
            return self.value_class_test(field, column)
        raise self.fail(_OPERATOR)

    def value_class_test(self, field: Field, column: int) -> Node:
        self.advance()
        negated = self.keyword() == "not"
        if negated:
            self.advance()
        value_class = self.keyword()
        if value_class not in VALUE_CLASSES:
            raise self.fail("null, nan, inf or finite")
        self.advance()
        node = Is(field, value_class, column)
        return Not(node) if negated else node

    def field(self) -> Field:
        token = self.token
        if token.kind is not Kind.WORD or self.keyword() is not None:
            raise self.fail(_FIELD)
        self.advance()
        if token.text in METADATA:
            if self.is_punctuation("."):
                raise self.fail(f"an operator; {token.text} has no keys")
            return MetadataField(token.text)

        if token.text not in ("config", "summary"):
            raise UnknownFieldError(
                f"unknown field {quoted(token.text)}",
                token.column,
                f"config.KEY, summary.METRIC or one of {_FIELD_NAMES}",
            )
        self.expect_punctuation(".", f"'.' and a key after {token.text!r}, as in {token.text}.lr")
        if token.text == "config":
            path = [self.key()]
            while self.is_punctuation("."):
                self.advance()
                path.append(self.key())
            return ConfigField(tuple(path))

        metric = self.key()
        if not self.is_punctuation("."):
            return SummaryField(metric)
        self.advance()
        statistic = self.token
        if statistic.kind is not Kind.WORD or statistic.text not in STATISTICS:
            raise UnknownFieldError(
                f"unknown statistic {quoted(statistic.text)} of metric {quoted(metric)}",
                statistic.column,
                f"one of {', '.join(STATISTICS)}; quote a metric name that contains "
                'dots, as in summary."loss.min"',
            )
        self.advance()
        return SummaryField(metric, statistic.text)

    def key(self) -> str:
        token = self.token
        if token.kind is Kind.WORD or token.kind is Kind.STRING:
            self.advance()
            return token.text if token.kind is Kind.WORD else str(token.value)
        raise self.fail('a key: a word such as lr or train/loss, or a quoted "key"')

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect_punctuation("(", "'(' and a list of values, as in (failed, crashed)")
        values = [self.literal()]
        while self.is_punctuation(","):
            self.advance()
            values.append(self.literal())
        self.expect_punctuation(")", "',' or ')'")
        return tuple(values)

    def literal(self) -> Literal:
        token = self.token
        if token.kind in (Kind.STRING, Kind.NUMBER, Kind.TIME):
            self.advance()
            assert token.value is not None
            return token.value
        if self.is_punctuation("-"):
            self.advance()
            if self.keyword() != "inf":
                raise self.fail("a number or inf after '-'")
            self.advance()
            return float("-inf")

        if token.kind is not Kind.WORD:
            raise self.fail(_VALUE)
        word = self.keyword()
        if word == "nan":
            raise FilterSyntaxError(
                "nan is not a value to compare with", token.column, "'is nan': NaN equals nothing"
            )
        if word == "null":
            raise FilterSyntaxError(
                "null is not a value to compare with", token.column, "'is null' or 'is not null'"
            )

        if word in ("true", "false"):
            self.advance()
            return word == "true"
        if word == "inf":
            self.advance()
            return float("inf")
        if word is not None:
            raise self.fail(f'{_VALUE}; quote a keyword to use it as a string, as in "{word}"')
        self.advance()
        return token.text
