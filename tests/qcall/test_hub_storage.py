"""Storage failures and stops: the commit connection's pragmas as in effect, the WAL bounded
under a burst, every storage failure fatal, stop() draining the journal, committed-only reads,
one hub per database."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest

from qcall import store as store_module
from qcall.config import load_config
from qcall.dblock import DatabaseLock
from qcall.errors import DatabaseInUse, StorageError
from qcall.events import Event
from qcall.hub import Hub
from qcall.model import Role
from tests.common import Clock, make_config, standalone_demo_config
from tests.qcall.test_hub import db_rows, db_seqs, head, run

ROOT: Final = Path(__file__).resolve().parents[2]
# Bounds that only catch a hang (a blocked commit is released by the test itself).
WAIT_S: Final = 10.0
CLI_TIMEOUT_S: Final = 60.0
SMALL_PRIME: Final = 256 * 1024
SMALL_LIMIT: Final = 512 * 1024


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "h.db"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def hub(db_path: Path, clock: Clock) -> AsyncIterator[Hub]:
    h = Hub(make_config(), db_path, clock=clock)
    await h.start()
    yield h
    await h.stop()


class BlockedAppend:
    """Holds the writer thread inside ``Store.append`` until the test releases it."""

    def __init__(self, hub: Hub) -> None:
        self.real = hub.store.append
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, events: list[Event]) -> None:
        self.entered.set()
        self.release.wait(WAIT_S)
        self.real(events)

    async def wait_entered(self) -> None:
        entered = await asyncio.get_running_loop().run_in_executor(None, self.entered.wait, WAIT_S)
        assert entered, "the commit never started"


def pragma(db: sqlite3.Connection, name: str) -> Any:
    return db.execute(f"PRAGMA {name}").fetchone()[0]


# ----------------------------------------------------------------------------- pragmas, WAL


async def test_every_connection_runs_with_the_durable_pragmas_in_effect(hub: Hub) -> None:
    def writer() -> dict[str, Any]:
        db = hub.store.db
        names = ("synchronous", "journal_mode", "foreign_keys", "wal_autocheckpoint")
        return {name: pragma(db, name) for name in (*names, "journal_size_limit")}

    assert await hub.write(writer) == {
        "synchronous": 2,  # FULL: the commit is on disk before the caller is told
        "journal_mode": "wal",
        "foreign_keys": 1,
        "wal_autocheckpoint": 0,  # checkpoints happen off the commit path
        "journal_size_limit": store_module.WAL_LIMIT_BYTES,
    }
    for other in (hub.reader, hub.checkpointer):
        assert pragma(other.db, "synchronous") == 2
        assert pragma(other.db, "journal_mode") == "wal"


async def test_the_wal_stays_bounded_under_a_burst_of_commits(
    db_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "WAL_PRIME_BYTES", SMALL_PRIME)
    monkeypatch.setattr(store_module, "WAL_LIMIT_BYTES", SMALL_LIMIT)
    h = Hub(make_config(), db_path, clock=clock)
    await h.start()
    note = "记录" * 480  # about 3 KB a row: the burst writes ten times the limit
    largest = 0
    try:
        for _ in range(40):
            await asyncio.gather(
                *(run(h, h.engine.log_inquiry, "desk", "社保咨询", note=note) for _ in range(40))
            )
            largest = max(largest, h.store.wal_bytes())
        last = h.engine.seq
    finally:
        await h.stop()
    assert db_seqs(db_path) == list(range(1, last + 1))
    assert last > 1600
    # One group commit may go past the limit before the writer checkpoints and starts over.
    assert 0 < largest <= SMALL_LIMIT + 256 * 1024, largest


# ----------------------------------------------------------------------------- failures


async def test_a_failed_day_open_snapshot_is_fatal_and_never_hangs(
    hub: Hub, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await run(hub, hub.engine.open_window, 1, "c1")

    def broken(seq: int, state: dict[str, Any]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(hub.store, "save_snapshot", broken)
    clock.advance(days=1)
    await run(hub, hub.engine.open_window, 1, "c1")  # committed; the snapshot after fails
    await asyncio.wait_for(hub.fatal.wait(), WAIT_S)
    assert hub.diagnostics()["storage_failed"] is True
    with pytest.raises(StorageError):
        await asyncio.wait_for(run(hub, hub.engine.issue, "social"), WAIT_S)
    assert hub.committed_seq == hub.engine.seq  # what was acknowledged is on disk


async def test_a_checkpoint_io_error_is_fatal(
    db_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qcall import hub as hub_module

    monkeypatch.setattr(hub_module, "CHECKPOINT_INTERVAL_S", 0.01)
    h = Hub(make_config(), db_path, clock=clock)
    await h.start()
    try:

        def broken() -> tuple[int, int]:
            raise sqlite3.DatabaseError("database disk image is malformed")

        monkeypatch.setattr(h.checkpointer, "checkpoint", broken)
        await run(h, h.engine.open_window, 1, "c1")
        await asyncio.wait_for(h.fatal.wait(), WAIT_S)
        assert "qcall:checkpoint" not in h.diagnostics()["tasks"]
    finally:
        await asyncio.wait_for(h.stop(), WAIT_S)


async def test_any_storage_failure_is_fatal_not_just_a_commit(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await hub.write(hub.store.create_token, Role.CLERK, "张三")

    def broken(raw: str) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(hub.store, "revoke_token", broken)
    with pytest.raises(StorageError):
        await hub.revoke(token)
    assert hub.fatal.is_set()
    with pytest.raises(StorageError):
        await run(hub, hub.engine.open_window, 1, "c1")


async def test_a_refused_write_is_the_callers_error_not_a_storage_failure(hub: Hub) -> None:
    def duplicate() -> None:
        hub.store.db.execute("INSERT INTO webhook_cursors VALUES ('a', 1)")
        hub.store.db.execute("INSERT INTO webhook_cursors VALUES ('a', 2)")

    with pytest.raises(sqlite3.IntegrityError):
        await hub.write(duplicate)
    assert not hub.fatal.is_set()
    await run(hub, hub.engine.open_window, 1, "c1")


# ----------------------------------------------------------------------------- stop


async def test_stop_waits_for_the_commit_in_flight_and_numbers_nothing_after(
    db_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Hub(make_config(), db_path, clock=clock)
    await h.start()
    await run(h, h.engine.open_window, 1, "c1")
    blocked = BlockedAppend(h)
    monkeypatch.setattr(h.store, "append", blocked)
    issuing = asyncio.ensure_future(run(h, h.engine.issue, "social"))
    await blocked.wait_entered()
    stopping = asyncio.ensure_future(h.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the commit is still in flight
    seq = h.engine.seq
    with pytest.raises(StorageError):
        await run(h, h.engine.issue, "social")  # refused before it is numbered
    assert h.engine.seq == seq
    blocked.release.set()
    await asyncio.wait_for(stopping, WAIT_S)
    ticket = await asyncio.wait_for(issuing, WAIT_S)
    assert ticket.number == "A001"
    assert db_seqs(db_path) == list(range(1, seq + 1))
    # The final snapshot is taken at the last committed seq.
    assert db_rows(db_path, "SELECT MAX(seq) FROM snapshots") == [(seq,)]
    again = Hub(make_config(), db_path, clock=clock)
    await again.start()
    try:
        assert (await run(again, again.engine.issue, "social")).number == "A002"
    finally:
        await again.stop()


async def test_reads_show_only_committed_state(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    await run(hub, hub.engine.open_window, 1, "c1")
    blocked = BlockedAppend(hub)
    monkeypatch.setattr(hub.store, "append", blocked)
    issuing = asyncio.ensure_future(run(hub, hub.engine.issue, "social"))
    await blocked.wait_entered()
    ticket_id = "20261126-A001"
    assert ticket_id in hub.engine.tickets  # applied, not yet on disk
    reading = asyncio.ensure_future(hub.committed(lambda: hub.engine.ticket(ticket_id).to_public()))
    await asyncio.sleep(0.05)
    assert not reading.done()
    blocked.release.set()
    view = await asyncio.wait_for(reading, WAIT_S)
    assert view["number"] == "A001"
    await asyncio.wait_for(issuing, WAIT_S)


# ----------------------------------------------------------------------------- one hub per db


async def test_a_second_hub_on_the_same_database_refuses_before_touching_it(
    hub: Hub, db_path: Path, clock: Clock
) -> None:
    hook = {"id": "crm", "url": "http://127.0.0.1:9/hook", "secret": "s3cr3t-webhook-key"}
    second = Hub(make_config(webhooks=[hook]), db_path, clock=clock)
    with pytest.raises(DatabaseInUse) as caught:
        await second.start()
    assert str(db_path) in caught.value.message_en
    assert "另一个 qcall 中心服务" in caught.value.message_zh
    assert second.diagnostics()["tasks"] == []  # no journal, no webhook
    with pytest.raises(StorageError):
        second.store.last_seq()  # never opened
    await run(hub, hub.engine.open_window, 1, "c1")  # the first one is undisturbed


async def test_a_held_lock_keeps_the_database_files_untouched(db_path: Path, clock: Clock) -> None:
    first = Hub(make_config(), db_path, clock=clock)
    await first.start()
    await first.stop()
    before = files(db_path)
    assert Path(f"{db_path}-wal").name not in before  # a clean stop leaves no WAL
    other = DatabaseLock(db_path)  # another hub process, as far as this one can tell
    other.acquire()
    try:
        with pytest.raises(DatabaseInUse):
            await Hub(make_config(), db_path, clock=clock).start()
        assert files(db_path) == before  # no WAL made, no byte of the database changed
    finally:
        other.release()
    second = Hub(make_config(), db_path, clock=clock)  # released: it starts
    await second.start()
    await second.stop()


def files(db_path: Path) -> dict[str, bytes]:
    """Every database file beside the lock file, with its content."""
    return {
        p.name: p.read_bytes()
        for p in db_path.parent.iterdir()
        if p.name.startswith(db_path.name) and not p.name.endswith(".lock")
    }


def serve(config_path: Path, db: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcall", "serve", "--config", str(config_path),
         "--db", str(db), "--host", "127.0.0.1", "--port", str(port)],
        capture_output=True, text=True, cwd=ROOT, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_qcall_serve_refuses_a_database_already_served(tmp_path: Path) -> None:
    config_path = standalone_demo_config(tmp_path)
    db = tmp_path / "q.db"
    first = Hub(load_config(config_path), db, clock=Clock())
    await first.start()
    try:
        port = free_port()
        started = time.monotonic()
        result = await asyncio.get_running_loop().run_in_executor(
            None, serve, config_path, db, port
        )
        assert time.monotonic() - started < CLI_TIMEOUT_S
        assert result.returncode == 1, result.stderr
        assert "already served by another qcall hub" in result.stderr
        assert "另一个 qcall 中心服务" in result.stderr
        assert "listening" not in result.stderr
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
        assert first.engine.seq == first.committed_seq
        await first.execute(lambda now: first.engine.open_window(now, 1, "c1"))
    finally:
        await first.stop()
    # A damaged database: exit 3, the recovery command in the message, nothing changed.
    await asyncio.get_running_loop().run_in_executor(
        None, db.write_bytes, b"this is not a database" * 500
    )
    result = await asyncio.get_running_loop().run_in_executor(
        None, serve, config_path, db, free_port()
    )
    assert result.returncode == 3, result.stderr
    assert "--accept-data-loss" in result.stderr
    assert "备份" in result.stderr
    assert head(db).startswith(b"this is not a database")


async def test_a_device_going_offline_while_stopping_is_committed(
    db_path: Path, clock: Clock
) -> None:
    h = Hub(make_config(), db_path, clock=clock)
    await h.start()

    async def hall_stop() -> None:
        # What the hall does when its bus closes: record the state change in a task of its own.
        async def record() -> None:
            await h.execute(lambda now: h.engine.device_state(now, "display@1", "offline", "bye"))

        h.create_task(record(), "device-state:display@1")

    h._stoppers.append(hall_stop)  # how the hall registers itself in start()
    await h.stop()
    rows = db_rows(db_path, "SELECT seq, type FROM events ORDER BY seq DESC LIMIT 1")
    assert rows == [(h.engine.seq, "device.state")]
    assert h.committed_seq == h.engine.seq
    assert db_rows(db_path, "SELECT MAX(seq) FROM snapshots") == [(h.engine.seq,)]


async def test_http_reads_wait_for_the_commit_of_what_they_show(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp import ClientSession
    from aiohttp.test_utils import TestServer

    from qcall.api import build_app

    kiosk = await hub.write(hub.store.create_token, Role.KIOSK, "kiosk 1")
    await run(hub, hub.engine.open_window, 1, "c1")
    server = TestServer(build_app(hub, manage_hub=False), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(headers={"Authorization": f"Bearer {kiosk}"}) as http:
            blocked = BlockedAppend(hub)
            monkeypatch.setattr(hub.store, "append", blocked)
            issuing = asyncio.ensure_future(run(hub, hub.engine.issue, "social"))
            await blocked.wait_entered()
            ticket = hub.engine.tickets["20261126-A001"]  # applied, not yet on disk

            async def get(path: str) -> tuple[int, str]:
                async with http.get(server.make_url(path)) as response:
                    return response.status, await response.text()

            paths = (
                f"/api/v1/tickets/{ticket.id}",
                f"/api/v1/track/{ticket.track_token}",
                f"/t/{ticket.track_token}",
                "/api/v1/catalog",
            )
            reads = [asyncio.ensure_future(get(path)) for path in paths]
            await asyncio.sleep(0.2)
            assert [r.done() for r in reads] == [False] * len(paths)
            blocked.release.set()
            answers = await asyncio.wait_for(asyncio.gather(*reads), WAIT_S)
            await asyncio.wait_for(issuing, WAIT_S)
    finally:
        await server.close()
    assert [status for status, _ in answers] == [200] * len(paths)
    assert all("A001" in body for _, body in answers[:3])
    social = next(s for s in json.loads(answers[3][1])["services"] if s["id"] == "social")
    assert social["waiting"] == 1


def test_serve_with_accept_data_loss_starts_on_a_new_log_keeping_staff(tmp_path: Path) -> None:
    config_path = standalone_demo_config(tmp_path)
    db = tmp_path / "q.db"
    store = store_module.Store(db)
    store.open()
    store.add_staff("c1", "张三", "73915284", Role.CLERK)
    store.db.execute(
        "INSERT INTO events VALUES (1, 'day.opened', '2026-11-26T08:00:00+08:00', 'not json')"
    )
    store.close()
    check = subprocess.run(
        [sys.executable, "-m", "qcall", "check-config", str(config_path), "--db", str(db)],
        capture_output=True, text=True, cwd=ROOT, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert check.returncode == 3, check.stderr
    assert "--accept-data-loss" in check.stderr
    port = free_port()
    hub = subprocess.Popen(
        [sys.executable, "-m", "qcall", "serve", "--config", str(config_path), "--db", str(db),
         "--host", "127.0.0.1", "--port", str(port), "--accept-data-loss"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        health = wait_health(port)
    finally:
        hub.terminate()
        _out, err = hub.communicate(timeout=CLI_TIMEOUT_S)
    assert hub.returncode == 0, err
    assert health["status"] == "ok"
    assert health["seq"] == 2  # the new log goes on after the old one's seq 1
    [moved] = [
        p
        for p in tmp_path.iterdir()
        if p.name.startswith("q.db.corrupt.") and not p.name.endswith(("-wal", "-shm"))
    ]
    assert db_rows(moved, "SELECT data FROM events") == [("not json",)]
    store = store_module.Store(db)
    store.open()
    try:
        assert store.check_pin("c1", "73915284") is not None
    finally:
        store.close()


def wait_health(port: int) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + CLI_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health") as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
