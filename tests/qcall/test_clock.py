"""Time only moves forward: a clock stepped back across midnight never reopens a closed day,
numbers and ticket ids never repeat, event times never go backwards, jumps are shown."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from qcall.clock import CLOCK_JUMP_S, ForwardClock
from qcall.hub import Hub
from tests.common import SHANGHAI, Clock, make_config
from tests.qcall.test_engine import new_engine
from tests.qcall.test_hub import db_rows, run

EVENING = dt.datetime(2026, 11, 26, 23, 58, 0, tzinfo=SHANGHAI)


class Ticking:
    """A monotonic clock the test moves by hand, alongside the wall clock."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def test_forward_clock_stands_still_while_the_wall_clock_is_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wall = Clock(EVENING)
    mono = Ticking()
    clock = ForwardClock(wall, monotonic=mono)
    assert clock() == EVENING
    wall.advance(seconds=30)
    mono.value += 30
    assert clock() == EVENING + dt.timedelta(seconds=30)
    assert not clock.jumps  # time that passed is no jump
    caplog.set_level(logging.WARNING)
    wall.advance(hours=-2)  # NTP steps a fast clock back
    mono.value += 1
    assert clock() == EVENING + dt.timedelta(seconds=30)
    [jump] = clock.jumps
    assert jump.seconds == pytest.approx(-2 * 3600 - 1)
    assert any("jumped by -7201 s" in r.getMessage() for r in caplog.records)
    assert clock.diagnostics()["wall_behind_s"] == 2 * 3600
    wall.advance(hours=3)
    mono.value += 10
    assert clock() == wall.now  # the wall clock is ahead again: time moves on
    assert clock.diagnostics()["wall_behind_s"] == 0
    assert len(clock.jumps) == 2  # the step forward is a jump too


def test_forward_clock_starts_after_the_log() -> None:
    wall = Clock(EVENING - dt.timedelta(days=3))  # a box booting with a stale clock
    clock = ForwardClock(wall, monotonic=Ticking())
    clock.start_after(EVENING)
    assert clock() == EVENING
    [jump] = clock.jumps
    assert jump.seconds == pytest.approx(-3 * 86400)
    small = ForwardClock(Clock(EVENING - dt.timedelta(seconds=CLOCK_JUMP_S / 2)))
    small.start_after(EVENING)
    assert not small.jumps  # a few seconds of skew are not worth a warning
    assert small() == EVENING


def test_the_engine_never_reopens_a_closed_day() -> None:
    engine = new_engine()
    engine.tick(EVENING)
    engine.tick(EVENING + dt.timedelta(minutes=3))  # the 27th
    engine.drain()
    engine.tick(EVENING)  # the 26th again
    assert engine.drain() == []
    assert engine.day == dt.date(2026, 11, 27)


async def test_a_clock_stepped_back_across_midnight_reopens_nothing(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    clock = Clock(EVENING)
    hub = Hub(make_config(), db, clock=clock)
    await hub.start()
    e = hub.engine
    try:
        await run(hub, e.open_window, 1, "c1")
        for _ in range(3):
            await run(hub, e.issue, "social")  # A001-A003 on the 26th
        clock.advance(minutes=2, seconds=30)  # 00:00:30 on the 27th
        await run(hub, e.open_window, 1, "c1")  # the day rolls over
        for _ in range(3):
            await run(hub, e.issue, "social")  # A001-A003 on the 27th
        clock.advance(minutes=-1)  # NTP steps the clock back to 23:59:30 on the 26th
        late = await run(hub, e.issue, "social")
        assert late.number == "A004"
        assert late.id == "20261127-A004"
        assert late.issued_at == EVENING + dt.timedelta(minutes=2, seconds=30)
        assert hub.diagnostics()["clock"]["wall_behind_s"] == 60
        clock.advance(minutes=2)  # the clock is right again: 00:01:30 on the 27th
        assert (await run(hub, e.issue, "social")).number == "A005"
    finally:
        await hub.stop()
    rows = db_rows(db, "SELECT type, at, data FROM events ORDER BY seq")
    opened = [json.loads(r[2])["day"] for r in rows if r[0] == "day.opened"]
    assert opened == ["2026-11-26", "2026-11-27"]
    issued = [json.loads(r[2])["id"] for r in rows if r[0] == "ticket.issued"]
    assert len(issued) == len(set(issued)) == 8
    times = [dt.datetime.fromisoformat(r[1]) for r in rows]
    assert times == sorted(times)  # the log never goes back in time


async def test_a_restart_on_a_stale_clock_keeps_the_day(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    clock = Clock(EVENING + dt.timedelta(hours=10))  # 09:58 on the 27th
    hub = Hub(make_config(), db, clock=clock)
    await hub.start()
    try:
        await run(hub, hub.engine.open_window, 1, "c1")
        assert (await run(hub, hub.engine.issue, "social")).number == "A001"
    finally:
        await hub.stop()
    clock.now = EVENING - dt.timedelta(days=2)  # boots with the clock two days behind
    again = Hub(make_config(), db, clock=clock)
    await again.start()
    try:
        assert again.engine.day == dt.date(2026, 11, 27)
        ticket = await run(again, again.engine.issue, "social")
        assert ticket.number == "A002"
        assert ticket.id == "20261127-A002"
        [jump] = again.diagnostics()["clock"]["jumps"]
        assert jump["seconds"] < -2 * 86400
    finally:
        await again.stop()


def _unit(name: str) -> dict[str, list[str]]:
    """The settings of a systemd unit file (key → values, in order)."""
    settings: dict[str, list[str]] = {}
    root = Path(__file__).resolve().parents[2]
    for line in (root / "systemd" / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).extend(value.split())
    return settings


def test_the_hub_unit_waits_for_the_clock_and_does_not_loop_on_a_damaged_database() -> None:
    from qcall.__main__ import EXIT_CONFIG, EXIT_CORRUPT

    unit = _unit("qcall-hub.service")
    assert "time-sync.target" in unit["After"]
    assert "time-sync.target" in unit["Wants"]
    assert unit["RestartPreventExitStatus"] == [str(EXIT_CONFIG), str(EXIT_CORRUPT)]
