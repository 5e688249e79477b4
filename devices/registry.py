"""The one place drivers are named: builds device objects from validated configuration."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from devices.base import DeviceState, StateCallback
from devices.qbus.frames import (
    BusEvent,
    DeviceKind,
    EventKind,
    FinishOutcome,
    PingFlag,
    TransferPosition,
    TransferTarget,
)
from devices.qbus.master import BusMaster, kinds_from_windows

if TYPE_CHECKING:
    from devices.printer.driver import TicketPrinter
    from qcall.config import Bus, Printer, WindowDevices

__all__ = [
    "BusEvent",
    "BusMaster",
    "DeviceKind",
    "DeviceState",
    "EventKind",
    "FinishOutcome",
    "PingFlag",
    "TransferPosition",
    "TransferTarget",
    "create_bus",
    "create_printer",
]


def create_bus(
    config: Bus,
    windows: Iterable[WindowDevices],
    *,
    on_event: Callable[[int, BusEvent], None],
    on_state: StateCallback,
) -> BusMaster:
    """The bus master for the QBus line and every device the windows name."""
    return BusMaster(config, kinds_from_windows(windows), on_event=on_event, on_state=on_state)


def create_printer(config: Printer, *, on_state: StateCallback | None = None) -> TicketPrinter:
    """An ESC/POS ticket printer (imported lazily: the hub does not print)."""
    from devices.printer.driver import TicketPrinter

    return TicketPrinter.from_config(config, on_state=on_state)
