"""What every device driver offers the hub: states, start/stop, diagnostics and a probe."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class DeviceState(StrEnum):
    """Where a device (a port, or one address on a bus) stands."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    READY = "ready"
    FAILED = "failed"
    OFFLINE = "offline"


StateCallback = Callable[[str, DeviceState, str], None]
"""``on_state(device_name, state, detail)``, called on every state change."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one self-test step; ``detail`` says what was seen or what to check."""

    name: str
    ok: bool
    detail: str


class Device(abc.ABC):
    """A supervised device driver the hub starts, stops, inspects and self-tests."""

    name: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin operating; connection failures are retried in the background."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop operating and release the port."""

    @abc.abstractmethod
    def diagnostics(self) -> dict[str, Any]:
        """Return a JSON-ready snapshot: state, last error, counters."""

    @abc.abstractmethod
    async def probe(self) -> list[ProbeResult]:
        """Actively check the device now; never raises for a device fault."""


class Link(Protocol):
    """A connection the DeviceSupervisor keeps open."""

    async def open(self) -> None:
        """Open and verify the connection; raise DeviceError or OSError on failure."""

    async def wait_closed(self) -> None:
        """Return (or raise the cause) when the open connection is lost."""

    async def check(self) -> None:
        """Liveness check of an open connection; raise DeviceError when it is dead."""

    async def close(self) -> None:
        """Close the connection; must not raise."""
