"""The hall wiring against the real bus emulator: displays, keypads, rating pads, device states."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devices.emulators.bus import BusEmulator, Fault
from devices.qbus.frames import (
    Command,
    DeviceKind,
    EventKind,
    FinishOutcome,
    Frame,
    PollAny,
    TransferTarget,
)
from devices.qbus.master import IDLE_PING_INTERVAL_S
from qcall.config import parse_config
from qcall.errors import DeviceUnavailable
from qcall.events import Event, EventType
from qcall.hub import Hub
from qcall.model import Outcome, Role
from tests.common import small_center
from tests.qcall.test_hub import until

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


def _hall_config(**services: str) -> dict[str, Any]:
    raw = small_center()
    for sid, name_zh in services.items():
        raw["services"].append({**raw["services"][1], "id": sid, "name_zh": name_zh})
    raw["windows"][0]["devices"] = {"counter_display": 11, "keypad": 12, "rating_pad": 13}
    raw["windows"][2]["devices"] = {"counter_display": 31, "keypad": 32}
    return raw


async def _start(emulator: BusEmulator, tmp_path: Path, raw: dict[str, Any]) -> Hub:
    raw["devices"] = {"bus": {"url": emulator.url, "baud": 9600, "poll_interval_ms": 50}}
    hub = Hub(parse_config(raw), tmp_path / "hall.db")
    await hub.start()
    await hub.write(hub.store.add_staff, "c1", "张三", PIN, Role.CLERK)
    await hub.write(hub.store.add_staff, "k1", "李四", PIN, Role.CLERK)
    await hub.write(hub.store.add_staff, "d1", "王五", PIN, Role.ADMIN)
    # Every device answered once (on a loaded machine a first IDENT may time out; the
    # re-probe brings it back): a write to a device still marked offline would be refused.
    names = [f"bus:{kind.role}@{address}" for address, kind in KINDS.items()]
    try:
        await _until_hub(
            hub,
            lambda: all(hub.engine.devices.get(n, {}).get("state") == "ready" for n in names),
            WAIT_S * 2,
        )
    except BaseException:
        await hub.stop()
        raise
    return hub


@pytest.fixture
async def hub(emulator: BusEmulator, tmp_path: Path) -> AsyncIterator[Hub]:
    hub = await _start(emulator, tmp_path, _hall_config())
    try:
        yield hub
    finally:
        await hub.stop()


@pytest.fixture
async def hub_b3(emulator: BusEmulator, tmp_path: Path) -> AsyncIterator[Hub]:
    """Three intake services share prefix B (medical is the first)."""
    hub = await _start(emulator, tmp_path, _hall_config(flexible="灵活就业", jobless="失业登记"))
    try:
        yield hub
    finally:
        await hub.stop()


def _events(hub: Hub) -> list[Event]:
    seen: list[Event] = []
    hub.bus.subscribe(seen.append)
    return seen


async def _until_hub(hub: Hub, check: Any, timeout_s: float) -> None:
    """Wait until ``check()`` holds, re-checking after every hub event."""
    changed = asyncio.Event()
    unsubscribe = hub.bus.subscribe(lambda _: changed.set())
    try:
        async with asyncio.timeout(timeout_s):
            while not check():
                changed.clear()
                await changed.wait()
    finally:
        unsubscribe()


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
    # Nothing but a device's own state change (a display answering late) may follow.
    after = await hub.events_after(seq)
    assert [e for e in after if e.type is not EventType.DEVICE_STATE] == []


async def test_a_keypad_trying_staff_ids_is_limited_like_an_address(
    hub: Hub, emulator: BusEmulator
) -> None:
    hub.logins.by_address.limit = 2  # the real limit is 20; two keep the test short
    for staff in ("x1", "x2"):
        emulator.press(12, EventKind.LOGIN, staff=staff, pin=PIN)
        await _until(emulator, 12, lambda s: s["lcd"] == "工号或密码错误")
        emulator.press(12, EventKind.NEXT)
        await _until(emulator, 12, lambda s: s["lcd"] == "请先登录")
    emulator.press(12, EventKind.LOGIN, staff="k1", pin=PIN)
    await _until(emulator, 12, lambda s: s["lcd"] == "此设备登录失败次数过多，请 10 分钟后再试")
    assert hub.engine.windows[1].staff is None
    assert hub.logins.diagnostics()["pin_checks"] == 2


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
    # The keypad and the display drop the transferred number at once (no key press needed).
    await _until(emulator, 12, lambda s: s["lcd"] == "当前---- 等候1")
    await _until(emulator, 11, lambda s: s["text"] == "1号窗口 欢迎办理")


async def test_keypad_waiting_count_is_what_next_would_call(
    hub: Hub, emulator: BusEmulator
) -> None:
    engine = hub.engine
    await hub.execute(lambda now: engine.open_window(now, 1, "c1"))
    first = await hub.execute(lambda now: engine.issue(now, "medical"))
    await hub.execute(lambda now: engine.call_next(now, 1, "c1"))
    # Window 1 sends its ticket to window 2: only window 2 can call it now.
    await hub.execute(lambda now: engine.transfer(now, 1, "c1", window_number=2))
    assert engine.tickets[f"{first.id}.1"].pinned_window == 2
    await _until(emulator, 12, lambda s: s["lcd"] == "当前---- 等候0")
    assert await hub.execute(lambda now: engine.call_next(now, 1, "c1")) is None


async def test_open_then_call_at_once_ends_on_the_call(hub: Hub, emulator: BusEmulator) -> None:
    engine = hub.engine
    await hub.execute(lambda now: engine.open_window(now, 3, "c1"))
    tickets = [await hub.execute(lambda now: engine.issue(now, "housing")) for _ in range(5)]
    await hub.execute(lambda now: engine.close_window(now, 3, "c1"))
    await _until(emulator, 31, lambda s: s["mode"] == "idle")
    for ticket in tickets:
        await hub.execute(lambda now: engine.open_window(now, 3, "c1"))
        await hub.execute(lambda now: engine.call_next(now, 3, "c1"))
        shown = await _until(emulator, 31, lambda s, t=ticket: s["ticket"] == t.number)
        await hub.execute(lambda now: engine.finish(now, 3, "c1", Outcome.DONE))
        await hub.execute(lambda now: engine.close_window(now, 3, "c1"))
        await _until(emulator, 31, lambda s: s["mode"] == "idle")
    assert shown["mode"] == "call"


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

    def committed(state: str) -> bool:
        known = hub.engine.devices.get(name, {}).get("state") == state
        return known and hub.committed_seq == hub.engine.seq

    # Polled: the emulator's wait_until wakes only on its own changes, and the hub may
    # commit the device's state after the last of them.
    await until(lambda: committed("ready"), "ready")
    emulator.fault(31, Fault.UNPLUG)
    # An idle display is only pinged every IDLE_PING_INTERVAL_S: that is the bound.
    await _until_hub(hub, lambda: committed("offline"), IDLE_PING_INTERVAL_S + WAIT_S)
    await until(lambda: committed("offline"), "offline committed")
    emulator.fault(31, Fault.PLUG)
    await _until_hub(hub, lambda: committed("ready"), WAIT_S * 2)
    await until(lambda: committed("ready"), "back committed")
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


async def _serving(hub: Hub, emulator: BusEmulator, service: str = "social") -> list[Any]:
    """Log the clerk in at window 1 from its keypad; call the first of two tickets."""
    engine = hub.engine
    emulator.press(12, EventKind.LOGIN, staff="k1", pin=PIN)
    await emulator.wait_until(lambda: engine.windows[1].staff == "k1", WAIT_S)
    tickets = [await hub.execute(lambda now: engine.issue(now, service)) for _ in range(2)]
    emulator.press(12, EventKind.NEXT)
    await emulator.wait_until(lambda: engine.windows[1].current == tickets[0].id, WAIT_S)
    return tickets


async def test_keypad_transfer_by_a_shared_prefix_lists_the_choices(
    hub_b3: Hub, emulator: BusEmulator
) -> None:
    hub, engine = hub_b3, hub_b3.engine
    first, _ = await _serving(hub, emulator)
    state = engine.tickets[first.id].state
    emulator.press(12, EventKind.TRANSFER, transfer=TransferTarget(service_prefix="B"))
    lcd = await _until(emulator, 12, lambda s: s["lcd"].startswith("B有3项"))
    assert lcd["lcd"] == "B有3项 请选序号\n1业务2灵活3失业"
    # Nothing was transferred (device states may still change: they are not the point).
    assert hub.hall is not None
    list_expires = hub.hall._notes[1][1]
    assert engine.windows[1].current == first.id
    assert engine.tickets[first.id].state == state
    assert f"{first.id}.1" not in engine.tickets
    emulator.press(12, EventKind.TRANSFER, transfer=TransferTarget(service_prefix="B", choice=3))
    await emulator.wait_until(lambda: engine.tickets[first.id].state == "transferred", WAIT_S)
    assert engine.tickets[f"{first.id}.1"].service == "jobless"
    # The list gives way to the window's state at once, before the list's note would expire.
    await _until(emulator, 12, lambda s: s["lcd"] == "当前---- 等候2")
    assert time.monotonic() < list_expires
    # A choice the prefix does not have is refused on the LCD and changes nothing.
    emulator.press(12, EventKind.NEXT)
    await emulator.wait_until(lambda: engine.windows[1].current is not None, WAIT_S)
    current = engine.windows[1].current
    assert current is not None
    state = engine.tickets[current].state
    emulator.press(12, EventKind.TRANSFER, transfer=TransferTarget(service_prefix="B", choice=4))
    await _until(emulator, 12, lambda s: s["lcd"] == "B 只有 3 项业务")
    assert engine.windows[1].current == current
    assert engine.tickets[current].state == state
    assert f"{current}.1" not in engine.tickets


async def test_keypad_finish_done_and_back_office(hub: Hub, emulator: BusEmulator) -> None:
    engine = hub.engine
    first, second = await _serving(hub, emulator)
    emulator.press(12, EventKind.FINISH, outcome=FinishOutcome.DONE)
    await _until(emulator, 12, lambda s: s["lcd"] == f"{first.number} 已办结")
    assert engine.tickets[first.id].state == "done"
    await _until(emulator, 11, lambda s: s["text"] == "1号窗口 欢迎办理")
    emulator.press(12, EventKind.NEXT)
    await emulator.wait_until(lambda: engine.windows[1].current == second.id, WAIT_S)
    emulator.press(12, EventKind.FINISH, outcome=FinishOutcome.BACK_OFFICE)
    await _until(emulator, 12, lambda s: s["lcd"] == "已转后台")
    assert engine.tickets[second.id].case_id in engine.cases


async def test_keypad_pause_after_the_current_ticket(hub: Hub, emulator: BusEmulator) -> None:
    engine = hub.engine
    first, second = await _serving(hub, emulator)
    # People wait and someone is being served: PAUSE takes effect after this ticket.
    emulator.press(12, EventKind.PAUSE)
    await _until(emulator, 12, lambda s: s["lcd"] == f"当前{first.number} 办完暂停")
    assert not engine.windows[1].paused
    emulator.press(12, EventKind.FINISH, outcome=FinishOutcome.DONE)
    await emulator.wait_until(lambda: engine.windows[1].paused, WAIT_S)
    assert engine.tickets[first.id].state == "done"
    await _until(emulator, 11, lambda s: s["text"] == "暂停服务")
    await _until(emulator, 12, lambda s: s["lcd"] == "暂停服务")
    # NEXT with a pause pending finishes the ticket and calls nobody.
    emulator.press(12, EventKind.RESUME)
    await emulator.wait_until(lambda: not engine.windows[1].paused, WAIT_S)
    emulator.press(12, EventKind.NEXT)
    await emulator.wait_until(lambda: engine.windows[1].current == second.id, WAIT_S)
    emulator.press(12, EventKind.PAUSE)
    await _until(emulator, 12, lambda s: s["lcd"].endswith("办完暂停"))
    emulator.press(12, EventKind.NEXT)
    await emulator.wait_until(lambda: engine.windows[1].paused, WAIT_S)
    assert engine.tickets[second.id].state == "done"
    assert engine.windows[1].current is None


async def test_a_power_cycled_display_at_an_idle_window_gets_its_text_back(
    hub: Hub, emulator: BusEmulator
) -> None:
    engine = hub.engine
    await hub.execute(lambda now: engine.open_window(now, 3, "c1"))
    await _until(emulator, 31, lambda s: s["text"] == "3号窗口 欢迎办理")
    await _until(emulator, 31, lambda s: s["idle_text"] == "3号窗口")
    # A restart sweep runs only when no write is queued: after one, nothing else repaints it.
    swept = asyncio.Event()

    def on_frame(frame: Frame, _: float) -> None:
        if frame.cmd == Command.POLL_ANY and 31 in PollAny.from_payload(frame.payload).addresses:
            swept.set()

    emulator.subscribe(on_frame)
    async with asyncio.timeout(WAIT_S):
        await swept.wait()
    emulator.fault(31, Fault.POWER_CYCLE)
    assert emulator.shown(31)["text"] == "3号窗口"  # its stored idle (closed) text
    # Found by the restart sweep (every 2 s), not the idle ping 15 s later.
    await _until(emulator, 31, lambda s: s["text"] == "3号窗口 欢迎办理")
    assert hub.hall is not None
    assert hub.hall.diagnostics()["counters"]["restarts_signalled"] == 1


async def test_selftest_through_the_running_hub_changes_nothing_shown(
    hub: Hub, emulator: BusEmulator
) -> None:
    from aiohttp import web

    from devices.selftest import EXIT_FAILURE, EXIT_OK, Outcome, run_selftest
    from qcall.api import build_app

    engine = hub.engine
    await hub.execute(lambda now: engine.open_window(now, 3, "c1"))
    await _until(emulator, 31, lambda s: s["text"] == "3号窗口 欢迎办理")
    admin = await hub.write(hub.store.create_token, Role.ADMIN, "technician")
    clerk = await hub.write(lambda: hub.store.create_token(Role.CLERK, "clerk", staff_id="c1"))
    runner = web.AppRunner(build_app(hub, manage_hub=False), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    try:
        report = await run_selftest(hub.config, hub=(url, admin))
        refused = await run_selftest(hub.config, hub=(url, clerk))
    finally:
        await runner.cleanup()
    assert report.exit_code == EXIT_OK, report.format_table()
    display = report.device("bus:counter_display@31")
    assert [c.outcome for c in display.checks] == [Outcome.PASS]
    assert display.checks[0].data["shown"] == "3号窗口 欢迎办理"
    assert report.device("bus:keypad@12").outcome is Outcome.PASS
    # What the hall shows was not touched.
    assert emulator.shown(31)["text"] == "3号窗口 欢迎办理"
    assert refused.exit_code == EXIT_FAILURE
    assert "admin" in refused.device("bus").checks[0].hint


async def test_a_pause_pressed_on_the_keypad_follows_a_finish_from_the_web(
    hub: Hub, emulator: BusEmulator
) -> None:
    engine = hub.engine
    first, _ = await _serving(hub, emulator)
    emulator.press(12, EventKind.PAUSE)
    await _until(emulator, 12, lambda s: s["lcd"].endswith("办完暂停"))
    await hub.execute(lambda now: engine.finish(now, 1, "k1", Outcome.DONE))
    await emulator.wait_until(lambda: engine.windows[1].paused, WAIT_S)
    assert engine.tickets[first.id].state == "done"
    await _until(emulator, 11, lambda s: s["text"] == "暂停服务")


async def test_five_services_of_a_prefix_fill_both_lcd_lines(
    emulator: BusEmulator, tmp_path: Path
) -> None:
    raw = _hall_config(b2="灵活就业", b3="失业登记", b4="退休审核", b5="就业困难")
    hub = await _start(emulator, tmp_path, raw)
    try:
        await _serving(hub, emulator)
        emulator.press(12, EventKind.TRANSFER, transfer=TransferTarget(service_prefix="B"))
        lcd = await _until(emulator, 12, lambda s: s["lcd"].startswith("1业务"))
        assert lcd["lcd"] == "1业务2灵活3失业\n4退休5就业"
    finally:
        await hub.stop()


async def test_a_second_master_raises_the_line_alarm_and_the_hall_is_repainted(
    hub: Hub, emulator: BusEmulator
) -> None:
    from devices.qbus.master import FOREIGN_MASTER_QUIET_S, BusMaster
    from qcall.config import Bus

    engine = hub.engine
    await hub.execute(lambda now: engine.open_window(now, 3, "c1"))
    await _until(emulator, 31, lambda s: s["text"] == "3号窗口 欢迎办理")
    intruder = BusMaster(Bus(url=emulator.url, baud=9600), {31: DeviceKind.COUNTER_DISPLAY})
    await intruder.start()
    try:
        await _until_hub(hub, lambda: "bus:line" in engine.devices, WAIT_S)
        # Two masters collide on the line: the intruder's own first IDENT may go unanswered,
        # and it re-probes the display every REPROBE_INTERVAL_S.
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                await intruder.show_text(31, "测试 TEST 8888")
                break
            except DeviceUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await intruder.stop()
    line = engine.devices["bus:line"]
    assert line["state"] == "failed"
    assert "另一个主站" in line["detail"]
    assert hub.hall is not None
    assert hub.hall.diagnostics()["foreign_master"]["episodes"] == 1
    await _until_hub(
        hub, lambda: engine.devices["bus:line"]["state"] == "ready", FOREIGN_MASTER_QUIET_S + WAIT_S
    )
    await _until(emulator, 31, lambda s: s["text"] == "3号窗口 欢迎办理")
