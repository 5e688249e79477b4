"""qcall.client against a small scripted hub: requests, errors, timeouts and stream resumption.

The functional tests run the client against a real hub; these pin down what a real hub does
not do on demand: dropped connections at chosen points, duplicates and gaps on the stream,
refused and failing handshakes, a hub that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import WSCloseCode, web
from aiohttp.test_utils import TestServer

from qcall import client as client_module
from qcall.client import (
    QcallApiError,
    QcallClient,
    QcallConnectionError,
    QcallTimeout,
    StreamMessage,
)
from qcall.errors import QcallError

# The fake hub answers at once; this bounds a test whose client would hang instead.
TEST_TIMEOUT_S: Final = 10.0
# The client's timeout against a route that never answers: short, to keep the test quick.
SILENT_HUB_TIMEOUT_S: Final = 0.05

Script = Callable[[web.Request, web.WebSocketResponse], Awaitable[None]]


@dataclass
class FakeHub:
    """What the scripted hub saw, and how its event stream behaves per connection."""

    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    stream_afters: list[str | None] = field(default_factory=list)
    stream_script: list[Script] = field(default_factory=list)
    handshake_status: list[int] = field(default_factory=list)
    never: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""


def _event(seq: int) -> str:
    return json.dumps(
        {
            "seq": seq,
            "type": "window.paused",
            "at": "2026-11-26T09:00:00+08:00",
            "data": {"window": 1, "reason": str(seq)},
        }
    )


async def _idle(ws: web.WebSocketResponse) -> None:
    """Keep the stream open, answering the client's close as a hub does."""
    async for _message in ws:
        pass


async def _send(ws: web.WebSocketResponse, *seqs: int) -> None:
    for seq in seqs:
        await ws.send_str(_event(seq))


@pytest.fixture
async def fake() -> AsyncIterator[FakeHub]:
    hub = FakeHub()

    async def record(request: web.Request) -> Any:
        body = await request.json() if request.can_read_body else None
        hub.requests.append((request.method, request.path, dict(request.headers), body))
        return body

    async def login(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response(
            {
                "token": "qc_session",
                "staff": "c1",
                "name": "张三",
                "role": "clerk",
                "expires_at": "2026-11-27T00:00:00+00:00",
            }
        )

    async def ok_ticket(request: web.Request) -> web.Response:
        await record(request)
        if request.match_info.get("action") in ("open", "close", "pause", "resume"):
            return web.json_response({"window": {"number": 1, "state": "idle"}})
        return web.json_response({"ticket": {"id": "t1", "state": "called"}})

    async def empty(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=204)

    async def conflict(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response(
            {
                "error": {
                    "code": "invalid_transition",
                    "message": "A001 号当前状态为“已办结”",
                    "details": {"state": "done"},
                }
            },
            status=409,
        )

    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>proxy error</html>")

    async def hang(request: web.Request) -> web.Response:
        await hub.never.wait()
        return web.json_response({})

    async def report(request: web.Request) -> web.Response:
        await record(request)
        if request.query.get("format") == "csv":
            return web.Response(text="日报\r\n", content_type="text/csv")
        return web.json_response({"day": request.query.get("date")})

    async def events(request: web.Request) -> web.StreamResponse:
        hub.stream_afters.append(request.query.get("after"))
        if hub.handshake_status:
            status = hub.handshake_status.pop(0)
            return web.json_response({"error": {"code": "x", "message": "x"}}, status=status)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        script = hub.stream_script.pop(0) if hub.stream_script else None
        if script is not None:
            await script(request, ws)
        else:
            await _idle(ws)
        return ws

    app = web.Application()
    app.router.add_post("/api/v1/login", login)
    app.router.add_post("/api/v1/logout", empty)
    app.router.add_post("/api/v1/windows/{n}/next", empty)
    app.router.add_post("/api/v1/windows/{n}/recall", conflict)
    app.router.add_post("/api/v1/windows/{n}/{action}", ok_ticket)
    app.router.add_post("/api/v1/tickets", ok_ticket)
    app.router.add_get("/api/v1/state", bad_gateway)
    app.router.add_get("/api/v1/catalog", hang)
    app.router.add_get("/api/v1/reports/daily", report)
    app.router.add_get("/api/v1/events", events)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hub.url = str(server.make_url("")).rstrip("/")
    try:
        yield hub
    finally:
        hub.never.set()
        await server.close()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnect almost at once: these tests count reconnects, not wait for them."""
    monkeypatch.setattr(client_module, "RECONNECT_INITIAL_S", 0.001)
    monkeypatch.setattr(client_module, "RECONNECT_MAX_S", 0.01)


# --------------------------------------------------------------------------- requests


async def test_login_keeps_the_token_and_sends_it_with_the_language(fake: FakeHub) -> None:
    async with QcallClient(fake.url, lang="en") as hub:
        result = await hub.login("c1", "246810")
        assert result["role"] == "clerk"
        assert hub.token == "qc_session"
        await hub.call_number(3, "A001")
    (_m, _p, login_headers, login_body), (_m2, path, headers, body) = fake.requests
    assert login_body == {"staff": "c1", "pin": "246810"}
    assert "Authorization" not in login_headers
    assert path == "/api/v1/windows/3/call"
    assert body == {"number": "A001"}
    assert headers["Authorization"] == "Bearer qc_session"
    assert headers["Accept-Language"] == "en"


async def test_request_bodies_follow_the_contract(fake: FakeHub) -> None:
    async with QcallClient(fake.url, "qc_t") as hub:
        await hub.issue_ticket("social_card")
        await hub.issue_ticket("case_pickup", priority=True, channel="desk", case_code="123456")
        await hub.transfer(1, service="ltc_insurance", position="first")
        await hub.transfer(1, to_window=4)
        await hub.finish(1, "back_office", promised_date=dt.date(2026, 12, 1))
        await hub.rate(1, 5)
        await hub.pause(1)
        await hub.callback(1, "A003")
    bodies = [body for _m, _p, _h, body in fake.requests]
    assert bodies == [
        {"service": "social_card", "priority": False},
        {"service": "case_pickup", "priority": True, "channel": "desk", "case_code": "123456"},
        {"position": "first", "service": "ltc_insurance"},
        {"position": "last", "window": 4},
        {"outcome": "back_office", "promised_date": "2026-12-01"},
        {"score": 5},
        {"reason": ""},
        {"ticket": "A003"},
    ]


async def test_no_content_means_none(fake: FakeHub) -> None:
    async with QcallClient(fake.url, "qc_t") as hub:
        assert await hub.call_next(1) is None
        await hub.logout()
        assert hub.token is None


async def test_contract_errors_become_qcall_api_errors(fake: FakeHub) -> None:
    async with QcallClient(fake.url, "qc_t") as hub:
        with pytest.raises(QcallApiError) as conflict:
            await hub.recall(1)
        with pytest.raises(QcallApiError) as gateway:
            await hub.state()
    error = conflict.value
    assert isinstance(error, QcallError)
    assert (error.status, error.code) == (409, "invalid_transition")
    assert error.message_text == "A001 号当前状态为“已办结”"
    assert error.details == {"state": "done"}
    assert str(error).startswith("409 invalid_transition")
    assert (gateway.value.status, gateway.value.code) == (502, "http_502")


async def test_daily_report_json_and_csv(fake: FakeHub) -> None:
    async with QcallClient(fake.url, "qc_t") as hub:
        assert await hub.daily_report(dt.date(2026, 11, 26)) == {"day": "2026-11-26"}
        assert await hub.daily_report(fmt="csv") == "日报\r\n"


async def test_a_silent_hub_times_out(fake: FakeHub) -> None:
    # The fake hub never answers this route, so any short timeout shows the behaviour.
    async with QcallClient(fake.url, "qc_t", timeout=SILENT_HUB_TIMEOUT_S) as hub:
        with pytest.raises(QcallTimeout) as timed_out:
            await hub.catalog()
    assert isinstance(timed_out.value, TimeoutError)
    assert isinstance(timed_out.value, QcallConnectionError)


async def test_an_unreachable_hub_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with QcallClient(f"http://127.0.0.1:{port}") as hub:
        with pytest.raises(QcallConnectionError) as refused:
            await hub.health()
    assert isinstance(refused.value, ConnectionError)


async def test_the_client_must_be_entered() -> None:
    with pytest.raises(RuntimeError):
        await QcallClient("http://127.0.0.1:1").health()


# --------------------------------------------------------------------------- event stream


async def _collect(hub: QcallClient, count: int, after: int | None = None) -> list[StreamMessage]:
    got: list[StreamMessage] = []
    async with asyncio.timeout(TEST_TIMEOUT_S), contextlib.aclosing(hub.events(after)) as stream:
        async for message in stream:
            got.append(message)
            if len(got) == count:
                break
    return got


async def test_events_resume_after_drops_without_gap_or_repeat(fake: FakeHub) -> None:
    async def first(request: web.Request, ws: web.WebSocketResponse) -> None:
        snapshot = {"type": "snapshot", "seq": 5, "data": {"seq": 5, "windows": []}}
        await ws.send_str(json.dumps(snapshot))
        await _send(ws, 6, 7)
        await ws.close()  # a clean close, e.g. the hub restarting

    async def second(request: web.Request, ws: web.WebSocketResponse) -> None:
        await _send(ws, 7, 8, 9)  # 7 again: a replay overlapping what was delivered
        assert request.transport is not None
        request.transport.abort()  # the cable is pulled

    async def third(request: web.Request, ws: web.WebSocketResponse) -> None:
        await _send(ws, 11)  # a gap: must not reach the consumer

    async def fourth(request: web.Request, ws: web.WebSocketResponse) -> None:
        await _send(ws, 10, 11)
        await ws.close(code=4000, message=b"lagging; resume with after=11")

    async def fifth(request: web.Request, ws: web.WebSocketResponse) -> None:
        await _send(ws, 12)
        await _idle(ws)

    fake.stream_script = [first, second, third, fourth, fifth]
    async with QcallClient(fake.url, "qc_display") as hub:
        got = await _collect(hub, 8)
    assert [(m["type"], m["seq"]) for m in got][:1] == [("snapshot", 5)]
    assert [m["seq"] for m in got] == [5, 6, 7, 8, 9, 10, 11, 12]
    assert fake.stream_afters == [None, "7", "9", "9", "11"]


async def test_events_from_after_skip_the_snapshot(fake: FakeHub) -> None:
    async def script(request: web.Request, ws: web.WebSocketResponse) -> None:
        await _send(ws, 41, 42)
        await _idle(ws)

    fake.stream_script = [script]
    async with QcallClient(fake.url, "qc_display") as hub:
        got = await _collect(hub, 2, after=40)
    assert [m["seq"] for m in got] == [41, 42]
    assert fake.stream_afters == ["40"]


async def test_a_hub_whose_log_ends_earlier_is_resynced_with_a_snapshot(fake: FakeHub) -> None:
    async def script(request: web.Request, ws: web.WebSocketResponse) -> None:
        await ws.send_str(json.dumps({"type": "snapshot", "seq": 7, "data": {}}))
        await _send(ws, 8)
        await _idle(ws)

    fake.handshake_status = [409]
    fake.stream_script = [script]
    async with QcallClient(fake.url, "qc_display") as hub:
        got = await _collect(hub, 2, after=500)
    assert [(m["type"], m["seq"]) for m in got] == [("snapshot", 7), (got[1]["type"], 8)]
    assert fake.stream_afters == ["500", None]


async def test_a_refused_stream_raises_without_retrying(fake: FakeHub) -> None:
    fake.handshake_status = [401]
    async with QcallClient(fake.url, "qc_wrong") as hub:
        with pytest.raises(QcallApiError) as refused:
            await _collect(hub, 1)
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    assert fake.stream_afters == [None]


async def test_a_failing_hub_is_retried_until_it_answers(fake: FakeHub) -> None:
    async def script(request: web.Request, ws: web.WebSocketResponse) -> None:
        await ws.send_str(json.dumps({"type": "snapshot", "seq": 3, "data": {}}))
        await _idle(ws)

    fake.handshake_status = [503, 502]
    fake.stream_script = [script]
    async with QcallClient(fake.url, "qc_display") as hub:
        got = await _collect(hub, 1)
    assert got[0]["type"] == "snapshot"
    assert fake.stream_afters == [None, None, None]


async def test_without_reconnect_the_stream_ends_with_the_connection(fake: FakeHub) -> None:
    async def script(request: web.Request, ws: web.WebSocketResponse) -> None:
        await _send(ws, 8)
        await ws.close(code=WSCloseCode.GOING_AWAY)

    fake.stream_script = [script]
    async with QcallClient(fake.url, "qc_display") as hub:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            got = [m async for m in hub.events(after=7, reconnect=False)]
    assert [m["seq"] for m in got] == [8]
    assert fake.stream_afters == ["7"]


async def test_without_reconnect_a_failed_connect_raises() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with QcallClient(f"http://127.0.0.1:{port}", "qc_display") as hub:
        with pytest.raises(QcallConnectionError):
            async with asyncio.timeout(TEST_TIMEOUT_S):
                _ = [m async for m in hub.events(reconnect=False)]


async def test_a_shared_session_is_left_open(fake: FakeHub) -> None:
    async with aiohttp.ClientSession() as session:
        async with QcallClient(fake.url, "qc_t", session=session) as hub:
            assert await hub.call_next(1) is None
        assert not session.closed
        async with QcallClient(fake.url, "qc_t", session=session) as again:
            assert await again.call_next(2) is None
    assert [path for _m, path, _h, _b in fake.requests] == [
        "/api/v1/windows/1/next",
        "/api/v1/windows/2/next",
    ]
