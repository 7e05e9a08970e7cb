"""Drift: which hosts run an agent version or configuration unlike the rest of their group.

Hosts are compared within their **group**: the hosts whose agents carry the same value of
the label :data:`GROUP_LABEL` (``labels: {group: web}`` in the agent's settings); hosts
without it form one group. Different roles (web servers, database servers) are meant to
run different agent configurations, so they are not compared with each other.

The baseline of an attribute (``agent_version``, ``config_hash``) in a group is its most
common value among the group's hosts that report it. A host drifts on an attribute when it
reports a value different from the baseline. When the top count is shared by several
values there is no baseline and no host of the group drifts on it: with two hosts and two
configurations (a second agent added with its own settings) neither is the odd one out.
Hosts that do not report an attribute (agents older than the field) are not judged on it.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

DRIFT_FIELDS = ("agent_version", "config_hash")
GROUP_LABEL = "group"


def baseline(values: Iterable[str | None]) -> str | None:
    """The single most common non-empty value, or None (nothing reported, or a tie)."""
    counts = Counter(v for v in values if v)
    if not counts:
        return None
    top = counts.most_common(2)
    if len(top) == 2 and top[0][1] == top[1][1]:
        return None
    return top[0][0]


def mark_drift(hosts: Sequence[dict]) -> dict[str | None, dict[str, str | None]]:
    """Add ``"drift": bool``, ``"drift_fields": [field, ...]`` and ``"drift_baseline":
    {field: value or None}`` (the host's group's baselines) to every host dict, in place.

    ``hosts``: dicts with the keys of :data:`DRIFT_FIELDS` (values may be None) and
    ``labels``. Returns the baselines per group (the value of :data:`GROUP_LABEL`, None
    for hosts without it), e.g. ``{None: {"agent_version": "0.1.0", "config_hash": None}}``.
    """
    groups: dict[str | None, list[dict]] = {}
    for host in hosts:
        groups.setdefault((host.get("labels") or {}).get(GROUP_LABEL), []).append(host)
    out: dict[str | None, dict[str, str | None]] = {}
    for group, members in groups.items():
        baselines = {name: baseline(h.get(name) for h in members) for name in DRIFT_FIELDS}
        out[group] = baselines
        for host in members:
            fields = [name for name in DRIFT_FIELDS
                      if host.get(name) and baselines[name] is not None and host.get(name) != baselines[name]]
            host["drift"] = bool(fields)
            host["drift_fields"] = fields
            host["drift_baseline"] = dict(baselines)
    return out
