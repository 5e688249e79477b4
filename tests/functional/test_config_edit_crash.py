"""The issue's reproduction with a real crash: tickets issued and one called at window 2, the hub
SIGKILLed, window 2 and a service removed from the TOML, the hub started again. Nothing is
moved aside, staff and tokens still work, numbering goes on, the removed parts are resolved
by events with a reason, and ``check-config --db`` said so beforehand."""

from __future__ import annotations

import importlib.util
import json
import signal
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from tests.common import standalone_demo_config
from tests.functional.conftest import wait_healthy
from tests.functional.test_crash import _free_port, _start

ROOT: Final = Path(__file__).resolve().parents[2]
PIN: Final = "582913"
# Bounds a hung command or hub; not timing assertions.
CLI_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 15.0
REMOVED_SERVICE: Final = "union_member_service"  # G, served by the comprehensive windows


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcall", "--log-level", "warning", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def _edited(config: Path, folder: Path) -> Path:
    """The configuration without window 2 and without one service."""
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "config" / "make_demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = tomllib.loads(config.read_text(encoding="utf-8"))
    raw["windows"] = [w for w in raw["windows"] if w["number"] != 2]
    raw["services"] = [s for s in raw["services"] if s["id"] != REMOVED_SERVICE]
    path = folder / "edited.toml"
    path.write_text(module.dumps(raw), encoding="utf-8")
    return path


async def _login(http: aiohttp.ClientSession, base: str, staff: str) -> dict[str, str]:
    async with http.post(f"{base}/api/v1/login", json={"staff": staff, "pin": PIN}) as r:
        assert r.status == 200, await r.text()
        return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def _post(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: Any = None
) -> dict[str, Any]:
    async with http.post(url, json=body, headers=headers) as r:
        assert r.status in (200, 201), await r.text()
        answer: dict[str, Any] = await r.json()
        return answer


@pytest.mark.slow
async def test_removing_a_window_and_a_service_after_a_crash_costs_nothing(
    tmp_path: Path,
) -> None:
    config = standalone_demo_config(tmp_path)
    db = tmp_path / "hub.db"
    log = tmp_path / "hub.log"
    for staff in ("c1", "c2"):
        added = _cli("staff", "add", "--config", str(config), "--db", str(db), "--id", staff,
                     "--name", staff, "--role", "clerk", stdin=PIN + "\n")  # fmt: skip
        assert added.returncode == 0, added.stderr
    created = _cli("token", "create", "--config", str(config), "--db", str(db),
                   "--role", "kiosk", "--name", "kiosk")  # fmt: skip
    assert created.returncode == 0, created.stderr
    kiosk = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(db, port, log, config)
    try:
        await wait_healthy(base, proc)
        async with aiohttp.ClientSession() as http:
            clerk = await _login(http, base, "c2")
            await _post(http, f"{base}/api/v1/windows/2/open", clerk)
            numbers = []
            for service in ("social_card", REMOVED_SERVICE, REMOVED_SERVICE, "social_card"):
                issued = await _post(http, f"{base}/api/v1/tickets", kiosk, {"service": service})
                numbers.append(issued["number"])
            assert numbers == ["A001", "G001", "G002", "A002"]
            called = await _post(http, f"{base}/api/v1/windows/2/next", clerk)
            assert called["ticket"]["number"] == "A001"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
    crashed = [r[0] for r in _rows(db, "SELECT seq FROM events ORDER BY seq")]

    edited = _edited(config, tmp_path)
    check = _cli("check-config", str(edited), "--db", str(db))
    assert check.returncode == 0, check.stderr
    assert "window 2 is no longer configured" in check.stdout
    assert "A001" in check.stdout
    assert "G001, G002" in check.stdout

    proc = _start(db, port, log, edited)
    try:
        await wait_healthy(base, proc)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/v1/state", headers=kiosk) as r:
                assert r.status == 403  # a kiosk may not read the hall state; a clerk may
            clerk = await _login(http, base, "c1")  # staff survived the edit
            async with http.get(f"{base}/api/v1/state", headers=clerk) as r:
                state = await r.json()
            assert 2 not in [w["number"] for w in state["windows"]]
            assert REMOVED_SERVICE not in state["waiting"]
            assert state["waiting"]["social_card"] == 2  # A001 sent back, and A002
            await _post(http, f"{base}/api/v1/windows/1/open", clerk)
            issued = await _post(http, f"{base}/api/v1/tickets", kiosk, {"service": "social_card"})
            assert issued["number"] == "A003"  # the token works, numbering goes on
            again = await _post(http, f"{base}/api/v1/windows/1/next", clerk)
            assert again["ticket"]["number"] == "A001"  # back at the front of its line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT_S)
    assert proc.returncode == 0, log.read_text(encoding="utf-8")[-2000:]
    assert not _moved_aside(tmp_path)
    rows = _rows(db, "SELECT seq, type, data FROM events ORDER BY seq")
    assert [r[0] for r in rows[: len(crashed)]] == crashed  # the log kept everything
    resolved = [
        (r[1], json.loads(r[2]).get("reason"), json.loads(r[2]).get("number"))
        for r in rows[len(crashed) :]
        if r[1] in ("window.closed", "ticket.cancelled")
    ]
    assert resolved[:3] == [
        ("window.closed", "window_removed", None),
        ("ticket.cancelled", "service_removed", "G001"),
        ("ticket.cancelled", "service_removed", "G002"),
    ]


def _moved_aside(folder: Path) -> list[Path]:
    return list(folder.glob("hub.db.corrupt.*"))


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()
