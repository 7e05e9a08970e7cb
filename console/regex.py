"""Users' regular expressions (label matchers, silences, PromQL selectors, probe settings),
compiled by RE2 (google-re2): linear time, so no pattern from a rule file, a silence or a
query can make the console backtrack for ever. Syntax: RE2's, which is Go's ``regexp``
(https://github.com/google/re2/wiki/Syntax), as Prometheus and Alertmanager use it.
"""
from __future__ import annotations

from typing import Any

import re2


class RegexError(ValueError):
    """RE2 refused ``pattern`` (the user's text); ``reason`` is RE2's message, as text."""

    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(f"invalid regular expression {pattern!r}: {reason}")
        self.pattern = pattern
        self.reason = reason


def compile_re2(pattern: str, prefix: str = "", suffix: str = "", **settings: bool) -> Any:  # a re2 pattern
    """``prefix + pattern + suffix`` compiled by RE2 (e.g. ``"^(?:"`` and ``")$"``, anchored
    as Prometheus anchors a matcher), ``settings`` being ``re2.Options`` attributes
    (``dot_nl``, ``never_capture``, ...). Raises RegexError whose reason quotes the user's
    ``pattern``, not the wrapped text; RE2 writes nothing to stderr."""
    options = re2.Options()
    options.log_errors = False  # the refusal is answered to the user, not logged by the library
    for name, value in settings.items():
        setattr(options, name, value)
    try:
        return re2.compile(prefix + pattern + suffix, options)
    except re2.error as wrapped:
        try:  # RE2's reason about the user's own text, where it refuses that alone
            re2.compile(pattern, options)
        except re2.error as exc:
            raise RegexError(pattern, _reason(exc)) from None
        raise RegexError(pattern, _reason(wrapped)) from None


def _reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else ""
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
