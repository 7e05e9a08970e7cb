"""What keeps one agent's series count bounded: relabelling rules per input and a
series budget per agent.

- ``metric_relabel_configs`` of the agent's settings maps an input name (``host``,
  ``textfile``, ``prometheus``, …) to Prometheus-style ``keep``/``drop`` rules
  (:mod:`collectors.relabel`), applied to every sample the input yields, before the
  series budget.
- ``series_limit`` caps the distinct series of one batch (the agent's own
  ``fleetdeck_agent_*`` series aside). Series sent in the previous batch keep their
  place, so a burst of new series (a container host starting many interfaces) never
  pushes out ``node_load1``; new series take the room left, in input order. What does
  not fit is dropped and counted in ``fleetdeck_agent_dropped_samples_total{reason=
  "series_limit"}``; ``fleetdeck_agent_series`` and ``fleetdeck_agent_series_limit``
  report the budget (docs/agent.md, "Cardinality").
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Hashable

from collectors.relabel import Relabeller, RelabelRule


class Relabelling:
    """The compiled ``metric_relabel_configs`` of every input. Raises RelabelError (a
    ValueError) when google-re2 is missing."""

    def __init__(self, rules: Mapping[str, Sequence[RelabelRule]]) -> None:
        self._by_input = {name: Relabeller(r) for name, r in rules.items() if r}

    def kept(self, input_name: str, name: str, labels: Mapping[str, str]) -> bool:
        relabeller = self._by_input.get(input_name)
        return relabeller is None or relabeller.kept(name, labels)


class SeriesBudget:
    """At most ``limit`` series per batch (0: no limit); see the module docstring."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._previous: frozenset[Hashable] = frozenset()
        self.last_count = 0

    def admit(self, keys: Iterable[Hashable]) -> set[Hashable]:
        """The keys (series of one batch, in input order) that fit the budget."""
        ordered = list(keys)
        if not self.limit:
            admitted = set(ordered)
        else:
            admitted = {k for k in ordered if k in self._previous}
            room = self.limit - len(admitted)
            for key in ordered:
                if room <= 0:
                    break
                if key not in admitted:
                    admitted.add(key)
                    room -= 1
        self._previous = frozenset(admitted)
        self.last_count = len(admitted)
        return admitted
