"""Staff logins through the hub on a real SQLite file: the PIN policy, the lockout under
concurrency, equal cost for unknown ids, the per-address limit, the PIN worker kept off the
reader thread, pruning, and lockouts that survive a restart."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from qcall import auth
from qcall import hub as hub_module
from qcall import store as store_module
from qcall.auth import ADDRESS_MAX_FAILURES, PIN_QUEUE_MAX, AttemptLimiter
from qcall.errors import AuthError, BadRequest, QcallError, TooManyAttempts
from qcall.hub import Hub
from qcall.model import Role
from qcall.pin_policy import check_pin_policy, generate_pin, pin_problem
from qcall.store import LOGIN_MAX_FAILURES, LOGIN_WINDOW, Store
from tests.common import Clock, make_config

PIN = "73915284"
WRONG = "80461357"


def db_rows(path: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


class Ticker:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScryptCounter:
    """Counts scrypt runs (started and finished) around the real function."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self._lock = threading.Lock()
        self._real: Callable[..., bytes] = hashlib.scrypt

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        with self._lock:
            self.started += 1
        try:
            return self._real(*args, **kwargs)
        finally:
            with self._lock:
                self.finished += 1


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "auth.db"


async def _staffed_hub(db_path: Path) -> Hub:
    h = Hub(make_config(), db_path, clock=Clock())
    await h.start()
    for n in range(1, 9):
        await h.write(h.store.add_staff, f"c{n}", f"职员{n}", PIN, Role.CLERK)
    return h


@pytest.fixture
async def hub(db_path: Path) -> AsyncIterator[Hub]:
    h = await _staffed_hub(db_path)
    yield h
    await h.stop()


@pytest.fixture
async def quiet_hub(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hub]:
    """A hub whose periodic save of failed logins never runs: tests call flush() themselves."""
    monkeypatch.setattr(auth, "LOGIN_FLUSH_S", 3600.0)
    h = await _staffed_hub(db_path)
    yield h
    await h.stop()


@pytest.fixture
def scrypt(monkeypatch: pytest.MonkeyPatch) -> ScryptCounter:
    counter = ScryptCounter()
    monkeypatch.setattr(store_module.hashlib, "scrypt", counter)
    return counter


async def outcomes(calls: list[Any]) -> dict[str, int]:
    """Run login coroutines at once; count results by error code (or 'ok')."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    counts: dict[str, int] = {}
    for result in results:
        if isinstance(result, QcallError):
            key = result.code
        elif isinstance(result, BaseException):
            raise result
        else:
            key = "ok"
        counts[key] = counts.get(key, 0) + 1
    return counts


# ----------------------------------------------------------------------------- PIN policy


@pytest.mark.parametrize(
    ("staff_id", "pin"),
    [
        ("c1", "123456"),
        ("c1", "000000"),
        ("c1", "999999"),
        ("c1", "654321"),
        ("c1", "890123"),  # a run that wraps around
        ("c1", "121212"),
        ("c1", "123123"),
        ("c1", "147258"),
        ("c1", "12345678"),
        ("100234", "100234"),  # the staff id itself
        ("s100234", "100234"),  # the digits of the staff id
        ("s204", "820417"),  # contains the staff id's number
        ("c1", "12345"),  # too short
        ("c1", "1357924"[:5]),
        ("c1", "135792468"),  # too long for a keypad
        ("c1", "13a579"),
        ("c1", "１３５７９０"),  # full-width digits
        ("c1", ""),
    ],
)
def test_obvious_short_or_non_digit_pins_are_refused(staff_id: str, pin: str) -> None:
    problem = pin_problem(staff_id, pin)
    assert problem is not None
    english, chinese = problem
    assert "PIN" in english
    assert "密码" in chinese
    with pytest.raises(BadRequest) as caught:
        check_pin_policy(staff_id, pin)
    assert caught.value.code == "weak_pin"


@pytest.mark.parametrize("pin", ["246810", "135790", "73915284", "580417", "3141592"])
def test_ordinary_pins_are_accepted(pin: str) -> None:
    assert pin_problem("c1", pin) is None
    check_pin_policy("c1", pin)


def test_generated_pins_meet_the_policy() -> None:
    pins = {generate_pin("w01") for _ in range(300)}
    assert all(pin_problem("w01", pin) is None for pin in pins)
    assert all(len(pin) == 6 for pin in pins)
    assert len(pins) > 250  # random, not one fixed PIN


def test_the_store_refuses_a_weak_pin_and_saves_nothing(db_path: Path) -> None:
    store = Store(db_path)
    store.open()
    try:
        with pytest.raises(BadRequest):
            store.add_staff("c1", "张三", "123456", Role.CLERK)
        assert store.staff("c1") is None
        store.add_staff("c1", "张三", PIN, Role.CLERK)
        # Replacing a PIN goes through the same check and keeps the old one on refusal.
        with pytest.raises(BadRequest):
            store.add_staff("c1", "张三", "c1c1c1", Role.CLERK)
        assert store.check_pin("c1", PIN) is not None
    finally:
        store.close()


# ----------------------------------------------------------------------------- lockout


async def test_two_hundred_concurrent_wrong_pins_evaluate_at_most_five(
    quiet_hub: Hub, db_path: Path, scrypt: ScryptCounter
) -> None:
    hub = quiet_hub
    counts = await outcomes([hub.authenticate("c1", WRONG) for _ in range(200)])
    assert counts == {"login_failed": LOGIN_MAX_FAILURES, "login_throttled": 200 - 5}
    assert scrypt.started == LOGIN_MAX_FAILURES
    await hub.logins.flush()
    assert db_rows(db_path, "SELECT COUNT(*) FROM login_failures WHERE staff_id = 'c1'") == [(5,)]
    # Locked: even the right PIN is not checked now.
    with pytest.raises(TooManyAttempts):
        await hub.authenticate("c1", PIN)
    assert scrypt.started == LOGIN_MAX_FAILURES
    # Others are not affected.
    assert (await hub.authenticate("c2", PIN)).id == "c2"


async def test_a_right_pin_in_a_concurrent_burst_is_one_of_the_five(hub: Hub) -> None:
    calls = [hub.authenticate("c1", PIN), *(hub.authenticate("c1", WRONG) for _ in range(50))]
    counts = await outcomes(calls)
    assert counts["ok"] == 1
    assert counts["login_failed"] == LOGIN_MAX_FAILURES - 1
    assert counts["login_throttled"] == 50 - (LOGIN_MAX_FAILURES - 1)


async def test_the_lock_ends_after_the_window(hub: Hub) -> None:
    ticker = Ticker()
    hub.logins.by_staff.clock = ticker
    for _ in range(LOGIN_MAX_FAILURES):
        with pytest.raises(AuthError):
            await hub.authenticate("c1", WRONG)
    with pytest.raises(TooManyAttempts):
        await hub.authenticate("c1", PIN)
    ticker.now += LOGIN_WINDOW.total_seconds() - 1
    with pytest.raises(TooManyAttempts):
        await hub.authenticate("c1", PIN)
    ticker.now += 2
    assert (await hub.authenticate("c1", PIN)).id == "c1"


async def test_a_lockout_survives_a_restart(db_path: Path) -> None:
    first = Hub(make_config(), db_path, clock=Clock())
    await first.start()
    await first.write(first.store.add_staff, "c1", "张三", PIN, Role.CLERK)
    for _ in range(LOGIN_MAX_FAILURES):
        with pytest.raises(AuthError):
            await first.authenticate("c1", WRONG)
    await first.stop()
    second = Hub(make_config(), db_path, clock=Clock())
    await second.start()
    try:
        with pytest.raises(TooManyAttempts):
            await second.authenticate("c1", PIN)
    finally:
        await second.stop()


async def test_a_good_login_clears_the_saved_failures_in_order(hub: Hub, db_path: Path) -> None:
    for _ in range(LOGIN_MAX_FAILURES - 1):
        with pytest.raises(AuthError):
            await hub.authenticate("c1", WRONG)
    assert (await hub.authenticate("c1", PIN)).id == "c1"
    with pytest.raises(AuthError):
        await hub.authenticate("c1", WRONG)
    await hub.logins.flush()
    assert db_rows(db_path, "SELECT COUNT(*) FROM login_failures WHERE staff_id = 'c1'") == [(1,)]


# ----------------------------------------------------------------------------- equal cost


async def test_unknown_disabled_and_known_ids_cost_one_scrypt_and_one_record_each(
    quiet_hub: Hub, db_path: Path, scrypt: ScryptCounter
) -> None:
    hub = quiet_hub
    await hub.write(lambda: hub.store.db.execute("UPDATE staff SET active = 0 WHERE id = 'c3'"))
    for staff_id, pin in (("nobody", PIN), ("c2", WRONG), ("c3", PIN), ("c4", PIN)):
        before = scrypt.started
        with contextlib.suppress(AuthError):
            await hub.authenticate(staff_id, pin)
        assert scrypt.started - before == 1, staff_id
    # Nothing is written on the login's path; the failures are saved together, afterwards.
    assert db_rows(db_path, "SELECT COUNT(*) FROM login_failures") == [(0,)]
    await hub.logins.flush()
    recorded = db_rows(db_path, "SELECT staff_id FROM login_failures ORDER BY rowid")
    assert recorded == [("nobody",), ("c2",), ("c3",)]


# ----------------------------------------------------------------------------- floods


async def test_failures_from_one_address_are_limited_whatever_the_ids(hub: Hub) -> None:
    ticker = Ticker()
    hub.logins.by_address.clock = ticker
    attacker, clerk = "192.0.2.66", "192.0.2.10"
    for n in range(ADDRESS_MAX_FAILURES):
        with pytest.raises(AuthError):
            await hub.authenticate(f"guess{n}", PIN, attacker)
    with pytest.raises(TooManyAttempts) as caught:
        await hub.authenticate("c1", PIN, attacker)
    assert caught.value.code == "login_address_throttled"
    assert "10" in caught.value.message("zh")
    # A clerk elsewhere, and the keypads (no address), still log in.
    assert (await hub.authenticate("c1", PIN, clerk)).id == "c1"
    assert (await hub.authenticate("c2", PIN)).id == "c2"
    ticker.now += auth.ADDRESS_WINDOW_S + 1
    assert (await hub.authenticate("c1", PIN, attacker)).id == "c1"


async def test_a_login_flood_is_bounded_and_never_queues_on_the_reader(
    hub: Hub, scrypt: ScryptCounter
) -> None:
    token = await hub.write(hub.store.create_token, Role.DISPLAY, "lobby")
    flood = [
        asyncio.ensure_future(hub.authenticate(f"x{n}", PIN, f"198.51.100.{n}")) for n in range(100)
    ]
    await asyncio.sleep(0)
    # A token look-up (what /state needs) is answered while the PIN checks still run.
    assert await hub.principal(token) is not None
    assert scrypt.finished < PIN_QUEUE_MAX
    counts = await outcomes(flood)
    assert counts == {"login_failed": PIN_QUEUE_MAX, "login_busy": 100 - PIN_QUEUE_MAX}
    assert scrypt.started == PIN_QUEUE_MAX


async def test_failed_logins_are_pruned_on_disk_and_in_memory(hub: Hub, db_path: Path) -> None:
    ticker = Ticker()
    hub.logins.by_staff.clock = ticker
    hub.logins.by_address.clock = ticker
    for n in range(10):
        with pytest.raises(AuthError):
            await hub.authenticate(f"who{n}", PIN, "203.0.113.5")
    assert len(hub.logins.by_staff) == 10
    await hub.logins.prune()
    assert db_rows(db_path, "SELECT COUNT(*) FROM login_failures") == [(10,)]
    ticker.now += LOGIN_WINDOW.total_seconds() + 1
    later = store_module._utcnow() + LOGIN_WINDOW + LOGIN_WINDOW
    await hub.logins.prune(now=later)
    assert len(hub.logins.by_staff) == 0
    assert len(hub.logins.by_address) == 0
    assert db_rows(db_path, "SELECT COUNT(*) FROM login_failures") == [(0,)]


def test_the_limiter_counts_attempts_in_flight() -> None:
    ticker = Ticker()
    limiter = AttemptLimiter(2, 60.0, ticker)
    assert limiter.available("k")
    limiter.reserve("k")
    limiter.reserve("k")
    assert not limiter.available("k")
    limiter.release("k")  # never evaluated
    assert limiter.available("k")
    limiter.reserve("k")
    limiter.settle("k", failed=True)
    limiter.settle("k", failed=True)
    assert not limiter.available("k")
    ticker.now += 61
    assert limiter.available("k")
    assert limiter.prune() == 1
    assert len(limiter) == 0


# ----------------------------------------------------------------------------- token cache


async def test_the_token_cache_forgets_expired_sessions_and_stays_bounded(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    soon = store_module._utcnow() + dt.timedelta(hours=1)
    tokens = [
        await hub.write(
            lambda n=n: hub.store.create_token(Role.CLERK, f"s{n}", staff_id="c1", expires_at=soon)
        )
        for n in range(20)
    ]
    for token in tokens:
        assert await hub.principal(token) is not None
    assert hub.diagnostics()["cached_sessions"] == 20
    assert hub.sweep_sessions() == 0  # nothing stale yet
    assert hub.sweep_sessions(now=soon + dt.timedelta(seconds=1)) == 20
    assert hub.diagnostics()["cached_sessions"] == 0
    # However many distinct tokens are used, the cache keeps at most the cap, newest kept.
    monkeypatch.setattr(hub_module, "TOKEN_CACHE_MAX", 8)
    for token in tokens:
        assert await hub.principal(token) is not None
    assert hub.diagnostics()["cached_sessions"] <= 8
    assert tokens[-1] in hub._token_cache


# ----------------------------------------------------------------------------- client address


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "expected"),
    [
        ("192.0.2.7", {}, [], "192.0.2.7"),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, [], None),
        ("127.0.0.1", {"Via": "1.1 proxy"}, [], None),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, ["127.0.0.1/32"], "203.0.113.9"),
        (
            "127.0.0.1",
            {"X-Forwarded-For": "10.9.9.9, 203.0.113.9, 10.0.0.2"},
            ["127.0.0.1/32", "10.0.0.0/24"],
            "203.0.113.9",
        ),
        ("127.0.0.1", {"Forwarded": 'for="[2001:db8::1]:4711"'}, ["127.0.0.0/8"], "2001:db8::1"),
        ("127.0.0.1", {"Forwarded": "for=192.0.2.60:80;proto=http"}, ["127.0.0.0/8"], "192.0.2.60"),
        ("127.0.0.1", {"X-Real-IP": "192.0.2.61"}, ["127.0.0.0/8"], "192.0.2.61"),
        ("127.0.0.1", {}, ["127.0.0.0/8"], "127.0.0.1"),
        ("::1", {"X-Forwarded-For": "198.51.100.1"}, ["::1/128"], "198.51.100.1"),
        (None, {}, [], None),
    ],
)
def test_the_client_address_is_seen_through_declared_proxies_only(
    peer: str | None, headers: dict[str, str], trusted: list[str], expected: str | None
) -> None:
    assert auth.client_address(peer, headers, trusted) == expected
