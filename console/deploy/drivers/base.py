"""The driver protocol: what the deploy service asks of a back-end (docker, later
kubernetes and ssh), and the plain values that flow back.

Drivers are blocking and run on the deploy service's worker threads, never on the
IOLoop. They report progress only through ``emit(DriverEvent)`` and never touch the
database; the service stores and publishes what they emit.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from console.errors import Unavailable

# Final states a driver may report.
SUCCEEDED, FAILED, ROLLED_BACK, CANCELLED = "succeeded", "failed", "rolled_back", "cancelled"


@dataclass(frozen=True)
class DriverEvent:
    """One thing that happened. ``kind`` is ``step`` (a named phase changed ``state`` to
    running|succeeded|failed|skipped) or ``log`` (a line of progress); ``level`` is
    info|warning|error; ``data`` holds JSON-able facts (container ids, ports, counts)."""

    kind: str
    message: str
    step: str | None = None
    state: str | None = None
    level: str = "info"
    data: dict = field(default_factory=dict)


Emit = Callable[[DriverEvent], None]


class CancelToken:
    """Set by the service on timeout or on a cancel request; drivers poll it between calls
    and sleep on it (``wait``) so that they wake at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.kind = ""  # "timeout" | "cancelled"

    def cancel(self, kind: str, reason: str) -> None:
        if not self._event.is_set():
            self.kind, self.reason = kind, reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when cancelled meanwhile."""
        return self._event.wait(seconds)


class Cancelled(Exception):
    """Raised inside a driver when its CancelToken is set."""


class GateFailed(Exception):
    """The canary analysis failed (its message names the check and its value): the
    driver rolls back what it changed and reports ``rolled_back`` with that reason."""


class Gate(Protocol):
    """The canary stage of a deploy (console/deploy/canary.py). A driver given one moves
    ``size(total)`` of its ``total`` replicas or hosts first, then calls the gate, which
    blocks for the analysis: it returns to go on with the rest, raises GateFailed to roll
    back, or Cancelled when the deploy is cancelled or times out meanwhile. ``hosts``:
    the hosts the deploy changes (SSH), matched against alerts' ``instance``."""

    def size(self, total: int) -> int: ...

    def __call__(self, emit: "Emit", cancel: CancelToken, hosts: Iterable[str] = ()) -> None: ...


@dataclass(frozen=True)
class DeployRequest:
    deploy_id: int
    app: str
    version: str
    previous_version: str | None
    current_deploy_id: int | None  # the deploy whose containers serve now (last succeeded)
    kind: str = "deploy"  # deploy | rollback (the ssh driver runs rollback steps for the latter)
    gate: Gate | None = None  # the canary stage, when the app has one (drivers call it after their first batch)
    force: bool = False  # ssh: build the release again even when the host has it complete


@dataclass(frozen=True)
class DeployOutcome:
    """``state``: succeeded | failed | rolled_back | cancelled. ``cleanup_pending`` is True
    when containers this deploy started may still exist (the engine was unreachable), so
    the service retries ``recover`` later."""

    state: str
    error: str | None = None
    cleanup_pending: bool = False


class DeployDriver(Protocol):
    def deploy(self, request: DeployRequest, emit: Emit, cancel: CancelToken) -> DeployOutcome:
        """Replace the app's containers with ``request.version``; never raises for
        failures it can describe (those become the outcome)."""

    def recover(self, app: str, deploy_id: int, current_deploy_id: int | None, emit: Emit) -> int:
        """Remove every container ``deploy_id`` started and start again the stopped
        containers of ``current_deploy_id``. Returns how many containers were removed;
        raises DriverUnavailable when the engine cannot be reached."""

    def instances(self, app: str) -> list[dict]:
        """The app's containers now: ``[{"id", "name", "version", "deploy", "state", "health"}]``.
        Raises DriverUnavailable."""


class DriverUnavailable(Unavailable):
    """The back-end (Docker engine, cluster, host) cannot be reached (503
    ``driver_unavailable``)."""

    default_code = "driver_unavailable"
