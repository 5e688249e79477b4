"""``qcall db backup`` and ``qcall db check``: online backups and offline checks of the log.

A backup goes through SQLite's backup API in one step from a read transaction. In WAL mode a
reader never blocks the hub's writer and sees one committed state, so the copy is consistent
while the hub keeps serving. The copy is written next to its destination, checked, flushed to
disk and only then renamed into place: a crash mid-way never leaves a half backup under the
final name. The copy is a single self-contained file (rollback journal, no -wal/-shm).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# How long a backup or check waits for a lock held by the hub's writer before giving up.
BUSY_TIMEOUT_S: Final = 30.0
# Name of the backups written with --dir; the timestamp sorts in time order.
BACKUP_PREFIX: Final = "qcall-"
BACKUP_SUFFIX: Final = ".db"
_BACKUP_NAME: Final = re.compile(r"^qcall-\d{8}-\d{6}(-\d+)?\.db$")


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of ``qcall db check``, in both languages."""

    zh: str
    en: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What ``qcall db check`` found: the log's extent and every problem."""

    first_seq: int
    last_seq: int
    events: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """Whether the database passed every check."""
        return not self.problems


class BackupError(Exception):
    """A backup could not be made; nothing was left under the destination name."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en


def _open_read_only(path: Path) -> sqlite3.Connection:
    # mode=ro: a typo never creates an empty database, and the check writes nothing.
    db = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None
    )
    db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    return db


def backup(source: Path, target: Path) -> CheckResult:
    """Copy ``source`` to ``target`` consistently (the hub may be running); return its check.

    Raises ``BackupError`` when the source is missing or unreadable, or the copy fails its
    check; the destination is then left as it was.
    """
    if not source.is_file():
        raise BackupError(f"找不到数据库 {source}", f"no database at {source}")
    if target.resolve() == source.resolve():
        raise BackupError("备份目标不能是数据库本身", "the backup target is the database itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        src = _open_read_only(source)
        try:
            dst = sqlite3.connect(partial, isolation_level=None)
            try:
                # pages=-1: the whole database from one read transaction (one committed state).
                src.backup(dst, pages=-1)
                # A self-contained file: restoring is copying it back, no -wal to carry along.
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        result = check(partial)
        if not result.ok:
            first = result.problems[0]
            raise BackupError(f"备份副本检查未通过：{first.zh}", f"the copy failed: {first.en}")
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(target)
        _fsync_dir(target.parent)
    except sqlite3.Error as err:
        partial.unlink(missing_ok=True)
        raise BackupError(f"备份失败：{err}", f"backup failed: {err}") from err
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return result


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_name(now: dt.datetime, folder: Path) -> Path:
    """A new, unused backup file name in ``folder`` for the moment ``now``."""
    stem = f"{BACKUP_PREFIX}{now:%Y%m%d-%H%M%S}"
    candidate = folder / f"{stem}{BACKUP_SUFFIX}"
    number = 1
    while candidate.exists():
        candidate = folder / f"{stem}-{number}{BACKUP_SUFFIX}"
        number += 1
    return candidate


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest backups in ``folder``; return what was deleted.

    Only files named like ``qcall db backup --dir`` names them are touched.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    backups = sorted(
        (p for p in folder.iterdir() if p.is_file() and _BACKUP_NAME.match(p.name)),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
    )
    removed = backups[:-keep]
    for old in removed:
        old.unlink()
    return removed


def check(path: Path) -> CheckResult:
    """Check a database: SQLite integrity, foreign keys, and an unbroken event log.

    The log must run from where it starts (``log_origin``, 0 normally) without a missing or
    extra seq, and event times must never go backwards.
    """
    if not path.is_file():
        return CheckResult(0, 0, 0, (Problem(f"找不到数据库 {path}", f"no database at {path}"),))
    problems: list[Problem] = []
    try:
        db = _open_read_only(path)
    except sqlite3.Error as err:
        return CheckResult(0, 0, 0, (Problem(f"无法打开：{err}", f"cannot open: {err}"),))
    try:
        return _check_open(db, problems)
    except sqlite3.DatabaseError as err:
        problems.append(Problem(f"数据库损坏：{err}", f"database damaged: {err}"))
        return CheckResult(0, 0, 0, tuple(problems))
    finally:
        db.close()


def _check_open(db: sqlite3.Connection, problems: list[Problem]) -> CheckResult:
    for (line,) in db.execute("PRAGMA integrity_check").fetchall():
        if line != "ok":
            problems.append(Problem(f"完整性检查：{line}", f"integrity check: {line}"))
    for table, rowid, parent, _fk in db.execute("PRAGMA foreign_key_check").fetchall():
        problems.append(
            Problem(
                f"{table} 第 {rowid} 行引用了不存在的 {parent}",
                f"{table} row {rowid} refers to a missing {parent}",
            )
        )
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "events" not in tables:
        problems.append(Problem("没有事件日志表（不是 qcall 数据库？）", "no event log table"))
        return CheckResult(0, 0, 0, tuple(problems))
    origin = 0
    if "log_origin" in tables:
        row = db.execute("SELECT seq FROM log_origin").fetchone()
        origin = int(row[0]) if row else 0
    expected = origin + 1
    previous_at: dt.datetime | None = None
    count = 0
    with contextlib.closing(db.execute("SELECT seq, at FROM events ORDER BY seq")) as cursor:
        for seq, at in cursor:
            count += 1
            if seq != expected:
                problems.append(
                    Problem(
                        f"事件日志不连续：应为序号 {expected}，实为 {seq}",
                        f"event log gap: expected seq {expected}, found {seq}",
                    )
                )
            expected = seq + 1
            try:
                moment = dt.datetime.fromisoformat(at)
            except (TypeError, ValueError):
                problems.append(
                    Problem(f"事件 {seq} 的时间无效：{at!r}", f"event {seq} has a bad time {at!r}")
                )
                continue
            if previous_at is not None and _earlier(moment, previous_at):
                problems.append(
                    Problem(
                        f"事件 {seq} 的时间早于前一事件",
                        f"event {seq} is dated before the event before it",
                    )
                )
            previous_at = moment
    return CheckResult(origin + 1 if count else origin, expected - 1, count, tuple(problems))


def _earlier(moment: dt.datetime, previous: dt.datetime) -> bool:
    try:
        return moment < previous
    except TypeError:  # one with a UTC offset, one without: not comparable, not a gap
        return False
