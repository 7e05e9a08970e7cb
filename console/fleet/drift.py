"""Drift: which hosts run an agent version or configuration unlike the rest of the fleet.

The baseline of an attribute (``agent_version``, ``config_hash``) is its most common value
among the hosts that report it. A host drifts on an attribute when it reports a value
different from the baseline. When the top count is shared by several values there is no
baseline, and every host reporting the attribute drifts on it as soon as two values exist:
the fleet disagrees and no side can be called the odd one out. Hosts that do not report an
attribute (agents older than the field) are not judged on it.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

DRIFT_FIELDS = ("agent_version", "config_hash")


def baseline(values: Iterable[str | None]) -> str | None:
    """The single most common non-empty value, or None (nothing reported, or a tie)."""
    counts = Counter(v for v in values if v)
    if not counts:
        return None
    top = counts.most_common(2)
    if len(top) == 2 and top[0][1] == top[1][1]:
        return None
    return top[0][0]


def mark_drift(hosts: Sequence[dict]) -> dict[str, str | None]:
    """Add ``"drift": bool`` and ``"drift_fields": [field, ...]`` to every host dict, in place.

    ``hosts``: dicts with the keys of :data:`DRIFT_FIELDS` (values may be None). Returns the
    baseline per field, e.g. ``{"agent_version": "0.1.0", "config_hash": None}``.
    """
    baselines: dict[str, str | None] = {}
    for name in DRIFT_FIELDS:
        values = [h.get(name) for h in hosts]
        baselines[name] = baseline(values)
    distinct = {name: len({h.get(name) for h in hosts if h.get(name)}) for name in DRIFT_FIELDS}
    for host in hosts:
        fields = []
        for name in DRIFT_FIELDS:
            value = host.get(name)
            if not value or distinct[name] < 2:
                continue
            if baselines[name] is None or value != baselines[name]:
                fields.append(name)
        host["drift"] = bool(fields)
        host["drift_fields"] = fields
    return baselines
