"""The collector protocol: one method, ``collect()``, yielding plain samples.

A collector reads one source (the kernel's /proc and /sys, a process table, a
container runtime, a scrape target) and returns its current values as
:class:`Sample` objects. It keeps no registry and pushes nothing; the agent
owns scheduling, timestamps, batching and delivery.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field

SAMPLE_TYPES = ("gauge", "counter")


@dataclass(frozen=True)
class Sample:
    """One value of one series at collect time.

    - ``name``: Prometheus metric name (``[a-zA-Z_:][a-zA-Z0-9_:]*``), base units
      spelled in the name (``_bytes``, ``_seconds``, ``_total`` for counters).
    - ``labels``: label name -> label value, both strings; ``{}`` when unlabelled.
    - ``value``: a float (ints are converted).
    - ``type``: ``"gauge"`` (may go up and down) or ``"counter"`` (monotonic,
      resets only when the source restarts).

    The timestamp is not part of a sample: the agent stamps every sample of
    one collect cycle with the same Unix-millisecond time.

    Raises ``ValueError`` for an unknown ``type``.
    """

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0
    type: str = "gauge"

    def __post_init__(self) -> None:
        if self.type not in SAMPLE_TYPES:
            raise ValueError(f"sample {self.name}: type must be one of {SAMPLE_TYPES}, got {self.type!r}")
        if not isinstance(self.value, float):
            # Frozen dataclass: normalise through object.__setattr__ once, here.
            object.__setattr__(self, "value", float(self.value))


class Collector(abc.ABC):
    """Base class of every collector.

    Subclasses set ``name`` (the key used in the agent's ``collectors`` list)
    and implement :meth:`collect`. Constructor arguments are the collector's
    options; they are validated in ``__init__`` so that a bad configuration
    fails before the agent's first cycle.
    """

    name: str = ""

    @abc.abstractmethod
    def collect(self) -> Iterable[Sample]:
        """Return the current samples of this collector.

        May raise on a failure that leaves nothing useful to report; the agent
        catches it, logs it with ``name`` and skips this collector for the
        cycle. Partial unavailability (a missing file, an absent subsystem)
        should instead yield the samples that could be read.
        """
