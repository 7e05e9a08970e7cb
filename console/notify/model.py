"""The alert as the notification pipeline sees it: Alertmanager's API v2 ``Alert``
(``labels``, ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``), with times as
Unix seconds. Source: prometheus/alertmanager ``types/types.go`` and ``api/v2/openapi.yaml``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# prometheus/common model/fnv.go: FNV-1a 64-bit, as ``LabelSet.Fingerprint``.
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: FNV-1a 64 over the sorted names and
    values, each followed by the byte 0xff, as 16 lower-case hex digits (prometheus/common
    ``model.LabelSet.Fingerprint``). The empty set hashes to the FNV offset basis."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ _SEPARATOR) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


@dataclass
class NotifyAlert:
    """One alert. ``ends_at`` None means "firing until told otherwise"; an alert whose
    ``ends_at`` is at or before ``now`` is resolved. ``source`` is ``rules`` (this
    console's rule evaluation) or ``api`` (posted by a Prometheus or another client)."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    ends_at: float | None = None
    generator_url: str = ""
    updated_at: float = 0.0
    source: str = "rules"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    def resolved(self, now: float) -> bool:
        return self.ends_at is not None and self.ends_at <= now

    def status(self, now: float) -> str:
        """``firing`` or ``resolved``, as in the webhook payload."""
        return "resolved" if self.resolved(now) else "firing"
