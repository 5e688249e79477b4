"""``qcall staff …`` and ``qcall token …``: accounts and tokens from the command line.

PINs never travel on the command line: they are asked for on the terminal (a real pty here)
or read from stdin (scripts).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import pytest

from qcall.config import load_config
from qcall.errors import AuthError, TooManyAttempts
from qcall.hub import AUTH_WATCH_INTERVAL_S, Hub
from qcall.model import Role
from qcall.store import LOGIN_MAX_FAILURES, Store
from tests.common import standalone_demo_config

ROOT: Final = Path(__file__).resolve().parents[2]
DEMO: Final = ROOT / "config" / "demo.toml"
# One CLI call takes well under a second; the bound only catches a hung command.
CLI_TIMEOUT_S: Final = 60.0
PIN: Final = "582047"
NEW_PIN: Final = "739164"


def qcall(*args: str, stdin: str | None = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcall", "--log-level", "warning", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def opened(db: Path) -> Store:
    store = Store(db)
    store.open()
    return store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with clerk c1 (PIN on stdin) and a kiosk token."""
    path = tmp_path / "q.db"
    base = ("--config", str(DEMO), "--db", str(path))
    added = qcall("staff", "add", *base, "--id", "c1", "--name", "张三", "--role", "clerk",
                  stdin=PIN + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    return path


def base(db: Path) -> tuple[str, ...]:
    return ("--config", str(DEMO), "--db", str(db))


# ----------------------------------------------------------------------------- PIN input


def test_staff_add_reads_the_pin_from_stdin_not_argv(db: Path) -> None:
    store = opened(db)
    try:
        assert store.check_pin("c1", PIN) is not None
    finally:
        store.close()
    refused = qcall("staff", "add", *base(db), "--id", "c2", "--name", "李四", "--role", "clerk",
                    "--pin", PIN, stdin=PIN + "\n")  # fmt: skip
    assert refused.returncode == 2
    assert "--pin" in refused.stderr
    store = opened(db)
    try:
        assert store.staff("c2") is None
    finally:
        store.close()


@pytest.mark.parametrize("pin", ["12", "", "abcdef", "12 34"])
def test_staff_add_refuses_a_bad_pin_and_creates_nothing(tmp_path: Path, pin: str) -> None:
    db = tmp_path / "q.db"
    result = qcall("staff", "add", *base(db), "--id", "c1", "--name", "张三", "--role", "clerk",
                   stdin=pin + "\n")  # fmt: skip
    assert result.returncode == 2
    assert "密码" in result.stderr
    assert "PIN" in result.stderr
    assert not db.exists()


def _run_on_a_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run the CLI with a real pseudo-terminal as its controlling tty; answer each prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the CLI
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "qcall", "--log-level", "warning", *args])
    output = b""
    deadline = time.monotonic() + CLI_TIMEOUT_S
    pending = list(answers)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            # Answer a prompt only once it is shown: getpass flushes what was typed ahead.
            if pending and chunk.endswith(b": "):
                os.write(fd, pending.pop(0).encode() + b"\n")
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", "replace")


def test_reset_pin_asks_twice_on_a_terminal_without_echo(db: Path) -> None:
    code, shown = _run_on_a_terminal(
        ["staff", "reset-pin", *base(db), "--id", "c1"], [NEW_PIN, NEW_PIN]
    )
    assert code == 0, shown
    assert "new PIN for c1" in shown
    assert NEW_PIN not in shown  # not echoed
    store = opened(db)
    try:
        assert store.check_pin("c1", NEW_PIN) is not None
        assert store.check_pin("c1", PIN) is None
    finally:
        store.close()


def test_a_terminal_pin_typed_differently_twice_changes_nothing(db: Path) -> None:
    code, shown = _run_on_a_terminal(
        ["staff", "reset-pin", *base(db), "--id", "c1"], [NEW_PIN, "739165"]
    )
    assert code == 2, shown
    assert "两次输入的密码不一致" in shown
    store = opened(db)
    try:
        assert store.check_pin("c1", PIN) is not None
    finally:
        store.close()


# ----------------------------------------------------------------------------- staff


def _list(db: Path) -> dict[str, str]:
    result = qcall("staff", "list", *base(db))
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    return {row[0]: row[3] for row in rows}  # id -> English state word


def test_disable_ends_sessions_and_enable_brings_the_account_back(db: Path) -> None:
    store = opened(db)
    try:
        session = store.create_token(Role.CLERK, "login:c1", staff_id="c1")
        assert store.principal(session) is not None
    finally:
        store.close()
    assert _list(db) == {"c1": "active"}

    disabled = qcall("staff", "disable", *base(db), "--id", "c1")
    assert disabled.returncode == 0, disabled.stderr
    assert "已停用" in disabled.stdout
    assert _list(db) == {"c1": "disabled"}
    store = opened(db)
    try:
        assert store.check_pin("c1", PIN) is None
        assert store.principal(session) is None
    finally:
        store.close()

    enabled = qcall("staff", "enable", *base(db), "--id", "c1")
    assert enabled.returncode == 0, enabled.stderr
    assert _list(db) == {"c1": "active"}
    store = opened(db)
    try:
        assert store.check_pin("c1", PIN) is not None
        assert store.principal(session) is None  # an ended session stays ended
    finally:
        store.close()


def test_unlock_lifts_the_lock_after_wrong_pins(db: Path) -> None:
    store = opened(db)
    try:
        now = dt.datetime.now(dt.UTC)
        for _ in range(LOGIN_MAX_FAILURES):
            store.record_login_failure("c1", now)
    finally:
        store.close()
    assert _list(db) == {"c1": "locked"}
    result = qcall("staff", "unlock", *base(db), "--id", "c1")
    assert result.returncode == 0, result.stderr
    assert "unlocked" in result.stdout
    assert _list(db) == {"c1": "active"}


def test_reset_pin_from_stdin_also_unlocks(db: Path) -> None:
    store = opened(db)
    try:
        for _ in range(LOGIN_MAX_FAILURES):
            store.record_login_failure("c1", dt.datetime.now(dt.UTC))
    finally:
        store.close()
    result = qcall("staff", "reset-pin", *base(db), "--id", "c1", stdin=NEW_PIN + "\n")
    assert result.returncode == 0, result.stderr
    assert NEW_PIN not in result.stdout + result.stderr
    assert _list(db) == {"c1": "active"}
    store = opened(db)
    try:
        assert store.check_pin("c1", NEW_PIN) is not None
    finally:
        store.close()


@pytest.mark.parametrize("action", ["disable", "enable", "reset-pin", "unlock"])
def test_an_unknown_staff_id_is_refused(db: Path, action: str) -> None:
    result = qcall("staff", action, *base(db), "--id", "nobody", stdin=NEW_PIN + "\n")
    assert result.returncode == 2
    assert "没有工号为 nobody 的工作人员" in result.stderr
    assert "no staff member with id nobody" in result.stderr
    assert _list(db) == {"c1": "active"}


@pytest.mark.parametrize(
    "command",
    [("staff", "list"), ("staff", "unlock", "--id", "c1"), ("token", "list"),
     ("token", "revoke", "--id", "0123456789ab")],
)  # fmt: skip
def test_account_commands_do_not_create_a_database(tmp_path: Path, command: tuple[str]) -> None:
    db = tmp_path / "typo.db"
    result = qcall(*command[:2], *base(db), *command[2:])
    assert result.returncode == 2
    assert "no database at" in result.stderr
    assert not db.exists()


# ----------------------------------------------------------------------------- tokens


def _token(db: Path, role: str, name: str) -> str:
    made = qcall("token", "create", *base(db), "--role", role, "--name", name)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def _token_rows(db: Path, *extra: str) -> list[list[str]]:
    result = qcall("token", "list", *base(db), *extra)
    assert result.returncode == 0, result.stderr
    return [line.split() for line in result.stdout.splitlines()[1:]]


def test_token_list_shows_ids_never_tokens_and_revoke_by_id(db: Path) -> None:
    kiosk = _token(db, "kiosk", "一楼取号机")
    display = _token(db, "display", "大厅屏")
    listing = qcall("token", "list", *base(db))
    assert kiosk not in listing.stdout
    assert display not in listing.stdout
    rows = _token_rows(db)
    assert [(row[1], row[-1]) for row in rows] == [("kiosk", "一楼取号机"), ("display", "大厅屏")]
    kiosk_id = rows[0][0]

    revoked = qcall("token", "revoke", *base(db), "--id", kiosk_id)
    assert revoked.returncode == 0, revoked.stderr
    assert kiosk_id in revoked.stdout
    store = opened(db)
    try:
        assert store.principal(kiosk) is None
        assert store.principal(display) is not None
    finally:
        store.close()
    assert [row[1] for row in _token_rows(db)] == ["display"]
    every = _token_rows(db, "--all")
    assert [(row[0], row[-2]) for row in every if row[1] == "kiosk"] == [(kiosk_id, "revoked")]


def test_expired_sessions_are_listed_only_with_all(db: Path) -> None:
    store = opened(db)
    try:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        store.create_token(Role.CLERK, "login:c1", staff_id="c1", expires_at=past)
    finally:
        store.close()
    assert _token_rows(db) == []
    [row] = _token_rows(db, "--all")
    assert row[1] == "clerk"
    assert "expired" in row


@pytest.mark.parametrize("token_id", ["nope", "0123456789ab", ""])
def test_revoking_an_unknown_token_id_changes_nothing(db: Path, token_id: str) -> None:
    _token(db, "kiosk", "k")
    before = _token_rows(db)
    result = qcall("token", "revoke", *base(db), "--id", token_id)
    assert result.returncode == 2
    assert "token list" in result.stderr
    assert _token_rows(db) == before


# ----------------------------------------------------------------------------- running hub

# How long a running hub may take to notice a revocation made by the CLI (a bound, not a
# figure: the watch interval plus generous slack for a loaded machine).
NOTICE_TIMEOUT_S: Final = AUTH_WATCH_INTERVAL_S * 10


async def test_a_running_hub_honours_revocations_made_by_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    config = standalone_demo_config(tmp_path)
    hub = Hub(load_config(config), db)
    await hub.start()
    try:
        kiosk = await hub.write(hub.store.create_token, Role.KIOSK, "k")
        await hub.write(hub.store.add_staff, "c1", "张三", PIN, Role.CLERK)
        session = await hub.write(
            lambda: hub.store.create_token(Role.CLERK, "login:c1", staff_id="c1")
        )
        assert await hub.principal(kiosk) is not None  # now cached
        assert await hub.principal(session) is not None
        [kiosk_id] = [t.id for t in await hub.read(hub.reader.list_tokens) if t.role is Role.KIOSK]
        args = ("--config", str(config), "--db", str(db))
        for command in (("token", "revoke", *args, "--id", kiosk_id),
                        ("staff", "disable", *args, "--id", "c1")):  # fmt: skip
            result = await asyncio.to_thread(qcall, *command)
            assert result.returncode == 0, result.stderr
        async with asyncio.timeout(NOTICE_TIMEOUT_S):
            while True:  # the hub polls; so does the test
                if await hub.principal(kiosk) is None and await hub.principal(session) is None:
                    break
                await asyncio.sleep(AUTH_WATCH_INTERVAL_S / 4)
    finally:
        await hub.stop()


async def test_a_running_hub_honours_an_unlock_made_by_the_cli(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    config = standalone_demo_config(tmp_path)
    hub = Hub(load_config(config), db)
    await hub.start()
    try:
        await hub.write(hub.store.add_staff, "c1", "张三", PIN, Role.CLERK)
        for _ in range(LOGIN_MAX_FAILURES):
            with pytest.raises(AuthError):
                await hub.authenticate("c1", NEW_PIN)
        with pytest.raises(TooManyAttempts):
            await hub.authenticate("c1", PIN)  # locked, even with the right PIN
        await hub.logins.flush()  # the failures are on disk, as they are seconds later
        args = ("--config", str(config), "--db", str(db), "--id", "c1")
        result = await asyncio.to_thread(qcall, "staff", "unlock", *args)
        assert result.returncode == 0, result.stderr
        async with asyncio.timeout(NOTICE_TIMEOUT_S):
            while True:  # the hub polls; so does the test
                if "c1" not in hub.logins.locked_ids():
                    break
                await asyncio.sleep(AUTH_WATCH_INTERVAL_S / 4)
        member = await hub.authenticate("c1", PIN)
        assert member.id == "c1"
    finally:
        await hub.stop()
