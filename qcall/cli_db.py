"""``qcall db backup`` and ``qcall db check``: the database's backups and health, offline."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Final

from qcall import dbtools

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
# Same code as the hub's for a damaged database: the operator has to act.
EXIT_DAMAGED: Final = 3


def add_db_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``db backup`` and ``db check`` to the ``qcall`` command line."""
    db = sub.add_parser("db", help="数据库备份与检查 / database backup and check").add_subparsers(
        metavar="ACTION"
    )
    backup = db.add_parser(
        "backup",
        help="在线备份（中心服务可继续运行）/ online, consistent backup (the hub may be running)",
    )
    backup.add_argument("--db", type=Path, required=True, help="数据库文件 / SQLite database")
    target = backup.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", type=Path, help="备份文件 / the backup file to write")
    target.add_argument(
        "--dir",
        type=Path,
        help="备份目录（文件名带时间）/ folder for time-stamped backups (qcall-YYYYMMDD-HHMMSS.db)",
    )
    backup.add_argument(
        "--keep",
        type=int,
        help="与 --dir 一起：只保留最新的 N 份 / with --dir: keep only the N newest backups",
    )
    backup.set_defaults(handler=_backup)
    check = db.add_parser(
        "check", help="完整性与事件日志连续性检查 / integrity and event log continuity"
    )
    check.add_argument("--db", type=Path, required=True, help="数据库文件 / SQLite database")
    check.set_defaults(handler=_check)


def _say(zh: str, en: str, *, error: bool = False) -> None:
    print(f"{zh} / {en}", file=sys.stderr if error else sys.stdout)


def _backup(args: argparse.Namespace) -> int:
    if args.keep is not None and (args.dir is None or args.keep < 1):
        _say(
            "--keep 须与 --dir 一起使用，且至少为 1",
            "--keep goes with --dir and must be at least 1",
            error=True,
        )
        return EXIT_USAGE
    # Local time in the name: the operator restoring "last night's" copy reads it that way.
    now = dt.datetime.now().astimezone()
    target: Path = args.to if args.to is not None else dbtools.backup_name(now, args.dir)
    try:
        result = dbtools.backup(args.db, target)
    except dbtools.BackupError as err:
        _say(err.zh, err.en, error=True)
        return EXIT_FAILURE
    _say(
        f"已备份到 {target}（事件 {result.first_seq}–{result.last_seq}）",
        f"backed up to {target} (events {result.first_seq}-{result.last_seq})",
    )
    if args.keep is not None:
        for old in dbtools.prune(args.dir, args.keep):
            _say(f"已删除旧备份 {old}", f"removed old backup {old}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    result = dbtools.check(args.db)
    for problem in result.problems:
        _say(problem.zh, problem.en, error=True)
    if not result.ok:
        _say(
            f"{args.db}：检查未通过（{len(result.problems)} 个问题）",
            f"{args.db}: check failed ({len(result.problems)} problems)",
            error=True,
        )
        return EXIT_DAMAGED
    _say(
        f"{args.db}：完整，事件日志连续（{result.events} 个事件，序号 "
        f"{result.first_seq}–{result.last_seq}）",
        f"{args.db}: intact, event log continuous ({result.events} events, seq "
        f"{result.first_seq}-{result.last_seq})",
    )
    return EXIT_OK
