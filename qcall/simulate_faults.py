"""The device fault phase of ``qcall simulate --faults``: a few real seconds with real devices.

The simulated day's hub is stopped and a hub with one window's bus devices (counter display,
keypad, rating pad on the real bus emulator over ``socket://``) is started on the same
database, at the simulated clock's time. Each fault is injected at the keypad (polled all the
time, so the hub notices at once), the hub is awaited to mark it offline (noise: for
``NOISE_S``; the master's retries may ride it out), the fault is cleared and the hub is awaited
to mark it ready again. Then every device must be ready. The
simulation then goes on with its own hub (devices left out, as before).

Printer faults (paper end) and a lobby screen disconnect are not part of this phase yet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devices.emulators.bus import BusEmulator, Fault
from devices.qbus.frames import DeviceKind
from qcall.config import Bus, CenterConfig, Devices, WindowDevices
from qcall.hub import Hub

# One window's devices on the emulated bus (addresses as in the demo's first window).
DISPLAY: Final = 11
KEYPAD: Final = 12
RATING_PAD: Final = 13
KINDS: Final = {
    DISPLAY: DeviceKind.COUNTER_DISPLAY,
    KEYPAD: DeviceKind.KEYPAD,
    RATING_PAD: DeviceKind.RATING_PAD,
}
BAUD: Final = 9600
POLL_INTERVAL_MS: Final = 50
# Counted faults (no reply, noise) apply to this many replies: until they are cleared.
FAULT_REPLIES: Final = 10_000
# Bounds on waiting for the hub to notice a change on the real (emulated) bus; a loaded
# machine may need several re-probes. Not timing assertions.
NOTICE_TIMEOUT_S: Final = 15.0
# Noise on the line lasts this long: the master's retries ride it out (the device need not go
# offline), and it must be ready once the noise stops.
NOISE_S: Final = 2.0
# The faults injected, in order: a silent device, noise on the line, a pulled plug.
FAULTS: Final = (Fault.NO_REPLY, Fault.NOISE, Fault.UNPLUG)
CLEARS: Final = {Fault.NO_REPLY: Fault.CLEAR, Fault.NOISE: Fault.CLEAR, Fault.UNPLUG: Fault.PLUG}


@dataclass(frozen=True, slots=True)
class DeviceFault:
    """One injected fault: whether the hub saw the device offline, and ready again."""

    device: str
    fault: str
    went_offline: bool
    came_back: bool


def with_devices(config: CenterConfig, url: str) -> CenterConfig:
    """``config`` with its first window's devices on the bus at ``url``."""
    first, *rest = config.windows
    devices = WindowDevices(counter_display=DISPLAY, keypad=KEYPAD, rating_pad=RATING_PAD)
    window = first.model_copy(update={"devices": devices})
    bus = Bus(url=url, baud=BAUD, poll_interval_ms=POLL_INTERVAL_MS)
    return config.model_copy(update={"windows": [window, *rest], "devices": Devices(bus=bus)})


def device_name(address: int) -> str:
    """The hub's name of the bus device at ``address`` (as in its device states)."""
    return f"bus:{KINDS[address].role}@{address}"


async def _until(hub: Hub, check: Callable[[], bool], bound: float = NOTICE_TIMEOUT_S) -> bool:
    """Wait until ``check()`` holds (re-checked on every hub event); False after the bound."""
    changed = asyncio.Event()
    unsubscribe = hub.bus.subscribe(lambda _: changed.set())
    try:
        async with asyncio.timeout(bound):
            while not check():
                changed.clear()
                await changed.wait()
    except TimeoutError:
        return False
    finally:
        unsubscribe()
    return True


def _state(hub: Hub, name: str) -> object:
    return hub.engine.devices.get(name, {}).get("state")


async def device_fault_phase(
    config: CenterConfig,
    db: Path,
    clock: Callable[[], dt.datetime],
    monotonic: Callable[[], float],
) -> tuple[list[DeviceFault], bool]:
    """Run the fault phase on ``db``; return each fault's outcome and whether all are ready.

    No hub may be running on ``db``: this starts and stops its own.
    """
    emulator = BusEmulator(KINDS, baud=BAUD)
    await emulator.start()
    try:
        hub = Hub(with_devices(config, emulator.url), db, clock=clock, monotonic=monotonic)
        await hub.start()
        try:
            names = [device_name(a) for a in KINDS]
            await _until(hub, lambda: all(_state(hub, n) == "ready" for n in names))
            keypad = device_name(KEYPAD)
            outcomes: list[DeviceFault] = []
            for fault in FAULTS:
                emulator.fault(KEYPAD, fault, FAULT_REPLIES)
                bound = NOISE_S if fault is Fault.NOISE else NOTICE_TIMEOUT_S
                offline = await _until(hub, lambda: _state(hub, keypad) == "offline", bound)
                emulator.fault(KEYPAD, CLEARS[fault])
                back = await _until(hub, lambda: _state(hub, keypad) == "ready")
                outcomes.append(DeviceFault(keypad, fault.value, offline, back))
            ready = await _until(hub, lambda: all(_state(hub, n) == "ready" for n in names))
            # Every state change is committed before the hub stops (stop commits the rest).
            return outcomes, ready
        finally:
            await hub.stop()
    finally:
        await emulator.stop()
