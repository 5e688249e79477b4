"""The composition root (qcall/hub.py) in-process on a real SQLite file: durable execute(),
restart and replay, a corrupt log moved aside, the event bus, day rollover, auth cache."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from qcall import hub as hub_module
from qcall.errors import Conflict, DatabaseCorrupt, QcallError, ServiceUnavailable, StorageError
from qcall.events import Event, EventType
from qcall.hub import Hub
from qcall.model import Outcome, Position, Role
from tests.common import Clock, make_config

T = TypeVar("T")
# Bounds for polling background work (the day ticker); generous, they only catch a hang.
POLL_TIMEOUT_S = 10.0
POLL_STEP_S = 0.01
SECRET = "s3cr3t-webhook-signing-key"
PIN = "73915284"


def db_rows(path: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Read with a connection of our own (not the hub's)."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def write_garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database" * 500)


def head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(64)


def db_seqs(path: Path) -> list[int]:
    return [int(r[0]) for r in db_rows(path, "SELECT seq FROM events ORDER BY seq")]


async def run(hub: Hub, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Execute one engine command through the hub."""
    return await hub.execute(lambda now: fn(now, *args, **kwargs))


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_STEP_S)


async def busy_morning(hub: Hub, clock: Clock) -> None:
    """A morning touching every kind of state: windows, lines, calls, holds, cases, ratings."""
    e = hub.engine
    await run(hub, e.open_window, 1, "c1")
    await run(hub, e.open_window, 2, "c2")
    await run(hub, e.open_window, 3, "c3")
    for service, priority in [
        ("social", False),
        ("social", True),
        ("medical", False),
        ("medical", False),
        ("housing", False),
        ("social", False),
        ("social", False),
        ("housing", False),
    ]:
        await run(hub, e.issue, service, priority=priority)
        clock.advance(minutes=1)
    await run(hub, e.call_next, 1, "c1")
    clock.advance(minutes=3)
    await run(hub, e.finish, 1, "c1", Outcome.DONE)
    await run(hub, e.rate, 1, "c1", 5)
    await run(hub, e.call_next, 2, "c2")
    clock.advance(minutes=4)
    await run(hub, e.finish, 2, "c2", Outcome.BACK_OFFICE)
    await run(hub, e.call_next, 1, "c1")
    await run(hub, e.hold, 1, "c1")
    await run(hub, e.call_next, 1, "c1")
    await run(hub, e.no_show, 1, "c1")
    await run(hub, e.call_next, 2, "c2")
    await run(hub, e.transfer, 2, "c2", window_number=1, position=Position.FIRST)
    called = await run(hub, e.call_next, 3, "c3")
    assert called is not None
    assert called.number == "C002"
    await run(hub, e.pause, 2, "c2", "午休")
    clock.advance(minutes=1)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "h.db"


@pytest.fixture
async def hub(db_path: Path, clock: Clock) -> AsyncIterator[Hub]:
    h = Hub(make_config(), db_path, clock=clock)
    await h.start()
    yield h
    await h.stop()


# ----------------------------------------------------------------------------- commands


async def test_start_opens_the_day_durably(hub: Hub, db_path: Path) -> None:
    assert hub.engine.seq == 1
    assert hub.committed_seq == 1
    assert db_rows(db_path, "SELECT seq, type, json_extract(data, '$.day') FROM events") == [
        (1, "day.opened", "2026-11-26")
    ]


async def test_execute_returns_after_the_events_are_in_the_database(
    hub: Hub, db_path: Path
) -> None:
    await run(hub, hub.engine.open_window, 1, "c1")
    assert db_seqs(db_path) == [1, 2]
    ticket = await run(hub, hub.engine.issue, "social")
    found = db_rows(
        db_path,
        "SELECT seq, json_extract(data, '$.number') FROM events "
        "WHERE type = 'ticket.issued' AND json_extract(data, '$.id') = ?",
        ticket.id,
    )
    assert found == [(3, "A001")]
    assert hub.committed_seq == hub.engine.seq == 3


async def test_concurrent_commands_are_all_committed_without_gaps(hub: Hub, db_path: Path) -> None:
    await run(hub, hub.engine.open_window, 1, "c1")
    tickets = await asyncio.gather(*(run(hub, hub.engine.issue, "social") for _ in range(25)))
    assert sorted(t.number for t in tickets) == [f"A{n:03d}" for n in range(1, 26)]
    assert db_seqs(db_path) == list(range(1, 28))
    assert hub.committed_seq == 27


async def test_a_refused_command_commits_nothing_and_reraises(hub: Hub, db_path: Path) -> None:
    before = db_seqs(db_path)
    with pytest.raises(ServiceUnavailable):
        await run(hub, hub.engine.issue, "social")  # no window is open yet
    with pytest.raises(Conflict):
        await run(hub, hub.engine.call_next, 1, "c1")  # window 1 is closed
    assert db_seqs(db_path) == before
    assert hub.engine.seq == hub.committed_seq == before[-1]
    assert not hub.fatal.is_set()
    await run(hub, hub.engine.open_window, 1, "c1")  # the hub carries on
    assert db_seqs(db_path) == [*before, before[-1] + 1]


async def test_a_failed_commit_is_fatal_and_never_acknowledged(hub: Hub, db_path: Path) -> None:
    await run(hub, hub.engine.open_window, 1, "c1")
    # Someone else writes into the log behind the hub's back: the next append must not
    # pretend to have succeeded.
    foreign = sqlite3.connect(db_path, isolation_level=None)
    foreign.execute(
        "INSERT INTO events VALUES (3, 'device.state', '2026-11-26T09:00:00+08:00', '{}')"
    )
    foreign.close()
    with pytest.raises(StorageError):
        await run(hub, hub.engine.issue, "social")
    assert hub.fatal.is_set()
    assert hub.diagnostics()["storage_failed"] is True
    with pytest.raises(StorageError):
        await run(hub, hub.engine.issue, "social")
    assert db_seqs(db_path) == [1, 2, 3]
    assert db_rows(db_path, "SELECT type FROM events WHERE seq = 3") == [("device.state",)]


# ----------------------------------------------------------------------------- restart


@pytest.mark.parametrize("snapshot", ["latest", "older", "none"])
async def test_restart_rebuilds_the_same_state(db_path: Path, clock: Clock, snapshot: str) -> None:
    first = Hub(make_config(), db_path, clock=clock)
    await first.start()
    await busy_morning(first, clock)
    state = first.engine.state()
    full = first.engine.to_snapshot()
    last = first.engine.seq
    await first.stop()
    assert db_rows(db_path, "SELECT MAX(seq) FROM snapshots") == [(last,)]
    if snapshot == "older":
        db = sqlite3.connect(db_path)
        with db:
            db.execute("DELETE FROM snapshots WHERE seq = ?", (last,))
        db.close()
        assert db_rows(db_path, "SELECT MAX(seq) FROM snapshots")[0][0] < last
    elif snapshot == "none":
        db = sqlite3.connect(db_path)
        with db:
            db.execute("DELETE FROM snapshots")
        db.close()

    second = Hub(make_config(), db_path, clock=clock)
    await second.start()
    try:
        assert second.store.moved_aside is None
        assert second.engine.seq == second.committed_seq == last
        assert second.engine.state() == state
        assert second.engine.to_snapshot() == full
        # It carries on from where it was: numbers continue, the line is the same.
        ticket = await run(second, second.engine.issue, "social")
        assert ticket.number == "A005"
        [moved] = db_rows(
            db_path,
            "SELECT json_extract(data, '$.number') FROM events WHERE type = ?",
            "ticket.transferred",
        )
        called = await run(second, second.engine.call_next, 1, "c1")
        assert called is not None
        assert called.number == moved[0]  # transferred to window 1, first in line
    finally:
        await second.stop()
    assert db_seqs(db_path) == list(range(1, last + 3))


async def test_a_corrupt_event_row_refuses_to_start_until_the_loss_is_accepted(
    db_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    first = Hub(make_config(), db_path, clock=clock)
    await first.start()
    await first.write(first.store.add_staff, "c1", "张三", PIN, Role.CLERK)
    token = await first.write(first.store.create_token, Role.KIOSK, "kiosk 1")
    await busy_morning(first, clock)
    last = first.engine.seq
    await first.stop()
    db = sqlite3.connect(db_path)
    with db:
        db.execute("UPDATE events SET data = '{\"id\": broken' WHERE seq = 5")
        db.execute("DELETE FROM snapshots")  # force a replay through the bad row
    db.close()

    # The hub never starts silently empty: it refuses, names the file and the way out.
    refused = Hub(make_config(), db_path, clock=clock)
    with pytest.raises(DatabaseCorrupt) as caught:
        await refused.start()
    assert str(db_path) in caught.value.message_en
    assert "after seq 4" in caught.value.message_en
    assert "--accept-data-loss" in caught.value.message_zh
    assert not list(db_path.parent.glob("*.corrupt.*"))
    assert db_seqs(db_path) == list(range(1, last + 1))  # nothing changed
    assert not refused.lock.held  # a later start (or another hub) may take the database

    caplog.set_level(logging.INFO)
    second = Hub(make_config(), db_path, clock=clock, accept_data_loss=True)
    await second.start()
    try:
        moved = second.store.moved_aside
        assert moved is not None
        assert moved.exists()
        assert moved.name.startswith("h.db.corrupt.")
        assert second.diagnostics()["db_moved_aside"] == str(moved)
        recovery = second.recovered
        assert recovery is not None
        assert recovery.saved == {"staff": 1, "tokens": 1, "webhook_cursors": 0, "seq": last}
        # The numbers the lost log issued today are not issued again (A001 is unreadable).
        assert recovery.day == dt.date(2026, 11, 26)
        assert recovery.numbers == {"A": 4, "B": 2, "C": 2}
        assert second.diagnostics()["data_loss_recovery"]["numbers"] == recovery.numbers
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert any(str(moved) in r.getMessage() for r in errors)
        # Staff and tokens survive; the new log continues the seq, never reusing one.
        assert await second.principal(token) is not None
        assert await second.write(second.store.check_pin, "c1", PIN) is not None
        assert second.engine.seq == last + 1  # the day opened again
        await run(second, second.engine.open_window, 1, "c1")
        ticket = await run(second, second.engine.issue, "social")
        assert (ticket.number, ticket.id) == ("A005", "20261126-A005")
        assert (await run(second, second.engine.issue, "medical")).number == "B003"
    finally:
        await second.stop()
    assert db_seqs(db_path) == list(range(last + 1, last + 5))
    # The old log is kept whole for the technician.
    assert db_seqs(moved) == list(range(1, last + 1))


async def test_a_garbage_database_file_refuses_to_start(db_path: Path, clock: Clock) -> None:
    write_garbage(db_path)
    h = Hub(make_config(), db_path, clock=clock)
    with pytest.raises(DatabaseCorrupt):
        await h.start()
    assert head(db_path).startswith(b"this is not a database")
    assert not list(db_path.parent.glob("*.corrupt.*"))


# ----------------------------------------------------------------------------- event bus


async def test_the_bus_publishes_committed_events_in_order(hub: Hub, db_path: Path) -> None:
    fast = hub.bus.subscribe_queue(maxsize=100)
    slow = hub.bus.subscribe_queue(maxsize=2)
    seen_in_db: list[bool] = []
    db = sqlite3.connect(db_path)

    def on_event(event: Event) -> None:
        found = db.execute("SELECT 1 FROM events WHERE seq = ?", (event.seq,)).fetchone()
        seen_in_db.append(found is not None)

    unsubscribe = hub.bus.subscribe(on_event)
    try:
        start = hub.engine.seq
        await run(hub, hub.engine.open_window, 1, "c1")
        for _ in range(4):
            await run(hub, hub.engine.issue, "social")
        assert seen_in_db == [True] * 5  # published only once committed
        got = [fast.queue.get_nowait() for _ in range(fast.queue.qsize())]
        assert all(isinstance(e, Event) for e in got)
        assert [e.seq for e in got if e is not None] == list(range(start + 1, start + 6))
        assert [e.type for e in got if e is not None] == [EventType.WINDOW_OPENED] + [
            EventType.TICKET_ISSUED
        ] * 4

        # The slow reader fell behind: dropped, told with None, and no longer fed.
        assert slow.overflowed
        assert await asyncio.wait_for(slow.get(), POLL_TIMEOUT_S) is None
        assert slow.queue.empty()
        count = hub.bus.subscriber_count
        await run(hub, hub.engine.issue, "medical")
        assert slow.queue.empty()
        assert hub.bus.subscriber_count == count
        nxt = await asyncio.wait_for(fast.get(), POLL_TIMEOUT_S)
        assert nxt is not None
        assert nxt.seq == start + 6
        assert nxt.data["number"] == "B001"
    finally:
        unsubscribe()
        fast.close()
        db.close()


async def test_day_rolls_over_at_midnight_by_itself(
    db_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "DAY_TICK_INTERVAL_S", POLL_STEP_S)
    h = Hub(make_config(), db_path, clock=clock)
    await h.start()
    try:
        await run(h, h.engine.open_window, 1, "c1")
        ticket = await run(h, h.engine.issue, "social")
        clock.advance(hours=15, minutes=30)  # 00:30 the next day
        await until(lambda: h.engine.day == dt.date(2026, 11, 27), "the day ticker")
        await until(lambda: h.committed_seq == h.engine.seq, "the commit")
    finally:
        await h.stop()
    rows = db_rows(db_path, "SELECT seq, type, data FROM events WHERE seq > 3 ORDER BY seq")
    assert [(r[0], r[1]) for r in rows] == [(4, "day.closed"), (5, "day.opened")]
    closed, opened = json.loads(rows[0][2]), json.loads(rows[1][2])
    assert closed == {"day": "2026-11-26", "expired": [ticket.id], "closed_windows": [1]}
    assert opened["day"] == "2026-11-27"
    assert opened["day_type"] == "weekday"
    # A new day starts numbering again.
    again = Hub(make_config(), db_path, clock=clock)
    await again.start()
    try:
        assert again.engine.state()["day"] == "2026-11-27"
        await run(again, again.engine.open_window, 1, "c1")
        assert (await run(again, again.engine.issue, "social")).number == "A001"
    finally:
        await again.stop()


# ----------------------------------------------------------------------------- auth, diagnostics


async def test_principal_is_cached_and_revoke_takes_effect_at_once(
    hub: Hub, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kiosk = await hub.write(hub.store.create_token, Role.KIOSK, "kiosk 1")
    found = await hub.principal(kiosk)
    assert found is not None
    assert found.role is Role.KIOSK
    assert found.name == "kiosk 1"
    assert await hub.principal("qc_not-a-token") is None

    # Revoked behind the hub's back: the cache answers for a while ...
    db = sqlite3.connect(db_path)
    with db:
        db.execute("UPDATE tokens SET revoked = 1")
    db.close()
    assert await hub.principal(kiosk) == found
    # ... until the cache entry is old.
    monkeypatch.setattr(hub_module, "TOKEN_CACHE_S", 0.0)
    assert await hub.principal(kiosk) is None
    monkeypatch.undo()

    # Revoking through the hub is immediate even though the token is cached.
    clerk = await hub.write(hub.store.create_token, Role.CLERK, "张三")
    assert await hub.principal(clerk) is not None
    await hub.revoke(clerk)
    assert await hub.principal(clerk) is None
    assert db_rows(db_path, "SELECT COUNT(*) FROM tokens WHERE revoked = 0") == [(0,)]


async def test_diagnostics_carry_no_secrets(db_path: Path, clock: Clock) -> None:
    url = "http://crm:p4ssw0rd-in-url@127.0.0.1:9/hook?key=k3y-in-query&v=1"
    hook = {"id": "crm", "url": url, "secret": SECRET}
    h = Hub(make_config(webhooks=[hook]), db_path, clock=clock)
    await h.start()
    try:
        await h.write(h.store.add_staff, "c1", "张三", PIN, Role.CLERK)
        token = await h.write(h.store.create_token, Role.ADMIN, "tech")
        assert await h.principal(token) is not None  # now in the token cache
        diagnostics = h.diagnostics()
        text = json.dumps(diagnostics, ensure_ascii=False)
        for secret in (SECRET, token, PIN, "scrypt$", "p4ssw0rd-in-url", "k3y-in-query"):
            assert secret not in text
        assert diagnostics["seq"] == diagnostics["committed_seq"] == 1
        assert diagnostics["storage_failed"] is False
        assert diagnostics["db_moved_aside"] is None
        assert "qcall:journal" in diagnostics["tasks"]
        assert "qcall:webhook:crm" in diagnostics["tasks"]
        [webhook] = diagnostics["device_details"]
        assert webhook["id"] == "crm"
        assert webhook["url"] == "http://crm:***@127.0.0.1:9/hook?key=***&v=***"
    finally:
        await h.stop()


async def test_stop_saves_a_snapshot_and_closes_storage(db_path: Path, clock: Clock) -> None:
    h = Hub(make_config(), db_path, clock=clock)
    await h.start()
    await run(h, h.engine.open_window, 1, "c1")
    await h.stop()
    snapshot = db_rows(db_path, "SELECT seq, state FROM snapshots ORDER BY seq DESC LIMIT 1")
    assert snapshot[0][0] == 2
    assert json.loads(snapshot[0][1])["windows"][0]["staff"] == "c1"
    with pytest.raises(QcallError):
        h.store.last_seq()


@pytest.mark.parametrize("bad", ["{not json", "{}", '{"seq": "x"}', "[]"])
async def test_an_unusable_snapshot_means_a_full_replay_not_a_lost_log(
    db_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture, bad: str
) -> None:
    first = Hub(make_config(), db_path, clock=clock)
    await first.start()
    await busy_morning(first, clock)
    state = first.engine.state()
    await first.stop()
    db = sqlite3.connect(db_path)
    with db:
        db.execute("UPDATE snapshots SET state = ?", (bad,))  # derived data, all of it broken
    db.close()

    caplog.set_level(logging.WARNING)
    second = Hub(make_config(), db_path, clock=clock)
    await second.start()
    try:
        assert second.store.moved_aside is None
        assert second.engine.state() == state
        assert any("snapshot" in r.getMessage() for r in caplog.records)
        ticket = await run(second, second.engine.issue, "social")
        assert ticket.number == "A005"  # never a number issued twice in a day
    finally:
        await second.stop()
    assert not list(db_path.parent.glob("*.corrupt.*"))


async def test_a_lookup_in_flight_cannot_revive_a_revoked_token(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await hub.write(hub.store.create_token, Role.CLERK, "张三")
    real = hub.reader.principal
    looked_up = threading.Event()
    go_on = threading.Event()

    def slow_lookup(raw: str) -> Any:
        found = real(raw)  # reads the token before it is revoked ...
        looked_up.set()
        go_on.wait(POLL_TIMEOUT_S)  # ... and answers only after the logout
        return found

    monkeypatch.setattr(hub.reader, "principal", slow_lookup)
    in_flight = asyncio.ensure_future(hub.principal(token))
    await asyncio.get_running_loop().run_in_executor(None, looked_up.wait, POLL_TIMEOUT_S)
    await hub.revoke(token)
    go_on.set()
    await in_flight  # a request that started before the logout may still pass
    monkeypatch.setattr(hub.reader, "principal", real)
    assert await hub.principal(token) is None
