"""The hall wiring against the real bus emulator: displays, keypads, rating pads, device states."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devices.emulators.bus import BusEmulator, Fault
from devices.qbus.frames import DeviceKind, EventKind, TransferTarget
from qcall.config import parse_config
from qcall.events import Event, EventType
from qcall.hub import Hub
from qcall.model import Outcome, Role
from tests.common import small_center

# Bounds for waiting on real bus traffic (9600 baud emulated); not timing assertions.
WAIT_S = 10.0
PIN = "864209"

KINDS = {
    11: DeviceKind.COUNTER_DISPLAY,
    12: DeviceKind.KEYPAD,
    13: DeviceKind.RATING_PAD,
    31: DeviceKind.COUNTER_DISPLAY,
    32: DeviceKind.KEYPAD,
}


@pytest.fixture
async def emulator() -> AsyncIterator[BusEmulator]:
    bus = BusEmulator(KINDS, baud=9600)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


@pytest.fixture
async def hub(emulator: BusEmulator, tmp_path: Path) -> AsyncIterator[Hub]:
    raw = small_center()
    raw["devices"] = {"bus": {"url": emulator.url, "baud": 9600, "poll_interval_ms": 50}}
    raw["windows"][0]["devices"] = {"counter_display": 11, "keypad": 12, "rating_pad": 13}
    raw["windows"][2]["devices"] = {"counter_display": 31, "keypad": 32}
    hub = Hub(parse_config(raw), tmp_path / "hall.db")
    await hub.start()
    await hub.write(hub.store.add_staff, "c1", "张三", PIN, Role.CLERK)
    await hub.write(hub.store.add_staff, "k1", "李四", PIN, Role.CLERK)
    await hub.write(hub.store.add_staff, "d1", "王五", PIN, Role.ADMIN)
    try:
        yield hub
    finally:
        await hub.stop()


def _events(hub: Hub) -> list[Event]:
    seen: list[Event] = []
    hub.bus.subscribe(seen.append)
    return seen


async def _until(emulator: BusEmulator, address: int, check: Any) -> dict[str, Any]:
    await emulator.wait_until(lambda: bool(check(emulator.shown(address))), WAIT_S)
    return emulator.shown(address)


async def test_displays_show_their_window_idle_text_at_start(
    hub: Hub, emulator: BusEmulator
) -> None:
    shown = await _until(emulator, 31, lambda s: s["idle_text"] == "3号窗口")
    assert shown["mode"] == "idle"
    lcd = await _until(emulator, 12, lambda s: s["lcd"])
    assert lcd["lcd"] == "请登录 LOGIN"


async def test_a_call_lights_the_windows_display_and_keypad(
    hub: Hub, emulator: BusEmulator
) -> None:
    engine = hub.engine
    await hub.execute(lambda now: engine.open_window(now, 3, "c1"))
    ticket = await hub.execute(lambda now: engine.issue(now, "housing"))
    await hub.execute(lambda now: engine.issue(now, "housing"))
    await hub.execute(lambda now: engine.call_next(now, 3, "c1"))
    shown = await _until(emulator, 31, lambda s: s["ticket"] == ticket.number)
    assert (shown["mode"], shown["window"]) == ("call", 3)
    assert shown["text"] == f"请{ticket.number}号\n到3号窗口"
    lcd = await _until(emulator, 32, lambda s: s["lcd"] == f"当前{ticket.number} 等候1")
    assert lcd["lcd"] == "当前C001 等候1"
    # The display over window 1 was not touched.
    assert emulator.shown(11)["ticket"] is None


async def test_pause_and_close_reach_the_display(hub: Hub, emulator: BusEmulator) -> None:
    engine = hub.engine
    await hub.execute(lambda now: engine.open_window(now, 3, "c1"))
    await _until(emulator, 31, lambda s: s["text"] == "3号窗口 欢迎办理")
    await hub.execute(lambda now: engine.pause(now, 3, "c1", "午休"))
    await _until(emulator, 31, lambda s: s["text"] == "暂停服务")
    await _until(emulator, 32, lambda s: s["lcd"] == "暂停服务")
    await hub.execute(lambda now: engine.resume(now, 3, "c1"))
    await hub.execute(lambda now: engine.close_window(now, 3, "c1"))
    shown = await _until(emulator, 31, lambda s: s["mode"] == "idle")
    assert shown["text"] == "3号窗口"


async def test_keypad_login_and_next_call_a_ticket_at_that_window(
    hub: Hub, emulator: BusEmulator
) -> None:
    seen = _events(hub)
    await hub.execute(lambda now: hub.engine.open_window(now, 2, "c1"))
    ticket = await hub.execute(lambda now: hub.engine.issue(now, "social", channel="desk"))
    emulator.press(12, EventKind.LOGIN, staff="k1", pin=PIN)
    await _until(emulator, 12, lambda s: s["lcd"] == "李四 已登录")
    assert hub.engine.windows[1].staff == "k1"
    emulator.press(12, EventKind.NEXT)
    shown = await _until(emulator, 11, lambda s: s["ticket"] == ticket.number)
    assert shown["window"] == 1
    called = [e for e in seen if e.type is EventType.TICKET_CALLED]
    assert [(e.data["number"], e.data["window"], e.data["staff"]) for e in called] == [
        (ticket.number, 1, "k1")
    ]
    # Every press was taken exactly once.
    await _until(emulator, 12, lambda s: s["queued"] == 0)


async def test_keypad_refusals_show_on_its_lcd_and_change_nothing(
    hub: Hub, emulator: BusEmulator
) -> None:
    emulator.press(12, EventKind.NEXT)
    await _until(emulator, 12, lambda s: s["lcd"] == "请先登录")
    emulator.press(12, EventKind.LOGIN, staff="k1", pin="0000")
    await _until(emulator, 12, lambda s: s["lcd"] == "工号或密码错误")
    emulator.press(12, EventKind.LOGIN, staff="d1", pin=PIN)
    await _until(emulator, 12, lambda s: s["lcd"] == "无权限")
    assert hub.engine.windows[1].staff is None
    emulator.press(12, EventKind.LOGIN, staff="k1", pin=PIN)
    await _until(emulator, 12, lambda s: s["lcd"] == "李四 已登录")
    seq = hub.engine.seq
    emulator.press(12, EventKind.RECALL)
    await _until(emulator, 12, lambda s: s["lcd"] == "1 号窗口当前没有号码")
    assert hub.engine.seq == seq


async def test_keypad_transfer_and_callback(hub: Hub, emulator: BusEmulator) -> None:
    engine = hub.engine
    await hub.execute(lambda now: engine.open_window(now, 1, "c1"))
    first = await hub.execute(lambda now: engine.issue(now, "social"))
    await hub.execute(lambda now: engine.call_next(now, 1, "c1"))
    emulator.press(12, EventKind.HOLD)
    await emulator.wait_until(lambda: engine.windows[1].held == [first.id], WAIT_S)
    emulator.press(12, EventKind.CALLBACK, ticket=first.number)
    await emulator.wait_until(lambda: engine.windows[1].current == first.id, WAIT_S)
    emulator.press(12, EventKind.TRANSFER, transfer=TransferTarget(service_prefix="B"))
    await emulator.wait_until(lambda: engine.tickets[first.id].state == "transferred", WAIT_S)
    entry = engine.tickets[f"{first.id}.1"]
    assert (entry.service, entry.number, entry.state) == ("medical", first.number, "waiting")


async def test_a_rating_reaches_the_hub(hub: Hub, emulator: BusEmulator) -> None:
    engine = hub.engine
    await hub.execute(lambda now: engine.open_window(now, 1, "c1"))
    ticket = await hub.execute(lambda now: engine.issue(now, "social"))
    await hub.execute(lambda now: engine.call_next(now, 1, "c1"))
    await hub.execute(lambda now: engine.finish(now, 1, "c1", Outcome.DONE))
    await _until(emulator, 13, lambda s: s["session"] is not None)
    emulator.rating(13, 5)
    await emulator.wait_until(lambda: engine.tickets[ticket.id].rating == 5, WAIT_S)


async def test_a_silent_display_goes_offline_and_recovers_by_itself(
    hub: Hub, emulator: BusEmulator
) -> None:
    seen = _events(hub)
    name = "bus:counter_display@31"
    await emulator.wait_until(
        lambda: hub.engine.devices.get(name, {}).get("state") == "ready", WAIT_S
    )
    emulator.fault(31, Fault.UNPLUG)
    await emulator.wait_until(
        lambda: hub.engine.devices.get(name, {}).get("state") == "offline", WAIT_S * 2
    )
    emulator.fault(31, Fault.PLUG)
    await emulator.wait_until(
        lambda: hub.engine.devices.get(name, {}).get("state") == "ready", WAIT_S * 2
    )
    states = [
        e.data["state"]
        for e in seen
        if e.type is EventType.DEVICE_STATE and e.data["device"] == name
    ]
    assert states[-2:] == ["offline", "ready"]
    # The recovered display shows its window again.
    await _until(emulator, 31, lambda s: s["idle_text"] == "3号窗口")
    # Each change is a durable, published event (the state event is in the log).
    logged = await hub.events_after(0, 10_000)
    assert [
        e.data["state"]
        for e in logged
        if e.type is EventType.DEVICE_STATE and e.data["device"] == name
    ][-2:] == ["offline", "ready"]


async def test_display_writes_never_delay_a_call(hub: Hub, emulator: BusEmulator) -> None:
    """With every bus device unplugged, calls still complete and are durable."""
    for address in KINDS:
        emulator.fault(address, Fault.UNPLUG)
    engine = hub.engine
    await hub.execute(lambda now: engine.open_window(now, 1, "c1"))
    tickets = [await hub.execute(lambda now: engine.issue(now, "social")) for _ in range(5)]
    called = [await hub.execute(lambda now: engine.call_next(now, 1, "c1")) for _ in range(5)]
    assert [t.number for t in called if t] == [t.number for t in tickets]
    assert hub.committed_seq == hub.engine.seq
