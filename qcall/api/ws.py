"""The event stream: a snapshot (or a replay from ``after``), then every event in order."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from aiohttp import WSCloseCode, WSMsgType, web

from qcall.api.routes import DISPLAY_PLUS, HUB_KEY, authorize, bearer, error_response
from qcall.errors import BadRequest, Conflict, QcallError
from qcall.events import Event, EventType
from qcall.hub import Hub
from qcall.i18n import pick_language
from qcall.lobby import ScreenSession
from qcall.model import Role
from qcall.store import Principal

_LOGGER = logging.getLogger(__name__)

# Dead clients (a TV unplugged) are noticed within two heartbeats.
WS_HEARTBEAT_S: Final = 20.0
# Clients only send control frames; anything larger is abuse.
WS_MAX_MESSAGE: Final = 4096
# Close code telling a lagging client to reconnect with ``after=<last seq>``.
CLOSE_LAGGING: Final = 4000
# Close code telling a client its token was revoked (logout) or expired: log in again.
CLOSE_TOKEN_ENDED: Final = 4001
# A token revoked outside this hub (``qcall token revoke``) is noticed within this long.
TOKEN_RECHECK_S: Final = 30.0
# Shortest wait before re-checking a token at its expiry (the clocks of the check and of the
# expiry can differ by a little; never spin).
TOKEN_RECHECK_MIN_S: Final = 0.5
ENCODED_CACHE: Final = 256
# Open event streams, so a stopping hub can say goodbye (1001) instead of leaving clients to
# time out and making the shutdown wait for every stream handler.
STREAMS_KEY: Final = web.AppKey("event_streams", set[web.WebSocketResponse])


# Who reads what an admin changed (the actor, staff accounts, token names: the audit log).
# Other streams (lobby screens, clerks' panels) get those events with their seq, type and what
# kind of change it was only: the stream stays gap-free and a lobby machine never holds staff
# accounts.
AUDIT_READERS: Final = frozenset({Role.SUPERVISOR, Role.ADMIN, Role.INTEGRATION})
# What of an audit event the other streams see (by type).
_AUDIT_KEPT: Final = {EventType.SETTINGS_CHANGED: "key", EventType.AUDIT_RECORDED: "action"}


class EncodedEvents:
    """Each event is encoded once, however many clients receive it (one cache per hub)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[int, str] = OrderedDict()

    def __call__(self, event: Event, *, redact: bool = False) -> str:
        if redact and event.type in _AUDIT_KEPT:
            return _redacted(event).to_json()  # rare (admin changes): not cached
        text = self._cache.get(event.seq)
        if text is None:
            text = event.to_json()
            self._cache[event.seq] = text
            if len(self._cache) > ENCODED_CACHE:
                self._cache.popitem(last=False)
        return text


def _redacted(event: Event) -> Event:
    """An audit event as a stream outside ``AUDIT_READERS`` sees it."""
    kept = _AUDIT_KEPT[event.type]
    return Event(event.seq, event.type, event.at, {kept: event.data.get(kept), "redacted": True})


ENCODED_KEY: Final = web.AppKey("encoded_events", EncodedEvents)


def _after(request: web.Request) -> int | None:
    raw = request.query.get("after")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise BadRequest(
            "after must be a non-negative integer", "after 必须是非负整数", code="bad_param"
        )
    return value


async def events_ws(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/events``: the WebSocket event stream."""
    hub = request.app[HUB_KEY]
    lang = pick_language(request.headers.get("Accept-Language"))
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, max_msg_size=WS_MAX_MESSAGE)
    try:
        principal = await authorize(request, hub, DISPLAY_PLUS)
        assert principal is not None
        after = _after(request)
        if after is not None and after > hub.committed_seq:
            raise Conflict(
                f"the event log ends at seq {hub.committed_seq}; reconnect without after",
                f"事件日志只到序号 {hub.committed_seq}，请不带 after 重新连接以获取快照",
                code="after_beyond_log",
                details={"last_seq": hub.committed_seq},
            )
        if not ws.can_prepare(request).ok:
            raise BadRequest(
                "this endpoint needs a WebSocket upgrade",
                "此接口需要 WebSocket 连接",
                code="websocket_required",
            )
    except QcallError as err:
        return error_response(err.status, err.code, err.message(lang))
    await ws.prepare(request)
    streams = request.app[STREAMS_KEY]
    streams.add(ws)
    # Subscribe before reading the snapshot or the log, so nothing falls between them.
    subscription = hub.bus.subscribe_queue()
    loop = asyncio.get_running_loop()
    reader = loop.create_task(_drain_client(ws), name="qcall:ws-reader")
    token = bearer(request)
    assert token is not None
    guard = loop.create_task(_guard_token(hub, ws, token, principal), name="qcall:ws-token")
    # Lobby screens are devices: listed in diagnostics, reported when gone (DESIGN §6).
    screen = None
    if principal.role is Role.DISPLAY:
        screen = hub.screens.connected(principal.name, request.remote or "")
    try:
        encode = functools.partial(
            request.app[ENCODED_KEY], redact=principal.role not in AUDIT_READERS
        )
        await _stream(hub, ws, subscription, after, reader, encode, screen)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if screen is not None:
            hub.screens.disconnected(screen)
        streams.discard(ws)
        subscription.close()
        for task in (reader, guard):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ws.close()
    return ws


async def _guard_token(
    hub: Hub, ws: web.WebSocketResponse, token: str, principal: Principal
) -> None:
    """Close the stream (4001) when its token is revoked or expires."""
    revoked = asyncio.Event()
    unsubscribe = hub.watch_revocation(token, revoked.set)
    try:
        while True:
            wait = TOKEN_RECHECK_S
            if principal.expires_at is not None:
                left = (principal.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
                wait = min(wait, max(TOKEN_RECHECK_MIN_S, left))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(revoked.wait(), wait)
            if not revoked.is_set():
                # Straight from the database: a revocation by another process counts too.
                current = await hub.read(hub.reader.principal, token)
                if current is not None:
                    principal = current
                    continue
            await ws.close(code=CLOSE_TOKEN_ENDED, message=b"token revoked or expired")
            return
    finally:
        unsubscribe()


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: close every open event stream with 1001 so clients reconnect at once."""
    streams = app[STREAMS_KEY]
    await asyncio.gather(
        *(
            ws.close(code=WSCloseCode.GOING_AWAY, message=b"hub shutting down")
            for ws in list(streams)
        ),
        return_exceptions=True,
    )


async def _stream(
    hub: Hub,
    ws: web.WebSocketResponse,
    subscription: object,
    after: int | None,
    reader: asyncio.Task[None],
    encode: Callable[[Event], str],
    screen: ScreenSession | None = None,
) -> None:
    from qcall.events import Subscription

    assert isinstance(subscription, Subscription)
    if after is None:
        state = await hub.durable_state()
        last = int(state["seq"])
        await ws.send_str(
            json.dumps({"type": "snapshot", "seq": last, "data": state}, ensure_ascii=False)
        )
    else:
        last = await _replay(hub, ws, after, encode)
    if screen is not None:
        screen.last_seq = last
    reader.add_done_callback(lambda _task: subscription.wake())
    queue = subscription.queue
    while True:
        # One wake-up per burst: everything queued is sent back to back.
        batch = [await queue.get()]
        while not queue.empty():
            batch.append(queue.get_nowait())
        for event in batch:
            if event is None:
                if subscription.overflowed:
                    hub.metrics.ws_dropped.inc()
                    await ws.close(
                        code=CLOSE_LAGGING, message=f"lagging; resume with after={last}".encode()
                    )
                return
            if event.seq <= last:
                continue
            if event.seq != last + 1:
                last = await _replay(hub, ws, last, encode, upto=event.seq - 1)
            await ws.send_str(encode(event))
            last = event.seq
        if screen is not None:
            screen.last_seq = last


async def _replay(
    hub: Hub,
    ws: web.WebSocketResponse,
    after: int,
    encode: Callable[[Event], str],
    upto: int | None = None,
) -> int:
    """Send logged events after ``after`` (up to ``upto``); return the last seq sent."""
    last = after
    while True:
        batch = await hub.events_after(last)
        if not batch:
            return last
        for event in batch:
            if upto is not None and event.seq > upto:
                return last
            await ws.send_str(encode(event))
            last = event.seq


async def _drain_client(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, so pings and closes are handled."""
    async for message in ws:
        if message.type is WSMsgType.ERROR:
            _LOGGER.debug("event stream client error: %s", ws.exception())
            return
