"""A real ``qcall serve`` subprocess per test module, set up with the real CLI.

The staff accounts and device tokens are created once per session with ``qcall staff add``
and ``qcall token create`` in a template database; every test module gets a copy of it and
its own hub process on a free 127.0.0.1 port, so modules cannot disturb each other's hall.
A missing executable or dependency fails the run; nothing here skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from qcall.client import QcallClient
from tests.common import standalone_demo_config
from tests.functional.staffweb import WebSession

ROOT: Final = Path(__file__).resolve().parents[2]
# The console script of the interpreter running the tests (the venv's), else one on PATH.
_SIBLING: Final = Path(sys.executable).with_name("qcall")
QCALL: Final = _SIBLING if _SIBLING.exists() else Path(shutil.which("qcall") or _SIBLING)

# Python start-up, config load, database open and migration: about a second here; the bound
# only catches a hub that never comes up.
START_TIMEOUT_S: Final = 20.0
# The hub gives open requests SHUTDOWN_TIMEOUT_S (5 s) to finish on SIGTERM; then some slack.
STOP_TIMEOUT_S: Final = 15.0
# One CLI call is ~0.3 s; the bound catches a CLI blocked on a locked database.
CLI_TIMEOUT_S: Final = 30.0
# A login is one scrypt PIN check (~30 ms) and a token insert.
LOGIN_TIMEOUT_S: Final = 10.0
# Polling interval while waiting for /health (a short step, not an assertion).
POLL_S: Final = 0.05
# A free port can be taken between our probe and the hub's bind; try a few.
START_ATTEMPTS: Final = 3

PIN: Final = "246810"
# Window staff: clerk ``c<n>`` works at window n (1–6 comprehensive, 7 dedicated, 8 reply).
CLERKS: Final = tuple(f"c{n}" for n in range(1, 9))
SUPERVISOR: Final = "sup1"
DEVICE_ROLES: Final = ("kiosk", "display", "integration", "admin")
ROLES: Final = ("kiosk", "display", "clerk", "supervisor", "admin", "integration")


def _run_cli(*args: str, stdin: str | None = None) -> str:
    if not QCALL.exists():
        pytest.fail(f"the qcall console script is missing at {QCALL} (pip install -e .)")
    result = subprocess.run(
        [str(QCALL), "--log-level", "warning", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"qcall {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class Credentials:
    """What the CLI created in the template database."""

    template: Path
    config: Path  # config/demo.toml without devices: these tests run the hub alone
    staff: dict[str, str]  # staff id -> role
    tokens: dict[str, str]  # device role -> token


@pytest.fixture(scope="session")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    """Staff and device tokens made with ``qcall staff add`` / ``qcall token create``."""
    folder = tmp_path_factory.mktemp("template")
    db = folder / "qcall.db"
    config = standalone_demo_config(folder)
    base = ("--config", str(config), "--db", str(db))
    staff = dict.fromkeys(CLERKS, "clerk") | {SUPERVISOR: "supervisor"}
    # The PIN goes in on stdin, never on the command line.
    commands: list[tuple[tuple[str, ...], str | None]] = [
        (("staff", "add", *base, "--id", sid, "--name", f"测试{sid}", "--role", role), PIN + "\n")
        for sid, role in staff.items()
    ]
    commands += [
        (("token", "create", *base, "--role", role, "--name", f"test {role}"), None)
        for role in DEVICE_ROLES
    ]
    # The first call creates and migrates the database; the rest may then run side by side.
    outputs = [_run_cli(*commands[0][0], stdin=commands[0][1])]
    with ThreadPoolExecutor(8) as pool:
        outputs += list(pool.map(lambda cmd: _run_cli(*cmd[0], stdin=cmd[1]), commands[1:]))
    made = outputs[len(staff) :]
    tokens = {role: _token_from(out) for role, out in zip(DEVICE_ROLES, made, strict=True)}
    return Credentials(db, config, staff, tokens)


def _token_from(output: str) -> str:
    """``qcall token create`` prints the token alone on its last line."""
    token = output.strip().splitlines()[-1].strip()
    assert token.startswith("qc_"), output
    assert " " not in token, output
    return token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/health", timeout=1.0) as response:
            return response.status == 200 and json.load(response)["status"] == "ok"
    # HTTPException: something else holds the port (another process took it meanwhile) and
    # answers in its own protocol; the start-up loop then sees the hub exit and says so.
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        return False


@dataclass
class HubProcess:
    """One ``qcall serve`` process on a copy of the template database."""

    credentials: Credentials
    db: Path
    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    exit_codes: list[int] = field(default_factory=list)
    sessions: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The hub's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def token(self, role: str) -> str:
        """The CLI-made token of a device role (kiosk, display, integration, admin)."""
        return self.credentials.tokens[role]

    def session_token(self, staff: str) -> str:
        """A staff session token (logged in once per hub; PIN checks are slow on purpose)."""
        if staff not in self.sessions:
            request = urllib.request.Request(
                f"{self.url}/api/v1/login",
                data=json.dumps({"staff": staff, "pin": PIN}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=LOGIN_TIMEOUT_S) as response:
                self.sessions[staff] = json.load(response)["token"]
        return self.sessions[staff]

    def create_token(self, role: str, name: str) -> str:
        """A new device token, made with the CLI on this hub's (live) database."""
        args = ("token", "create", "--config", str(self.credentials.config), "--db", str(self.db))
        return _token_from(_run_cli(*args, "--role", role, "--name", name))

    def start(self, *, keep_port: bool = False) -> None:
        """Start the hub and wait until /health answers; a restart keeps its port."""
        for _attempt in range(START_ATTEMPTS):
            if not keep_port:
                self.port = _free_port()
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(
                    [
                        str(QCALL),
                        "serve",
                        "--config",
                        str(self.credentials.config),
                        "--db",
                        str(self.db),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.port),
                    ],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + START_TIMEOUT_S
            while self.proc.poll() is None:
                if _healthy(self.url):
                    return
                if time.monotonic() > deadline:
                    self.kill()
                    pytest.fail(f"the hub did not become healthy:\n{self.log_tail()}")
                time.sleep(POLL_S)
            if keep_port:
                break
        pytest.fail(f"the hub exited during start-up:\n{self.log_tail()}")

    def stop(self) -> int:
        """SIGTERM the hub, wait for it, and return its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the hub did not stop on SIGTERM:\n{self.log_tail()}")
        self.exit_codes.append(code)
        return code

    def restart(self) -> None:
        """Stop the hub cleanly and start it again on the same database and port."""
        assert self.stop() == 0, self.log_tail()
        self.start(keep_port=True)

    def kill(self) -> None:
        """Kill the process (only after a failure)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the hub's log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(encoding="utf-8").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="module")
def hub(credentials: Credentials, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A running hub for this test module; stopped (and checked to exit cleanly) at the end."""
    folder = tmp_path_factory.mktemp("hub")
    db = folder / "qcall.db"
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{credentials.template}{suffix}")
        if source.exists():
            shutil.copyfile(source, Path(f"{db}{suffix}"))
    process = HubProcess(credentials, db, folder / "hub.log")
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            code = process.stop()
            assert code == 0, f"the hub exited with {code}:\n{process.log_tail()}"
        process.kill()


Connect = Callable[..., Awaitable[QcallClient]]


@pytest.fixture
async def connect(hub: HubProcess) -> AsyncIterator[Connect]:
    """Open clients on the module's hub: ``await connect(token)`` or ``await connect(staff=id)``.

    Every client opened is closed when the test ends.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            token: str | None = None, *, staff: str | None = None, lang: str = "zh"
        ) -> QcallClient:
            client = await stack.enter_async_context(QcallClient(hub.url, token, lang=lang))
            if staff is not None:
                await client.login(staff, PIN)
            return client

        yield make


@pytest.fixture
async def kiosk(connect: Connect, hub: HubProcess) -> QcallClient:
    """A client with the kiosk token."""
    return await connect(hub.token("kiosk"))


@pytest.fixture
async def display(connect: Connect, hub: HubProcess) -> QcallClient:
    """A client with the display token."""
    return await connect(hub.token("display"))


# ``await web("c1")``: a browser-like session signed in as that staff member (None: anonymous).
OpenWeb = Callable[..., Awaitable[WebSession]]


@pytest.fixture
async def web(hub: HubProcess) -> AsyncIterator[OpenWeb]:
    """Browser-like sessions on the module's hub, closed after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(staff: str | None = None) -> WebSession:
            session = WebSession(hub.url)
            stack.push_async_callback(session.close)
            if staff is not None:
                status, _ = await session.login(staff, PIN)
                assert status == 303
            return session

        yield make


async def wait_healthy(
    base: str, proc: subprocess.Popen[bytes], within_s: float = START_TIMEOUT_S
) -> None:
    """Wait until the hub process at ``base`` answers /health (fail if it exits or never does)."""
    import aiohttp

    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "hub exited during start-up"
            try:
                async with session.get(f"{base}/api/v1/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    pytest.fail("hub did not become healthy")


def waiting_total(state: dict[str, Any] | Any) -> int:
    """Tickets waiting in the whole hall."""
    return sum(state["waiting"].values())


def window_of(state: dict[str, Any] | Any, number: int) -> dict[str, Any]:
    """One window's entry in a ``GET /state`` answer."""
    for window in state["windows"]:
        if window["number"] == number:
            return dict(window)
    raise AssertionError(f"window {number} not in state")


__all__ = [
    "CLERKS",
    "PIN",
    "ROLES",
    "SUPERVISOR",
    "Connect",
    "HubProcess",
    "waiting_total",
    "window_of",
]
