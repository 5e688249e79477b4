"""``qcall db backup`` while a real hub issues tickets, ``qcall db check`` on good and bad logs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Final

import aiohttp
import pytest

from tests.common import standalone_demo_config
from tests.functional.conftest import wait_healthy

ROOT: Final = Path(__file__).resolve().parents[2]
# Bounds on a broken start or a hung command; not timing assertions.
START_TIMEOUT_S: Final = 30.0
CLI_TIMEOUT_S: Final = 60.0
BACKUPS_UNDER_LOAD: Final = 4
KIOSKS: Final = 4
TICKETS_PER_BACKUP: Final = 15


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _qcall(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcall", "--log-level", "warning", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


async def _qcall_async(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_qcall, *args)


def _on(config: Path, db: Path, *command: str) -> list[str]:
    return [*command, "--config", str(config), "--db", str(db)]


def _start_hub(config: Path, db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "qcall", *_on(config, db, "serve"), "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _services() -> list[str]:
    """The demo's intake services with the largest daily caps (no cap is reached here)."""
    raw = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    intake = [s for s in raw["services"] if s.get("kind", "intake") == "intake"]
    intake.sort(key=lambda s: -int(s["daily_cap"]))
    return [s["id"] for s in intake[:6]]


def _seqs(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT seq FROM events ORDER BY seq")]


def _ticket_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT data FROM events WHERE type = 'ticket.issued'").fetchall()
    return {json.loads(row[0])["id"] for row in rows}


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, Path, str]:
    """A demo database with a kiosk token: (config, db, token)."""
    config = standalone_demo_config(tmp_path)
    # Caps out of the way: the kiosks below issue as fast as the hub takes them.
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r"daily_cap = \d+", "daily_cap = 9999", text), encoding="utf-8")
    db = tmp_path / "live.db"
    made = _qcall(*_on(config, db, "token", "create"), "--role", "kiosk", "--name", "k")
    assert made.returncode == 0, made.stderr
    return config, db, made.stdout.strip().splitlines()[-1]


async def test_backup_while_the_hub_issues_is_consistent_and_restorable(
    tmp_path: Path, served: tuple[Path, Path, str]
) -> None:
    config, db, token = served
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    hub = _start_hub(config, db, port, tmp_path / "hub.log")
    acknowledged: list[str] = []
    refused: list[str] = []
    # Each backup, with the tickets acknowledged before it started.
    backups: list[tuple[Path, list[str]]] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await wait_healthy(base, hub, START_TIMEOUT_S)
            stop = asyncio.Event()
            headers = {"Authorization": f"Bearer {token}"}

            services = _services()
            wanted = [0]  # issue until this many are acknowledged, then say so
            reached = asyncio.Event()

            async def kiosk(index: int) -> None:
                n = index
                while not stop.is_set():
                    n += 1
                    body = {"service": services[n % len(services)]}
                    async with session.post(
                        f"{base}/api/v1/tickets", json=body, headers=headers
                    ) as response:
                        if response.status == 201:
                            acknowledged.append((await response.json())["id"])
                            if len(acknowledged) >= wanted[0]:
                                reached.set()
                        else:
                            refused.append(await response.text())
                            return

            issuing = [asyncio.ensure_future(kiosk(i)) for i in range(KIOSKS)]
            try:
                for n in range(BACKUPS_UNDER_LOAD):
                    wanted[0] = TICKETS_PER_BACKUP * (n + 1)
                    reached.clear()
                    if len(acknowledged) < wanted[0]:
                        await asyncio.wait_for(reached.wait(), START_TIMEOUT_S)
                    target = tmp_path / f"backup-{n}.db"
                    before = list(acknowledged)
                    done = await _qcall_async("db", "backup", "--db", str(db), "--to", str(target))
                    assert done.returncode == 0, done.stderr
                    assert "backed up to" in done.stdout
                    assert "已备份到" in done.stdout
                    backups.append((target, before))
            finally:
                stop.set()
                await asyncio.gather(*issuing)
        assert not refused, refused[:2]
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=START_TIMEOUT_S)
    assert hub.returncode == 0
    _check_backups(tmp_path, config, db, backups)


def _check_backups(
    tmp_path: Path, config: Path, db: Path, backups: list[tuple[Path, list[str]]]
) -> None:

    live = _seqs(db)
    previous = 0
    for target, before in backups:
        # Nothing acknowledged before the backup began is missing from it.
        assert set(before) <= _ticket_ids(target)
        # Each copy is one committed state: a prefix of the live log, no gap, no torn write.
        copy = _seqs(target)
        assert copy == live[: len(copy)]
        assert len(copy) >= previous
        previous = len(copy)
        checked = _qcall("db", "check", "--db", str(target))
        assert checked.returncode == 0, checked.stderr
        assert "event log continuous" in checked.stdout
        # Self-contained: nothing left beside it, and no half copy under another name.
        assert not Path(f"{target}-wal").exists()
    assert previous < len(live), "the hub went on issuing after the last backup"
    assert not list(tmp_path.glob(".*.partial"))

    # Restore: the last backup, copied back alone, opens as a hub database.
    restored = tmp_path / "restored.db"
    shutil.copyfile(backups[-1][0], restored)
    check = _qcall("check-config", str(config), "--db", str(restored))
    assert check.returncode == 0, check.stderr
    assert "a restart changes no ticket or window" in check.stdout


def test_backup_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.db"
    done = _qcall("db", "backup", "--db", str(tmp_path / "nope.db"), "--to", str(target))
    assert done.returncode == 1
    assert "找不到数据库" in done.stderr
    assert "no database at" in done.stderr
    assert not target.exists()
    assert not (tmp_path / "nope.db").exists()


def test_backup_dir_keeps_the_newest_copies(tmp_path: Path, served: tuple[Path, Path, str]) -> None:
    _config, db, _token = served
    folder = tmp_path / "backups"
    folder.mkdir()
    stranger = folder / "notes.txt"
    stranger.write_text("not a backup", encoding="utf-8")
    made: list[str] = []
    for _ in range(3):
        done = _qcall("db", "backup", "--db", str(db), "--dir", str(folder), "--keep", "2")
        assert done.returncode == 0, done.stderr
        made.append(done.stdout.split("backed up to ")[1].split(" ")[0])
    kept = sorted(str(p) for p in folder.glob("qcall-*.db"))
    assert kept == sorted(made[1:])
    assert stranger.exists()
    bad = _qcall("db", "backup", "--db", str(db), "--to", str(tmp_path / "x.db"), "--keep", "2")
    assert bad.returncode == 2
    assert "--keep" in bad.stderr


def test_check_finds_a_gap_in_the_log_and_damage(
    tmp_path: Path, served: tuple[Path, Path, str]
) -> None:
    config, db, token = served
    # A few events: tokens and staff changes write none, so issue through a short-lived hub.
    port = _free_port()
    hub = _start_hub(config, db, port, tmp_path / "hub.log")
    try:
        asyncio.run(_issue(f"http://127.0.0.1:{port}", token, 5, hub))
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=START_TIMEOUT_S)
    good = _qcall("db", "check", "--db", str(db))
    assert good.returncode == 0, good.stderr
    assert "完整，事件日志连续" in good.stdout

    gap = tmp_path / "gap.db"
    assert _qcall("db", "backup", "--db", str(db), "--to", str(gap)).returncode == 0
    seqs = _seqs(gap)
    with sqlite3.connect(gap) as conn:
        conn.execute("DELETE FROM events WHERE seq = ?", (seqs[2],))
    found = _qcall("db", "check", "--db", str(gap))
    assert found.returncode == 3
    assert f"expected seq {seqs[2]}, found {seqs[3]}" in found.stderr
    assert "事件日志不连续" in found.stderr

    damaged = tmp_path / "damaged.db"
    shutil.copyfile(db, damaged)
    size = damaged.stat().st_size
    with damaged.open("r+b") as handle:
        handle.seek(size // 2)
        handle.write(os.urandom(size // 4))
    broken = _qcall("db", "check", "--db", str(damaged))
    assert broken.returncode == 3
    assert "check failed" in broken.stderr

    missing = _qcall("db", "check", "--db", str(tmp_path / "nope.db"))
    assert missing.returncode == 3
    assert not (tmp_path / "nope.db").exists()


async def _issue(base: str, token: str, count: int, hub: subprocess.Popen[bytes]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await wait_healthy(base, hub, START_TIMEOUT_S)
        for _ in range(count):
            body = {"service": "social_card"}
            async with session.post(f"{base}/api/v1/tickets", json=body, headers=headers) as r:
                assert r.status == 201, await r.text()
