"""Webhooks: every committed event POSTed to outside systems, signed, retried, never blocking."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Final

import aiohttp
from yarl import URL

from qcall.config import Webhook
from qcall.events import Event

if TYPE_CHECKING:
    from qcall.hub import Hub

_LOGGER = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Qcall-Signature"
TIMESTAMP_HEADER: Final = "X-Qcall-Timestamp"
# Receivers should refuse deliveries signed longer ago than this (replays); each retry is signed
# afresh, so a delivery that waited in backoff is still fresh when it arrives.
SIGNATURE_TOLERANCE_S: Final = 300.0
# A receiver slower than this is treated as failed; the event is retried, nothing is lost.
DELIVERY_TIMEOUT_S: Final = 10.0
BACKOFF_START_S: Final = 1.0
# Capped so a receiver that comes back is served again within a minute.
BACKOFF_MAX_S: Final = 60.0
# The delivery cursor is saved at most this often (at-least-once; receivers dedupe by seq).
CURSOR_SAVE_INTERVAL_S: Final = 1.0
FETCH_BATCH: Final = 200


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value: ``t=<unix time>,v1=<hex HMAC-SHA256>``.

    The HMAC covers ``b"<timestamp>." + body``, so a captured delivery replayed later carries a
    stale timestamp that cannot be changed without the secret (as Stripe's webhooks do).
    """
    return f"t={timestamp},v1={_mac(secret, body, timestamp)}"


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
) -> bool:
    """What a receiver does: check the signature header of a delivery and its freshness."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        (raw_timestamp,) = fields.get("t", [])
        timestamp = int(raw_timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, body, timestamp)
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


def redacted_url(url: str) -> str:
    """The URL with what may be a credential masked: its password and its query values."""
    parsed = URL(url)
    if parsed.password is not None:
        parsed = parsed.with_password("***")
    if parsed.query:
        parsed = parsed.with_query(dict.fromkeys(parsed.query, "***"))
    return str(parsed)


class WebhookDispatcher:
    """Delivers the event log to one receiver from a persistent cursor (the log is the outbox)."""

    def __init__(self, hub: Hub, hook: Webhook) -> None:
        self.hub = hub
        self.hook = hook
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe = hub.bus.subscribe(lambda _event: self._wake.set())
        self.delivered = 0
        self.failures = 0
        self.last_error = ""
        self.cursor = 0

    async def start(self) -> None:
        """Load the cursor (a new hook starts at the present) and start delivering."""
        cursor = await self.hub.read(self.hub.reader.webhook_cursor, self.hook.id)
        if cursor is None:
            cursor = self.hub.committed_seq
            await self.hub.write(self.hub.store.set_webhook_cursor, self.hook.id, cursor)
        self.cursor = cursor
        self._task = self.hub.create_task(self._run(), f"webhook:{self.hook.id}")

    async def stop(self) -> None:
        """Stop delivering and save the cursor."""
        self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.hub.write(self.hub.store.set_webhook_cursor, self.hook.id, self.cursor)

    def diagnostics(self) -> dict[str, object]:
        """State of this webhook, without its secret."""
        return {
            "id": self.hook.id,
            "url": redacted_url(self.hook.url),
            "cursor": self.cursor,
            "delivered": self.delivered,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    def _wanted(self, event: Event) -> bool:
        return "*" in self.hook.events or str(event.type) in self.hook.events

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S)
        backoff = BACKOFF_START_S
        saved_at = time.monotonic()
        saved = self.cursor
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if self.cursor >= self.hub.committed_seq:
                    self._wake.clear()
                    if saved != self.cursor:
                        await self.hub.write(
                            self.hub.store.set_webhook_cursor, self.hook.id, self.cursor
                        )
                        saved, saved_at = self.cursor, time.monotonic()
                    await self._wake.wait()
                    continue
                events = await self.hub.events_after(self.cursor, FETCH_BATCH)
                for event in events:
                    if self._wanted(event):
                        while not await self._deliver(session, event):
                            await asyncio.sleep(backoff)
                            backoff = min(backoff * 2, BACKOFF_MAX_S)
                        backoff = BACKOFF_START_S
                    self.cursor = event.seq
                    if time.monotonic() - saved_at > CURSOR_SAVE_INTERVAL_S:
                        await self.hub.write(
                            self.hub.store.set_webhook_cursor, self.hook.id, self.cursor
                        )
                        saved, saved_at = self.cursor, time.monotonic()

    async def _deliver(self, session: aiohttp.ClientSession, event: Event) -> bool:
        body = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.hook.secret, body, timestamp),
            TIMESTAMP_HEADER: str(timestamp),
            "X-Qcall-Event": str(event.type),
            "X-Qcall-Seq": str(event.seq),
        }
        try:
            async with session.post(self.hook.url, data=body, headers=headers) as response:
                if 200 <= response.status < 300:
                    self.delivered += 1
                    return True
                error = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as err:
            error = f"{type(err).__name__}: {err}"
        self.failures += 1
        self.hub.metrics.webhook_failures.labels(self.hook.id).inc()
        level = logging.WARNING if self.failures == 1 or self.last_error != error else logging.DEBUG
        _LOGGER.log(
            level, "webhook %s: delivering seq %d failed: %s", self.hook.id, event.seq, error
        )
        self.last_error = error
        return False
