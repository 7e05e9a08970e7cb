"""Inhibition as Alertmanager's ``inhibit`` package, a muter (console/notify/muting.py):
an alert matching an inhibit rule's target matchers is muted while an alert matching its
source matchers fires with the same values of the rule's ``equal`` labels (a missing
label counts as the empty value). An alert matching both sides is not inhibited by a
source that also matches the target side (so alerts cannot inhibit each other). The
reason is ``inhibited:<fingerprint of the source alert>``.

The shipped default rule (``alerting.default_inhibit_rules``, on unless set false): an
alert named ``HostDown`` inhibits the other alerts of the same ``host``: when a host
stops reporting, its disk and memory alerts say nothing new.

Source alerts come from the alert store (every put, rules and API alike); a source stops
inhibiting when it resolves (``endsAt`` passed).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from threading import Lock

from console.notify.config import InhibitRuleConfig
from console.matchers import Matcher, matches_all
from console.notify.model import NotifyAlert
from console.notify.store import AlertStore

DEFAULT_INHIBIT_RULES = (InhibitRuleConfig(name="host-down", source_matchers=['alertname="HostDown"'],
                                           target_matchers=['alertname!="HostDown"'], equal=["host"]),)


@dataclass
class InhibitRule:
    name: str
    sources: list[Matcher]
    targets: list[Matcher]
    equal: tuple[str, ...]
    # values of the equal labels -> {fingerprint: source alert}
    index: dict[tuple[str, ...], dict[str, NotifyAlert]] = field(default_factory=dict)

    @classmethod
    def of(cls, config: InhibitRuleConfig) -> "InhibitRule":
        return cls(config.name, config.sources(), config.targets(), tuple(config.equal))

    def key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(labels.get(name, "") for name in self.equal)


class Inhibitor:
    """Thread-safe. ``set_rules`` replaces the rules (at load and reload); the store's
    puts keep the source alerts current."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store
        self._rules: list[InhibitRule] = []
        self._lock = Lock()
        store.subscribe(self._on_put)

    def set_rules(self, configs: list[InhibitRuleConfig] | tuple[InhibitRuleConfig, ...]) -> None:
        rules = [InhibitRule.of(c) for c in configs]
        with self._lock:
            # The snapshot under our lock: a put after it is indexed (by _on_put) with the new rules.
            self._rules = rules
            self._index(self.store.snapshot())

    def _on_put(self, alerts: list[NotifyAlert]) -> None:
        with self._lock:
            self._index(alerts)

    def _index(self, alerts: list[NotifyAlert]) -> None:
        for rule in self._rules:
            for alert in alerts:
                if not matches_all(rule.sources, alert.labels):
                    continue
                key, fp = rule.key(alert.labels), alert.fingerprint
                bucket = rule.index.setdefault(key, {})
                if alert.resolved(alert.updated_at):  # resolved when put: no longer a source
                    bucket.pop(fp, None)
                    if not bucket:
                        del rule.index[key]
                else:
                    bucket[fp] = alert

    def gc(self, now: float) -> None:
        """Drop sources that have resolved by ``now`` (ended without being put again)."""
        with self._lock:
            for rule in self._rules:
                for key in list(rule.index):
                    bucket = rule.index[key]
                    for fp in [fp for fp, a in bucket.items() if a.resolved(now)]:
                        del bucket[fp]
                    if not bucket:
                        del rule.index[key]

    def muted_by(self, labels: Mapping[str, str], now: float) -> list[str]:
        """``["inhibited:<source fingerprint>"]`` when an active source inhibits ``labels``."""
        with self._lock:
            for rule in self._rules:
                if not matches_all(rule.targets, labels):
                    continue
                both_sides = matches_all(rule.sources, labels)
                for fp, source in rule.index.get(rule.key(labels), {}).items():
                    if source.resolved(now):
                        continue
                    if both_sides and matches_all(rule.targets, source.labels):
                        continue
                    return [f"inhibited:{fp}"]
        return []

