"""systemd notify protocol: readiness after the hub answers, watchdog pings only while healthy.

The manager's side is a real datagram socket bound where ``NOTIFY_SOCKET`` points, as systemd
does; the hub is the real one, run on this test's event loop so the test can block that loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import aiohttp
import pytest

from qcall.__main__ import _run_hub
from qcall.config import load_config
from qcall.sdnotify import Notifier
from tests.common import standalone_demo_config

ROOT: Final = Path(__file__).resolve().parents[2]

# Bounds on a broken start or a missing datagram; not timing assertions.
START_TIMEOUT_S: Final = 30.0
DATAGRAM_TIMEOUT_S: Final = 5.0
# The watchdog interval the fake manager asks for: pings every 0.05 s.
WATCHDOG_USEC: Final = 100_000
# The loop is blocked for this long: many ping intervals.
BLOCKED_S: Final = 0.6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A fake systemd: the datagram socket NOTIFY_SOCKET names."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()


def _drain(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued, without waiting."""
    got: list[bytes] = []
    while True:
        try:
            got.append(sock.recv(4096))
        except BlockingIOError:
            return got


async def _next(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recv(sock, 4096), DATAGRAM_TIMEOUT_S)


async def test_hub_is_ready_after_it_answers_pings_while_healthy_and_not_while_blocked(
    tmp_path: Path, manager: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = manager
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    config = load_config(standalone_demo_config(tmp_path))
    port = _free_port()
    loop = asyncio.get_running_loop()
    hub = asyncio.ensure_future(_run_hub(config, tmp_path / "hub.db", "127.0.0.1", port))
    try:
        first = await asyncio.wait_for(loop.sock_recv(sock, 4096), START_TIMEOUT_S)
        fields = first.decode().split("\n")
        assert fields[0] == "READY=1", fields
        assert f"MAINPID={os.getpid()}" in fields
        # Ready means answering: the very first request succeeds, no retry.
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/api/v1/health") as response,
        ):
            assert response.status == 200
            assert (await response.json())["status"] == "ok"

        pings = [await _next(sock) for _ in range(3)]
        assert pings == [b"WATCHDOG=1"] * 3

        # Block the event loop (a hung hub): not one ping may leave meanwhile.
        _drain(sock)
        time.sleep(BLOCKED_S)  # noqa: ASYNC251 - blocking the loop is the point
        assert _drain(sock) == []

        # Free again: the pings resume.
        assert await _next(sock) == b"WATCHDOG=1"
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # the hub's own stop path
        code = await asyncio.wait_for(hub, START_TIMEOUT_S)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    assert code == 0
    rest = [message.decode() for message in _drain(sock)]
    assert any(message.startswith("STOPPING=1") for message in rest), rest


async def test_pings_stop_for_good_once_unhealthy(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    healthy = True
    task = asyncio.ensure_future(notifier.watchdog(lambda: healthy))
    try:
        assert [await _next(sock) for _ in range(2)] == [b"WATCHDOG=1"] * 2
        healthy = False
        await asyncio.wait_for(task, DATAGRAM_TIMEOUT_S)  # the watchdog gives up by itself
    finally:
        task.cancel()
    after = _drain(sock)
    assert after[-1].startswith(b"STATUS=unhealthy"), after
    assert b"WATCHDOG=1" not in after[-1:]
    await asyncio.sleep(5 * WATCHDOG_USEC / 1_000_000)
    assert _drain(sock) == []


def test_abstract_socket_addresses_are_reached() -> None:
    name = f"qcall-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(DATAGRAM_TIMEOUT_S)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": f"@{name}"})
        assert notifier.ready("up")
        assert sock.recv(4096).split(b"\n")[0] == b"READY=1"


def test_environment_decides_what_is_sent() -> None:
    assert not Notifier.from_env({}).enabled
    assert not Notifier.from_env({}).send("READY=1")
    assert not Notifier.from_env({"NOTIFY_SOCKET": "relative/path"}).enabled
    on = Notifier.from_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"})
    assert on.ping_interval_s == 15.0
    # WATCHDOG_PID names another process (this one's parent): the pings are not ours to send.
    other = Notifier.from_env(
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getppid())}
    )
    assert other.ping_interval_s is None
    assert Notifier.from_env({"WATCHDOG_USEC": "30000000"}).ping_interval_s is None
    # Nobody listening: a warning, never an exception that would stop the hub.
    assert not Notifier.from_env({"NOTIFY_SOCKET": "/nonexistent/qcall-notify"}).send("X=1")


def test_qcall_serve_on_a_wildcard_address_notifies_systemd(
    tmp_path: Path, manager: tuple[socket.socket, str]
) -> None:
    """The real entry point, as systemd starts it: READY=1 from the main pid, STOPPING=1."""
    sock, path = manager
    sock.settimeout(START_TIMEOUT_S)
    config = standalone_demo_config(tmp_path)
    port = _free_port()
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000"}
    env.pop("WATCHDOG_PID", None)
    command = [sys.executable, "-m", "qcall", "serve", "--config", str(config)]
    command += ["--db", str(tmp_path / "hub.db"), "--host", "0.0.0.0", "--port", str(port)]
    hub = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        fields = sock.recv(4096).decode().split("\n")
        assert fields[0] == "READY=1", fields
        assert f"MAINPID={hub.pid}" in fields
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        hub.send_signal(signal.SIGTERM)
        _out, err = hub.communicate(timeout=START_TIMEOUT_S)
    assert hub.returncode == 0, err.decode()[-2000:]
    sock.setblocking(False)
    assert any(m.startswith(b"STOPPING=1") for m in _drain(sock))
