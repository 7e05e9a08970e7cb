"""Label matchers in Alertmanager's syntax: ``name="value"``, ``name!="value"``,
``name=~"regex"``, ``name!~"regex"``, the value quoted or not, several in one string
separated by commas, optionally inside ``{...}``.

Source: prometheus/alertmanager ``pkg/labels/parse.go`` (``ParseMatchers``,
``ParseMatcher``: the classic parser, which also reads every matcher the UTF-8 parser
reads in configuration files written for Alertmanager) and ``pkg/labels/matcher.go``
(matching, ``String``, ordering). Regular expressions are RE2 (``google-re2``), fully
anchored as Alertmanager anchors them (``^(?:RE)$``); a label that is missing matches as
the empty string.

The one parser of matchers: notification routes and inhibit rules (console/notify), and
silences and their filters (console/silences). A matcher object of the API is
Alertmanager's ``api/v2/openapi.yaml`` ``matcher``: ``{"name", "value", "isRegex",
"isEqual"}``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from console.errors import InvalidInput
from console.i18n import tx
from console.regex import RegexError, compile_re2

EQUAL, NOT_EQUAL, REGEX, NOT_REGEX = "=", "!=", "=~", "!~"
# The matcher's outer shape (name, operator, raw value). '=~' precedes '=' so that '~'
# is not read as the start of the value. Our own fixed pattern: user regexes go to RE2.
_MATCHER = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*", re.S)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MatcherError(InvalidInput):
    """The text is not a matcher, or its regex does not compile; the message says which
    (400 where an API request carried it)."""


@dataclass(frozen=True)
class Matcher:
    """One matcher. ``matches(value)`` tests a label's value ("" when the label is missing)."""

    name: str
    op: str
    value: str
    _re: Any = field(default=None, compare=False, repr=False, hash=False)  # an re2 pattern (untyped library)

    @classmethod
    def make(cls, name: str, op: str, value: str) -> "Matcher":
        compiled = None
        if op in (REGEX, NOT_REGEX):
            try:
                compiled = compile_re2(value, "^(?:", ")$")
            except RegexError as exc:
                raise MatcherError(tx("invalid regular expression {regex} for {name}: {reason}", regex=repr(value),
                                      name=name, reason=exc.reason), {"matcher": name}) from None
        elif op not in (EQUAL, NOT_EQUAL):
            raise MatcherError(tx("unknown match operator {op}", op=repr(op)), {"matcher": name})
        return cls(name, op, value, compiled)

    @property
    def is_regex(self) -> bool:
        return self.op in (REGEX, NOT_REGEX)

    @property
    def is_equal(self) -> bool:
        return self.op in (EQUAL, REGEX)

    def matches(self, value: str) -> bool:
        if self.op == EQUAL:
            return value == self.value
        if self.op == NOT_EQUAL:
            return value != self.value
        found = self._re.fullmatch(value) is not None
        return found if self.op == REGEX else not found

    def __str__(self) -> str:
        """``name="value"`` with OpenMetrics escaping, as Alertmanager prints it (group keys)."""
        escaped = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'

    def to_json(self) -> dict:
        """The API's matcher object."""
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    @classmethod
    def from_json(cls, doc: Any) -> "Matcher":
        """From the API's matcher object (``isRegex`` required, ``isEqual`` defaults to
        true; the name a Prometheus label name). Raises MatcherError."""
        if not isinstance(doc, Mapping):
            raise MatcherError(tx("a matcher must be an object with name, value and isRegex"))
        name, value, is_regex = doc.get("name"), doc.get("value"), doc.get("isRegex")
        is_equal = doc.get("isEqual", True)
        if not isinstance(name, str) or not isinstance(value, str):
            raise MatcherError(tx("a matcher needs string name and value"), {"matcher": doc})
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise MatcherError(tx("a matcher's isRegex (required) and isEqual must be booleans"), {"matcher": name})
        if not valid_label_name(name):
            raise MatcherError(tx("invalid label name {name}", name=repr(name)), {"matcher": name})
        op = {(False, True): EQUAL, (False, False): NOT_EQUAL, (True, True): REGEX, (True, False): NOT_REGEX}
        return cls.make(name, op[(is_regex, is_equal)], value)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches ``labels`` (an empty list matches everything)."""
    return all(m.matches(labels.get(m.name, "")) for m in matchers)


def sort_key(m: Matcher) -> tuple:
    """Alertmanager's ``Matchers.Less``: by name, then value, then operator
    (``=`` < ``!=`` < ``=~`` < ``!~``, the order of its MatchType constants)."""
    return (m.name, m.value, (EQUAL, NOT_EQUAL, REGEX, NOT_REGEX).index(m.op))


def to_string(matchers: Iterable[Matcher]) -> str:
    """``{a="1",b=~"x"}``: Alertmanager's ``Matchers.String`` (used in route keys)."""
    return "{" + ",".join(str(m) for m in matchers) + "}"


def parse_matchers(text: str) -> list[Matcher]:
    """Every matcher in ``text`` (``{foo="bar", dings!=bums}``, ``foo=bar``, ...): the
    braces are optional, commas inside double quotes do not separate, a trailing comma
    is allowed. Raises MatcherError."""
    s = text.removeprefix("{").removesuffix("}")
    tokens: list[str] = []
    token: list[str] = []
    inside_quotes = escaped = False
    for ch in s:
        if ch == "," and not inside_quotes:
            tokens.append("".join(token))
            token = []
            continue
        if ch == '"':
            if not escaped:
                inside_quotes = not inside_quotes
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(ch)
    last = "".join(token).strip()
    if last:
        tokens.append(last)
    return [parse_matcher(t) for t in tokens]


def parse_matcher(text: str) -> Matcher:
    """One matcher: a label name, an operator and a value, quoted (``\\"``, ``\\n``,
    ``\\\\`` escapes) or not. Raises MatcherError."""
    found = _MATCHER.fullmatch(text)
    if found is None:
        raise MatcherError(tx("bad matcher format: {text}", text=text), {"matchers": text})
    name, op, raw = found.groups()
    expect_quote = raw.startswith('"')
    if expect_quote:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(ch, "\\" + ch))
            continue
        if ch == "\\":
            if i < len(raw) - 1:
                escaped = True
                continue
            out.append("\\")
        elif ch == '"':
            if not expect_quote or i < len(raw) - 1:
                raise MatcherError(tx("matcher value contains unescaped double quote: {value}", value=found.group(3)),
                                   {"matchers": text})
            expect_quote = False
        else:
            out.append(ch)
    if expect_quote:
        raise MatcherError(tx("matcher value contains unescaped double quote: {value}", value=found.group(3)),
                           {"matchers": text})
    return Matcher.make(name, op, "".join(out))


def valid_label_name(name: str) -> bool:
    """A Prometheus label name (``[a-zA-Z_][a-zA-Z0-9_]*``)."""
    return _LABEL_NAME.fullmatch(name) is not None
