"""Label matchers as Alertmanager writes them: ``name="value"``, ``name!="value"``,
``name=~"regex"``, ``name!~"regex"``, alone or as a list in braces
(``{alertname="HostDown",instance=~"web-.*"}``); values may be left unquoted
(``alertname=HostDown``). Regular expressions are RE2 (Go's ``regexp`` syntax), anchored
at both ends as Alertmanager anchors them, and run with google-re2.

Source: prometheus/alertmanager ``pkg/labels/matcher.go`` and ``pkg/labels/parse.go``;
the API's matcher object ``{"name", "value", "isRegex", "isEqual"}`` is
``api/v2/openapi.yaml`` ``matcher``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from console.regex import RegexError, compile_re2

from console.errors import InvalidInput
from console.i18n import tx

_OPS = ("=~", "!~", "!=", "=")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def valid_label_name(name: str) -> bool:
    """Prometheus' classic label name: ``[a-zA-Z_][a-zA-Z0-9_]*``."""
    return bool(name) and name[0] in _NAME_START and all(c in _NAME_CHARS for c in name)


@dataclass(frozen=True)
class Matcher:
    """One matcher. ``matches(labels)`` compares the label's value (``""`` when the
    label is absent, as Alertmanager). Raises InvalidInput on a bad name or regex."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True
    _regex: Any = field(default=None, init=False, repr=False, compare=False)  # an re2 pattern (untyped library)

    def __post_init__(self) -> None:
        if not valid_label_name(self.name):
            raise InvalidInput(tx("invalid label name {name}", name=repr(self.name)), {"matcher": self.name})
        if self.is_regex:
            try:
                compiled = compile_re2(self.value, "(?:", ")")
            except RegexError as exc:
                raise InvalidInput(tx("invalid regular expression {regex}: {reason}", regex=repr(self.value),
                                      reason=exc.reason), {"matcher": self.name}) from None
            object.__setattr__(self, "_regex", compiled)

    @property
    def op(self) -> str:
        return {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[
            (self.is_regex, self.is_equal)]

    def matches_value(self, value: str) -> bool:
        hit = self._regex.fullmatch(value) is not None if self.is_regex else value == self.value
        return hit == self.is_equal

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.matches_value(labels.get(self.name, ""))

    def to_json(self) -> dict:
        """The API's matcher object."""
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    @classmethod
    def from_json(cls, doc: Mapping) -> "Matcher":
        """From the API's matcher object (``isEqual`` defaults to true). Raises InvalidInput."""
        if not isinstance(doc, Mapping):
            raise InvalidInput("a matcher must be an object with name, value and isRegex")
        name, value, is_regex = doc.get("name"), doc.get("value"), doc.get("isRegex")
        is_equal = doc.get("isEqual", True)
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidInput("a matcher needs string name and value", {"matcher": doc})
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise InvalidInput("a matcher's isRegex (required) and isEqual must be booleans", {"matcher": name})
        return cls(name, value, is_regex, is_equal)

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def parse_matchers(text: str) -> list[Matcher]:
    """Parse ``{a="1",b=~"x.*"}`` or ``a="1", b=~x.*`` (an empty list for ``""`` or
    ``{}``). Raises InvalidInput naming the position of the first error."""
    s = text.strip()
    if s.startswith("{"):
        if not s.endswith("}"):
            raise InvalidInput(f"{text!r}: missing closing '}}'", {"matchers": text})
        s = s[1:-1]
    out: list[Matcher] = []
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            return out
        start = i
        while i < n and s[i] not in "=!~ \t":
            i += 1
        name = s[start:i]
        while i < n and s[i] in " \t":
            i += 1
        op = next((o for o in _OPS if s.startswith(o, i)), None)
        if not name or op is None:
            raise InvalidInput(f"{text!r}: expected NAME followed by =, !=, =~ or !~ at position {start}",
                               {"matchers": text})
        i += len(op)
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] == '"':
            value, i = _quoted(s, i + 1, text)
        else:
            start = i
            while i < n and s[i] != ",":
                i += 1
            value = s[start:i].strip()
        out.append(Matcher(name, value, op in ("=~", "!~"), op in ("=", "=~")))
        while i < n and s[i] in " \t":
            i += 1
        if i < n:
            if s[i] != ",":
                raise InvalidInput(f"{text!r}: expected ',' at position {i}", {"matchers": text})
            i += 1


def _quoted(s: str, i: int, text: str) -> tuple[str, int]:
    """The Go-quoted string starting after its opening quote at ``i``; returns it and the
    position after the closing quote."""
    chars: list[str] = []
    while i < len(s):
        c = s[i]
        if c == '"':
            return "".join(chars), i + 1
        if c == "\\" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt not in _ESCAPES:
                raise InvalidInput(f"{text!r}: unknown escape \\{nxt} at position {i}", {"matchers": text})
            chars.append(_ESCAPES[nxt])
            i += 2
            continue
        chars.append(c)
        i += 1
    raise InvalidInput(f"{text!r}: unterminated quoted value", {"matchers": text})
