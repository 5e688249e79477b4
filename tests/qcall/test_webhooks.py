"""Webhooks (qcall/webhooks.py) against a real HTTP receiver on 127.0.0.1: signed, in order,
retried without loss, never in the way of a command, resumed from a persisted cursor."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from qcall import webhooks
from qcall.config import CenterConfig
from qcall.hub import Hub
from qcall.webhooks import SIGNATURE_HEADER, SIGNATURE_TOLERANCE_S, TIMESTAMP_HEADER, sign, verify
from tests.common import Clock, make_config

SECRET = "webhook-secret-0123456789"
# Bounds for waiting on background delivery; generous, they only catch a hang.
POLL_TIMEOUT_S = 10.0
POLL_STEP_S = 0.01
TINY_BACKOFF_S = 0.001


@dataclass
class Delivery:
    seq: int
    event: dict[str, Any]
    headers: dict[str, str]
    signature_ok: bool


@dataclass
class Receiver:
    """An outside system: records what it accepted; can fail, or hang, on purpose."""

    url: str = ""
    accepted: list[Delivery] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    fail_next: int = 0  # answer 500 to this many requests
    failing: bool = False  # answer 500 until told otherwise
    hang_next: int = 0  # never answer this many requests (until released)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        seq = int(request.headers["X-Qcall-Seq"])
        self.attempts.append(seq)
        if self.hang_next > 0:
            self.hang_next -= 1
            await self.release.wait()
            return web.Response(status=503)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500)
        if self.failing:
            return web.Response(status=500)
        # Checked as the README tells integrators to, independently of qcall's own code.
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        signed = stamp.encode() + b"." + body
        expected = f"t={stamp},v1=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= SIGNATURE_TOLERANCE_S
        self.accepted.append(
            Delivery(
                seq,
                json.loads(body),
                dict(request.headers),
                fresh and hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected),
            )
        )
        return web.Response(status=204)

    @property
    def seqs(self) -> list[int]:
        return [d.seq for d in self.accepted]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.url = f"http://{host}:{port}/hook"
    yield rec
    rec.release.set()
    await runner.cleanup()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "BACKOFF_START_S", TINY_BACKOFF_S)


def hooked(receiver: Receiver, **extra: Any) -> CenterConfig:
    return make_config(webhooks=[{"id": "crm", "url": receiver.url, "secret": SECRET, **extra}])


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_STEP_S)


def logged(path: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT seq, type, at, data FROM events ORDER BY seq").fetchall()
    finally:
        db.close()
    return [{"seq": r[0], "type": r[1], "at": r[2], "data": json.loads(r[3])} for r in rows]


def cursor_in_db(path: Path) -> int | None:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT last_seq FROM webhook_cursors WHERE hook = 'crm'").fetchone()
    finally:
        db.close()
    return None if row is None else int(row[0])


def webhook_diagnostics(hub: Hub) -> dict[str, Any]:
    [details] = [d for d in hub.diagnostics()["device_details"] if d.get("id") == "crm"]
    return dict(details)


async def some_traffic(hub: Hub, tickets: int) -> None:
    e = hub.engine
    if e.windows[1].staff is None:
        await hub.execute(lambda now: e.open_window(now, 1, "c1"))
    for _ in range(tickets):
        await hub.execute(lambda now: e.issue(now, "social"))


def delivered_everything(hub: Hub, receiver: Receiver) -> Callable[[], bool]:
    return lambda: bool(receiver.seqs) and receiver.seqs[-1] == hub.committed_seq


# ----------------------------------------------------------------------------- delivery


def test_the_signature_covers_the_timestamp_and_the_body() -> None:
    body = b'{"seq":1}'
    stamp = 1_764_000_000
    assert sign(SECRET, body, stamp) == (
        f"t={stamp},v1="
        + hmac.new(SECRET.encode(), b"1764000000." + body, hashlib.sha256).hexdigest()
    )
    header = sign(SECRET, body, stamp)
    assert verify(SECRET, body, header, now=stamp + 10)
    assert not verify(SECRET + "x", body, header, now=stamp)
    assert not verify(SECRET, body + b" ", header, now=stamp)
    # A captured delivery replayed later is refused, and its timestamp cannot be moved.
    assert not verify(SECRET, body, header, now=stamp + SIGNATURE_TOLERANCE_S + 1)
    moved = header.replace(f"t={stamp}", f"t={stamp + 600}")
    assert not verify(SECRET, body, moved, now=stamp + 600)
    for broken in ("", "v1=abc", f"t=x,{header.split(',')[1]}", "sha256=" + "0" * 64):
        assert not verify(SECRET, body, broken, now=stamp)


async def test_every_event_is_posted_in_order_and_signed(
    tmp_path: Path, receiver: Receiver
) -> None:
    db_path = tmp_path / "h.db"
    hub = Hub(hooked(receiver), db_path, clock=Clock())
    await hub.start()
    try:
        start = hub.committed_seq
        await some_traffic(hub, 5)
        await hub.execute(lambda now: hub.engine.call_next(now, 1, "c1"))
        await until(delivered_everything(hub, receiver), "delivery")
        details = webhook_diagnostics(hub)
        assert details["delivered"] == len(receiver.accepted)
        assert details["url"] == receiver.url  # nothing to mask in a plain URL
    finally:
        await hub.stop()
    # A new hook starts at the present: the day.opened of start-up was history already.
    assert receiver.seqs == list(range(start + 1, start + 8))
    assert receiver.attempts == receiver.seqs  # nothing needed a retry
    log = {event["seq"]: event for event in logged(db_path)}
    for delivery in receiver.accepted:
        assert delivery.signature_ok, delivery.headers
        assert delivery.headers["X-Qcall-Seq"] == str(delivery.event["seq"])
        assert delivery.headers["X-Qcall-Event"] == delivery.event["type"]
        assert delivery.headers["Content-Type"] == "application/json"
        assert delivery.event == log[delivery.seq]
    assert [d.event["type"] for d in receiver.accepted] == [
        "window.opened",
        *["ticket.issued"] * 5,
        "ticket.called",
    ]
    assert cursor_in_db(db_path) == start + 7


async def test_failed_deliveries_are_retried_without_loss_or_reordering(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.fail_next = 2
    hub = Hub(hooked(receiver), tmp_path / "h.db", clock=Clock())
    await hub.start()
    try:
        start = hub.committed_seq
        await some_traffic(hub, 4)
        await until(delivered_everything(hub, receiver), "delivery")
        details = webhook_diagnostics(hub)
    finally:
        await hub.stop()
    expected = list(range(start + 1, start + 6))
    assert receiver.seqs == expected
    assert all(d.signature_ok for d in receiver.accepted)
    # The first event was tried three times, the rest once, each in its turn.
    assert receiver.attempts == [expected[0]] * 3 + expected[1:]
    assert details["failures"] == 2
    assert details["delivered"] == 5
    assert details["last_error"] == "HTTP 500"
    assert SECRET not in json.dumps(details)


async def test_a_hanging_receiver_never_delays_commands(tmp_path: Path, receiver: Receiver) -> None:
    receiver.hang_next = 1
    db_path = tmp_path / "h.db"
    hub = Hub(hooked(receiver), db_path, clock=Clock())
    await hub.start()
    try:
        start = hub.committed_seq
        await some_traffic(hub, 1)
        await until(lambda: len(receiver.attempts) == 1, "the first (hanging) request")
        # While that request hangs (the delivery timeout is 10 s), the hall keeps working.
        await some_traffic(hub, 30)
        assert hub.committed_seq == hub.engine.seq == start + 32
        assert len(logged(db_path)) == start + 32
        assert receiver.attempts == [start + 1]
        assert receiver.accepted == []
        assert webhook_diagnostics(hub)["cursor"] == start
    finally:
        await hub.stop()  # does not wait for the hung request either
    assert cursor_in_db(db_path) == start


async def test_a_timed_out_delivery_is_retried(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "DELIVERY_TIMEOUT_S", 0.2)
    receiver.hang_next = 2
    hub = Hub(hooked(receiver), tmp_path / "h.db", clock=Clock())
    await hub.start()
    try:
        start = hub.committed_seq
        await some_traffic(hub, 3)
        await until(delivered_everything(hub, receiver), "delivery after timeouts")
        details = webhook_diagnostics(hub)
    finally:
        await hub.stop()
    expected = list(range(start + 1, start + 5))
    assert receiver.seqs == expected
    assert receiver.attempts == [expected[0]] * 3 + expected[1:]
    assert details["failures"] == 2
    assert "Timeout" in details["last_error"]


async def test_only_the_chosen_event_types_are_posted(tmp_path: Path, receiver: Receiver) -> None:
    hub = Hub(hooked(receiver, events=["ticket.issued"]), tmp_path / "h.db", clock=Clock())
    await hub.start()
    try:
        await some_traffic(hub, 3)
        await hub.execute(lambda now: hub.engine.call_next(now, 1, "c1"))
        await until(lambda: len(receiver.accepted) == 3, "three issued tickets")
        await until(lambda: webhook_diagnostics(hub)["cursor"] == hub.committed_seq, "the cursor")
    finally:
        await hub.stop()
    assert [d.event["type"] for d in receiver.accepted] == ["ticket.issued"] * 3
    assert [d.event["data"]["number"] for d in receiver.accepted] == ["A001", "A002", "A003"]


# ----------------------------------------------------------------------------- cursor


async def test_the_cursor_survives_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    db_path = tmp_path / "h.db"
    clock = Clock()
    first = Hub(hooked(receiver), db_path, clock=clock)
    await first.start()
    try:
        start = first.committed_seq
        await some_traffic(first, 3)
        await until(delivered_everything(first, receiver), "the first deliveries")
        delivered_before = first.committed_seq
        # The receiver goes down; the hall carries on.
        receiver.failing = True
        await some_traffic(first, 3)
        await until(lambda: receiver.attempts[-1] == delivered_before + 1, "a failed attempt")
        stopped_at = first.committed_seq
    finally:
        await first.stop()
    assert cursor_in_db(db_path) == delivered_before

    receiver.failing = False
    second = Hub(hooked(receiver), db_path, clock=clock)
    await second.start()
    try:
        assert second.committed_seq == stopped_at
        await some_traffic(second, 1)
        await until(delivered_everything(second, receiver), "the backlog after restart")
    finally:
        await second.stop()
    # Everything exactly once, in order: nothing from the start again, nothing skipped.
    assert receiver.seqs == list(range(start + 1, stopped_at + 2))
    assert cursor_in_db(db_path) == stopped_at + 1


async def test_a_new_webhook_starts_at_the_present(tmp_path: Path, receiver: Receiver) -> None:
    db_path = tmp_path / "h.db"
    clock = Clock()
    plain = Hub(make_config(), db_path, clock=clock)
    await plain.start()
    try:
        await some_traffic(plain, 4)
        history = plain.committed_seq
    finally:
        await plain.stop()

    hub = Hub(hooked(receiver), db_path, clock=clock)
    await hub.start()
    try:
        assert cursor_in_db(db_path) == history
        await some_traffic(hub, 2)
        await until(delivered_everything(hub, receiver), "the new events")
    finally:
        await hub.stop()
    assert receiver.seqs == [history + 1, history + 2]
    assert receiver.attempts == receiver.seqs
    assert [d.event["data"]["number"] for d in receiver.accepted] == ["A005", "A006"]


# ----------------------------------------------------------------------------- alerts


async def test_supervisor_alerts_are_posted_when_they_begin_and_end(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qcall import hub as hub_module

    monkeypatch.setattr(hub_module, "ALERT_CHECK_S", 0.05)
    clock = Clock()
    config = hooked(receiver, events=["alert.raised", "alert.cleared"])
    hub = Hub(config, tmp_path / "h.db", clock=clock)
    await hub.start()
    try:
        await some_traffic(hub, 1)
        [ticket] = hub.engine.tickets.values()
        clock.advance(minutes=31)  # past the service's 30-minute target
        await until(lambda: len(receiver.accepted) == 1, "the alert")
        await hub.execute(lambda now: hub.engine.cancel(now, ticket.id))
        await until(lambda: len(receiver.accepted) == 2, "the alert's end")
    finally:
        await hub.stop()
    raised, cleared = (d.event for d in receiver.accepted)
    assert raised["type"] == "alert.raised"
    assert raised["data"]["key"] == "long_wait:social"
    assert raised["data"]["kind"] == "long_wait"
    assert "30 min" in raised["data"]["message_en"]
    assert "30 分钟" in raised["data"]["message_zh"]
    assert (cleared["type"], cleared["data"]["key"]) == ("alert.cleared", "long_wait:social")
    assert all(d.signature_ok for d in receiver.accepted)
