"""BusMaster against the bus emulator over socket:// and a pty."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest

from devices.base import DeviceState
from devices.emulators.bus import BusEmulator
from devices.qbus.frames import (
    BusEvent,
    Colour,
    Command,
    CommandRejected,
    DeviceKind,
    Effect,
    EventKind,
    Frame,
    PollAny,
    TextEncodingError,
    TransferPosition,
    TransferTarget,
)
from devices.qbus.master import BusMaster, BusTiming, kinds_from_windows
from devices.supervisor import SupervisorPolicy
from qcall.config import Bus, WindowDevices
from qcall.errors import DeviceUnavailable

# Bounded waits: generous so a loaded CI machine never fails a correct run.
WAIT_S = 5.0
FAST_BAUD = 115200
FAST_TIMING = BusTiming(reprobe_interval_s=0.05, idle_ping_interval_s=0.2, busy_retry_delay_s=0.01)
FAST_POLICY = SupervisorPolicy(backoff_initial_s=0.02, backoff_max_s=0.2, probe_interval_s=0.2)

D, K, R = DeviceKind.COUNTER_DISPLAY, DeviceKind.KEYPAD, DeviceKind.RATING_PAD
HALL = {3: D, 4: D, 5: K, 6: K, 9: R}


class Recorder:
    """Collects state changes and events; lets a test wait for a condition."""

    def __init__(self) -> None:
        self.states: list[tuple[str, DeviceState, str]] = []
        self.events: list[tuple[int, BusEvent]] = []
        self._changed = asyncio.Event()

    def on_state(self, name: str, state: DeviceState, detail: str) -> None:
        self.states.append((name, state, detail))
        self._changed.set()

    def on_event(self, address: int, event: BusEvent) -> None:
        self.events.append((address, event))
        self._changed.set()

    def state_of(self, name: str) -> DeviceState | None:
        seen = [state for who, state, _ in self.states if who == name]
        return seen[-1] if seen else None

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


class Bench:
    """An emulator and a master wired together."""

    def __init__(self, emulator: BusEmulator, master: BusMaster, recorder: Recorder) -> None:
        self.emulator = emulator
        self.master = master
        self.rec = recorder

    async def ready(self) -> None:
        names = [f"bus:{kind.role}@{address}" for address, kind in self.kinds.items()]
        await self.rec.until(lambda: all(self.rec.state_of(n) is DeviceState.READY for n in names))

    @property
    def kinds(self) -> Mapping[int, DeviceKind]:
        return {
            int(a): DeviceKind[v["kind"].upper()]
            for a, v in self.emulator.state()["devices"].items()
        }


@pytest.fixture
async def make_bench() -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[BusEmulator, BusMaster]] = []

    async def make(
        kinds: Mapping[int, DeviceKind] = HALL,
        *,
        baud: int = FAST_BAUD,
        pty: bool = False,
        master_kinds: Mapping[int, DeviceKind] | None = None,
        timing: BusTiming = FAST_TIMING,
        **bus: Any,
    ) -> Bench:
        emulator = BusEmulator(kinds, baud=baud, pty=pty)
        await emulator.start()
        recorder = Recorder()
        url = emulator.pty_path if pty else emulator.url
        assert url
        config = Bus(
            url=url,
            baud=baud,
            **{"reply_timeout_ms": 150, "retries": 2, "poll_interval_ms": 10, **bus},
        )
        master = BusMaster(
            config,
            master_kinds or kinds,
            on_event=recorder.on_event,
            on_state=recorder.on_state,
            timing=timing,
            policy=FAST_POLICY,
        )
        started.append((emulator, master))
        await master.start()
        bench = Bench(emulator, master, recorder)
        if master_kinds is None:
            await bench.ready()
        return bench

    yield make
    for emulator, master in reversed(started):
        await master.stop()
        await emulator.stop()


async def test_show_call_reaches_the_display_at_9600(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench(baud=9600, reply_timeout_ms=100)
    await bench.master.show_call(3, "A012", 3)
    shown = bench.emulator.shown(3)
    assert (shown["mode"], shown["ticket"], shown["window"]) == ("call", "A012", 3)
    assert shown["flashing"] is True
    assert shown["text"] == "请A012号\n到3号窗口"
    assert bench.emulator.shown(4)["mode"] == "idle"


async def test_a_newer_write_supersedes_a_queued_older_one(
    make_bench: Callable[..., Any],
) -> None:
    # A window opens (welcome text) and calls at once: the call must not overtake the text
    # and then be overwritten by it.
    bench: Bench = await make_bench()
    master, emulator = bench.master, bench.emulator
    sent: list[Frame] = []
    emulator.subscribe(lambda frame, _: sent.append(frame))
    welcome = master.show_text(3, "3号窗口 欢迎办理")
    line = master.show_text(3, "午休", line=1)
    call = master.show_call(3, "A012", 3)
    lcd_old = master.keypad_lcd(5, "old")
    lcd_new = master.keypad_lcd(5, "new")
    other = master.show_text(4, "4号窗口 欢迎办理")
    await asyncio.gather(welcome, line, call, lcd_old, lcd_new, other)
    shown = emulator.shown(3)
    assert (shown["mode"], shown["ticket"]) == ("call", "A012")
    assert emulator.shown(5)["lcd"] == "new"
    assert emulator.shown(4)["text"] == "4号窗口 欢迎办理"
    writes = [(f.dst, Command(f.cmd)) for f in sent if f.cmd in (0x10, 0x11, 0x21)]
    assert writes.count((3, Command.SHOW_TEXT)) == 0
    assert writes.count((5, Command.KEYPAD_LCD)) == 1
    # Settled with the result of the write that replaced them.
    assert welcome.result() is None
    assert lcd_old.result() is None


async def test_a_queued_write_to_an_offline_path_still_settles(
    make_bench: Callable[..., Any],
) -> None:
    bench: Bench = await make_bench()
    master, emulator = bench.master, bench.emulator
    emulator.fault(3, "unplug")
    older = master.show_text(3, "3号窗口 欢迎办理")
    newer = master.show_call(3, "A012", 3)
    results = await asyncio.gather(older, newer, return_exceptions=True)
    assert all(isinstance(result, DeviceUnavailable | TimeoutError) for result in results)


async def test_display_text_lcd_brightness_and_idle_text(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench()
    master, emulator = bench.master, bench.emulator
    await master.set_idle_text(4, "欢迎光临")
    await master.show_text(3, "暂停服务")
    await master.show_text(3, "午休", line=1)
    await master.brightness(3, 7)
    await master.clear(4)
    await master.keypad_lcd(5, "A012\n等候 5 人")
    assert emulator.shown(3)["lines"] == ["暂停服务", "午休"]
    assert emulator.shown(3)["brightness"] == 7
    assert emulator.shown(4)["text"] == "欢迎光临"
    assert emulator.shown(5)["lcd"] == "A012\n等候 5 人"


async def test_query_text_reads_back_the_display(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench(baud=9600, reply_timeout_ms=100)
    master, emulator = bench.master, bench.emulator
    await master.show_text(3, "测试 TEST 8888\n3号窗口", colour=Colour.GREEN)
    shown = await master.query_text(3)
    assert (shown.text, shown.effect, shown.colour) == (
        "测试 TEST 8888\n3号窗口",
        Effect.STATIC,
        Colour.GREEN,
    )
    assert shown.text == emulator.shown(3)["text"]
    assert (await master.query_text(3, line=1)).text == "3号窗口"
    await master.show_call(4, "A012", 7)
    call = await master.query_text(4)
    assert (call.text, call.effect) == ("请A012号\n到7号窗口", Effect.BLINK)
    with pytest.raises(CommandRejected) as info:
        await master.query_text(3, line=5)
    assert info.value.command == Command.QUERY_TEXT
    with pytest.raises(ValueError, match="keypad"):
        await master.query_text(5)


async def test_gb2312_refusal_sends_nothing(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench()
    received: list[Frame] = []
    bench.emulator.subscribe(lambda frame, _: received.append(frame))
    sent_before = bench.master.diagnostics()["counters"]["frames_tx"]
    with pytest.raises(TextEncodingError) as info:
        bench.master.show_text(3, "请张喆到3号窗口")
    assert "喆" in info.value.message_zh
    assert bench.master.diagnostics()["counters"]["frames_tx"] == sent_before
    assert not [frame for frame in received if frame.cmd == Command.SHOW_TEXT]


async def test_wrong_kind_or_address_is_refused(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench()
    with pytest.raises(ValueError, match="keypad"):
        bench.master.show_call(5, "A012", 3)
    with pytest.raises(ValueError, match="100"):
        bench.master.show_call(100, "A012", 3)


async def test_key_presses_are_delivered_in_order(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench()
    emulator, rec = bench.emulator, bench.rec
    emulator.press(5, EventKind.NEXT)
    emulator.press(5, EventKind.CALL_SPECIFIC, ticket="A012")
    emulator.press(5, EventKind.LOGIN, staff="s01", pin="1234")
    emulator.press(
        5,
        EventKind.TRANSFER,
        transfer=TransferTarget(service_prefix="B", position=TransferPosition.FIRST),
    )
    emulator.press(5, EventKind.LOGOUT)
    emulator.press(6, EventKind.RECALL)
    await rec.until(lambda: len(rec.events) == 6)
    from_5 = [event for address, event in rec.events if address == 5]
    assert [event.kind for event in from_5] == [
        EventKind.NEXT,
        EventKind.CALL_SPECIFIC,
        EventKind.LOGIN,
        EventKind.TRANSFER,
        EventKind.LOGOUT,
    ]
    assert from_5[1].ticket == "A012"
    assert (from_5[2].staff, from_5[2].pin) == ("s01", "1234")
    assert from_5[3].transfer == TransferTarget(service_prefix="B", position=TransferPosition.FIRST)
    await emulator.wait_until(lambda: emulator.shown(5)["queued"] == 0, WAIT_S)


@pytest.mark.parametrize("group_poll", [True, False])
@pytest.mark.parametrize(
    ("fault", "count", "counter"),
    [
        ("no_reply", 1, "retries"),
        ("no_reply", 2, "retries"),
        ("bad_crc", 2, "crc_errors"),
        ("truncate", 1, "retries"),
        ("late_reply", 1, "stray_frames"),
        ("noise", 3, "discarded_bytes"),
    ],
)
async def test_press_delivered_exactly_once_despite_faults(
    make_bench: Callable[..., Any], fault: str, count: int, counter: str, group_poll: bool
) -> None:
    bench: Bench = await make_bench(group_poll=group_poll)
    emulator, rec = bench.emulator, bench.rec
    emulator.fault(5, fault, count, late_s=0.25)
    emulator.press(5, EventKind.NEXT)
    emulator.press(5, EventKind.HOLD)
    await rec.until(lambda: len(rec.events) == 2)
    # Until the device dropped both events, the master saw every retry and re-poll.
    await emulator.wait_until(lambda: emulator.shown(5)["queued"] == 0, WAIT_S)
    emulator.press(5, EventKind.RESUME)
    await rec.until(lambda: len(rec.events) == 3)
    assert [(a, e.seq, e.kind) for a, e in rec.events] == [
        (5, 1, EventKind.NEXT),
        (5, 2, EventKind.HOLD),
        (5, 3, EventKind.RESUME),
    ]
    assert rec.state_of("bus:keypad@5") is DeviceState.READY
    assert bench.master.diagnostics()["counters"][counter] >= count


@pytest.mark.parametrize("group_poll", [True, False])
async def test_events_survive_the_keypad_going_offline(
    make_bench: Callable[..., Any], group_poll: bool
) -> None:
    bench: Bench = await make_bench(group_poll=group_poll)
    emulator, rec = bench.emulator, bench.rec
    emulator.fault(5, "unplug")
    await rec.until(lambda: rec.state_of("bus:keypad@5") is DeviceState.OFFLINE)
    emulator.press(5, EventKind.NEXT)
    emulator.press(5, EventKind.NO_SHOW)
    emulator.fault(5, "plug")
    await rec.until(lambda: len(rec.events) == 2)
    await emulator.wait_until(lambda: emulator.shown(5)["queued"] == 0, WAIT_S)
    assert [e.kind for _, e in rec.events] == [EventKind.NEXT, EventKind.NO_SHOW]
    assert rec.state_of("bus:keypad@5") is DeviceState.READY


async def test_keypad_power_cycle_restarts_event_numbering(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench()
    emulator, rec = bench.emulator, bench.rec
    for _ in range(3):
        emulator.press(5, EventKind.NEXT)
    await rec.until(lambda: len(rec.events) == 3)
    emulator.fault(5, "power_cycle")
    emulator.press(5, EventKind.RECALL)
    await rec.until(lambda: len(rec.events) == 4)
    assert rec.events[-1][1].kind is EventKind.RECALL
    assert rec.events[-1][1].seq == 1


async def test_display_goes_offline_and_recovers_with_its_content(
    make_bench: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    bench: Bench = await make_bench()
    master, emulator, rec = bench.master, bench.emulator, bench.rec
    await master.show_call(3, "A001", 3)
    caplog.set_level(logging.INFO, logger="devices.qbus.master")
    emulator.fault(3, "unplug")
    await rec.until(lambda: rec.state_of("bus:counter_display@3") is DeviceState.OFFLINE)
    assert master.device_state(3) is DeviceState.OFFLINE
    with pytest.raises(DeviceUnavailable, match="offline"):
        await master.show_call(3, "A002", 3)
    emulator.fault(3, "power_cycle")
    assert emulator.shown(3)["mode"] == "idle"
    emulator.fault(3, "plug")
    await rec.until(lambda: rec.state_of("bus:counter_display@3") is DeviceState.READY)
    await emulator.wait_until(lambda: emulator.shown(3)["ticket"] == "A002", WAIT_S)
    assert emulator.shown(3)["flashing"] is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "@3" in r.message]
    infos = [
        r for r in caplog.records if r.levelno == logging.INFO and "answers again" in r.message
    ]
    assert len(warnings) == 1
    assert len(infos) == 1
    diagnostics = master.diagnostics()
    assert diagnostics["counters"]["timeouts"] >= 3
    assert diagnostics["devices"]["3"]["state"] == "ready"


async def test_display_power_cycle_is_noticed_and_content_restored(
    make_bench: Callable[..., Any],
) -> None:
    bench: Bench = await make_bench()
    master, emulator = bench.master, bench.emulator
    await master.show_text(4, "暂停服务")
    await master.brightness(4, 3)
    emulator.fault(4, "power_cycle")
    await emulator.wait_until(
        lambda: emulator.shown(4)["text"] == "暂停服务" and emulator.shown(4)["brightness"] == 3,
        WAIT_S,
    )


@pytest.mark.parametrize("group_poll", [True, False])
async def test_a_restart_is_found_by_the_sweep_long_before_the_idle_ping(
    make_bench: Callable[..., Any], group_poll: bool
) -> None:
    # Idle pings an hour apart: only the restart sweep (POLL_ANY) can find these restarts.
    timing = BusTiming(
        reprobe_interval_s=0.05, idle_ping_interval_s=3600, restart_sweep_interval_s=0.1
    )
    bench: Bench = await make_bench(timing=timing, group_poll=group_poll)
    master, emulator = bench.master, bench.emulator
    await master.show_text(4, "4号窗口 欢迎办理")
    await master.keypad_lcd(5, "当前---- 等候0")
    for address in (4, 5):
        emulator.fault(address, "power_cycle")
    assert emulator.shown(4)["mode"] == "idle"
    await emulator.wait_until(lambda: emulator.shown(4)["text"] == "4号窗口 欢迎办理", WAIT_S)
    await emulator.wait_until(lambda: emulator.shown(5)["lcd"] == "当前---- 等候0", WAIT_S)
    counters = master.diagnostics()["counters"]
    assert counters["restarts_signalled"] == 1
    assert counters["restart_sweeps"] >= 1
    # Nobody else answers a sweep: a device that answered since its restart stays silent.
    swept = asyncio.Event()
    sweeps: list[Frame] = []

    def on_frame(frame: Frame, _: float) -> None:
        if frame.cmd == Command.POLL_ANY and 4 in PollAny.from_payload(frame.payload).addresses:
            sweeps.append(frame)
            if len(sweeps) >= 3:
                swept.set()

    emulator.subscribe(on_frame)
    async with asyncio.timeout(WAIT_S):
        await swept.wait()
    assert master.diagnostics()["counters"]["restarts_signalled"] == 1


async def test_a_call_does_not_wait_for_a_restart_sweep_to_finish_listening(
    make_bench: Callable[..., Any],
) -> None:
    # Sweeps whose listening window would last half a minute: only cutting it short for the
    # call lets the call through within the bounded wait.
    timing = BusTiming(
        reprobe_interval_s=0.05,
        idle_ping_interval_s=3600,
        restart_sweep_interval_s=0.01,
        attention_margin_s=30.0,
    )
    bench: Bench = await make_bench({3: D, 4: D}, timing=timing)
    master, emulator = bench.master, bench.emulator
    swept = asyncio.Event()
    emulator.subscribe(lambda frame, _: swept.set() if frame.cmd == Command.POLL_ANY else None)
    async with asyncio.timeout(WAIT_S):
        await swept.wait()
    async with asyncio.timeout(WAIT_S):
        await master.show_call(3, "A012", 3)
    assert emulator.shown(3)["ticket"] == "A012"
    assert master.diagnostics()["counters"]["sweeps_cut_short"] >= 1


async def test_a_second_master_on_the_line_raises_an_alarm_and_the_devices_are_repainted(
    make_bench: Callable[..., Any],
) -> None:
    timing = BusTiming(
        reprobe_interval_s=0.05, idle_ping_interval_s=0.2, foreign_master_quiet_s=0.5
    )
    bench: Bench = await make_bench(timing=timing)
    master, emulator, rec = bench.master, bench.emulator, bench.rec
    await master.show_call(3, "A001", 3, flash=0)
    await master.keypad_lcd(5, "当前A001 等候0")
    # A second master (a self-test, another hub) opens the same line and writes.
    other_rec = Recorder()
    other = BusMaster(
        Bus(url=emulator.url, baud=FAST_BAUD, reply_timeout_ms=150, poll_interval_ms=10),
        {3: D, 5: K},
        name="other",
        on_state=other_rec.on_state,
        timing=FAST_TIMING,
        policy=FAST_POLICY,
    )
    await other.start()
    try:
        await other_rec.until(lambda: other_rec.state_of("other") is DeviceState.READY)
        await other.ident(3)
        await other.show_text(3, "测试 TEST 8888")
        await other.keypad_lcd(5, "请按任意键")
        await rec.until(lambda: rec.state_of("bus:line") is DeviceState.FAILED)
        detail = next(d for n, s, d in rec.states if n == "bus:line" and s is DeviceState.FAILED)
        assert "another master" in detail
        assert "另一个主站" in detail
        diagnostics = master.diagnostics()
        assert diagnostics["counters"]["foreign_frames"] >= 1
        assert diagnostics["foreign_master"]["now"] is True
    finally:
        await other.stop()
    # Once the other master is silent, the alarm clears and every device is repainted.
    await rec.until(lambda: rec.state_of("bus:line") is DeviceState.READY)
    await emulator.wait_until(lambda: emulator.shown(3)["ticket"] == "A001", WAIT_S)
    await emulator.wait_until(lambda: emulator.shown(5)["lcd"] == "当前A001 等候0", WAIT_S)
    assert master.diagnostics()["foreign_master"]["episodes"] == 1


async def test_an_echoing_adapter_is_not_a_second_master(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench()
    protocol = bench.master._protocol
    assert protocol is not None
    sent: list[Frame] = []
    bench.emulator.subscribe(lambda frame, _: sent.append(frame))
    await bench.master.show_call(3, "A001", 3)
    # The adapter gives our own frame back, as echoing RS-485 adapters do.
    protocol.data_received(sent[-1].to_bytes())
    counters = bench.master.diagnostics()["counters"]
    assert counters["echo_frames"] == 1
    assert counters["foreign_frames"] == 0
    assert bench.rec.state_of("bus:line") is None


async def test_busy_device_is_retried_with_a_new_seq(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench()
    bench.emulator.fault(3, "busy", 2)
    await bench.master.show_call(3, "A003", 1)
    assert bench.emulator.shown(3)["ticket"] == "A003"
    assert bench.master.diagnostics()["counters"]["busy"] == 2


async def test_rating_and_rating_timeout(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench()
    master, emulator, rec = bench.master, bench.emulator, bench.rec
    stream = master.events()
    await master.rating_start(9, "A012", 30)
    assert emulator.shown(9)["session"] == {"ticket": "A012", "timeout_s": 30}
    emulator.rating(9, 4)
    async with asyncio.timeout(WAIT_S):
        item = await anext(stream)
    assert (item.address, item.kind, item.event.kind) == (9, R, EventKind.RATING)
    assert (item.event.score, item.event.ticket) == (4, "A012")
    await master.rating_start(9, "A013", 1)
    async with asyncio.timeout(WAIT_S):
        item = await anext(stream)
    assert (item.event.kind, item.event.ticket) == (EventKind.RATING_TIMEOUT, "A013")
    stream.close()
    assert len(rec.events) == 2


@pytest.mark.parametrize("group_poll", [True, False])
async def test_eight_keypads(make_bench: Callable[..., Any], group_poll: bool) -> None:
    kinds = dict.fromkeys(range(1, 9), K)
    bench: Bench = await make_bench(kinds, group_poll=group_poll)
    for address in kinds:
        bench.emulator.press(address, EventKind.NEXT)
    await bench.rec.until(lambda: len(bench.rec.events) == 8)
    assert sorted(address for address, _ in bench.rec.events) == list(kinds)


# --- group polling (POLL_ANY) ------------------------------------------------------------------


def frames_seen(bench: Bench) -> list[Frame]:
    seen: list[Frame] = []
    bench.emulator.subscribe(lambda frame, _: seen.append(frame))
    return seen


async def test_group_poll_asks_every_keypad_at_once(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench(baud=9600, reply_timeout_ms=100)
    seen = frames_seen(bench)
    await asyncio.sleep(0.5)
    polls = [f for f in seen if f.cmd == Command.POLL_ANY]
    assert polls
    assert all(f.dst == 0 and PollAny.from_payload(f.payload).addresses == (5, 6, 9) for f in polls)
    # Nobody pressed anything: no one-by-one polls, but idle pings keep liveness known.
    assert not [f for f in seen if f.cmd == Command.POLL_EVENTS]
    assert {f.dst for f in seen if f.cmd == Command.PING} >= {5, 6, 9}
    bench.emulator.press(6, EventKind.NEXT)
    await bench.rec.until(lambda: len(bench.rec.events) == 1)
    await bench.emulator.wait_until(lambda: bench.emulator.shown(6)["queued"] == 0, WAIT_S)
    assert {f.dst for f in seen if f.cmd == Command.POLL_EVENTS} == {6}
    counters = bench.master.diagnostics()["counters"]
    assert counters["poll_any_cycles"] >= len(polls)
    assert counters["attention_bytes"] >= 1


async def test_group_poll_lost_poll_reply_delivers_once(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench(baud=9600, reply_timeout_ms=100)
    emulator, rec = bench.emulator, bench.rec
    lost: list[Frame] = []

    def lose_first_poll(frame: Frame, _: float) -> None:
        if frame.cmd == Command.POLL_EVENTS and frame.dst == 5 and not lost:
            lost.append(frame)
            emulator.fault(5, "no_reply")  # this very request's reply is lost

    emulator.subscribe(lose_first_poll)
    emulator.press(5, EventKind.NEXT)
    emulator.press(5, EventKind.CALL_SPECIFIC, ticket="A012")
    await rec.until(lambda: len(rec.events) == 2)
    await emulator.wait_until(lambda: emulator.shown(5)["queued"] == 0, WAIT_S)
    emulator.press(5, EventKind.RECALL)
    await rec.until(lambda: len(rec.events) == 3)
    await emulator.wait_until(lambda: emulator.shown(5)["queued"] == 0, WAIT_S)
    assert lost
    assert [(a, e.seq, e.kind) for a, e in rec.events] == [
        (5, 1, EventKind.NEXT),
        (5, 2, EventKind.CALL_SPECIFIC),
        (5, 3, EventKind.RECALL),
    ]
    counters = bench.master.diagnostics()["counters"]
    assert counters["retries"] >= 1
    assert counters["duplicate_events"] == 0
    assert rec.state_of("bus:keypad@5") is DeviceState.READY


async def test_group_poll_lost_attention_byte_is_signalled_again(
    make_bench: Callable[..., Any],
) -> None:
    bench: Bench = await make_bench()
    emulator, rec = bench.emulator, bench.rec
    emulator.fault(5, "no_reply")  # silent in POLL_ANY until a reply has been lost
    emulator.press(5, EventKind.HOLD)
    await rec.until(lambda: len(rec.events) == 1)
    await emulator.wait_until(lambda: emulator.shown(5)["queued"] == 0, WAIT_S)
    assert [(a, e.kind) for a, e in rec.events] == [(5, EventKind.HOLD)]


async def test_group_poll_eight_keypads_pressed_at_once(make_bench: Callable[..., Any]) -> None:
    kinds = dict.fromkeys(range(1, 9), K)
    bench: Bench = await make_bench(kinds)
    emulator, rec = bench.emulator, bench.rec
    sequence = [EventKind.NEXT, EventKind.RECALL, EventKind.HOLD, EventKind.RESUME]
    presses = {1: sequence, 3: sequence * 2, 4: sequence[:1], 8: sequence[::-1]}
    for round_ in range(8):
        for address, kinds_pressed in presses.items():
            if round_ < len(kinds_pressed):
                emulator.press(address, kinds_pressed[round_])
    total = sum(len(kinds_pressed) for kinds_pressed in presses.values())
    await rec.until(lambda: len(rec.events) == total)
    for address, kinds_pressed in presses.items():
        mine = [event for a, event in rec.events if a == address]
        assert [event.kind for event in mine] == kinds_pressed
        assert [event.seq for event in mine] == list(range(1, len(kinds_pressed) + 1))
    await emulator.wait_until(lambda: all(emulator.shown(a)["queued"] == 0 for a in kinds), WAIT_S)
    assert bench.master.diagnostics()["counters"]["duplicate_events"] == 0


async def test_group_poll_silent_keypad_goes_offline_and_recovers(
    make_bench: Callable[..., Any],
) -> None:
    bench: Bench = await make_bench({3: D, 5: K, 6: K})
    emulator, rec = bench.emulator, bench.rec
    seen = frames_seen(bench)
    emulator.fault(6, "unplug")
    await rec.until(lambda: rec.state_of("bus:keypad@6") is DeviceState.OFFLINE)
    seen.clear()
    await asyncio.sleep(0.1)
    listed = {
        a
        for f in seen
        if f.cmd == Command.POLL_ANY
        for a in PollAny.from_payload(f.payload).addresses
    }
    assert listed == {5}
    emulator.press(6, EventKind.NEXT)
    emulator.press(5, EventKind.NEXT)
    await rec.until(lambda: len(rec.events) == 1)
    emulator.fault(6, "plug")
    await rec.until(lambda: rec.state_of("bus:keypad@6") is DeviceState.READY)
    await rec.until(lambda: len(rec.events) == 2)
    assert sorted(a for a, _ in rec.events) == [5, 6]


async def test_without_group_poll_keypads_are_polled_one_by_one(
    make_bench: Callable[..., Any],
) -> None:
    bench: Bench = await make_bench(group_poll=False)
    seen = frames_seen(bench)
    await asyncio.sleep(0.3)
    assert not [f for f in seen if f.cmd == Command.POLL_ANY]
    assert {f.dst for f in seen if f.cmd == Command.POLL_EVENTS} == {5, 6, 9}
    bench.emulator.press(5, EventKind.NEXT)
    await bench.rec.until(lambda: len(bench.rec.events) == 1)
    counters = bench.master.diagnostics()["counters"]
    assert (counters["poll_any_cycles"], counters["attention_bytes"]) == (0, 0)


async def test_over_a_pty(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench({3: D, 5: K}, baud=19200, pty=True)
    await bench.master.show_call(3, "B101", 2)
    assert bench.emulator.shown(3)["ticket"] == "B101"
    bench.emulator.press(5, EventKind.NEXT)
    await bench.rec.until(lambda: len(bench.rec.events) == 1)
    ident = await bench.master.ident(5)
    assert (ident.kind, ident.model) == (K, "QB-K16")


async def test_port_loss_is_supervised(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench({3: D})
    master, rec = bench.master, bench.rec
    port = int(bench.emulator.url.rsplit(":", 1)[1])
    await bench.emulator.stop()
    await rec.until(lambda: rec.state_of("bus") is DeviceState.FAILED)
    assert rec.state_of("bus:counter_display@3") is DeviceState.DISCONNECTED
    with pytest.raises(DeviceUnavailable):
        await master.show_call(3, "A009", 1)
    revived = BusEmulator({3: D}, baud=FAST_BAUD, port=port)
    await revived.start()
    try:
        await rec.until(lambda: rec.state_of("bus:counter_display@3") is DeviceState.READY)
        assert rec.state_of("bus") is DeviceState.READY
        # The call made while the port was down is shown once the display is reachable.
        await revived.wait_until(lambda: revived.shown(3)["ticket"] == "A009", WAIT_S)
        assert master.diagnostics()["reconnects"] == 1
    finally:
        await master.stop()
        await revived.stop()


async def test_probe_and_diagnostics(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench({3: D, 5: K})
    results = await bench.master.probe()
    assert [(r.name, r.ok) for r in results] == [
        ("bus", True),
        ("bus:counter_display@3", True),
        ("bus:keypad@5", True),
    ]
    bench.emulator.fault(5, "unplug")
    results = await bench.master.probe()
    assert not results[2].ok
    assert "A/B" in results[2].detail
    diagnostics = bench.master.diagnostics()
    assert diagnostics["state"] == "ready"
    assert set(diagnostics["counters"]) >= {
        "frames_tx",
        "frames_rx",
        "crc_errors",
        "timeouts",
        "retries",
        "reconnects",
    }
    assert diagnostics["devices"]["3"]["model"] == "QB-D16"


async def test_kind_mismatch_fails_the_probe(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench({3: D}, master_kinds={3: K})
    await bench.rec.until(lambda: bench.rec.state_of("bus:keypad@3") is DeviceState.READY)
    results = await bench.master.probe()
    assert not results[1].ok
    assert "counter_display" in results[1].detail


async def test_commissioning_with_set_address(make_bench: Callable[..., Any]) -> None:
    bench: Bench = await make_bench({3: D}, master_kinds={3: D, 12: D})
    rec = bench.rec
    await rec.until(lambda: rec.state_of("bus:counter_display@12") is DeviceState.OFFLINE)
    serial = bench.emulator.shown(3)["serial"]
    await bench.master.set_address(serial, 12)
    await rec.until(lambda: rec.state_of("bus:counter_display@12") is DeviceState.READY)
    ident = await bench.master.ident(12)
    assert ident.serial == serial


def test_kinds_from_windows() -> None:
    windows = [
        WindowDevices(counter_display=1, keypad=2, rating_pad=3),
        WindowDevices(counter_display=4),
    ]
    assert kinds_from_windows(windows) == {1: D, 2: K, 3: R, 4: D}


def test_bad_url_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="socket://"):
        BusMaster(Bus(url="socket://nohost"), {})
