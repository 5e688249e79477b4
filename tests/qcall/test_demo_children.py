"""The demo's children: stopped with SIGINT, killed when they ignore it, grandchildren too."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Final

import pytest

from qcall.demo_children import Children, ChildSpec

# Short, so the kill fallback is reached quickly; the children here need no clean-up.
STOP_TIMEOUT_S: Final = 1.0
# A child writes its (and its grandchild's) pid, then waits: it is up within this.
STARTED_TIMEOUT_S: Final = 20.0

STUBBORN: Final = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
deaf = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(120)"
grandchild = subprocess.Popen([sys.executable, "-c", deaf])
open(sys.argv[1], "w").write(f"{grandchild.pid}\\n")
time.sleep(120)
"""
POLITE: Final = """
import sys, time
open(sys.argv[1], "w").write("ready\\n")
try:
    time.sleep(120)
except KeyboardInterrupt:
    open(sys.argv[1], "a").write("interrupted\\n")
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_file(path: Path) -> str:
    deadline = time.monotonic() + STARTED_TIMEOUT_S
    while not path.exists() or not path.read_text().endswith("\n"):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.05)
    return path.read_text()


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + STARTED_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


async def test_a_child_stops_on_sigint_and_one_that_ignores_it_is_killed(tmp_path: Path) -> None:
    children = Children(stop_timeout_s=STOP_TIMEOUT_S)
    polite_file, stubborn_file = tmp_path / "polite", tmp_path / "stubborn"
    polite = await children.start(
        ChildSpec("polite", (sys.executable, "-c", POLITE, str(polite_file)), tmp_path / "p.log")
    )
    stubborn = await children.start(
        ChildSpec(
            "stubborn", (sys.executable, "-c", STUBBORN, str(stubborn_file)), tmp_path / "s.log"
        )
    )
    await asyncio.to_thread(_wait_file, polite_file)
    grandchild = int(await asyncio.to_thread(_wait_file, stubborn_file))
    assert _alive(grandchild)
    await children.stop()
    assert "interrupted" in await asyncio.to_thread(_wait_file, polite_file)  # got SIGINT
    assert not _alive(polite)
    assert not _alive(stubborn)
    assert await asyncio.to_thread(_gone, grandchild)  # killed with its group, reaped by init
    assert children.procs == {}


async def test_a_child_that_ends_by_itself_is_reported_with_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qcall.demo import watch_child

    children = Children(stop_timeout_s=STOP_TIMEOUT_S)
    failing = "import sys; print('error: --size out of range'); sys.exit(2)"
    spec = ChildSpec("kiosk", (sys.executable, "-c", failing), tmp_path / "kiosk.log")
    await children.start(spec)
    await watch_child(children, spec, asyncio.Event())
    said = capsys.readouterr().err
    assert "kiosk 意外退出 / ended unexpectedly (status 2)" in said
    assert "error: --size out of range" in said
    await children.stop()
    # Stopped by the demo: nothing to report.
    ready = tmp_path / "ready"
    lobby = ChildSpec("lobby", (sys.executable, "-c", POLITE, str(ready)), tmp_path / "l.log")
    await children.start(lobby)
    await asyncio.to_thread(_wait_file, ready)
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(watch_child(children, lobby, stop))
    stop.set()
    await children.stop()
    await watcher
    assert capsys.readouterr().err == ""
