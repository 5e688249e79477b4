"""Typed events and the in-process event bus."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

_LOGGER = logging.getLogger(__name__)

# A subscriber that falls this many events behind is dropped; it can resync with `after=`.
SUBSCRIBER_QUEUE_SIZE: Final = 2048


class EventType(StrEnum):
    """Every event type of the API v1 contract."""

    TICKET_ISSUED = "ticket.issued"
    TICKET_CALLED = "ticket.called"
    TICKET_RECALLED = "ticket.recalled"
    TICKET_STARTED = "ticket.started"
    TICKET_NO_SHOW = "ticket.no_show"
    TICKET_REACTIVATED = "ticket.reactivated"
    TICKET_HELD = "ticket.held"
    TICKET_TRANSFERRED = "ticket.transferred"
    TICKET_FINISHED = "ticket.finished"
    TICKET_RATED = "ticket.rated"
    TICKET_CANCELLED = "ticket.cancelled"
    WINDOW_OPENED = "window.opened"
    WINDOW_CLOSED = "window.closed"
    WINDOW_PAUSED = "window.paused"
    WINDOW_RESUMED = "window.resumed"
    CASE_OPENED = "case.opened"
    CASE_READY = "case.ready"
    CASE_PICKED_UP = "case.picked_up"
    INQUIRY_LOGGED = "inquiry.logged"
    DEVICE_STATE = "device.state"
    DAY_OPENED = "day.opened"
    DAY_CLOSED = "day.closed"
    ALERT_RAISED = "alert.raised"
    ALERT_CLEARED = "alert.cleared"
    SETTINGS_CHANGED = "settings.changed"
    AUDIT_RECORDED = "audit.recorded"


# The events the admin's audit log lists (who, when, what, before -> after).
AUDIT_TYPES: Final = (EventType.SETTINGS_CHANGED, EventType.AUDIT_RECORDED)


@dataclass(frozen=True, slots=True)
class Event:
    """One fact in the append-only log; ``seq`` is gap-free from 1."""

    seq: int
    type: EventType
    at: dt.datetime
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the wire form ``{"seq", "type", "at", "data"}``."""
        return {
            "seq": self.seq,
            "type": str(self.type),
            "at": self.at.isoformat(),
            "data": dict(self.data),
        }

    def to_json(self) -> str:
        """Return the wire form as compact JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        """Build an event from its wire form."""
        return cls(
            seq=int(raw["seq"]),
            type=EventType(raw["type"]),
            at=dt.datetime.fromisoformat(raw["at"]),
            data=dict(raw["data"]),
        )


class Subscription:
    """A bounded queue of events for one subscriber."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        # One slot more than asked: room for the ``None`` that tells the reader it was dropped.
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize + 1)
        self.maxsize = maxsize
        self.overflowed = False

    def close(self) -> None:
        """Stop receiving events."""
        self._bus.unsubscribe_queue(self)

    async def get(self) -> Event | None:
        """Wait for the next event; None means the subscriber fell behind and was dropped."""
        return await self.queue.get()

    def wake(self) -> None:
        """Wake the reader with the end marker (its client went away)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    def drop(self) -> None:
        """Discard what is queued and wake the reader with the end marker."""
        self.overflowed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class EventBus:
    """Fan committed events out to subscribers without ever blocking the publisher."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Event], None]] = []
        self._queues: list[Subscription] = []

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` for each event; return the unsubscribe function."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def subscribe_queue(self, maxsize: int = SUBSCRIBER_QUEUE_SIZE) -> Subscription:
        """Return a bounded queue subscription; on overflow it is dropped and flagged."""
        subscription = Subscription(self, maxsize)
        self._queues.append(subscription)
        return subscription

    def unsubscribe_queue(self, subscription: Subscription) -> None:
        """Remove a queue subscription."""
        if subscription in self._queues:
            self._queues.remove(subscription)

    @property
    def subscriber_count(self) -> int:
        """Number of callbacks and queues listening."""
        return len(self._callbacks) + len(self._queues)

    def publish(self, events: Iterable[Event]) -> None:
        """Deliver committed events; a failing or slow subscriber never affects the others."""
        for event in events:
            for callback in list(self._callbacks):
                try:
                    callback(event)
                except Exception:
                    _LOGGER.exception("event subscriber %r failed on %s", callback, event.type)
            for subscription in list(self._queues):
                if subscription.queue.qsize() >= subscription.maxsize:
                    self.unsubscribe_queue(subscription)
                    subscription.drop()
                    _LOGGER.warning("dropped a slow event subscriber at seq %d", event.seq)
                else:
                    subscription.queue.put_nowait(event)
