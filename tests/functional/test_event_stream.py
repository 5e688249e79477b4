"""The event stream (``/api/v1/events``) of a real hub: snapshot, replay, order, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
import pytest

from qcall.client import QcallApiError, QcallClient, StreamMessage
from tests.functional.conftest import Connect, HubProcess

# A hub delivers an event within milliseconds; this bounds a hung stream on a loaded machine.
STREAM_TIMEOUT_S: Final = 10.0
# Bounds waiting for the client to come back after a hub restart (its backoff is capped at
# 5 s; the restart itself takes about a second).
RECONNECT_TIMEOUT_S: Final = 30.0
EVENT_KEYS: Final = {"seq", "type", "at", "data"}
CJK: Final = re.compile(r"[\u4e00-\u9fff]")
# The stalled-subscriber test: events are generated in batches of this many requests, this
# many at a time, until the hub drops the stalled subscriber (it queues 2,048 events per
# subscriber after the socket buffers fill) or this many events were made.
SLOW_TEST_BATCH: Final = 250
SLOW_TEST_CONCURRENCY: Final = 32
SLOW_TEST_MAX_EVENTS: Final = 5000


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def _stream(
    hub: HubProcess, *, after: int | None = None, token: str | None = None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    params = {} if after is None else {"after": str(after)}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{hub.url}/api/v1/events",
            params=params,
            headers=_auth(token or hub.token("display")),
        ) as ws,
    ):
        yield ws


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=STREAM_TIMEOUT_S)
    assert message.type is aiohttp.WSMsgType.TEXT, (message.type, message.data, ws.close_code)
    data: dict[str, Any] = json.loads(message.data)
    return data


async def _read_through(ws: aiohttp.ClientWebSocketResponse, seq: int) -> list[dict[str, Any]]:
    """Read messages until the one with ``seq`` (inclusive)."""
    out: list[dict[str, Any]] = []
    while not out or out[-1]["seq"] < seq:
        out.append(await _receive(ws))
    return out


class _Follower:
    """What a ``QcallClient.events()`` consumer has received, with a way to wait for more."""

    def __init__(self) -> None:
        self.got: list[StreamMessage] = []
        self._changed = asyncio.Condition()

    async def add(self, message: StreamMessage) -> None:
        async with self._changed:
            self.got.append(message)
            self._changed.notify_all()

    async def wait_for_seq(self, seq: int, within_s: float) -> None:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: bool(self.got) and self.got[-1]["seq"] >= seq)


def _seqs(messages: list[dict[str, Any]] | list[StreamMessage]) -> list[int]:
    return [m["seq"] for m in messages]


async def test_snapshot_first_then_every_event_in_order(
    connect: Connect, hub: HubProcess, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c1")
    async with _stream(hub) as ws:
        snapshot = await _receive(ws)
        state = await display.state()
        assert snapshot["type"] == "snapshot"
        assert snapshot["seq"] == state["seq"]
        assert snapshot["data"] == state

        await clerk.open_window(1)
        tickets = [await kiosk.issue_ticket("social_card") for _ in range(3)]
        await clerk.call_next(1)
        await clerk.recall(1)
        await clerk.start(1)
        await clerk.finish(1)
        await clerk.rate(1, 5)
        await clerk.call_next(1)  # finishes nobody (already done), calls the second
        await clerk.hold(1)
        await clerk.call_next(1)
        await clerk.no_show(1)
        await clerk.callback(1, tickets[1]["number"])
        await clerk.finish(1, "back_office")
        await clerk.pause(1, "休息")
        await clerk.resume(1)
        await clerk.close_window(1)
        last = (await display.state())["seq"]
        events = await _read_through(ws, last)

    assert _seqs(events) == list(range(snapshot["seq"] + 1, last + 1))
    assert all(set(e) == EVENT_KEYS for e in events)
    assert [e["type"] for e in events] == [
        "window.opened",
        "ticket.issued",
        "ticket.issued",
        "ticket.issued",
        "ticket.called",
        "ticket.recalled",
        "ticket.started",
        "ticket.finished",
        "ticket.rated",
        "ticket.called",
        "ticket.held",
        "ticket.called",
        "ticket.no_show",
        "ticket.called",
        "ticket.finished",
        "case.opened",
        "window.paused",
        "window.resumed",
        "window.closed",
    ]
    issued = [e["data"]["number"] for e in events if e["type"] == "ticket.issued"]
    assert issued == [t["number"] for t in tickets]
    called = [e["data"] for e in events if e["type"] == "ticket.called"]
    assert [c["number"] for c in called] == [tickets[i]["number"] for i in (0, 1, 2, 1)]
    assert {c["window"] for c in called} == {1}


async def test_after_replays_exactly_and_resumes_without_gap_or_repeat(
    connect: Connect, hub: HubProcess, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c2")
    start = (await display.state())["seq"]
    async with _stream(hub) as live:
        assert (await _receive(live))["seq"] == start  # the snapshot

        await clerk.open_window(2)
        for _ in range(4):
            await kiosk.issue_ticket("retirement_review")
        first_batch = (await display.state())["seq"]

        # after=start: the log from start+1, no snapshot, then live events.
        async with _stream(hub, after=start) as replay:
            replayed = await _read_through(replay, first_batch)
            assert _seqs(replayed) == list(range(start + 1, first_batch + 1))
            await clerk.call_next(2)
            await clerk.recall(2)
            await clerk.start(2)
            second_batch = (await display.state())["seq"]
            # Read part of the live events, then drop the connection mid-way.
            replayed += await _read_through(replay, first_batch + 1)
        seen = replayed[-1]["seq"]
        assert seen == first_batch + 1 < second_batch

        await clerk.finish(2)
        await clerk.call_next(2)
        await clerk.no_show(2)
        third_batch = (await display.state())["seq"]
        async with _stream(hub, after=seen) as resumed:
            rest = await _read_through(resumed, third_batch)
            # Caught up: the next message is the next live event, not a repeat.
            await clerk.call_next(2)
            rest += [await _receive(resumed)]
        everything = await _read_through(live, rest[-1]["seq"])

    combined = replayed + rest
    assert _seqs(combined) == list(range(start + 1, rest[-1]["seq"] + 1))
    # What was replayed from the log is byte for byte what went out live.
    assert combined == everything
    assert combined[-1]["type"] == "ticket.called"
    for _ in range(3):
        if await clerk.call_next(2) is None:
            break
    await clerk.close_window(2)


async def test_after_the_current_seq_waits_for_the_next_event(
    connect: Connect, hub: HubProcess, display: QcallClient
) -> None:
    clerk = await connect(staff="c3")
    now = (await display.state())["seq"]
    async with _stream(hub, after=now) as ws:
        await clerk.open_window(3)
        event = await _receive(ws)
        assert (event["seq"], event["type"]) == (now + 1, "window.opened")
        await clerk.close_window(3)
        assert (await _receive(ws))["seq"] == now + 2


async def test_after_beyond_the_log_is_refused_not_left_waiting(
    hub: HubProcess, display: QcallClient
) -> None:
    """A client holding a seq the hub never committed (say, a replaced database) must resync."""
    now = (await display.state())["seq"]
    url = f"{hub.url}/api/v1/events"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with session.ws_connect(
                url, params={"after": str(now + 50)}, headers=_auth(hub.token("display"))
            ):
                pass
        assert refused.value.status == 409
        headers = _auth(hub.token("display")) | {"Accept-Language": "en"}
        async with session.get(url, params={"after": str(now + 50)}, headers=headers) as response:
            error = (await response.json())["error"]
    assert error["code"] == "after_beyond_log"
    assert "reconnect without after" in error["message"]
    assert (await display.state())["seq"] == now


async def test_browser_token_parameter_and_refusals(hub: HubProcess) -> None:
    url = f"{hub.url}/api/v1/events"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, params={"token": hub.token("display")}) as ws:
            assert (await _receive(ws))["type"] == "snapshot"
        for params, headers, status in (
            ({}, {}, 401),
            ({"token": "qc_never-issued"}, {}, 401),
            ({}, _auth("qc_never-issued"), 401),
            ({"token": hub.token("kiosk")}, {}, 403),
            ({"after": "-1"}, _auth(hub.token("display")), 400),
            ({"after": "soon"}, _auth(hub.token("display")), 400),
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with session.ws_connect(url, params=params, headers=headers):
                    pass
            assert refused.value.status == status, params
            # The same request without the upgrade shows the contract's error body.
            async with session.get(url, params=params, headers=headers) as response:
                assert response.status == status
                body = await response.json()
                assert body["error"]["code"] in {"unauthorized", "forbidden_role", "bad_param"}
        # A plain GET with a good token is told, in the contract's form, to upgrade.
        for lang, pattern in (("zh", CJK), ("en", re.compile("WebSocket upgrade"))):
            headers = _auth(hub.token("display")) | {"Accept-Language": lang}
            async with session.get(url, headers=headers) as response:
                assert (response.status, response.content_type) == (400, "application/json")
                error = (await response.json())["error"]
                assert error["code"] == "websocket_required"
                assert pattern.search(error["message"]), error


async def test_client_yields_from_after_without_a_snapshot(
    connect: Connect, hub: HubProcess, display: QcallClient
) -> None:
    clerk = await connect(staff="c4")
    base = (await display.state())["seq"]
    await clerk.open_window(4)
    await clerk.pause(4)
    await clerk.resume(4)
    await clerk.close_window(4)
    got: list[StreamMessage] = []
    async with contextlib.aclosing(display.events(after=base)) as stream:
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            async for message in stream:
                got.append(message)
                if message["seq"] == base + 4:
                    break
    assert [(m["seq"], m["type"]) for m in got] == [
        (base + 1, "window.opened"),
        (base + 2, "window.paused"),
        (base + 3, "window.resumed"),
        (base + 4, "window.closed"),
    ]


async def test_client_follows_the_stream_across_a_hub_restart(
    hub: HubProcess, kiosk: QcallClient
) -> None:
    follower = _Follower()
    clerk_token = hub.session_token("c5")

    async def follow() -> None:
        async with (
            QcallClient(hub.url, hub.token("display")) as display,
            contextlib.aclosing(display.events()) as stream,
        ):
            async for message in stream:
                await follower.add(message)

    task = asyncio.create_task(follow())
    try:
        await follower.wait_for_seq(0, STREAM_TIMEOUT_S)
        assert follower.got[0]["type"] == "snapshot"
        async with QcallClient(hub.url, clerk_token) as clerk:
            await clerk.open_window(5)
            before = [await kiosk.issue_ticket("senior_allowance") for _ in range(2)]
            await clerk.call_next(5)
            before_seq = (await clerk.state())["seq"]
        await follower.wait_for_seq(before_seq, STREAM_TIMEOUT_S)

        await asyncio.to_thread(hub.restart)

        # Same database: the session, the open window and the numbering survive.
        async with QcallClient(hub.url, clerk_token) as clerk:
            state = await clerk.state()
            assert state["seq"] == before_seq
            assert next(w for w in state["windows"] if w["number"] == 5)["staff"] == "c5"
            await clerk.call_next(5)
            after = await kiosk.issue_ticket("senior_allowance")
            await clerk.call_next(5)
            await clerk.call_next(5)
            await clerk.call_next(5)
            await clerk.close_window(5)
            final_seq = (await clerk.state())["seq"]
        await follower.wait_for_seq(final_seq, RECONNECT_TIMEOUT_S)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    got = follower.got
    assert after["number"] > before[-1]["number"]
    assert [m["type"] for m in got].count("snapshot") == 1
    assert _seqs(got) == list(range(got[0]["seq"], final_seq + 1))
    assert got[-1]["type"] == "window.closed"


async def test_client_reports_a_refused_stream(hub: HubProcess) -> None:
    async with QcallClient(hub.url, hub.token("kiosk")) as kiosk:
        with pytest.raises(QcallApiError) as refused:
            async with contextlib.aclosing(kiosk.events()) as stream:
                await anext(stream)
    assert refused.value.status == 403


def _small_receive_buffer(addr_info: Any) -> socket.socket:
    """A client socket with a tiny receive buffer, so a reader that stops reading backs up."""
    family, type_, proto, _name, _address = addr_info
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_a_subscriber_that_never_reads_does_not_hold_up_the_others(
    connect: Connect, hub: HubProcess, display: QcallClient
) -> None:
    clerk = await connect(staff="c6")
    admin = await connect(hub.token("admin"))
    note = "首问负责" * 250  # large events fill the stalled connection sooner
    limiter = asyncio.Semaphore(SLOW_TEST_CONCURRENCY)

    async def inquiry() -> None:
        async with limiter:
            await clerk.log_inquiry("咨询", note=note)

    connector = aiohttp.TCPConnector(socket_factory=_small_receive_buffer)
    async with (
        aiohttp.ClientSession(connector=connector) as stalled_session,
        stalled_session.ws_connect(
            f"{hub.url}/api/v1/events", headers=_auth(hub.token("display"))
        ) as stalled,
        _stream(hub) as reader,
    ):
        start = (await _receive(reader))["seq"]
        baseline = (await admin.diagnostics())["subscribers"]
        generated = 0
        # Keep the hall busy until the hub drops the stalled subscriber (or a bound is hit:
        # how much a stalled socket absorbs depends on the kernel).
        while generated < SLOW_TEST_MAX_EVENTS:
            await asyncio.gather(*(inquiry() for _ in range(SLOW_TEST_BATCH)))
            generated += SLOW_TEST_BATCH
            if (await admin.diagnostics())["subscribers"] < baseline:
                break
        end = start + generated

        # The reader got every event, in order, however stuck the other one is.
        received = await _read_through(reader, end)
        assert _seqs(received) == list(range(start + 1, end + 1))

        # The stalled subscriber, once it reads, sees a gap-free prefix; if it was dropped for
        # lagging, the close says where to resume and the log has the rest.
        prefix: list[dict[str, Any]] = []
        first = await _receive(stalled)
        assert first["type"] == "snapshot"
        while not prefix or prefix[-1]["seq"] < end:
            message = await stalled.receive(timeout=STREAM_TIMEOUT_S)
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            prefix.append(json.loads(message.data))
        assert _seqs(prefix) == list(range(first["seq"] + 1, first["seq"] + 1 + len(prefix)))
        last = prefix[-1]["seq"] if prefix else first["seq"]
        if last < end:
            assert stalled.close_code == 4000
            assert f"after={last}" in str(message.extra)
            rest: list[StreamMessage] = []
            async with contextlib.aclosing(display.events(after=last)) as stream:
                async with asyncio.timeout(STREAM_TIMEOUT_S):
                    async for event in stream:
                        rest.append(event)
                        if event["seq"] == end:
                            break
            assert _seqs(rest) == list(range(last + 1, end + 1))
