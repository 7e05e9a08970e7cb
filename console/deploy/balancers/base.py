"""What the balancers share: the server a container is to them, their error and protocol."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from console.errors import DriverFailure

Log = Callable[..., None]  # log(message, level="info", **data)


@dataclass(frozen=True)
class Server:
    """One container as the balancer sees it: its slot (``fleetdeck.slot``), the address
    the balancer sends its traffic to, and its name (for logs and comments)."""

    slot: int
    host: str
    port: int
    container: str

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class BalancerError(DriverFailure):
    """The balancer refused a change or could not be reached (502 ``driver_failed``)."""


class Balancer(Protocol):
    def sync(self, servers: list[Server], slots: int, log: Log) -> None:
        """Make ``servers`` (slots below ``slots``) the only ones receiving traffic."""

    def enable(self, servers: list[Server], log: Log) -> None:
        """Start sending traffic to ``servers`` (healthy containers)."""

    def disable(self, servers: list[Server], log: Log) -> None:
        """Stop sending traffic to ``servers`` and wait until their connections ended."""

