"""A configuration edit never costs the database: restarting the hub after removing a service or
a window replays the log as history and resolves what is gone with new, reasoned events."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from qcall.config import CenterConfig, parse_config
from qcall.engine import SERVICE_REMOVED, WINDOW_REMOVED, Engine
from qcall.errors import NotFound
from qcall.hub import Hub
from qcall.model import Outcome, Role, TicketState
from qcall.preflight import restart_preview
from tests.common import SHANGHAI, Clock, make_config, small_center
from tests.qcall.test_hub import db_rows, db_seqs, run

ROOT: Final = Path(__file__).resolve().parents[2]
PIN: Final = "73915284"
CLI_TIMEOUT_S: Final = 60.0


def edited(*, drop_services: tuple[str, ...] = (), drop_windows: tuple[int, ...] = ()) -> Any:
    """The small center with services (and every reference to them) or windows removed."""
    raw = small_center()
    raw["services"] = [s for s in raw["services"] if s["id"] not in drop_services]
    windows = []
    for window in raw["windows"]:
        if window["number"] in drop_windows:
            continue
        if "services" in window:
            window["services"] = [s for s in window["services"] if s["id"] not in drop_services]
        windows.append(window)
    raw["windows"] = windows
    return raw


def config_of(raw: Any) -> CenterConfig:
    return parse_config(raw, "<edited>")


def event_rows(path: Path, after: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(r[0]), json.loads(r[1]))
        for r in db_rows(path, "SELECT type, data FROM events WHERE seq > ? ORDER BY seq", after)
    ]


def crash(path: Path) -> None:
    """What a crash leaves: no snapshot after the day opened, so the start replays the log."""
    db = sqlite3.connect(path)
    with db:
        db.execute("DELETE FROM snapshots WHERE seq > 1")
    db.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "h.db"


@pytest.mark.parametrize("stop", ["clean", "crash"])
async def test_removing_a_service_keeps_the_database_and_cancels_its_waiting_tickets(
    db_path: Path, stop: str
) -> None:
    clock = Clock()
    first = Hub(make_config(), db_path, clock=clock)
    await first.start()
    e = first.engine
    await first.write(first.store.add_staff, "c2", "李四", PIN, Role.CLERK)
    token = await first.write(first.store.create_token, Role.KIOSK, "kiosk 1")
    await run(first, e.open_window, 1, "c1")
    await run(first, e.open_window, 2, "c2")
    for service in ("medical", "social", "medical", "medical"):
        await run(first, e.issue, service)
        clock.advance(minutes=1)
    called = await run(first, e.call_next, 2, "c2")  # window 2 weighs medical 3: B001
    assert called is not None
    assert called.number == "B001"
    last = e.seq
    await first.stop()
    if stop == "crash":
        crash(db_path)

    new_config = config_of(edited(drop_services=("medical",)))
    # check-config --db tells the operator before the restart (read-only, nothing written).
    changes = restart_preview(new_config, db_path, clock.now)
    assert len(changes) == 2
    assert "B002, B003" in changes[0].en
    assert "medical" in changes[0].zh
    assert "B001" in changes[1].en
    assert db_seqs(db_path) == list(range(1, last + 1))

    second = Hub(new_config, db_path, clock=clock)
    await second.start()
    e = second.engine
    try:
        assert second.store.moved_aside is None
        assert not list(db_path.parent.glob("*.corrupt.*"))
        # Staff and tokens are still there; the log goes on from where it was.
        assert await second.principal(token) is not None
        assert await second.write(second.store.check_pin, "c2", PIN) is not None
        assert event_rows(db_path, last) == [
            ("ticket.cancelled", {"id": f"20261126-{n}", "number": n, "reason": SERVICE_REMOVED})
            for n in ("B002", "B003")
        ]
        assert e.tickets["20261126-B002"].state is TicketState.CANCELLED
        state = await second.durable_state()
        assert "medical" not in state["waiting"]
        assert state["waiting"]["social"] == 1
        # B001 is still at window 2 and is finished as usual; numbering continues.
        await run(second, e.finish, 2, "c2", Outcome.DONE)
        assert e.tickets["20261126-B001"].state is TicketState.DONE
        assert (await run(second, e.issue, "social")).number == "A002"
        nxt = await run(second, e.call_next, 2, "c2")
        assert nxt is not None
        assert nxt.number == "A001"
        expected = e.to_snapshot()
        final = e.seq
    finally:
        await second.stop()
    # A third start replays the whole log (no snapshot) with the edited configuration.
    crash(db_path)
    third = Hub(new_config, db_path, clock=clock)
    await third.start()
    try:
        assert third.engine.to_snapshot() == expected
        assert third.engine.seq == final
    finally:
        await third.stop()
    assert db_seqs(db_path) == list(range(1, final + 1))


@pytest.mark.parametrize("stop", ["clean", "crash"])
async def test_removing_a_window_closes_it_and_loses_none_of_its_tickets(
    db_path: Path, stop: str
) -> None:
    clock = Clock()
    first = Hub(make_config(), db_path, clock=clock)
    await first.start()
    e = first.engine
    await run(first, e.open_window, 1, "c1")
    await run(first, e.open_window, 2, "c2")
    for service in ("social", "medical", "social", "social"):
        await run(first, e.issue, service)
        clock.advance(minutes=1)
    held = await run(first, e.call_next, 2, "c2")  # B001 (medical weighs 3 at window 2)
    await run(first, e.hold, 2, "c2")
    current = await run(first, e.call_next, 2, "c2")  # A001, left called at window 2
    moved = await run(first, e.call_next, 1, "c1")  # A002 ...
    transferred = await run(first, e.transfer, 1, "c1", window_number=2)  # ... sent to window 2
    assert held is not None
    assert current is not None
    assert moved is not None
    assert (held.number, current.number, moved.number) == ("B001", "A001", "A002")
    last = e.seq
    await first.stop()
    if stop == "crash":
        crash(db_path)

    new_config = config_of(edited(drop_windows=(2,)))
    [change] = restart_preview(new_config, db_path, clock.now)
    assert "window 2" in change.en
    assert "c2" in change.en
    assert "A001, B001" in change.en
    assert "A002" in change.en
    assert "2 号窗口" in change.zh

    second = Hub(new_config, db_path, clock=clock)
    await second.start()
    e = second.engine
    try:
        assert not list(db_path.parent.glob("*.corrupt.*"))
        assert event_rows(db_path, last) == [
            (
                "window.closed",
                {
                    "window": 2,
                    "staff": "c2",
                    "requeued": [current.id, held.id],
                    "unpinned": [transferred.id],
                    "reason": WINDOW_REMOVED,
                },
            )
        ]
        state = await second.durable_state()
        assert [w["number"] for w in state["windows"]] == [1, 3, 4]
        assert state["waiting"] == {"social": 3, "medical": 1, "housing": 0, "pickup": 0}
        # Window 1 calls them all: the two sent back first, then the rest in line.
        numbers = []
        for _ in range(4):
            ticket = await run(second, e.call_next, 1, "c1")
            assert ticket is not None
            numbers.append(ticket.number)
        assert numbers[:2] == ["A001", "B001"]
        assert sorted(numbers[2:]) == ["A002", "A003"]
        assert await run(second, e.call_next, 1, "c1") is None
        expected = e.to_snapshot()
    finally:
        await second.stop()
    crash(db_path)
    third = Hub(new_config, db_path, clock=clock)
    await third.start()
    try:
        assert third.engine.to_snapshot() == expected
    finally:
        await third.stop()


def test_check_config_with_db_warns_before_the_restart(db_path: Path, tmp_path: Path) -> None:
    async def fill() -> None:
        # The command uses the real clock: so does the morning it looks at.
        hub = Hub(make_config(), db_path, clock=Clock(dt.datetime.now(SHANGHAI)))
        await hub.start()
        try:
            await run(hub, hub.engine.open_window, 3, "c3")
            for _ in range(3):
                await run(hub, hub.engine.issue, "housing")
        finally:
            await hub.stop()

    asyncio.run(fill())
    before = db_path.read_bytes()
    raw = edited(drop_services=("housing",), drop_windows=(3,))
    path = tmp_path / "edited.toml"
    path.write_text(_toml(raw), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "qcall", "check-config", str(path), "--db", str(db_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout
    assert "warning: window 3 is no longer configured" in result.stdout
    assert "C001, C002, C003" in result.stdout
    assert "警告：业务 housing 已从配置中删除" in result.stdout
    assert db_path.read_bytes() == before  # read-only


def _toml(raw: Any) -> str:
    """TOML text as the demo generator writes it."""
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "config" / "make_demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.dumps(raw)
    return text


# ----------------------------------------------------------------------------- the pure engine


def replayed(events: list[Any], config: CenterConfig) -> Engine:
    engine = Engine(config)
    for event in events:
        engine.replay(event)
    return engine


def test_the_engine_replays_history_the_configuration_no_longer_has() -> None:
    clock = Clock()
    engine = Engine(make_config())
    log: list[Any] = []

    def do(command: Any, *args: Any, **kwargs: Any) -> Any:
        result = command(clock.now, *args, **kwargs)
        log.extend(engine.drain())
        clock.advance(minutes=1)
        return result

    do(engine.open_window, 2, "c2")
    do(engine.open_window, 3, "c3")
    for service in ("medical", "housing", "housing", "social"):
        do(engine.issue, service)
    called = do(engine.call_next, 3, "c3")  # C001 at window 3
    do(engine.no_show, 3, "c3")
    b001 = do(engine.call_next, 2, "c2")  # B001 (weight 3) at window 2
    do(engine.finish, 2, "c2", Outcome.DONE)
    assert (called.number, b001.number) == ("C001", "B001")

    # Housing and its window 3 are gone: the whole log still applies as it happened.
    config = config_of(edited(drop_services=("housing",), drop_windows=(3,)))
    engine = replayed(log, config)
    assert engine.seq == log[-1].seq
    assert engine.tickets[called.id].state is TicketState.NO_SHOW
    assert engine.handle_s["medical"] > 0
    events = engine.reconcile(clock.now)
    assert [(str(e.type), e.data.get("reason")) for e in events] == [
        ("window.closed", WINDOW_REMOVED),
        ("ticket.cancelled", SERVICE_REMOVED),
    ]
    assert events[0].data == {
        "window": 3,
        "staff": "c3",
        "requeued": [],
        "unpinned": [],
        "reason": WINDOW_REMOVED,
    }
    assert events[1].data["number"] == "C002"
    assert engine.reconcile(clock.now) == []  # resolved once, for good
    assert [w["number"] for w in engine.state()["windows"]] == [1, 2, 4]
    # The no-show of a removed service cannot be put back in a line nobody calls.
    with pytest.raises(NotFound):
        engine.reactivate(clock.now, called.id)
    with pytest.raises(NotFound):
        engine.open_window(clock.now, 3, "c3")
    # Replaying the reconciled log again gives the same state, with either configuration.
    full = [*log, *events]
    assert replayed(full, config).to_snapshot() == engine.to_snapshot()
    assert replayed(full, make_config()).seq == engine.seq
