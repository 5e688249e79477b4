"""``qcall simulate``: simulated days on a real hub (real SQLite log), then the log is audited.

The soak test runs two consecutive days with ``faults`` (a clean hub restart in the morning, a
SIGKILL of the hub's process in the afternoon, then the device fault phase: printer paper end,
a lobby screen disconnect, a silent, noisy and unplugged keypad) and checks what the issue
asks: every acknowledged ticket is in the log, numbers never repeat within a day, every device
came back online, the event log replays gap-free into a new hub (and into the lobby screen
after its disconnect), and the report's figures match the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import pytest

from qcall.cli_simulate import fault_summary
from qcall.config import CenterConfig, load_config
from qcall.events import EventType
from qcall.hub import Hub
from qcall.model import WindowType
from qcall.simulate import (
    HOURLY_PROFILE,
    KILL_AT,
    DayRun,
    SimClock,
    _Day,
    arrivals,
    pooled_hall,
    read_report,
    simulate_days,
    staffing_counts,
)
from qcall.simulate_faults import DeviceFault
from qcall.store import Store
from tests.common import standalone_demo_config

ROOT: Final = Path(__file__).resolve().parents[2]
# The fault phase's devices (the hub's names without "bus:").
DEVICES: Final = ("counter_display@11", "keypad@12", "rating_pad@13")
# The fault phase's kiosk printer and lobby screen, as the hub names them.
PRINTER: Final = "kiosk:sim-kiosk/printer"
SCREEN: Final = "screen:sim-lobby"
# Weekdays in the demo calendar (a Tuesday and a Wednesday).
DAY: Final = dt.date(2026, 12, 1)
# One simulated day is a few seconds here; the bound only catches a hung simulation.
CLI_TIMEOUT_S: Final = 300.0
# A hub start (database creation, migration) is about a second; the bound catches a hang.
START_TIMEOUT_S: Final = 30.0


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> CenterConfig:
    return load_config(standalone_demo_config(tmp_path_factory.mktemp("simcfg")))


def test_pooled_hall_keeps_dedicated_and_reply_windows(config: CenterConfig) -> None:
    hall = pooled_hall(config, 9)
    pooled = [w for w in hall.windows if w.type is WindowType.COMPREHENSIVE]
    assert len(pooled) == 9
    others = [w.number for w in config.windows if w.type is not WindowType.COMPREHENSIVE]
    assert [w.number for w in hall.windows if w.type is not WindowType.COMPREHENSIVE] == others
    numbers = [w.number for w in hall.windows]
    assert len(set(numbers)) == len(numbers)
    configured = {
        r.id for w in config.windows if w.type is WindowType.COMPREHENSIVE for r in w.services
    }
    assert all({r.id for r in w.services} == configured for w in pooled)
    assert hall.devices.bus is None
    with pytest.raises(ValueError, match="at least 1"):
        pooled_hall(config, 0)


def test_arrivals_follow_the_profile_and_the_seed(config: CenterConfig) -> None:
    residents = arrivals(config, DAY, 7)
    assert residents == arrivals(config, DAY, 7)
    assert residents != arrivals(config, DAY, 8)
    # The same residents whatever the staffing.
    assert residents == arrivals(config, DAY, 7, pooled_hall(config, 3))
    by_hour = Counter(a.at.hour for a in residents)
    assert set(by_hour) <= set(HOURLY_PROFILE)
    assert by_hour[9] > by_hour[12] < by_hour[14]  # morning peak, lunch dip
    assert all(a.at.date() == DAY for a in residents)
    assert [a.at for a in residents] == sorted(a.at for a in residents)


def test_sim_clock_only_moves_forward() -> None:
    start = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)
    clock = SimClock(start)
    clock.advance_to(start + dt.timedelta(minutes=5))
    clock.advance_to(start)
    assert clock() == start + dt.timedelta(minutes=5)
    assert clock.monotonic() == 300.0


def test_speed_paces_the_day(config: CenterConfig, tmp_path: Path) -> None:
    # At 900x the simulated clock can be at most 900 times the wall time past the opening
    # (unpaced, this machine runs a day at thousands of times real time). A one-sided bound:
    # the test never waits on how fast the machine is.
    speed = 900.0
    hall = pooled_hall(config, 6)
    day = _Day(hall, tmp_path / "paced.db", DAY, 6, 3, faults=False, speed=speed)

    async def run() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(day.simulate(arrivals(config, DAY, 3, hall), [], []))
        async with asyncio.timeout(START_TIMEOUT_S):
            while day._paced is None:  # noqa: ASYNC110 - polls the simulation's own state
                await asyncio.sleep(0.05)
        started, sim_started = loop.time(), day.clock.now
        await asyncio.sleep(1.0)
        walked = loop.time() - started
        advanced = (day.clock.now - sim_started).total_seconds()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return walked, advanced

    walked, advanced = asyncio.run(run())
    assert 0 < advanced <= speed * (walked + 0.25)


def test_staffing_counts() -> None:
    assert staffing_counts(6) == [4, 6, 8]
    assert staffing_counts(1) == [1, 3]


def test_soak_two_days_with_faults(config: CenterConfig, tmp_path: Path) -> None:
    db = tmp_path / "soak.db"
    days = [DAY, DAY + dt.timedelta(days=1)]
    started = time.perf_counter()
    runs = asyncio.run(simulate_days(config, db, days, windows=6, seed=11, faults=True))
    assert [r.day for r in runs] == days
    wall = time.perf_counter() - started
    print(f"soak: 2 days, {wall:.1f} s")
    # Each day: a clean hub restart in the morning and a SIGKILL of the hub's process in the
    # afternoon, after which a new process resumed the day on the same database.
    assert all(r.restarts == 1 and r.kills == 1 for r in runs)
    assert all(r.speedup > 1 for r in runs)

    store = Store(db)
    store.open_reader()
    try:
        events = list(store.iter_events())
        per_day = {day: list(store.day_events(day)) for day in days}
    finally:
        store.close()
    # The log is gap-free from seq 1.
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for run in runs:
        assert run.killed_at is not None
        assert run.killed_at.astimezone(ZoneInfo(config.center.timezone)).time() >= KILL_AT
        before = [t for t in run.issued if t.issued_at < run.killed_at]
        after = [t for t in run.issued if t.issued_at > run.killed_at]
        print(f"{run.day}: {len(before)} tickets acknowledged before the kill, {len(after)} after")
        assert before
        assert after
        # The request under way at the kill was committed but not answered; the resident
        # asked again with the same Idempotency-Key and holds that one ticket.
        keyed = [
            e
            for e in per_day[run.day]
            if e.type is EventType.TICKET_ISSUED and e.data.get("idempotency_key") == run.in_flight
        ]
        assert run.in_flight is not None
        assert len(keyed) == 1
        assert keyed[0].data["id"] in {t.id for t in run.issued}
        assert keyed[0].at == run.killed_at
        # The device fault phase: each fault took its device offline, clearing it brought it
        # back, and every device ended ready, as the log says too.
        print(f"{run.day}: device faults {run.device_faults}")
        faults = {f.fault: f for f in run.device_faults}
        assert list(faults) == ["paper_end", "no_reply", "noise", "unplug", "disconnect"]
        # A silent or unplugged keypad goes offline; noise may be ridden out by retries.
        offline = [k for k in faults if k != "noise"]
        assert all(faults[k].went_offline for k in offline), run.device_faults
        assert all(f.came_back for f in run.device_faults), run.device_faults
        assert run.devices_ready is True
        # The kiosk saw the paper end in the printer's status and the hub was told.
        assert faults["paper_end"].device == PRINTER
        assert "缺纸" in faults["paper_end"].detail
        # The lobby screen replayed what happened while it was away, gap-free.
        assert faults["disconnect"].device == SCREEN
        screen = faults["disconnect"]
        assert screen.gap_free is True
        assert screen.replayed > 0
        assert screen.after_seq is not None
        assert screen.last_seq == screen.after_seq + screen.replayed
        states: dict[str, list[str]] = {}
        for e in per_day[run.day]:
            if e.type is EventType.DEVICE_STATE:
                states.setdefault(e.data["device"], []).append(e.data["state"])
        # The line itself ("bus"), each device on it, the kiosk's printer and the screen.
        assert set(states) == {"bus", *(f"bus:{r}" for r in DEVICES), PRINTER, SCREEN}
        # Ready when the phase ended (stopping its hub disconnects the line last).
        bus = [seen for device, seen in states.items() if device.startswith("bus")]
        assert all(seen[-2:] == ["ready", "disconnected"] for seen in bus)
        keypad = states[faults["no_reply"].device]
        assert list(itertools.pairwise(keypad)).count(("offline", "ready")) >= 2
        # The printer and the screen: offline, then ready (the first day starts them ready).
        for device in (PRINTER, SCREEN):
            assert ("offline", "ready") in itertools.pairwise(states[device]), states[device]
            assert states[device][-1] == "ready"

    for run in runs:
        log = per_day[run.day]
        issued = [e for e in log if e.type is EventType.TICKET_ISSUED]
        # Every acknowledged ticket is in the log, as acknowledged.
        logged = {e.data["id"]: e.data["number"] for e in issued}
        assert run.issued
        for ticket in run.issued:
            assert logged.get(ticket.id) == ticket.number
        assert len(logged) == len(run.issued)
        # Numbers never repeat within a day (transfers keep theirs: they are not issues).
        numbers = [e.data["number"] for e in issued]
        assert len(numbers) == len(set(numbers))
        # The report's figures match the log and what the simulation did.
        assert run.report is not None
        total = run.report.total
        kinds = Counter(e.type for e in log)
        assert total.issued == kinds[EventType.TICKET_ISSUED] == len(run.issued)
        assert total.no_show == kinds[EventType.TICKET_NO_SHOW] == run.no_shows
        assert total.transferred == kinds[EventType.TICKET_TRANSFERRED] == run.transfers
        assert total.ratings.count == kinds[EventType.TICKET_RATED] == run.ratings
        back_office = [
            e
            for e in log
            if e.type is EventType.TICKET_FINISHED and e.data["outcome"] == "back_office"
        ]
        assert total.back_office == len(back_office) == run.back_office
        assert total.cases_picked_up == kinds[EventType.CASE_PICKED_UP]
        # Read again once the day is closed (at the next day's opening): the same figures,
        # nothing left waiting, every event of the day counted.
        closed = read_report(pooled_hall(config, 6), db, run.day)
        assert closed.last_seq == log[-1].seq
        if run.day != days[-1]:
            assert log[-1].type is EventType.DAY_CLOSED
        assert closed.total.expired == 0
        assert closed.total.issued == total.issued
        assert closed.total.wait == total.wait
        # Something of everything happened.
        assert min(run.no_shows, run.transfers, run.back_office, run.ratings) > 0
    # Cases opened on day one are collected on day two.
    assert runs[1].pickups > 0

    async def replay() -> tuple[int, int]:
        clock = SimClock(dt.datetime.combine(days[-1], dt.time(23, 30), dt.UTC))
        hub = Hub(pooled_hall(config, 6), db, clock=clock, monotonic=clock.monotonic)
        await hub.start()
        try:
            seq = hub.engine.seq
            # The simulated clock's steps are not clock jumps: its monotonic time moves too.
            clock.advance_to(clock.now + dt.timedelta(minutes=20))
            await hub.execute(hub.engine.tick)
            assert not hub.now.jumps
            replayed = await hub.events_after(0, limit=len(events) + 10)
            return seq, len(replayed)
        finally:
            await hub.stop()

    seq, count = asyncio.run(replay())
    assert seq >= events[-1].seq
    assert count == seq


def _qcall() -> Path:
    script = Path(sys.executable).with_name("qcall")
    assert script.exists(), f"the qcall console script is missing at {script}"
    return script


def test_cli_refuses_bad_input_and_creates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cases = [
        (["--day", "2026-13-01"], "YYYY-MM-DD"),
        (["--day", "2026-12-01", "--windows", "0"], "--windows"),
        (["--day", "2026-12-01", "--days", "0"], "--days"),
        (["--day", "2026-12-01", "--speed", "0"], "--speed"),
    ]
    for extra, word in cases:
        result = subprocess.run(
            [
                str(_qcall()),
                "simulate",
                "--config",
                str(ROOT / "config/demo.toml"),
                "--out",
                str(out),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert word in result.stderr
        assert " / " in result.stderr  # Chinese / English
        assert not out.exists()


def test_cli_day_report_and_staffing(config: CenterConfig, tmp_path: Path) -> None:
    cfg = standalone_demo_config(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            str(_qcall()),
            "--log-level",
            "warning",
            "simulate",
            "--config",
            str(cfg),
            "--day",
            "2026-12-01",
            "--windows",
            "2",
            "--out",
            str(out),
            "--lang",
            "en",
        ],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "[Staffing comparison (same residents)]" in text
    assert "1 windows: mean wait" in text
    assert "2 windows: mean wait" in text
    assert "4 windows: mean wait" in text
    assert "x real time" in text
    svg = ET.parse(out / "staffing.svg").getroot()
    assert svg.tag.endswith("svg")
    assert "4 windows" in (out / "staffing.svg").read_text(encoding="utf-8")
    # The day's database answers ``qcall report daily`` like a real one.
    daily = subprocess.run(
        [
            str(_qcall()),
            "report",
            "daily",
            "--config",
            str(cfg),
            "--db",
            str(out / "qcall.db"),
            "--date",
            "2026-12-01",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert daily.returncode == 0, daily.stderr
    assert '"issued"' in daily.stdout


def test_fault_summary_says_each_outcome_in_both_languages() -> None:
    run = DayRun(DAY, 6)
    run.device_faults = [
        DeviceFault(PRINTER, "paper_end", True, True, "缺纸 / Paper end"),
        DeviceFault("bus:keypad@12", "noise", False, True),
        DeviceFault("bus:keypad@12", "unplug", True, False),
        DeviceFault(
            SCREEN, "disconnect", True, True, after_seq=40, replayed=7, last_seq=47, gap_free=True
        ),
    ]
    run.devices_ready = False
    zh = fault_summary(run, "zh").splitlines()
    assert zh == [
        f"  打印机缺纸 {PRINTER}：判为离线，已恢复 (缺纸 / Paper end)",
        "  总线干扰 bus:keypad@12：未离线，已恢复",
        "  设备拔线 bus:keypad@12：判为离线，未恢复！",
        f"  大厅屏断网 {SCREEN}：判为离线，已恢复（自 seq 40 起补收 7 条事件至 seq 47，无缺漏）",
        "  有设备未就绪！",
    ]
    en = fault_summary(run, "en").splitlines()
    assert en[2] == "  device unplugged bus:keypad@12: went offline, NOT back!"
    assert en[3].endswith("(after seq 40: 7 events replayed up to seq 47, gap-free)")
    assert en[-1] == "  a device is NOT ready!"
