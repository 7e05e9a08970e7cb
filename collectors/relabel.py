"""``metric_relabel_configs``: keep or drop samples by a regex over their labels.

The shape is Prometheus' (``source_labels``, ``separator``, ``regex``, ``action``; see
https://prometheus.io/docs/prometheus/latest/configuration/configuration/#relabel_config),
limited to the actions that select samples, ``keep`` and ``drop``. Regexes are RE2
(google-re2, as Prometheus' Go ``regexp``), anchored at both ends as Prometheus anchors
them, so a pattern from a configuration file runs in linear time.

Used by the ``prometheus`` input (per target) and by the agent for every input
(``metric_relabel_configs:`` of the agent's settings, keyed by input name).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

RELABEL_ACTIONS = ("keep", "drop")
RULE_KEYS = ("source_labels", "separator", "regex", "action")


class RelabelError(ValueError):
    """An invalid rule; the message names the key path and its source."""


@dataclass(frozen=True)
class RelabelRule:
    """One rule: ``action`` keep|drop, ``regex`` (RE2, anchored), ``source_labels``
    (names; ``__name__`` is the metric name) joined with ``separator``."""

    source_labels: tuple[str, ...]
    regex: str = "(.*)"
    action: str = "keep"
    separator: str = ";"


def label_name(name: Any) -> bool:
    """A Prometheus label name: ``[a-zA-Z_][a-zA-Z0-9_]*``."""
    return (isinstance(name, str) and bool(name) and (name[0].isalpha() or name[0] == "_") and name.isascii()
            and all(c.isalnum() or c == "_" for c in name))


def compile_regex(pattern: str, where: str) -> Any:
    """``pattern`` compiled with RE2 (google-re2), to be used with ``fullmatch``. Raises
    RelabelError when it is invalid or google-re2 is not installed."""
    try:
        import re2
    except ImportError:
        raise RelabelError(f"{where}: regexes need the google-re2 package (pip install google-re2)") from None
    try:
        return re2.compile(pattern)
    except re2.error as exc:
        message = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RelabelError(f"{where} is not a valid RE2 regex: {message}") from None


def parse_rule(value: Any, path: str, source: str) -> RelabelRule:
    """One rule from YAML; raises RelabelError naming ``path`` and ``source``."""
    if not isinstance(value, Mapping):
        raise RelabelError(f"{path} (from {source}) must be a mapping")
    unknown = sorted(str(k) for k in value if k not in RULE_KEYS)
    if unknown:
        raise RelabelError(f"{path}.{unknown[0]} (from {source}) is not a known option; known: {', '.join(RULE_KEYS)}")
    action = value.get("action")
    if action not in RELABEL_ACTIONS:
        raise RelabelError(f"{path}.action (from {source}) must be one of {', '.join(RELABEL_ACTIONS)}, "
                           f"got {action!r}")
    names = value.get("source_labels")
    if not isinstance(names, list) or not names or not all(label_name(n) for n in names):
        raise RelabelError(f"{path}.source_labels (from {source}) must be a non-empty list of label names")
    separator = value.get("separator", ";")
    if not isinstance(separator, str):
        raise RelabelError(f"{path}.separator (from {source}) must be a string")
    regex = value.get("regex", "(.*)")
    if not isinstance(regex, str):
        raise RelabelError(f"{path}.regex (from {source}) must be a string")
    compile_regex(regex, f"{path}.regex (from {source})")
    return RelabelRule(tuple(names), regex, action, separator)


def parse_rules(value: Any, path: str, source: str) -> tuple[RelabelRule, ...]:
    """A list of rules from YAML (None: none); raises RelabelError."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RelabelError(f"{path} (from {source}) must be a list of rules")
    return tuple(parse_rule(rule, f"{path}[{i}]", source) for i, rule in enumerate(value))


class Relabeller:
    """Compiled rules; :meth:`kept` applies them in order, as Prometheus does: a sample
    survives when every ``keep`` matches and no ``drop`` does."""

    def __init__(self, rules: Sequence[RelabelRule]) -> None:
        self._rules: list[tuple[str, tuple[str, ...], str, Callable[[str], Any]]] = [
            (r.action, r.source_labels, r.separator, compile_regex(r.regex, "regex").fullmatch) for r in rules]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def kept(self, name: str, labels: Mapping[str, str]) -> bool:
        for action, sources, separator, fullmatch in self._rules:
            value = separator.join(name if s == "__name__" else labels.get(s, "") for s in sources)
            if (fullmatch(value) is not None) != (action == "keep"):
                return False
        return True
