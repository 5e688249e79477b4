"""QBus latency: show_call → display frame received, key press → event (9600 baud)."""

# (a) is compared with the SHOW_CALL frame's own wire time + 5 ms; (b) runs with 8 keypads.
# ``python bench/devices_bus.py`` prints every figure.

from __future__ import annotations

import asyncio
import random
import statistics
from dataclasses import dataclass

from devices.base import DeviceState
from devices.emulators.bus import BusEmulator
from devices.qbus.frames import (
    MASTER,
    BusEvent,
    Command,
    DeviceKind,
    EventKind,
    Frame,
    ShowCall,
    wire_time,
)
from devices.qbus.master import BusMaster
from qcall.config import Bus

# Budget above the frame's own wire time for (a): the master may add at most this much.
SHOW_CALL_BUDGET_S = 0.005
# Bounded wait per sample; a sample that takes longer is a failure, not a figure.
SAMPLE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Figures:
    """Latency percentiles in milliseconds."""

    name: str
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    reference_ms: float | None = None

    def line(self) -> str:
        """Return a one-line summary."""
        text = (
            f"{self.name}: n={self.samples} p50={self.p50_ms:.1f} ms "
            f"p99={self.p99_ms:.1f} ms max={self.max_ms:.1f} ms"
        )
        if self.reference_ms is not None:
            verdict = "OK" if self.p99_ms <= self.reference_ms else "OVER"
            text += f" (budget {self.reference_ms:.1f} ms: {verdict})"
        return text


def _figures(name: str, latencies: list[float], reference_s: float | None = None) -> Figures:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return Figures(
        name,
        len(ordered),
        statistics.median(ordered) * 1000,
        p99 * 1000,
        ordered[-1] * 1000,
        None if reference_s is None else reference_s * 1000,
    )


class _Delivered:
    """Events the master delivered, with the loop time of delivery."""

    def __init__(self) -> None:
        self.items: list[tuple[int, BusEvent, float]] = []
        self.arrived = asyncio.Event()

    def __call__(self, address: int, event: BusEvent) -> None:
        self.items.append((address, event, asyncio.get_running_loop().time()))
        self.arrived.set()


async def _pair(
    kinds: dict[int, DeviceKind], baud: int
) -> tuple[BusEmulator, BusMaster, _Delivered]:
    emulator = BusEmulator(kinds, baud=baud)
    await emulator.start()
    delivered = _Delivered()
    ready: set[str] = set()
    all_ready = asyncio.Event()

    def on_state(name: str, state: DeviceState, _: str) -> None:
        if state is DeviceState.READY and "@" in name:
            ready.add(name)
            if len(ready) == len(kinds):
                all_ready.set()

    master = BusMaster(
        Bus(url=emulator.url, baud=baud), kinds, on_event=delivered, on_state=on_state
    )
    await master.start()
    async with asyncio.timeout(SAMPLE_TIMEOUT_S):
        await all_ready.wait()
    return emulator, master, delivered


async def measure_show_call(samples: int = 200, baud: int = 9600, keypads: int = 0) -> Figures:
    """Measure show_call → display frame received; ``keypads`` adds polled keypads to the bus."""
    kinds = {1: DeviceKind.COUNTER_DISPLAY}
    kinds.update({10 + i: DeviceKind.KEYPAD for i in range(keypads)})
    emulator, master, _ = await _pair(kinds, baud)
    loop = asyncio.get_running_loop()
    arrived: dict[str, float] = {}

    def on_frame(frame: Frame, at: float) -> None:
        if frame.cmd == Command.SHOW_CALL and frame.dst == 1:
            arrived[ShowCall.from_payload(frame.payload).ticket] = at

    emulator.subscribe(on_frame)
    latencies: list[float] = []
    size = 0
    try:
        for number in range(samples):
            ticket = f"A{number:03d}"
            payload = ShowCall(ticket, 3).to_payload()
            size = Frame(1, MASTER, 0, Command.SHOW_CALL, payload).wire_size
            # A random phase against the poll cycle (one poll transaction is ~35 ms at 9600).
            await asyncio.sleep(random.uniform(0.02, 0.2))
            start = loop.time()
            async with asyncio.timeout(SAMPLE_TIMEOUT_S):
                await master.show_call(1, ticket, 3)
            latencies.append(arrived[ticket] - start)
    finally:
        await master.stop()
        await emulator.stop()
    budget = wire_time(size, baud) + SHOW_CALL_BUDGET_S
    label = f"show_call -> display @ {baud} baud, {keypads} keypads polled"
    return _figures(label, latencies, budget)


async def measure_keypad(samples: int = 200, baud: int = 9600, keypads: int = 8) -> Figures:
    """Measure key press on an emulated keypad → event delivered by the master."""
    kinds = {1 + i: DeviceKind.KEYPAD for i in range(keypads)}
    emulator, master, delivered = await _pair(kinds, baud)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    try:
        for _ in range(samples):
            address = random.choice(list(kinds))
            await asyncio.sleep(random.uniform(0.0, 0.3))
            delivered.arrived.clear()
            start = loop.time()
            emulator.press(address, EventKind.NEXT)
            async with asyncio.timeout(SAMPLE_TIMEOUT_S):
                await delivered.arrived.wait()
            latencies.append(delivered.items[-1][2] - start)
    finally:
        await master.stop()
        await emulator.stop()
    return _figures(f"key press -> event @ {baud} baud, {keypads} keypads", latencies)


async def run_all(samples: int = 200) -> list[Figures]:
    """Run every bus measurement."""
    return [
        await measure_show_call(samples),
        await measure_show_call(samples, keypads=8),
        await measure_keypad(samples),
    ]


if __name__ == "__main__":
    for figures in asyncio.run(run_all()):
        print(figures.line())
