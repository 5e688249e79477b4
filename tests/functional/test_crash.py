"""A real hub killed with SIGKILL under concurrent issuing loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.common import standalone_demo_config
from tests.functional.conftest import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
KIOSKS = 8
# The hub needs a moment to start; this bounds a broken start, it is not a timing assertion.
START_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "qcall", "--log-level", "warning", *args],
        input=stdin,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return result.stdout


def _start(db: Path, port: int, log: Path, config: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qcall",
                "serve",
                "--config",
                str(config),
                "--db",
                str(db),
                "--port",
                str(port),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _service_ids() -> list[str]:
    """The intake services with the largest daily caps (so no cap is reached here)."""
    import tomllib

    raw = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    intake = [s for s in raw["services"] if s.get("kind", "intake") == "intake"]
    intake.sort(key=lambda s: -int(s["daily_cap"]))
    return [s["id"] for s in intake[:6]]


async def _issue_until_killed(
    base: str, kiosk: str, proc: subprocess.Popen[bytes], kill_after: int
) -> list[dict[str, str]]:
    """Issue from 8 kiosks at once; SIGKILL the hub mid-stream; return what was acknowledged."""
    acknowledged: list[dict[str, str]] = []
    refused: list[str] = []
    services = _service_ids()
    headers = {"Authorization": f"Bearer {kiosk}"}
    stop = asyncio.Event()

    async def kiosk_loop(index: int, session: aiohttp.ClientSession) -> None:
        n = 0
        while not stop.is_set():
            body = {"service": services[(index + n) % len(services)]}
            n += 1
            try:
                async with session.post(f"{base}/api/v1/tickets", json=body, headers=headers) as r:
                    if r.status == 201:
                        data = await r.json()
                        acknowledged.append({"id": data["id"], "number": data["number"]})
                        if len(acknowledged) >= kill_after and not stop.is_set():
                            os.kill(proc.pid, signal.SIGKILL)
                            stop.set()
                    else:
                        refused.append(await r.text())
                        stop.set()
            except (TimeoutError, aiohttp.ClientError):
                return

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(kiosk_loop(i, session) for i in range(KIOSKS)))
    proc.wait(timeout=10)
    assert not refused, refused[:3]
    return acknowledged


async def _open_window(base: str, staff: str, pin: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/v1/login", json={"staff": staff, "pin": pin}) as r:
            assert r.status == 200, await r.text()
            token = (await r.json())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(f"{base}/api/v1/windows/1/open", headers=headers) as r:
            assert r.status == 200, await r.text()


@pytest.mark.slow
async def test_sigkill_under_load_loses_no_acknowledged_ticket(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    log = tmp_path / "hub.log"
    standalone = standalone_demo_config(tmp_path)
    config = ["--config", str(standalone), "--db", str(db)]
    _cli(
        "staff",
        "add",
        *config,
        "--id",
        "c1",
        "--name",
        "测试",
        "--role",
        "clerk",
        stdin="246810\n",
    )
    kiosk = (
        _cli("token", "create", *config, "--role", "kiosk", "--name", "k").strip().splitlines()[-1]
    )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"

    proc = _start(db, port, log, standalone)
    try:
        await wait_healthy(base, proc)
        await _open_window(base, "c1", "246810")
        acknowledged = await _issue_until_killed(base, kiosk, proc, kill_after=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 300

    proc = _start(db, port, log, standalone)
    try:
        await wait_healthy(base, proc)
        headers = {"Authorization": f"Bearer {kiosk}"}
        async with aiohttp.ClientSession() as session:
            for ticket in acknowledged:
                async with session.get(
                    f"{base}/api/v1/tickets/{ticket['id']}", headers=headers
                ) as r:
                    assert r.status == 200, f"acknowledged {ticket} lost: {await r.text()}"
                    assert (await r.json())["number"] == ticket["number"]
            # New tickets after the restart continue the numbering, never repeating one.
            after: list[str] = []
            for service in _service_ids():
                async with session.post(
                    f"{base}/api/v1/tickets", json={"service": service}, headers=headers
                ) as r:
                    assert r.status == 201, await r.text()
                    after.append((await r.json())["number"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert proc.returncode == 0, log.read_text(encoding="utf-8")[-2000:]

    numbers = [t["number"] for t in acknowledged] + after
    assert len(numbers) == len(set(numbers)), "a number was issued twice"
    with sqlite3.connect(db) as conn:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM events ORDER BY seq")]
        issued = [
            json.loads(row[0])["number"]
            for row in conn.execute("SELECT data FROM events WHERE type = 'ticket.issued'")
        ]
    assert seqs == list(range(1, len(seqs) + 1)), "seq has a gap"
    assert len(issued) == len(set(issued)), "the log holds a repeated number"
    assert set(numbers) <= set(issued)
