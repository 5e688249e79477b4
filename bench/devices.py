"""Device benchmark through the hub: call → counter display, keypad → call, ticket render.

    python bench/devices.py [--samples 200] [--baud 9600]

(1) a call made at the hub until the SHOW_CALL frame is fully received by the emulated
    counter display (target: the frame's own wire time + 5 ms), on a bus with displays only
    and on one that also polls 8 keypads;
(2) a NEXT press on one of 8 emulated keypads until the ticket is called at the hub
    (target p99 ≤ 300 ms);
(3) ticket render until the ESC/POS bytes are ready (target p99 ≤ 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices_bus import Figures, _figures
from devices_printer import IMAGE_TICKET, TICKET, measure

from devices.emulators.bus import BusEmulator
from devices.qbus.frames import (
    MASTER,
    Command,
    DeviceKind,
    EventKind,
    Frame,
    ShowCall,
    wire_time,
)
from qcall.config import parse_config
from qcall.events import Event, EventType
from qcall.hub import Hub
from qcall.model import Role
from tests.common import small_center

BUDGET_S = 0.005
TARGET_KEYPAD_P99_MS = 300.0
TARGET_RENDER_P99_MS = 20.0
# Bounded wait for one sample; a sample that takes longer is a failure, not a figure.
SAMPLE_TIMEOUT_S = 5.0
WINDOWS = 8
PIN = "246809"


def _center(url: str, baud: int, keypads: bool) -> dict[str, object]:
    raw = small_center()
    raw["windows"] = [
        {
            "number": n,
            "type": "comprehensive",
            "devices": {
                "counter_display": 10 * n + 1,
                **({"keypad": 10 * n + 2} if keypads else {}),
            },
        }
        for n in range(1, WINDOWS + 1)
    ] + [
        {"number": 99, "type": "reply"},
        {"number": 98, "type": "dedicated", "services": [{"id": "housing"}]},
    ]
    raw["devices"] = {"bus": {"url": url, "baud": baud}}
    for service in raw["services"]:  # type: ignore[attr-defined]
        service["daily_cap"] = 9999
    return raw


async def _hall(folder: Path, baud: int, keypads: bool) -> tuple[Hub, BusEmulator]:
    kinds = {10 * n + 1: DeviceKind.COUNTER_DISPLAY for n in range(1, WINDOWS + 1)}
    if keypads:
        kinds |= {10 * n + 2: DeviceKind.KEYPAD for n in range(1, WINDOWS + 1)}
    emulator = BusEmulator(kinds, baud=baud)
    await emulator.start()
    hub = Hub(parse_config(_center(emulator.url, baud, keypads)), folder / f"d{keypads}.db")
    await hub.start()
    names = {f"bus:{kind.role}@{address}" for address, kind in kinds.items()}
    changed = asyncio.Event()
    unsubscribe = hub.bus.subscribe(lambda _event: changed.set())
    async with asyncio.timeout(30):
        while not all(hub.engine.devices.get(n, {}).get("state") == "ready" for n in names):
            changed.clear()
            await changed.wait()
    unsubscribe()
    for n in range(1, WINDOWS + 1):
        await hub.write(hub.store.add_staff, f"s{n}", f"bench {n}", PIN, Role.CLERK)
        await hub.execute(lambda now, n=n: hub.engine.open_window(now, n, f"s{n}"))
    # Let the start-up display and LCD traffic drain before measuring.
    await asyncio.sleep(3)
    return hub, emulator


async def call_to_display(folder: Path, samples: int, baud: int, keypads: bool) -> Figures:
    """(1) hub call → SHOW_CALL frame fully received by the display."""
    hub, emulator = await _hall(folder, baud, keypads)
    loop = asyncio.get_running_loop()
    arrived: dict[str, float] = {}
    got = asyncio.Event()

    def on_frame(frame: Frame, at: float) -> None:
        if frame.cmd == Command.SHOW_CALL:
            arrived[ShowCall.from_payload(frame.payload).ticket] = at
            got.set()

    emulator.subscribe(on_frame)
    latencies: list[float] = []
    size = 0
    try:
        for _ in range(samples):
            window = random.randint(1, WINDOWS)
            await hub.execute(lambda now: hub.engine.issue(now, "social"))
            await asyncio.sleep(random.uniform(0.05, 0.25))
            got.clear()
            start = loop.time()
            ticket = await hub.execute(lambda now, w=window: hub.engine.call_next(now, w, f"s{w}"))
            assert ticket is not None
            async with asyncio.timeout(SAMPLE_TIMEOUT_S):
                while ticket.number not in arrived:
                    got.clear()
                    await got.wait()
            latencies.append(arrived[ticket.number] - start)
            payload = ShowCall(ticket.number, window).to_payload()
            size = Frame(1, MASTER, 0, Command.SHOW_CALL, payload).wire_size
    finally:
        await hub.stop()
        await emulator.stop()
    label = (
        f"call -> display frame @ {baud} baud, {'8 keypads polled' if keypads else 'displays only'}"
    )
    return _figures(label, latencies, wire_time(size, baud) + BUDGET_S)


async def keypad_to_call(folder: Path, samples: int, baud: int) -> Figures:
    """(2) NEXT on a keypad → ticket called at the hub."""
    hub, emulator = await _hall(folder, baud, keypads=True)
    loop = asyncio.get_running_loop()
    called: dict[int, float] = {}
    got = asyncio.Event()

    def on_event(event: Event) -> None:
        if event.type is EventType.TICKET_CALLED:
            called[event.data["window"]] = loop.time()
            got.set()

    hub.bus.subscribe(on_event)
    latencies: list[float] = []
    try:
        for _ in range(samples):
            window = random.randint(1, WINDOWS)
            await hub.execute(lambda now: hub.engine.issue(now, "social"))
            await asyncio.sleep(random.uniform(0.0, 0.3))
            called.pop(window, None)
            start = loop.time()
            emulator.press(10 * window + 2, EventKind.NEXT)
            async with asyncio.timeout(SAMPLE_TIMEOUT_S):
                while window not in called:
                    got.clear()
                    await got.wait()
            latencies.append(called[window] - start)
    finally:
        await hub.stop()
        await emulator.stop()
    return _figures(f"keypad NEXT -> called at hub @ {baud} baud, 8 keypads", latencies)


def _print(figures: Figures, target_ms: float | None = None, *, verdict: bool = True) -> None:
    target = figures.reference_ms if figures.reference_ms is not None else target_ms
    if not verdict:
        target = None
    line = f"  {figures.name:<58} p50 {figures.p50_ms:7.1f} ms  p99 {figures.p99_ms:7.1f} ms"
    if target is not None:
        verdict = "PASS" if figures.p99_ms <= target else "MISS"
        line += f"  target ≤ {target:.1f} ms  ratio {figures.p99_ms / target:4.2f}  {verdict}"
    print(line)


async def run(samples: int, baud: int) -> None:
    with tempfile.TemporaryDirectory(prefix="qcall-bench-dev-") as tmp:
        folder = Path(tmp)
        print(f"(1) call → counter display ({samples} calls each)")
        _print(await call_to_display(folder, samples, baud, keypads=False))
        _print(await call_to_display(folder, samples, baud, keypads=True), verdict=False)
        print(
            "    (for reference: on a line shared with polled keypads a call may have to wait\n"
            "     for the transaction already on the wire; calls overtake every queued one)"
        )
        print(f"(2) keypad press → ticket called at the hub ({samples} presses)")
        _print(await keypad_to_call(folder, samples, baud), TARGET_KEYPAD_P99_MS)
    print("(3) ticket render → ESC/POS bytes ready (500 renders)")
    for label, ticket in (("text only", TICKET), ("with one image line", IMAGE_TICKET)):
        p50, p99 = measure(ticket, 500, paper=80)
        verdict = "PASS" if p99 <= TARGET_RENDER_P99_MS else "MISS"
        print(
            f"  {'render 80 mm, ' + label:<58} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
            f"target ≤ {TARGET_RENDER_P99_MS:.1f} ms  ratio {p99 / TARGET_RENDER_P99_MS:4.2f}  "
            f"{verdict}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--baud", type=int, default=9600)
    args = parser.parse_args()
    asyncio.run(run(args.samples, args.baud))
    return 0


if __name__ == "__main__":
    sys.exit(main())
