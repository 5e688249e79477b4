"""Durable storage: the append-only event log, snapshots, staff and API tokens (SQLite, WAL)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from qcall.errors import DatabaseCorrupt, StorageError
from qcall.events import Event, EventType
from qcall.model import Role
from qcall.pin_policy import check_pin_policy

_LOGGER = logging.getLogger(__name__)

DB_VERSION: Final = 4
# scrypt cost: about 30 ms per PIN check here, slow enough to make guessing a 6-digit PIN
# from a stolen database take days, fast enough for a clerk's login.
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
# Five wrong PINs in a quarter hour lock the account for the rest of it: a 6-digit PIN then
# takes years to guess online.
LOGIN_WINDOW: Final = dt.timedelta(minutes=15)
LOGIN_MAX_FAILURES: Final = 5
TOKEN_PREFIX: Final = "qc_"  # noqa: S105 (a marker, not a secret)
# A busy writer (a report, the CLI) must not make the hub fail at once.
BUSY_TIMEOUT_S: Final = 5.0
REPLAY_BATCH: Final = 1000
# SQLite allows 32766 parameters; a few hundred ids per query keeps each statement small.
CASE_LOOKUP_BATCH: Final = 500
# The WAL is grown to this size at start and then reused: overwriting allocated blocks makes a
# durable commit about 10x cheaper than appending (no file-system metadata to flush).
WAL_PRIME_BYTES: Final = 16 * 1024 * 1024
# Above this size the writer checkpoints between commits so that its next commit starts the
# WAL over; SQLite also truncates a WAL that outgrew it back to this size when it starts over.
# Without it, checkpoints from another connection never catch up with a steady stream of
# commits and the WAL grows without end (hundreds of MB a minute at full rate).
WAL_LIMIT_BYTES: Final = 2 * WAL_PRIME_BYTES


@dataclass(frozen=True, slots=True)
class StaffMember:
    """A staff account."""

    id: str
    name: str
    role: Role
    active: bool


@dataclass(frozen=True, slots=True)
class Recovery:
    """What an accepted data loss kept from the damaged database."""

    moved_to: Path
    saved: Mapping[str, int]  # rows per table (-1: unreadable) and the seq reached
    day: dt.date | None  # the service day the damaged log had open
    numbers: Mapping[str, int]  # the highest number issued that day, per prefix

    def to_dict(self) -> dict[str, Any]:
        """Return the diagnostics form."""
        return {
            "moved_to": str(self.moved_to),
            "saved": dict(self.saved),
            "day": self.day.isoformat() if self.day else None,
            "numbers": dict(self.numbers),
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a bearer token speaks for."""

    role: Role
    name: str
    staff_id: str | None = None
    expires_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as an operator sees it: never the token itself, only its public id."""

    id: str
    role: Role
    name: str
    staff_id: str | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked: bool


# A token's public id is the start of its SHA-256: enough to name it, useless to use it.
TOKEN_ID_CHARS: Final = 12


_V1: Final = (
    """CREATE TABLE events (
        seq  INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        at   TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    """CREATE TABLE snapshots (
        seq      INTEGER PRIMARY KEY,
        taken_at TEXT NOT NULL,
        state    TEXT NOT NULL
    )""",
    """CREATE TABLE staff (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,
        pin_hash   TEXT NOT NULL,
        active     INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE tokens (
        hash       TEXT PRIMARY KEY,
        role       TEXT NOT NULL,
        name       TEXT NOT NULL,
        staff_id   TEXT REFERENCES staff(id),
        created_at TEXT NOT NULL,
        expires_at TEXT,
        revoked    INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE webhook_cursors (
        hook     TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL
    )""",
)

# v2: throttle PIN guessing (failed logins per staff id); indexes for reports and logout.
_V2: Final = (
    "CREATE TABLE login_failures (staff_id TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE INDEX login_failures_staff ON login_failures(staff_id, at)",
    "CREATE INDEX tokens_staff ON tokens(staff_id)",
    "CREATE INDEX events_type ON events(type)",
)


# v3: where the log starts. A log begun after an accepted data loss continues the seq the
# old one reached (receivers that deduplicate by seq would drop events numbered again).
_V3: Final = (
    "CREATE TABLE log_origin (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)",
)

# v4: server secrets generated once and kept with the data (the staff pages' cookie key).
_V4: Final = (
    """CREATE TABLE secrets (
        name       TEXT PRIMARY KEY,
        value      BLOB NOT NULL,
        created_at TEXT NOT NULL
    )""",
)

# One entry per schema step; each runs in its own transaction with its user_version bump.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {1: _V1, 2: _V2, 3: _V3, 4: _V4}

_LAST_SEQ_SQL: Final = (
    "SELECT COALESCE((SELECT MAX(seq) FROM events), (SELECT seq FROM log_origin), 0)"
)


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    """Return a salted scrypt hash of a PIN in a self-describing text form."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    """Check a PIN against a stored hash in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        pin.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(candidate.hex(), digest)


@cache
def dummy_pin_hash() -> str:
    """A hash to check PINs of unknown or disabled ids against: the same cost, never a match."""
    return hash_pin(secrets.token_hex(16))


def token_hash(token: str) -> str:
    """Tokens are 256-bit random: a plain SHA-256 is enough to keep them unusable if leaked."""
    return hashlib.sha256(token.encode()).hexdigest()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Store:
    """One SQLite database file; each instance is used from one thread at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self.moved_aside: Path | None = None

    # ----------------------------------------------------------------- lifecycle

    def open_writer(self) -> None:
        """Open as the one writer: no automatic checkpoints (they stall commits), primed WAL.

        A clean stop removes the WAL (SQLite does, with the last connection), so it is primed
        again at the next start; after a crash the WAL left behind is already big enough.
        """
        self.open()
        db = self.db
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        if self.wal_bytes() < WAL_PRIME_BYTES:
            db.execute("BEGIN IMMEDIATE")
            db.execute("CREATE TABLE IF NOT EXISTS wal_prime (b BLOB)")
            db.execute("INSERT INTO wal_prime VALUES (zeroblob(?))", (WAL_PRIME_BYTES,))
            db.execute("DELETE FROM wal_prime")
            db.execute("COMMIT")
            db.execute("PRAGMA wal_checkpoint(RESTART)")

    def wal_bytes(self) -> int:
        """Size of the WAL file now (0 when there is none)."""
        try:
            return Path(f"{self.path}-wal").stat().st_size
        except FileNotFoundError:
            return 0

    def bound_wal(self) -> bool:
        """On the writer, between commits: checkpoint when the WAL is over its limit.

        Only the writer can do this usefully: with no commit in progress the checkpoint can
        copy every frame, and then the next commit starts the WAL over instead of growing it.
        PASSIVE never waits, so a reader or the checkpointer in the way only defers it.
        """
        if self.wal_bytes() <= WAL_LIMIT_BYTES:
            return False
        self.checkpoint()
        return True

    def checkpoint(self) -> tuple[int, int]:
        """Copy committed WAL frames into the database without blocking the writer."""
        _busy, frames, done = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames), int(done)

    def open(self) -> None:
        """Open (creating or migrating) the database; refuse a damaged one, leaving it as it is."""
        try:
            self._db = self._connect()
        except sqlite3.OperationalError:
            raise  # locked, no permission, disk full: not corruption, the file stays
        except sqlite3.DatabaseError as err:
            raise corrupt_error(self.path, str(err)) from err

    def recover(self, reason: str) -> Recovery:
        """Accepted data loss: move the damaged file aside, start a new one, carry over the rest.

        Staff accounts, tokens and webhook cursors are copied from the damaged file as far as
        it can still be read, and the new log continues the seq the old one reached. The
        numbers issued on the damaged log's last day are read too, so that the hub can go on
        numbering that day instead of issuing A001 again.
        """
        moved = self.quarantine(reason)
        self._db = self._connect()
        saved = _salvage(moved, self.db)
        day, numbers = _salvage_numbers(moved)
        _LOGGER.warning(
            "started a new log after an accepted data loss; saved from %s: %s; numbers of %s: %s",
            moved,
            saved,
            day,
            numbers,
        )
        return Recovery(moved, saved, day, numbers)

    def open_reader(self, *, check: bool = False) -> None:
        """Open read-only beside a running hub (reports, ``check-config --db``): no migration,
        no file created; the schema must be this qcall's. With ``check``, a damaged database
        raises ``DatabaseCorrupt`` (SQLite's quick check)."""
        if not self.path.exists():
            raise StorageError(f"no database at {self.path}", f"找不到数据库 {self.path}")
        db = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro",
            uri=True,
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            quick = db.execute("PRAGMA quick_check").fetchone()[0] if check else "ok"
        except sqlite3.OperationalError:
            db.close()
            raise
        except sqlite3.DatabaseError as err:
            db.close()
            raise corrupt_error(self.path, str(err)) from err
        if quick != "ok":
            db.close()
            raise corrupt_error(self.path, f"integrity check failed: {quick}")
        if version != DB_VERSION:
            db.close()
            raise StorageError(
                f"database schema v{version} is not this qcall's v{DB_VERSION}",
                f"数据库版本 v{version} 与本程序的 v{DB_VERSION} 不符",
            )
        self._db = db

    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def quarantine(self, reason: str) -> Path:
        """Move the database file aside (kept whole as evidence) so a new one can be made."""
        self.close()
        stamp = _utcnow().strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.corrupt.{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(Path(f"{target}{suffix}"))
        _LOGGER.error(
            "database %s is unusable (%s); moved it aside to %s (data loss accepted)",
            self.path,
            reason,
            target,
        )
        self.moved_aside = target
        return target

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self._db is None:
            raise StorageError("the database is not open", "数据库未打开")
        return self._db

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the caller is told, so a power cut loses nothing
            # that was acknowledged.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            self._migrate(db)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > DB_VERSION:
            raise StorageError(
                f"database schema v{version} is newer than this qcall (v{DB_VERSION})",
                f"数据库版本 v{version} 高于本程序支持的 v{DB_VERSION}，请升级 qcall",
            )
        for step in range(version + 1, DB_VERSION + 1):
            _LOGGER.info("migrating %s to schema v%d", self.path, step)
            with _immediate(db):
                for statement in MIGRATIONS[step]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={step}")

    # ----------------------------------------------------------------- event log

    def last_seq(self) -> int:
        """Highest committed seq (where the log starts when it is empty)."""
        return int(self.db.execute(_LAST_SEQ_SQL).fetchone()[0])

    def last_event_at(self) -> dt.datetime | None:
        """When the latest event in the log happened (the hub's time never goes before it)."""
        row = self.db.execute("SELECT at FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else dt.datetime.fromisoformat(row[0])

    def log_origin(self) -> int:
        """The seq just before this log's first event (0 unless begun after a data loss)."""
        row = self.db.execute("SELECT seq FROM log_origin").fetchone()
        return 0 if row is None else int(row[0])

    def append(self, events: list[Event]) -> None:
        """Commit events durably in one transaction; seq must continue the log without a gap."""
        if not events:
            return
        db = self.db
        with _immediate(db):
            last = int(db.execute(_LAST_SEQ_SQL).fetchone()[0])
            # Every event, not just the first: a hole inside a batch would make the log
            # unreplayable at the next start.
            for event in events:
                if event.seq != last + 1:
                    raise StorageError(
                        f"event seq {event.seq} does not follow {last}",
                        f"事件序号 {event.seq} 与前一序号 {last} 不连续",
                    )
                last = event.seq
            db.executemany(
                "INSERT INTO events (seq, type, at, data) VALUES (?, ?, ?, ?)",
                [
                    (
                        e.seq,
                        str(e.type),
                        e.at.isoformat(),
                        json.dumps(e.data, ensure_ascii=False, separators=(",", ":")),
                    )
                    for e in events
                ],
            )

    def events_after(self, seq: int, limit: int = REPLAY_BATCH) -> list[Event]:
        """Return up to ``limit`` events with seq greater than ``seq``, in order."""
        rows = self.db.execute(
            "SELECT seq, type, at, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [_event(row) for row in rows]

    def iter_events(
        self, after: int = 0, types: tuple[EventType, ...] | None = None
    ) -> Iterator[Event]:
        """Iterate over the log from ``after`` on, optionally only some types."""
        while True:
            if types:
                marks = ",".join("?" * len(types))
                rows = self.db.execute(
                    f"SELECT seq, type, at, data FROM events WHERE seq > ? AND type IN ({marks}) "  # noqa: S608
                    "ORDER BY seq LIMIT ?",
                    (after, *[str(t) for t in types], REPLAY_BATCH),
                ).fetchall()
            else:
                rows = self.db.execute(
                    "SELECT seq, type, at, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, REPLAY_BATCH),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _event(row)
            after = int(rows[-1][0])

    def day_events(self, day: dt.date) -> Iterator[Event]:
        """Iterate over the events of one service day (from its day.opened to the next)."""
        row = self.db.execute(
            "SELECT seq FROM events WHERE type = 'day.opened' AND json_extract(data, '$.day') = ?",
            (day.isoformat(),),
        ).fetchone()
        if row is None:
            return
        first = int(row[0])
        for event in self.iter_events(first - 1):
            if event.type is EventType.DAY_OPENED and event.seq != first:
                return
            yield event

    def range_events(self, first: dt.date, last: dt.date) -> Iterator[Event]:
        """Iterate over the events of the service days ``first``–``last`` (reports)."""
        openings = self.db.execute(
            "SELECT seq, json_extract(data, '$.day') FROM events WHERE type = 'day.opened' "
            "ORDER BY seq"
        ).fetchall()
        inside = [int(seq) for seq, day in openings if first.isoformat() <= day <= last.isoformat()]
        if not inside:
            return
        end = next((int(seq) for seq, _ in openings if int(seq) > inside[-1]), None)
        cursor = self.db.execute(
            "SELECT seq, type, at, data FROM events WHERE seq >= ? AND seq < ? ORDER BY seq",
            (inside[0], end if end is not None else self.last_seq() + 1),
        )
        while rows := cursor.fetchmany(REPLAY_BATCH):
            for row in rows:
                yield _event(row)

    def case_history(self, case_ids: Collection[str], first: dt.date, last: dt.date) -> list[Event]:
        """Case events a report of ``first``–``last`` needs from anywhere in the log: the
        ``case.opened`` of ``case_ids`` and of every case promised in the range, and the
        ``case.ready`` of the latter."""
        promised = self.db.execute(
            "SELECT seq, type, at, data FROM events WHERE type = 'case.opened' "
            "AND json_extract(data, '$.promised_date') BETWEEN ? AND ? ORDER BY seq",
            (first.isoformat(), last.isoformat()),
        ).fetchall()
        found = [_event(row) for row in promised]
        due = {str(e.data["case"]) for e in found}
        found += self._case_events("case.opened", set(case_ids) - due)
        found += self._case_events("case.ready", due)
        return found

    def _case_events(self, kind: str, case_ids: Collection[str]) -> list[Event]:
        ids = sorted(case_ids)
        found: list[Event] = []
        for start in range(0, len(ids), CASE_LOOKUP_BATCH):
            chunk = ids[start : start + CASE_LOOKUP_BATCH]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT seq, type, at, data FROM events WHERE type = ? "  # noqa: S608
                f"AND json_extract(data, '$.case') IN ({marks}) ORDER BY seq",
                (kind, *chunk),
            ).fetchall()
            found += [_event(row) for row in rows]
        return found

    def staff_names(self) -> dict[str, str]:
        """Every staff member's name by id (reports show names beside ids)."""
        return dict(self.db.execute("SELECT id, name FROM staff").fetchall())

    # ----------------------------------------------------------------- snapshots

    def save_snapshot(self, seq: int, state: dict[str, Any]) -> None:
        """Keep the engine state at ``seq`` so start-up replays only what follows."""
        self.db.execute(
            "INSERT OR REPLACE INTO snapshots (seq, taken_at, state) VALUES (?, ?, ?)",
            (seq, _utcnow().isoformat(), json.dumps(state, ensure_ascii=False)),
        )
        self.db.execute(
            "DELETE FROM snapshots WHERE seq NOT IN "
            "(SELECT seq FROM snapshots ORDER BY seq DESC LIMIT 3)"
        )

    def latest_snapshot(self) -> dict[str, Any] | None:
        """Return the newest snapshot state, if any."""
        row = self.db.execute("SELECT state FROM snapshots ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    # ----------------------------------------------------------------- staff

    def add_staff(self, staff_id: str, name: str, pin: str, role: Role) -> StaffMember:
        """Create or replace a staff account with a hashed PIN (which must meet the policy)."""
        if role not in (Role.CLERK, Role.SUPERVISOR, Role.ADMIN):
            raise ValueError(f"staff role must be clerk, supervisor or admin, not {role}")
        check_pin_policy(staff_id, pin)
        self.db.execute(
            "INSERT INTO staff (id, name, role, pin_hash, active, created_at) "
            "VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(id) DO UPDATE SET "
            "name=excluded.name, role=excluded.role, pin_hash=excluded.pin_hash, active=1",
            (staff_id, name, str(role), hash_pin(pin), _utcnow().isoformat()),
        )
        return StaffMember(staff_id, name, role, active=True)

    def staff(self, staff_id: str) -> StaffMember | None:
        """Return a staff account."""
        row = self.db.execute(
            "SELECT id, name, role, active FROM staff WHERE id = ?", (staff_id,)
        ).fetchone()
        return None if row is None else StaffMember(row[0], row[1], Role(row[2]), bool(row[3]))

    def list_staff(self) -> list[StaffMember]:
        """Every staff account, by id."""
        rows = self.db.execute("SELECT id, name, role, active FROM staff ORDER BY id").fetchall()
        return [StaffMember(row[0], row[1], Role(row[2]), bool(row[3])) for row in rows]

    def set_staff_active(self, staff_id: str, active: bool) -> bool:
        """Enable or disable an account; disabling also ends its sessions. False if unknown."""
        db = self.db
        with _immediate(db):
            found = db.execute(
                "UPDATE staff SET active = ? WHERE id = ?", (int(active), staff_id)
            ).rowcount
            if found and not active:
                db.execute("UPDATE tokens SET revoked = 1 WHERE staff_id = ?", (staff_id,))
        return bool(found)

    def set_staff_details(self, staff_id: str, name: str, role: Role) -> bool:
        """Rename an account or change its role (its sessions end). False if unknown."""
        db = self.db
        with _immediate(db):
            found = db.execute(
                "UPDATE staff SET name = ?, role = ? WHERE id = ?", (name, str(role), staff_id)
            ).rowcount
            if found:
                db.execute("UPDATE tokens SET revoked = 1 WHERE staff_id = ?", (staff_id,))
        return bool(found)

    def set_pin(self, staff_id: str, pin: str) -> bool:
        """Give an account a new PIN (which must meet the policy) and clear its lockout."""
        check_pin_policy(staff_id, pin)
        db = self.db
        with _immediate(db):
            found = db.execute(
                "UPDATE staff SET pin_hash = ? WHERE id = ?", (hash_pin(pin), staff_id)
            ).rowcount
            db.execute("DELETE FROM login_failures WHERE staff_id = ?", (staff_id,))
        return bool(found)

    def locked_staff(self, now: dt.datetime) -> set[str]:
        """Ids of the accounts locked by too many wrong PINs at ``now``."""
        rows = self.db.execute(
            "SELECT staff_id FROM login_failures WHERE at >= ? GROUP BY staff_id "
            "HAVING COUNT(*) >= ?",
            ((now - LOGIN_WINDOW).isoformat(), LOGIN_MAX_FAILURES),
        ).fetchall()
        return {str(row[0]) for row in rows}

    def check_pin(self, staff_id: str, pin: str) -> StaffMember | None:
        """Return the staff member when the PIN matches (and the account is active).

        Unknown, disabled and known ids all cost exactly one scrypt: timing reveals nothing.
        """
        row = self.db.execute(
            "SELECT id, name, role, active, pin_hash FROM staff WHERE id = ?", (staff_id,)
        ).fetchone()
        if row is None or not row[3]:
            verify_pin(pin, dummy_pin_hash())
            return None
        if not verify_pin(pin, row[4]):
            return None
        return StaffMember(row[0], row[1], Role(row[2]), True)

    def record_login_failure(self, staff_id: str, at: dt.datetime) -> None:
        """Note a failed login (for throttling)."""
        self.db.execute(
            "INSERT INTO login_failures (staff_id, at) VALUES (?, ?)", (staff_id, at.isoformat())
        )

    def login_failures_since(self, staff_id: str, since: dt.datetime) -> int:
        """Count failed logins since a moment."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM login_failures WHERE staff_id = ? AND at >= ?",
            (staff_id, since.isoformat()),
        ).fetchone()
        return int(row[0])

    def save_login_changes(self, changes: list[tuple[str, dt.datetime | None]]) -> None:
        """Apply failed logins (id, when) and clears (id, None) in order, in one transaction."""
        db = self.db
        with _immediate(db):
            for staff_id, at in changes:
                if at is None:
                    db.execute("DELETE FROM login_failures WHERE staff_id = ?", (staff_id,))
                else:
                    db.execute(
                        "INSERT INTO login_failures (staff_id, at) VALUES (?, ?)",
                        (staff_id, at.isoformat()),
                    )

    def login_failures_after(self, since: dt.datetime) -> list[tuple[str, dt.datetime]]:
        """Failed logins since a moment, oldest first (to restore lockouts at start)."""
        rows = self.db.execute(
            "SELECT staff_id, at FROM login_failures WHERE at >= ? ORDER BY at",
            (since.isoformat(),),
        ).fetchall()
        return [(str(r[0]), dt.datetime.fromisoformat(r[1])) for r in rows]

    def prune_login_failures(self, before: dt.datetime) -> int:
        """Delete failed logins older than a moment (they no longer lock anything)."""
        cursor = self.db.execute("DELETE FROM login_failures WHERE at < ?", (before.isoformat(),))
        return cursor.rowcount

    def clear_login_failures(self, staff_id: str) -> None:
        """Forget failures after a good login."""
        self.db.execute("DELETE FROM login_failures WHERE staff_id = ?", (staff_id,))

    # ----------------------------------------------------------------- tokens

    def create_token(
        self,
        role: Role,
        name: str,
        *,
        staff_id: str | None = None,
        expires_at: dt.datetime | None = None,
    ) -> str:
        """Create a bearer token; only its hash is stored, the token is returned once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.db.execute(
            "INSERT INTO tokens (hash, role, name, staff_id, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                token_hash(token),
                str(role),
                name,
                staff_id,
                _utcnow().isoformat(),
                expires_at.isoformat() if expires_at else None,
            ),
        )
        return token

    def ensure_token(self, token: str, role: Role, name: str) -> None:
        """Make a token that was handed out before valid again (the demo's printed ones)."""
        self.db.execute(
            "INSERT INTO tokens (hash, role, name, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(hash) DO UPDATE SET role = excluded.role, name = excluded.name, "
            "revoked = 0, expires_at = NULL",
            (token_hash(token), str(role), name, _utcnow().isoformat()),
        )

    def principal(self, token: str) -> Principal | None:
        """Return who a token speaks for, or None when unknown, revoked, expired or disabled."""
        row = self.db.execute(
            "SELECT t.role, t.name, t.staff_id, t.expires_at, t.revoked, s.active "
            "FROM tokens t LEFT JOIN staff s ON s.id = t.staff_id WHERE t.hash = ?",
            (token_hash(token),),
        ).fetchone()
        if row is None or row[4] or (row[2] is not None and not row[5]):
            return None
        expires = dt.datetime.fromisoformat(row[3]) if row[3] else None
        if expires is not None and expires <= _utcnow():
            return None
        return Principal(Role(row[0]), row[1], row[2], expires)

    def revoke_token(self, token: str) -> None:
        """Revoke a token (logout)."""
        self.db.execute("UPDATE tokens SET revoked = 1 WHERE hash = ?", (token_hash(token),))

    def list_tokens(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        """The tokens, oldest first, each by its public id (the token itself is never stored)."""
        rows = self.db.execute(
            "SELECT hash, role, name, staff_id, created_at, expires_at, revoked FROM tokens "
            "WHERE revoked = 0 OR ? ORDER BY created_at, hash",
            (int(include_revoked),),
        ).fetchall()
        return [
            TokenInfo(
                id=row[0][:TOKEN_ID_CHARS],
                role=Role(row[1]),
                name=row[2],
                staff_id=row[3],
                created_at=dt.datetime.fromisoformat(row[4]),
                expires_at=dt.datetime.fromisoformat(row[5]) if row[5] else None,
                revoked=bool(row[6]),
            )
            for row in rows
        ]

    def revoke_token_id(self, token_id: str) -> list[TokenInfo]:
        """Revoke the token whose public id is ``token_id``; returns what matched.

        Nothing is revoked unless exactly one token matches: the caller reports the rest.
        """
        token_id = token_id.strip().lower()
        if len(token_id) != TOKEN_ID_CHARS or any(c not in "0123456789abcdef" for c in token_id):
            return []
        matches = [t for t in self.list_tokens(include_revoked=True) if t.id == token_id]
        if len(matches) == 1:
            self.db.execute(
                "UPDATE tokens SET revoked = 1 WHERE substr(hash, 1, ?) = ?",
                (TOKEN_ID_CHARS, token_id),
            )
        return matches

    def auth_version(self) -> tuple[int, str]:
        """Changes whenever a token is revoked or an account disabled, by any process."""
        row = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM tokens WHERE revoked = 1), "
            "(SELECT COALESCE(group_concat(id, ','), '') FROM "
            "(SELECT id FROM staff WHERE active = 0 ORDER BY id))"
        ).fetchone()
        return int(row[0]), str(row[1])

    # ----------------------------------------------------------------- secrets

    def secret(self, name: str, size: int = 32) -> bytes:
        """Return the named server secret, generating and storing it on first use."""
        self.db.execute(
            "INSERT OR IGNORE INTO secrets (name, value, created_at) VALUES (?, ?, ?)",
            (name, secrets.token_bytes(size), _utcnow().isoformat()),
        )
        row = self.db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
        return bytes(row[0])

    # ----------------------------------------------------------------- webhooks

    def webhook_cursor(self, hook: str) -> int | None:
        """Last seq delivered to a webhook, or None for a new one."""
        row = self.db.execute(
            "SELECT last_seq FROM webhook_cursors WHERE hook = ?", (hook,)
        ).fetchone()
        return None if row is None else int(row[0])

    def set_webhook_cursor(self, hook: str, seq: int) -> None:
        """Remember that a webhook has everything up to ``seq``."""
        self.db.execute(
            "INSERT INTO webhook_cursors (hook, last_seq) VALUES (?, ?) "
            "ON CONFLICT(hook) DO UPDATE SET last_seq = excluded.last_seq",
            (hook, seq),
        )


def corrupt_error(path: Path, reason: str) -> DatabaseCorrupt:
    """The refusal to start on a damaged database, with the two ways out."""
    return DatabaseCorrupt(
        f"database {path} is damaged ({reason}); the hub will not start on it. Restore the "
        f"latest backup to {path}, or start once with --accept-data-loss to move it aside and "
        "begin a new log (staff accounts and tokens are kept, the tickets in it are lost).",
        f"数据库 {path} 已损坏（{reason}），中心服务拒绝启动。请用最近的备份恢复 {path}；"
        "或确认放弃其中的号码数据后，加 --accept-data-loss 启动一次：损坏的文件将移至一旁，"
        "新建日志（保留工作人员账户和令牌）。",
    )


_SALVAGE: Final = (
    ("staff", "id, name, role, pin_hash, active, created_at"),
    ("tokens", "hash, role, name, staff_id, created_at, expires_at, revoked"),
    ("webhook_cursors", "hook, last_seq"),
)


def _salvage(old_path: Path, new: sqlite3.Connection) -> dict[str, int]:
    saved: dict[str, int] = {}
    try:
        old = sqlite3.connect(f"{old_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return {table: -1 for table, _ in _SALVAGE} | {"seq": -1}
    try:
        for table, columns in _SALVAGE:
            try:
                rows = old.execute(f"SELECT {columns} FROM {table}").fetchall()  # noqa: S608
            except sqlite3.Error:
                saved[table] = -1
                continue
            marks = ",".join("?" * len(columns.split(",")))
            new.executemany(
                f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608
                rows,
            )
            saved[table] = len(rows)
        # The highest seq anybody may have seen: the log's, a snapshot's, a webhook's cursor.
        reached = 0
        for sql in (
            "SELECT MAX(seq) FROM events",
            "SELECT MAX(seq) FROM snapshots",
            "SELECT MAX(last_seq) FROM webhook_cursors",
            "SELECT seq FROM log_origin",
        ):
            try:
                row = old.execute(sql).fetchone()
            except sqlite3.Error:
                continue
            if row is not None and row[0] is not None:
                reached = max(reached, int(row[0]))
        new.execute("INSERT OR REPLACE INTO log_origin (id, seq) VALUES (1, ?)", (reached,))
        saved["seq"] = reached
    finally:
        old.close()
    return saved


def _salvage_numbers(old_path: Path) -> tuple[dt.date | None, dict[str, int]]:
    """The damaged log's last service day and the highest number issued in it, per prefix.

    Read row by row, as far as the file allows: a row that does not parse is skipped, a
    damaged page ends the scan with what was found before it.
    """
    numbers: dict[str, int] = {}
    try:
        old = sqlite3.connect(f"{old_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None, numbers
    try:
        try:
            row = old.execute(
                "SELECT seq, data FROM events WHERE type = 'day.opened' ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            first, day = int(row[0]), dt.date.fromisoformat(json.loads(row[1])["day"])
        except (sqlite3.Error, TypeError, ValueError, KeyError):
            return None, numbers
        try:
            for (raw,) in old.execute(
                "SELECT data FROM events WHERE type = 'ticket.issued' AND seq > ?", (first,)
            ):
                try:
                    data = json.loads(raw)
                    count = int(str(data["number"])[len(str(data["prefix"])) :])
                except (TypeError, ValueError, KeyError):
                    continue
                prefix = str(data["prefix"])
                numbers[prefix] = max(numbers.get(prefix, 0), count)
        except sqlite3.Error:
            pass  # a damaged page: keep what was read before it
        return day, numbers
    finally:
        old.close()


# Replays and month reports decode ~10^5 rows: a dict lookup instead of the enum's call, and
# the decoder itself (the log holds compact JSON that append wrote: no whitespace to skip).
_EVENT_TYPES: Final = {str(t): t for t in EventType}
_DECODE: Final = json.JSONDecoder().raw_decode


def _event(row: tuple[Any, ...]) -> Event:
    return Event(
        seq=int(row[0]),
        type=_EVENT_TYPES.get(row[1]) or EventType(row[1]),
        at=dt.datetime.fromisoformat(row[2]),
        data=_DECODE(row[3])[0],
    )


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: taken at once (``BEGIN IMMEDIATE``), committed, or rolled back."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
