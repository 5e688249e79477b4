"""The SQLite store (qcall/store.py) on real database files: schema versions, the event log,
snapshots, staff PINs, tokens, and what happens to corrupt, newer or locked files."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sqlite3
from pathlib import Path

import pytest

from qcall import store as store_module
from qcall.errors import DatabaseCorrupt, StorageError
from qcall.events import Event, EventType
from qcall.model import Role
from qcall.store import (
    DB_VERSION,
    MIGRATIONS,
    TOKEN_PREFIX,
    Principal,
    Store,
    hash_pin,
    token_hash,
    verify_pin,
)
from tests.common import SHANGHAI

T0 = dt.datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI)
DAY = T0.date()
# Long enough that it cannot turn up by chance in the hex of a salt or digest.
PIN = "73915284"
CORRUPT_NAME = re.compile(r"^q\.db\.corrupt\.\d{8}T\d{6}Z$")


def ev(seq: int, type_: EventType = EventType.TICKET_ISSUED, **data: object) -> Event:
    return Event(seq, type_, T0 + dt.timedelta(minutes=seq), data or {"n": seq})


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "q.db"


@pytest.fixture
def store(db_path: Path):
    s = Store(db_path)
    s.open()
    yield s
    s.close()


def corrupt_files(folder: Path) -> list[Path]:
    """Database files moved aside (SQLite may add its -wal/-shm beside them when read)."""
    return sorted(
        p
        for p in folder.iterdir()
        if ".corrupt." in p.name and not p.name.endswith(("-wal", "-shm"))
    )


# ----------------------------------------------------------------------------- schema versions


def test_fresh_database_is_migrated_to_the_current_version(db_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="qcall.store")
    s = Store(db_path)
    s.open()
    s.close()
    assert user_version(db_path) == DB_VERSION
    assert sorted(MIGRATIONS) == list(range(1, DB_VERSION + 1))
    steps = [r.getMessage() for r in caplog.records if "migrating" in r.getMessage()]
    assert len(steps) == DB_VERSION
    tables = {r[0] for r in rows(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "snapshots", "staff", "tokens", "webhook_cursors", "login_failures"} <= tables
    assert rows(db_path, "PRAGMA journal_mode") == [("wal",)]


def test_reopening_does_not_migrate_again_and_keeps_data(db_path: Path, caplog) -> None:
    s = Store(db_path)
    s.open()
    s.append([ev(1), ev(2)])
    s.set_webhook_cursor("crm", 2)
    s.close()
    caplog.clear()
    caplog.set_level(logging.INFO, logger="qcall.store")
    s = Store(db_path)
    s.open()
    try:
        assert not [r for r in caplog.records if "migrating" in r.getMessage()]
        assert s.last_seq() == 2
        assert s.webhook_cursor("crm") == 2
    finally:
        s.close()
    assert user_version(db_path) == DB_VERSION


def test_a_v1_database_is_migrated_one_step_keeping_its_events(db_path: Path) -> None:
    db = sqlite3.connect(db_path, isolation_level=None)
    for statement in MIGRATIONS[1]:
        db.execute(statement)
    db.execute("INSERT INTO events VALUES (1, 'ticket.issued', ?, '{\"n\":1}')", (T0.isoformat(),))
    db.execute("PRAGMA user_version=1")
    db.close()
    s = Store(db_path)
    s.open()
    try:
        assert [e.seq for e in s.iter_events()] == [1]
        s.record_login_failure("c1", T0)  # a v2 table
        assert s.login_failures_since("c1", T0) == 1
    finally:
        s.close()
    assert user_version(db_path) == DB_VERSION


def test_a_database_from_a_newer_qcall_is_refused_and_left_alone(db_path: Path) -> None:
    s = Store(db_path)
    s.open()
    s.append([ev(1)])
    s.close()
    newer = DB_VERSION + 1
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version={newer}")
    db.close()
    with pytest.raises(StorageError) as caught:
        Store(db_path).open()
    assert f"v{newer}" in caught.value.message_en
    assert f"v{DB_VERSION}" in caught.value.message_en
    assert "升级" in caught.value.message_zh
    # Not corruption: the file stays where it is, untouched.
    assert corrupt_files(db_path.parent) == []
    assert user_version(db_path) == newer
    assert rows(db_path, "SELECT seq FROM events") == [(1,)]


# ----------------------------------------------------------------------------- event log


def test_append_and_read_back(store: Store) -> None:
    assert store.last_seq() == 0
    store.append([ev(1), ev(2, EventType.TICKET_CALLED, window=3, number="A001")])
    store.append([])  # nothing to do
    store.append([ev(3)])
    assert store.last_seq() == 3
    back = store.events_after(0)
    assert [e.seq for e in back] == [1, 2, 3]
    assert back[1] == ev(2, EventType.TICKET_CALLED, window=3, number="A001")
    assert back[1].at.utcoffset() == dt.timedelta(hours=8)
    assert [e.seq for e in store.events_after(1, limit=1)] == [2]
    assert store.events_after(3) == []


def test_append_refuses_a_gap_and_writes_nothing(store: Store, db_path: Path) -> None:
    store.append([ev(1), ev(2)])
    with pytest.raises(StorageError) as caught:
        store.append([ev(4), ev(5)])
    assert "4" in caught.value.message_en
    assert "2" in caught.value.message_en
    with pytest.raises(StorageError):
        store.append([ev(2)])  # a repeat is a gap backwards
    assert store.last_seq() == 2
    assert rows(db_path, "SELECT seq FROM events ORDER BY seq") == [(1,), (2,)]
    assert not store.db.in_transaction
    store.append([ev(3)])  # the log still accepts the right continuation
    assert store.last_seq() == 3


@pytest.mark.parametrize("seqs", [[3, 5], [3, 4, 4], [3, 2]], ids=["gap", "repeat", "backwards"])
def test_append_refuses_a_batch_with_a_hole_inside(
    store: Store, db_path: Path, seqs: list[int]
) -> None:
    store.append([ev(1), ev(2)])
    with pytest.raises(StorageError):
        store.append([ev(s) for s in seqs])
    assert rows(db_path, "SELECT seq FROM events ORDER BY seq") == [(1,), (2,)]
    assert not store.db.in_transaction


def test_iter_events_pages_through_the_log_and_filters_types(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "REPLAY_BATCH", 3)
    kinds = [EventType.TICKET_ISSUED, EventType.TICKET_CALLED]
    store.append([ev(n, kinds[n % 2]) for n in range(1, 11)])
    assert [e.seq for e in store.iter_events()] == list(range(1, 11))
    assert [e.seq for e in store.iter_events(after=7)] == [8, 9, 10]
    called = list(store.iter_events(types=(EventType.TICKET_CALLED,)))
    assert [e.seq for e in called] == [1, 3, 5, 7, 9]
    assert {e.type for e in called} == {EventType.TICKET_CALLED}
    assert list(store.iter_events(after=10)) == []


def test_day_events_cover_one_service_day(store: Store) -> None:
    def opened(seq: int, day: dt.date) -> Event:
        return ev(seq, EventType.DAY_OPENED, day=day.isoformat(), day_type="weekday")

    nxt = DAY + dt.timedelta(days=1)
    store.append(
        [
            opened(1, DAY),
            ev(2),
            ev(3),
            ev(4, EventType.DAY_CLOSED, day=DAY.isoformat(), expired=[], closed_windows=[]),
            opened(5, nxt),
            ev(6),
        ]
    )
    assert [e.seq for e in store.day_events(DAY)] == [1, 2, 3, 4]
    assert [e.seq for e in store.day_events(nxt)] == [5, 6]
    assert list(store.day_events(DAY - dt.timedelta(days=1))) == []


# ----------------------------------------------------------------------------- snapshots


def test_only_the_newest_three_snapshots_are_kept(store: Store, db_path: Path) -> None:
    assert store.latest_snapshot() is None
    for seq in (10, 20, 30, 40, 50):
        store.save_snapshot(seq, {"seq": seq, "名字": "状态"})
    assert rows(db_path, "SELECT seq FROM snapshots ORDER BY seq") == [(30,), (40,), (50,)]
    assert store.latest_snapshot() == {"seq": 50, "名字": "状态"}
    store.save_snapshot(50, {"seq": 50, "again": True})  # same seq replaces
    assert store.latest_snapshot() == {"seq": 50, "again": True}
    assert len(rows(db_path, "SELECT seq FROM snapshots")) == 3


# ----------------------------------------------------------------------------- staff and PINs


def test_pin_hash_round_trip() -> None:
    first, second = hash_pin(PIN), hash_pin(PIN)
    assert first != second  # a new salt every time
    assert first.split("$")[4] != second.split("$")[4]
    assert first.startswith("scrypt$")
    assert PIN not in first
    assert PIN not in second
    assert verify_pin(PIN, first)
    assert verify_pin(PIN, second)
    assert not verify_pin("73915285", first)
    assert not verify_pin("", first)
    assert not verify_pin(PIN, "garbage")
    assert not verify_pin(PIN, first.replace("scrypt$", "md5$", 1))


def test_staff_pins_are_stored_hashed_and_checked(store: Store, db_path: Path) -> None:
    member = store.add_staff("c1", "张三", PIN, Role.CLERK)
    assert member.role is Role.CLERK
    assert store.staff("c1") == member
    assert store.staff("nobody") is None
    assert store.check_pin("c1", PIN) == member
    assert store.check_pin("c1", "00000000") is None
    assert store.check_pin("nobody", PIN) is None
    stored = rows(db_path, "SELECT pin_hash FROM staff WHERE id = 'c1'")[0][0]
    assert isinstance(stored, str)
    assert PIN not in stored
    assert verify_pin(PIN, stored)
    # Re-adding replaces the PIN; a deactivated account cannot log in.
    store.add_staff("c1", "张三", "11112222", Role.SUPERVISOR)
    assert store.check_pin("c1", PIN) is None
    assert store.check_pin("c1", "11112222") is not None
    store.db.execute("UPDATE staff SET active = 0 WHERE id = 'c1'")
    assert store.check_pin("c1", "11112222") is None
    with pytest.raises(ValueError):
        store.add_staff("k1", "kiosk", PIN, Role.KIOSK)


def test_login_failures_are_counted_and_cleared(store: Store) -> None:
    for minutes in (0, 5, 10):
        store.record_login_failure("c1", T0 + dt.timedelta(minutes=minutes))
    store.record_login_failure("c2", T0)
    assert store.login_failures_since("c1", T0) == 3
    assert store.login_failures_since("c1", T0 + dt.timedelta(minutes=5)) == 2
    store.clear_login_failures("c1")
    assert store.login_failures_since("c1", T0) == 0
    assert store.login_failures_since("c2", T0) == 1


# ----------------------------------------------------------------------------- tokens


def test_token_is_returned_once_and_only_its_hash_is_stored(db_path: Path) -> None:
    s = Store(db_path)
    s.open()
    s.add_staff("c1", "张三", PIN, Role.CLERK)
    token = s.create_token(Role.CLERK, "张三", staff_id="c1")
    other = s.create_token(Role.KIOSK, "kiosk 1")
    assert token.startswith(TOKEN_PREFIX)
    assert other != token
    assert s.principal(token) == Principal(Role.CLERK, "张三", "c1", None)
    s.close()  # checkpoints the WAL into the main file
    raw = b"".join(
        Path(f"{db_path}{suffix}").read_bytes()
        for suffix in ("", "-wal")
        if Path(f"{db_path}{suffix}").exists()
    )
    for secret in (token, other, PIN):
        assert secret.encode() not in raw
    # The search itself works: the hash is there.
    assert token_hash(token).encode() in raw
    assert rows(db_path, "SELECT hash FROM tokens ORDER BY created_at")[0][0] == token_hash(token)


def test_token_expiry_and_revocation(store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    live = store.create_token(Role.KIOSK, "kiosk", expires_at=now + dt.timedelta(hours=1))
    expired = store.create_token(Role.KIOSK, "old", expires_at=now - dt.timedelta(seconds=1))
    forever = store.create_token(Role.DISPLAY, "lobby")
    found = store.principal(live)
    assert found is not None
    assert found.role is Role.KIOSK
    assert found.expires_at == now + dt.timedelta(hours=1)
    assert store.principal(expired) is None
    assert store.principal(forever) == Principal(Role.DISPLAY, "lobby")
    assert store.principal("qc_unknown") is None
    assert store.principal("") is None
    store.revoke_token(forever)
    assert store.principal(forever) is None
    assert store.principal(live) is not None  # revoking one leaves the others


def test_webhook_cursor(store: Store) -> None:
    assert store.webhook_cursor("crm") is None
    store.set_webhook_cursor("crm", 5)
    store.set_webhook_cursor("crm", 9)
    store.set_webhook_cursor("sms", 1)
    assert store.webhook_cursor("crm") == 9
    assert store.webhook_cursor("sms") == 1


# ----------------------------------------------------------------------------- bad files


def _assert_refused(db_path: Path, original: bytes) -> None:
    with pytest.raises(DatabaseCorrupt) as caught:
        Store(db_path).open()
    err = caught.value
    # The operator is told which file, and both ways out.
    for message in (err.message_en, err.message_zh):
        assert str(db_path) in message
        assert "--accept-data-loss" in message
    assert "backup" in err.message_en
    assert "备份" in err.message_zh
    # Nothing was touched: no new file, nothing moved aside.
    assert db_path.read_bytes() == original
    assert corrupt_files(db_path.parent) == []


def _assert_recovered(
    db_path: Path, original: bytes, caplog: pytest.LogCaptureFixture
) -> dict[str, int]:
    s = Store(db_path)
    recovery = s.recover("test")
    saved = dict(recovery.saved)
    try:
        assert s.last_seq() == s.log_origin() == saved["seq"]
        s.append([ev(saved["seq"] + 1)])  # the new log continues the old one's seq
        assert s.last_seq() == saved["seq"] + 1
    finally:
        s.close()
    moved = corrupt_files(db_path.parent)
    assert len(moved) == 1, moved
    assert CORRUPT_NAME.match(moved[0].name), moved[0].name
    assert moved[0].read_bytes() == original  # the evidence is kept as it was
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "qcall.store"]
    assert len(errors) == 1
    assert str(moved[0]) in errors[0].getMessage()
    assert user_version(db_path) == DB_VERSION
    return saved


def test_a_garbage_file_is_refused_then_recovered_only_on_request(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = os.urandom(16384)
    db_path.write_bytes(garbage)
    _assert_refused(db_path, garbage)
    saved = _assert_recovered(db_path, garbage, caplog)
    assert saved == {"staff": -1, "tokens": -1, "webhook_cursors": -1, "seq": 0}


def _filled(db_path: Path) -> None:
    s = Store(db_path)
    s.open()
    s.add_staff("c1", "张三", PIN, Role.CLERK)
    s.append([ev(n, pad="x" * 200) for n in range(1, 2001)])
    s.close()
    assert not Path(f"{db_path}-wal").exists()


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_database_is_refused_then_recovered_only_on_request(
    db_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    _filled(db_path)
    size = db_path.stat().st_size
    with db_path.open("r+b") as f:
        if damage == "truncated":
            f.truncate(size // 2)
        else:
            f.seek(4096 * 3)
            f.write(os.urandom(4096 * 4))
    damaged = db_path.read_bytes()
    _assert_refused(db_path, damaged)
    saved = _assert_recovered(db_path, damaged, caplog)
    # What the damaged file still shows is kept; the new log never starts below it.
    assert set(saved) == {"staff", "tokens", "webhook_cursors", "seq"}
    assert saved["seq"] in (0, 2000)


def test_recovery_keeps_staff_tokens_cursors_and_the_seq(db_path: Path) -> None:
    s = Store(db_path)
    s.open()
    s.add_staff("c1", "张三", PIN, Role.CLERK)
    token = s.create_token(Role.KIOSK, "kiosk 1")
    s.set_webhook_cursor("crm", 40)
    s.append([ev(n) for n in range(1, 51)])
    s.close()
    s = Store(db_path)
    recovery = s.recover("broken log")
    try:
        assert recovery.saved == {"staff": 1, "tokens": 1, "webhook_cursors": 1, "seq": 50}
        assert (recovery.day, recovery.numbers) == (None, {})  # no day.opened in this log
        assert s.check_pin("c1", PIN) is not None
        found = s.principal(token)
        assert found is not None
        assert found.role is Role.KIOSK
        assert s.webhook_cursor("crm") == 40
        assert s.events_after(0) == []
        with pytest.raises(StorageError):
            s.append([ev(1)])  # seq 1 was used by the old log: never again
        s.append([ev(51)])
        assert [e.seq for e in s.events_after(0)] == [51]
    finally:
        s.close()


def test_read_only_open_creates_and_changes_nothing(db_path: Path, tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        Store(tmp_path / "missing.db").open_reader(check=True)
    assert not (tmp_path / "missing.db").exists()
    s = Store(db_path)
    s.open()
    s.append([ev(1)])
    s.close()
    before = db_path.read_bytes()
    r = Store(db_path)
    r.open_reader(check=True)
    try:
        assert r.last_seq() == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            r.append([ev(2)])
    finally:
        r.close()
    assert db_path.read_bytes() == before


def test_a_locked_database_is_not_quarantined(
    db_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.1)
    # A database another program made (rollback journal, not migrated yet), locked by it.
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("CREATE TABLE keep (x)")
    holder.execute("INSERT INTO keep VALUES (1)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            Store(db_path).open()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert corrupt_files(db_path.parent) == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert rows(db_path, "SELECT x FROM keep") == [(1,)]
    s = Store(db_path)  # once the lock is gone it opens and migrates
    s.open()
    s.close()
    assert user_version(db_path) == DB_VERSION


def test_a_locked_wal_database_needing_migration_is_not_quarantined(
    db_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE keep (x)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO keep VALUES (1)")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            Store(db_path).open()
        assert corrupt_files(db_path.parent) == []
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert rows(db_path, "SELECT x FROM keep") == [(1,)]


def test_a_closed_store_says_so(db_path: Path) -> None:
    s = Store(db_path)
    with pytest.raises(StorageError):
        s.last_seq()
    s.open()
    s.close()
    s.close()  # idempotent
    with pytest.raises(StorageError):
        s.append([ev(1)])


# ----------------------------------------------------------------------------- WAL


def test_the_wal_is_primed_once_and_not_again_after_a_crash(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "WAL_PRIME_BYTES", 256 * 1024)
    monkeypatch.setattr(store_module, "WAL_LIMIT_BYTES", 512 * 1024)
    s = Store(db_path)
    s.open_writer()
    try:
        assert s.wal_bytes() >= 256 * 1024
        s.append([ev(1)])
        # What a crash leaves behind: the database and its WAL as they are now.
        crashed = tmp_path / "crashed"
        crashed.mkdir()
        for suffix in ("", "-wal"):
            (crashed / f"q.db{suffix}").write_bytes(Path(f"{db_path}{suffix}").read_bytes())
    finally:
        s.close()
    wal = crashed / "q.db-wal"
    before = wal.read_bytes()
    again = Store(crashed / "q.db")
    again.open_writer()
    try:
        assert again.last_seq() == 1  # the WAL's commit is recovered ...
        assert wal.read_bytes() == before  # ... and the WAL is not primed a second time
    finally:
        again.close()
