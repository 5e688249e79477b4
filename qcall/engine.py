"""The queue engine: pure and deterministic; commands in, events out, clock injected.

Every command validates against the current state, then emits events; every state change
happens in ``_apply``, so replaying the event log rebuilds the same state exactly.
"""

from __future__ import annotations

import bisect
import datetime as dt
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

from qcall import settings
from qcall.config import CenterConfig, Service, hhmm
from qcall.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable
from qcall.events import Event, EventType
from qcall.model import (
    ACTIVE_STATES,
    CaseState,
    DayType,
    Outcome,
    Policy,
    Position,
    ServiceKind,
    TicketState,
    UnavailableReason,
    WindowState,
    WindowType,
)

RECENT_CALLS: Final = 10
# Weight of the newest handle time in the moving average: reacts within ~5 tickets.
HANDLE_TIME_ALPHA: Final = 0.2
MAX_RATING: Final = 5
LOOKAHEAD_DAYS: Final = 60
# Collected cases stay in memory this long (then only in the log): long enough that a resident
# who tries the same pickup code again is told it was collected, not that it is unknown.
COLLECTED_CASE_DAYS: Final = 30
# Reasons carried by the events that resolve, at start, what the configuration no longer has.
WINDOW_REMOVED: Final = "window_removed"
SERVICE_REMOVED: Final = "service_removed"


@dataclass(slots=True)
class Ticket:
    """One entry in a line (a transfer creates a new entry with the same number)."""

    id: str
    number: str
    service: str
    priority: bool
    channel: str
    issued_at: dt.datetime
    queued_at: dt.datetime
    order: int
    track_token: str
    state: TicketState = TicketState.WAITING
    front: bool = False
    pinned_window: int | None = None
    window: int | None = None
    staff: str | None = None
    called_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    recalls: int = 0
    case_id: str | None = None
    origin: str | None = None
    transferred_to: str | None = None
    rating: int | None = None
    idempotency_key: str | None = None

    def to_public(self) -> dict[str, Any]:
        """Return the API form of the ticket (without the tracking secret)."""
        return {
            "id": self.id,
            "number": self.number,
            "service": self.service,
            "priority": self.priority,
            "channel": self.channel,
            "state": str(self.state),
            "issued_at": self.issued_at.isoformat(),
            "window": self.window,
            "called_at": self.called_at.isoformat() if self.called_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "case_id": self.case_id,
            "transferred_to": self.transferred_to,
            "rating": self.rating,
        }


@dataclass(slots=True)
class WindowRun:
    """The live state of one window."""

    number: int
    staff: str | None = None
    paused: bool = False
    pause_reason: str = ""
    paused_since: str = ""  # ISO time of the pause (the supervisor's pause-limit alert)
    current: str | None = None
    last_finished: str | None = None
    held: list[str] = field(default_factory=list)
    normal_streak: int = 0


@dataclass(slots=True)
class Case:
    """A back-office case (流转件) awaiting pickup."""

    id: str
    ticket: str
    number: str
    service: str
    staff: str
    opened_at: dt.datetime
    promised_date: dt.date
    pickup_code: str
    state: CaseState = CaseState.OPEN
    ready_at: dt.datetime | None = None
    pickup_ticket: str | None = None
    picked_up_at: dt.datetime | None = None

    def to_public(self) -> dict[str, Any]:
        """Return the API form of the case."""
        return {
            "id": self.id,
            "ticket": self.ticket,
            "number": self.number,
            "service": self.service,
            "staff": self.staff,
            "opened_at": self.opened_at.isoformat(),
            "promised_date": self.promised_date.isoformat(),
            "pickup_code": self.pickup_code,
            "state": str(self.state),
        }


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a service can issue tickets now, and if not why and until when."""

    available: bool
    reason: UnavailableReason | None = None
    message_zh: str = ""
    message_en: str = ""
    opens_at: dt.datetime | None = None


class _Line:
    """Waiting entries of one service and lane, kept in call order."""

    __slots__ = ("back", "front")

    def __init__(self) -> None:
        self.front: dict[str, Ticket] = {}
        self.back: dict[str, Ticket] = {}

    def __len__(self) -> int:
        return len(self.front) + len(self.back)

    def head(self) -> Ticket | None:
        for entries in (self.front, self.back):
            for ticket in entries.values():
                return ticket
        return None

    def __iter__(self) -> Iterator[Ticket]:
        yield from self.front.values()
        yield from self.back.values()

    def add(self, ticket: Ticket) -> None:
        (self.front if ticket.front else self.back)[ticket.id] = ticket

    def remove(self, ticket: Ticket) -> None:
        self.front.pop(ticket.id, None)
        self.back.pop(ticket.id, None)


def _default_token() -> str:
    return secrets.token_urlsafe(12)


def _default_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


class Engine:
    """The queue: tickets, windows, cases and the day, driven by commands."""

    def __init__(
        self,
        config: CenterConfig,
        *,
        token_factory: Callable[[], str] = _default_token,
        code_factory: Callable[[], str] = _default_code,
    ) -> None:
        self.base_config = config
        self.config = config  # the effective one: base plus the admin's overrides
        self.overrides: dict[str, Any] = {}
        self.tz = ZoneInfo(config.center.timezone)
        self._token_factory = token_factory
        self._code_factory = code_factory
        self._services = {s.id: s for s in config.services}
        self._windows_cfg = {w.number: w for w in config.windows}
        self._serves: dict[int, dict[str, int]] = {
            w.number: self._window_services(w.number) for w in config.windows
        }
        self._servers: dict[str, list[int]] = {s: [] for s in self._services}
        for number, served in self._serves.items():
            for service_id in served:
                self._servers[service_id].append(number)
        self._rivals: dict[str, list[str]] = {
            s: sorted({r for w in self._servers[s] for r in self._serves[w]})
            for s in self._services
        }
        self._max_weight = {
            s: max((self._serves[w][s] for w in self._servers[s]), default=1)
            for s in self._services
        }
        self.seq = 0
        self.day: dt.date | None = None
        self.day_type: DayType | None = None
        # Set when the day closed early (a supervisor closed it): nothing more is issued today.
        self.day_closed = False
        self.tickets: dict[str, Ticket] = {}
        self.by_token: dict[str, str] = {}
        self.by_number: dict[str, str] = {}
        # Idempotency-Key -> ticket id, for today's tickets (cleared when a new day opens).
        self.by_key: dict[str, str] = {}
        self.counters: dict[str, int] = {}
        self.issued: dict[str, int] = {}
        self.windows = {w.number: WindowRun(w.number) for w in config.windows}
        self.cases: dict[str, Case] = {}
        self.case_counter = 0
        self.handle_s = {s.id: s.handle_time_min * 60.0 for s in config.services}
        self.recent_calls: deque[dict[str, Any]] = deque(maxlen=RECENT_CALLS)
        self.devices: dict[str, dict[str, Any]] = {}
        # The supervisor's alerts the log has announced and not yet cleared, by key.
        self.alerts: dict[str, dict[str, Any]] = {}
        self._order = 0
        self._lines: dict[tuple[str, bool], _Line] = {
            (s, lane): _Line() for s in self._services for lane in (True, False)
        }
        self._pinned: dict[int, _Line] = {n: _Line() for n in self.windows}
        self._pending: list[Event] = []

    # ----------------------------------------------------------------- event plumbing

    def drain(self) -> list[Event]:
        """Return and forget the events emitted since the last drain."""
        events, self._pending = self._pending, []
        return events

    def replay(self, event: Event) -> None:
        """Apply one event from the log (start-up); ``seq`` must follow on."""
        if event.seq != self.seq + 1:
            raise ValueError(f"event log gap: expected seq {self.seq + 1}, got {event.seq}")
        self._apply(event)

    def _emit(self, now: dt.datetime, type_: EventType, data: dict[str, Any]) -> Event:
        event = Event(self.seq + 1, type_, now, data)
        self._apply(event)
        self._pending.append(event)
        return event

    # ----------------------------------------------------------------- settings and audit

    def change_setting(self, now: dt.datetime, actor: str, key: str, value: Any) -> Any:
        """Set a day-to-day setting (see ``qcall.settings``); return its new value.

        Refused with ``BadRequest`` (nothing changes) when the key or value is not valid;
        an edit that changes nothing emits nothing.
        """
        self.tick(now)
        before = settings.current_value(self.config, key)
        after = settings.checked(self.base_config, self.overrides, key, value)
        if after != before:
            self._emit(
                now,
                EventType.SETTINGS_CHANGED,
                {"actor": actor, "key": key, "before": before, "after": after},
            )
        return after

    def audit(
        self, now: dt.datetime, actor: str, action: str, target: str, before: Any, after: Any
    ) -> None:
        """Record an admin's change kept outside the engine (accounts, tokens) in the log."""
        self._emit(
            now,
            EventType.AUDIT_RECORDED,
            {"actor": actor, "action": action, "target": target, "before": before, "after": after},
        )

    def _reconfigure(self) -> None:
        self.config = settings.effective(self.base_config, self.overrides)
        self._services = {s.id: s for s in self.config.services}

    # ----------------------------------------------------------------- day

    def local(self, now: dt.datetime) -> dt.datetime:
        """Return ``now`` in the center's time zone."""
        return now.astimezone(self.tz)

    def tick(self, now: dt.datetime) -> None:
        """Close yesterday and open today when the local date has changed."""
        today = self.local(now).date()
        # A service day, once closed, never reopens: a clock stepped back across midnight
        # (a stale clock at boot, then NTP) keeps the current day and its numbering.
        if self.day is not None and today <= self.day:
            return
        if self.day is not None and not self.day_closed:
            expired = [t.id for t in self.tickets.values() if t.state in ACTIVE_STATES]
            closed = [w.number for w in self.windows.values() if w.staff is not None]
            self._emit(
                now,
                EventType.DAY_CLOSED,
                {"day": self.day.isoformat(), "expired": expired, "closed_windows": closed},
            )
        self._emit(now, EventType.DAY_OPENED, self._day_opened(today))

    def close_day(self, now: dt.datetime, day: dt.date, staff: str) -> list[str]:
        """A supervisor ends today's service early: waiting tickets expire, windows close.

        ``day`` must be today (a stale page cannot close the next day). Refused while a
        resident is at a window. Returns the ids of the tickets that expired.
        """
        self.tick(now)
        if self.day != day or day != self.local(now).date():
            raise Conflict(
                f"{day} is not today's service day", f"{day} 不是今日服务日", code="not_today"
            )
        if self.day_closed:
            raise Conflict("today is closed already", "今日已结束办理", code="day_closed")
        busy = sorted(w.number for w in self.windows.values() if w.current is not None)
        if busy:
            listed = ", ".join(str(n) for n in busy)
            raise Conflict(
                f"a resident is still at window {listed}; finish there first",
                f"{listed} 号窗口仍在办理，请先办结",
                code="windows_busy",
            )
        expired = [t.id for t in self.tickets.values() if t.state in ACTIVE_STATES]
        closed = sorted(w.number for w in self.windows.values() if w.staff is not None)
        self._emit(
            now,
            EventType.DAY_CLOSED,
            {"day": day.isoformat(), "expired": expired, "closed_windows": closed, "staff": staff},
        )
        return expired

    def resume_day(self, now: dt.datetime, day: dt.date, numbers: Mapping[str, int]) -> None:
        """Open ``day`` on a new log (after an accepted data loss), numbering on from ``numbers``.

        Only at the very start of a log, and only when ``day`` is still today: numbers never
        repeat in a day, even when the tickets of that day were lost.
        """
        if self.day is not None or self.local(now).date() != day:
            return
        data = self._day_opened(day)
        data["numbers_from"] = {prefix: int(n) for prefix, n in sorted(numbers.items())}
        self._emit(now, EventType.DAY_OPENED, data)

    def _day_opened(self, day: dt.date) -> dict[str, Any]:
        day_type = self.config.calendar.day_type(day)
        hours = self.config.calendar.hours(day)
        return {
            "day": day.isoformat(),
            "day_type": str(day_type),
            "opens": hours.start.isoformat("minutes") if hours else None,
            "closes": hhmm(hours.end) if hours else None,
        }

    def reconcile(self, now: dt.datetime) -> list[Event]:
        """Resolve, with events, what the log holds and the configuration no longer has.

        A window removed from the configuration is closed (its current and held tickets go
        back to the front of their line, tickets transferred to it rejoin their service's
        line); waiting tickets of a removed service, which no window can call any more, are
        cancelled. Each event carries the reason. Returns the events emitted.
        """
        self.tick(now)
        start = len(self._pending)
        for number in sorted(n for n in self.windows if n not in self._windows_cfg):
            window = self.windows[number]
            requeued = [*([window.current] if window.current else []), *window.held]
            unpinned = [t.id for t in self._pinned.get(number, ())]
            if window.staff is None and not requeued and not unpinned:
                continue
            self._emit(
                now,
                EventType.WINDOW_CLOSED,
                {
                    "window": number,
                    "staff": window.staff,
                    "requeued": requeued,
                    "unpinned": unpinned,
                    "reason": WINDOW_REMOVED,
                },
            )
        for ticket in list(self.tickets.values()):
            if (
                ticket.service not in self._services
                and ticket.state is TicketState.WAITING
                and ticket.pinned_window is None
            ):
                self._emit(
                    now,
                    EventType.TICKET_CANCELLED,
                    {"id": ticket.id, "number": ticket.number, "reason": SERVICE_REMOVED},
                )
        return self._pending[start:]

    # ----------------------------------------------------------------- issuing

    def availability(self, service: Service, now: dt.datetime) -> Availability:
        """Return whether ``service`` can issue a ticket at ``now``."""
        local = self.local(now)
        calendar = self.config.calendar
        # Before the next command rolls the day over, yesterday's counts and windows are stale.
        new_day = self.day is None or local.date() > self.day
        if self.day_closed and not new_day:
            opens = self._next_opening(service, local, include_today=False)
            return Availability(
                False,
                UnavailableReason.CLOSED_TODAY,
                f"今日已结束办理。{_opens_zh(opens)}",
                f"Today's service has ended. {_opens_en(opens)}",
                opens,
            )
        day_type = calendar.day_type(local.date())
        hours = service.hours.get(day_type) if day_type is not DayType.CLOSED else None
        if hours is None:
            opens = self._next_opening(service, local, include_today=False)
            return Availability(
                False,
                UnavailableReason.CLOSED_TODAY,
                f"今日不办理“{service.name_zh}”。{_opens_zh(opens)}",
                f"{service.name_en} is not offered today. {_opens_en(opens)}",
                opens,
            )
        if not hours.contains(local.time()):
            opens = self._next_opening(service, local, include_today=True)
            return Availability(
                False,
                UnavailableReason.OUTSIDE_HOURS,
                f"“{service.name_zh}”取号时间为 {hours.label()}。{_opens_zh(opens)}",
                f"Tickets for {service.name_en} are issued {hours.label()}. {_opens_en(opens)}",
                opens,
            )
        if not new_day and self.issued.get(service.id, 0) >= service.daily_cap:
            opens = self._next_opening(service, local, include_today=False)
            return Availability(
                False,
                UnavailableReason.DAILY_CAP_REACHED,
                f"“{service.name_zh}”今日号源已取完（{service.daily_cap} 个）。{_opens_zh(opens)}",
                f"All {service.daily_cap} tickets for {service.name_en} are taken today. "
                f"{_opens_en(opens)}",
                opens,
            )
        if self.config.center.no_window_open == "refuse" and not self.served_now(service, now):
            return Availability(
                False,
                UnavailableReason.NO_WINDOW_OPEN,
                f"暂无窗口办理“{service.name_zh}”，请稍候或咨询服务台。",
                f"No window is open for {service.name_en} yet; please wait or ask the desk.",
            )
        return Availability(True)

    def served_now(self, service: Service, now: dt.datetime) -> bool:
        """Return whether a window that serves ``service`` is open today at ``now``."""
        if self.day != self.local(now).date():
            return False
        return any(self.windows[n].staff is not None for n in self._servers[service.id])

    def issue(
        self,
        now: dt.datetime,
        service_id: str,
        *,
        priority: bool = False,
        channel: str = "kiosk",
        case_code: str | None = None,
        idempotency_key: str | None = None,
    ) -> Ticket:
        """Issue a ticket for a service; refuse when it is unavailable or the case is unknown.

        With ``idempotency_key``, a key already used today answers that day's ticket again
        (without a new event) instead of issuing a second one.
        """
        self.tick(now)
        service = self._service(service_id)
        if idempotency_key is not None and idempotency_key in self.by_key:
            earlier = self.tickets[self.by_key[idempotency_key]]
            if earlier.service != service.id or earlier.priority != priority:
                raise Conflict(
                    "this Idempotency-Key was already used for a different ticket request",
                    "此幂等键已用于另一项取号请求",
                    code="idempotency_key_reused",
                )
            return earlier
        availability = self.availability(service, now)
        if not availability.available:
            raise ServiceUnavailable(
                availability.message_en,
                availability.message_zh,
                details={"reason": str(availability.reason)},
            )
        if priority and not service.priority_lane:
            raise BadRequest(
                f"{service.name_en} has no priority lane",
                f"“{service.name_zh}”不设绿色通道",
                code="no_priority_lane",
            )
        case: Case | None = None
        if service.kind is ServiceKind.PICKUP:
            case = self._case_for_pickup(case_code)
        elif case_code is not None:
            raise BadRequest("case_code is only for pickup services", "只有取件业务需要提供取件码")
        number = f"{service.prefix}{self.counters.get(service.prefix, 0) + 1:03d}"
        assert self.day is not None
        event = self._emit(
            now,
            EventType.TICKET_ISSUED,
            {
                "id": f"{self.day:%Y%m%d}-{number}",
                "number": number,
                "service": service.id,
                "prefix": service.prefix,
                "priority": priority,
                "channel": channel,
                "track_token": self._token_factory(),
                "case_id": case.id if case else None,
                **({"idempotency_key": idempotency_key} if idempotency_key else {}),
            },
        )
        return self.tickets[event.data["id"]]

    def cancel(self, now: dt.datetime, ticket_id: str) -> Ticket:
        """Cancel a waiting ticket."""
        self.tick(now)
        ticket = self.ticket(ticket_id)
        self._require_state(ticket, TicketState.WAITING)
        self._emit(now, EventType.TICKET_CANCELLED, {"id": ticket.id, "number": ticket.number})
        return ticket

    # ----------------------------------------------------------------- windows

    def open_window(self, now: dt.datetime, number: int, staff: str) -> WindowRun:
        """Staff takes a closed window (idempotent for the same staff member)."""
        self.tick(now)
        window = self._window(number)
        if window.staff == staff:
            return window
        if self.day_closed:
            raise Conflict("today is closed", "今日已结束办理", code="day_closed")
        if window.staff is not None:
            raise Forbidden(
                f"window {number} is held by another staff member",
                f"{number} 号窗口已由其他工作人员登录",
                code="window_taken",
            )
        for other in self.windows.values():
            if other.staff == staff:
                raise Conflict(
                    f"you are still signed in at window {other.number}; close it first",
                    f"您仍在 {other.number} 号窗口登录，请先关闭该窗口",
                    code="staff_busy",
                )
        self._emit(now, EventType.WINDOW_OPENED, {"window": number, "staff": staff})
        return window

    def close_window(self, now: dt.datetime, number: int, staff: str) -> WindowRun:
        """Staff leaves a window; held tickets go back to the front of their line."""
        window = self._acting(now, number, staff)
        if window.current is not None:
            raise Conflict(
                "finish, hold or transfer the current ticket before closing",
                "请先办结、挂起或转移当前号码，再关闭窗口",
                code="window_busy",
            )
        self._emit(
            now,
            EventType.WINDOW_CLOSED,
            {"window": number, "staff": staff, "requeued": list(window.held)},
        )
        return window

    def pause(self, now: dt.datetime, number: int, staff: str, reason: str = "") -> WindowRun:
        """Put an open, idle window on a break."""
        window = self._acting(now, number, staff)
        if window.paused:
            raise Conflict("the window is already paused", "窗口已暂停服务", code="paused")
        if window.current is not None:
            raise Conflict(
                "finish the current ticket before pausing",
                "请先办结当前号码，再暂停服务",
                code="window_busy",
            )
        self._emit(now, EventType.WINDOW_PAUSED, {"window": number, "reason": reason[:200]})
        return window

    def resume(self, now: dt.datetime, number: int, staff: str) -> WindowRun:
        """End a window's break."""
        window = self._acting(now, number, staff)
        if not window.paused:
            raise Conflict("the window is not paused", "窗口未暂停", code="not_paused")
        self._emit(now, EventType.WINDOW_RESUMED, {"window": number})
        return window

    # ----------------------------------------------------------------- calling

    def call_next(self, now: dt.datetime, number: int, staff: str) -> Ticket | None:
        """Finish the current ticket (if any) and call the next one; None when nobody waits."""
        window = self._acting_active(now, number, staff)
        self._auto_finish(now, window)
        ticket = self._pick(window, now)
        if ticket is None:
            return None
        self._call(now, window, ticket, "next", promoted=self._overdue(ticket, now))
        return ticket

    def call_number(self, now: dt.datetime, number: int, staff: str, ticket_number: str) -> Ticket:
        """Call a specific waiting ticket (特呼) at this window."""
        window = self._acting_active(now, number, staff)
        ticket_id = self.by_number.get(ticket_number.strip().upper())
        if ticket_id is None:
            raise NotFound(
                f"no ticket {ticket_number} today", f"今日没有 {ticket_number} 号", code="no_ticket"
            )
        ticket = self.tickets[ticket_id]
        self._require_state(ticket, TicketState.WAITING)
        if ticket.service not in self._serves[number]:
            raise Conflict(
                f"window {number} does not serve {ticket.number}'s service",
                f"{number} 号窗口不办理 {ticket.number} 号的业务",
                code="not_served_here",
            )
        if ticket.pinned_window not in (None, number):
            raise Conflict(
                f"{ticket.number} was transferred to window {ticket.pinned_window}",
                f"{ticket.number} 号已转至 {ticket.pinned_window} 号窗口",
                code="pinned_elsewhere",
            )
        self._auto_finish(now, window)
        self._call(now, window, ticket, "call")
        return ticket

    def recall(self, now: dt.datetime, number: int, staff: str) -> Ticket:
        """Call the current ticket again (重呼)."""
        return self._on_current(now, number, staff, EventType.TICKET_RECALLED, TicketState.CALLED)

    def start(self, now: dt.datetime, number: int, staff: str) -> Ticket:
        """Mark that the called resident has arrived and service begins."""
        return self._on_current(now, number, staff, EventType.TICKET_STARTED, TicketState.CALLED)

    def no_show(self, now: dt.datetime, number: int, staff: str) -> Ticket:
        """The called resident did not come (过号)."""
        return self._on_current(now, number, staff, EventType.TICKET_NO_SHOW, TicketState.CALLED)

    def reactivate(
        self, now: dt.datetime, ticket_id: str, position: Position = Position.LAST
    ) -> Ticket:
        """Put a no-show ticket back in its line."""
        self.tick(now)
        ticket = self.ticket(ticket_id)
        self._require_state(ticket, TicketState.NO_SHOW)
        self._service(ticket.service)  # a line that no longer exists cannot take it back
        self._emit(
            now,
            EventType.TICKET_REACTIVATED,
            {"id": ticket.id, "number": ticket.number, "position": str(position)},
        )
        return ticket

    def hold(self, now: dt.datetime, number: int, staff: str) -> Ticket:
        """Park the current ticket at this window (挂起)."""
        return self._on_current(now, number, staff, EventType.TICKET_HELD)

    def callback(self, now: dt.datetime, number: int, staff: str, ticket_ref: str) -> Ticket:
        """Call a ticket held at this window back (回呼); ``ticket_ref`` is an id or number."""
        window = self._acting_active(now, number, staff)
        ticket = self._find_ref(ticket_ref)
        if ticket.id not in window.held:
            raise Conflict(
                f"{ticket.number} is not held at window {number}",
                f"{ticket.number} 号未在 {number} 号窗口挂起",
                code="not_held_here",
            )
        self._auto_finish(now, window)
        self._call(now, window, ticket, "callback")
        return ticket

    def transfer(
        self,
        now: dt.datetime,
        number: int,
        staff: str,
        *,
        service_id: str | None = None,
        window_number: int | None = None,
        position: Position = Position.LAST,
    ) -> Ticket:
        """Send the current ticket to another service or window; returns the new entry."""
        window = self._acting(now, number, staff)
        ticket = self._current(window)
        return self._send(now, ticket, number, staff, service_id, window_number, position)

    def move(
        self,
        now: dt.datetime,
        ticket_id: str,
        staff: str,
        *,
        service_id: str | None = None,
        window_number: int | None = None,
        position: Position = Position.LAST,
    ) -> Ticket:
        """A supervisor sends a waiting ticket to another service or window (new entry)."""
        self.tick(now)
        ticket = self.ticket(ticket_id)
        self._require_state(ticket, TicketState.WAITING)
        return self._send(now, ticket, None, staff, service_id, window_number, position)

    def _send(
        self,
        now: dt.datetime,
        ticket: Ticket,
        from_window: int | None,
        staff: str,
        service_id: str | None,
        window_number: int | None,
        position: Position,
    ) -> Ticket:
        if (service_id is None) == (window_number is None):
            raise BadRequest(
                "give exactly one of service or window", "请指定转移目标：业务或窗口（二选一）"
            )
        target_service = ticket.service
        if service_id is not None:
            target = self._service(service_id)
            if target.kind is not self._kind(ticket.service):
                raise Conflict(
                    "cannot transfer between intake and pickup lines",
                    "受理号与取件号之间不能互转",
                    code="kind_mismatch",
                )
            target_service = target.id
        if window_number is not None:
            self._window(window_number)
            if window_number == from_window:
                raise Conflict(
                    "cannot transfer to the same window", "不能转移到本窗口", code="same_window"
                )
            if target_service not in self._serves[window_number]:
                raise Conflict(
                    f"window {window_number} does not serve this service",
                    f"{window_number} 号窗口不办理该业务",
                    code="not_served_here",
                )
        new_id = f"{ticket.id.split('.')[0]}.{self._transfer_count(ticket) + 1}"
        self._emit(
            now,
            EventType.TICKET_TRANSFERRED,
            {
                "id": ticket.id,
                "number": ticket.number,
                "new_id": new_id,
                "from_window": from_window,
                "service": target_service,
                "window": window_number,
                "position": str(position),
                "staff": staff,
            },
        )
        return self.tickets[new_id]

    def finish(
        self,
        now: dt.datetime,
        number: int,
        staff: str,
        outcome: Outcome,
        promised_date: dt.date | None = None,
    ) -> Ticket:
        """Finish the current ticket as done, or hand it to the back office (opens a case)."""
        window = self._acting(now, number, staff)
        ticket = self._current(window)
        kind = self._kind(ticket.service)
        if outcome is Outcome.BACK_OFFICE and kind is not ServiceKind.INTAKE:
            raise Conflict(
                "only intake tickets go to the back office",
                "只有受理业务可以转后台办理",
                code="kind_mismatch",
            )
        if promised_date is not None and outcome is not Outcome.BACK_OFFICE:
            raise BadRequest(
                "promised_date goes with outcome back_office", "承诺日期仅用于转后台办理"
            )
        self._finish(now, window, ticket, outcome, promised_date)
        return ticket

    def rate(self, now: dt.datetime, number: int, staff: str | None, score: int) -> Ticket:
        """Record the resident's rating of the last ticket finished at this window."""
        self.tick(now)
        window = self._window(number)
        if staff is not None and window.staff != staff:
            raise Forbidden(
                f"you are not signed in at window {number}",
                f"您未在 {number} 号窗口登录",
                code="not_your_window",
            )
        if not 1 <= score <= MAX_RATING:
            raise BadRequest("score must be 1 to 5", "评分须为 1 至 5", code="bad_score")
        ticket_id = window.last_finished
        if ticket_id is None or self.tickets[ticket_id].rating is not None:
            raise Conflict(
                "no finished ticket awaits a rating at this window",
                "本窗口没有待评价的已办结号码",
                code="nothing_to_rate",
            )
        ticket = self.tickets[ticket_id]
        self._emit(
            now,
            EventType.TICKET_RATED,
            {
                "id": ticket.id,
                "number": ticket.number,
                "window": number,
                "staff": ticket.staff,
                "score": score,
            },
        )
        return ticket

    # ----------------------------------------------------------------- cases, inquiries, devices

    def case_ready(self, now: dt.datetime, case_id: str, staff: str) -> Case:
        """The back office has finished a case; the resident may collect it."""
        self.tick(now)
        case = self.cases.get(case_id)
        if case is None:
            raise NotFound(f"no case {case_id}", f"没有编号为 {case_id} 的件", code="no_case")
        if case.state is not CaseState.OPEN:
            raise Conflict(
                f"case {case_id} is already {case.state}",
                f"该件状态为 {case.state}，不能再次办结",
                code="case_state",
            )
        # The service and the promise travel with the event: reports count cases made ready
        # per service and on time without looking up the case's opening.
        self._emit(
            now,
            EventType.CASE_READY,
            {
                "case": case.id,
                "service": case.service,
                "promised_date": case.promised_date.isoformat(),
                "staff": staff,
            },
        )
        return case

    def log_inquiry(
        self,
        now: dt.datetime,
        staff: str,
        topic: str,
        *,
        service_id: str | None = None,
        referred_to: str | None = None,
        note: str = "",
        follow_up: str = "",
    ) -> Event:
        """Record a consultation under first-inquiry responsibility (首问负责)."""
        self.tick(now)
        if service_id is not None:
            self._service(service_id)
        if not topic.strip():
            raise BadRequest("topic must not be empty", "咨询事项不能为空")
        data: dict[str, Any] = {
            "staff": staff,
            "topic": topic.strip()[:200],
            "service": service_id,
            "referred_to": referred_to,
            "note": note[:1000],
        }
        if follow_up.strip():
            data["follow_up"] = follow_up.strip()[:500]
        return self._emit(now, EventType.INQUIRY_LOGGED, data)

    def device_state(self, now: dt.datetime, device: str, state: str, detail: str = "") -> None:
        """Record a device's state change (only when it changed)."""
        known = self.devices.get(device)
        if known is not None and known["state"] == state and known["detail"] == detail:
            return
        self._emit(
            now, EventType.DEVICE_STATE, {"device": device, "state": state, "detail": detail}
        )

    def sync_alerts(self, now: dt.datetime, current: Mapping[str, Mapping[str, Any]]) -> None:
        """Announce the alerts that began and clear those that ended (``current`` by key)."""
        for key in sorted(self.alerts.keys() - current.keys()):
            self._emit(now, EventType.ALERT_CLEARED, {"key": key, "kind": self.alerts[key]["kind"]})
        for key, data in current.items():
            if key not in self.alerts:
                self._emit(now, EventType.ALERT_RAISED, dict(data))

    # ----------------------------------------------------------------- queries

    def ticket(self, ticket_id: str) -> Ticket:
        """Return today's ticket with that id."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise NotFound(
                f"no ticket {ticket_id} today",
                f"今日没有编号为 {ticket_id} 的号码",
                code="no_ticket",
            )
        return ticket

    def ticket_by_token(self, token: str) -> Ticket:
        """Return the ticket a tracking token belongs to."""
        ticket_id = self.by_token.get(token)
        if ticket_id is None:
            raise NotFound("unknown tracking link", "查询链接无效或已过期", code="no_ticket")
        return self.tickets[ticket_id]

    def waiting_count(self, service_id: str) -> int:
        """Tickets waiting for a service (both lanes, transfers to a window included)."""
        pinned = sum(
            1 for entries in self._pinned.values() for t in entries if t.service == service_id
        )
        return len(self._line(service_id, True)) + len(self._line(service_id, False)) + pinned

    def callable_count(self, number: int) -> int:
        """Tickets ``next`` at window ``number`` could call: its services and its own transfers."""
        served = self._serves[number]
        lines = sum(len(self._lines[s, lane]) for s in served for lane in (True, False))
        return lines + len(self._pinned[number])

    def ahead(self, ticket: Ticket) -> int:
        """Tickets that will be called before this one under the current policy."""
        if ticket.state is not TicketState.WAITING:
            return 0
        if ticket.pinned_window is not None:
            pinned = list(self._pinned_line(ticket.pinned_window))
            return pinned.index(ticket)
        mode = self.config.policy.mode
        same = other = 0
        mine = self._rank(ticket)
        for service_id in self._rivals.get(ticket.service, [ticket.service]):
            for lane in (True, False):
                line = self._line(service_id, lane)
                if mode is Policy.RATIO and lane != ticket.priority:
                    other += len(line)
                    continue
                same += self._count_before(line, mine, ticket)
        if mode is Policy.RATIO:
            ratio = self.config.policy.ratio
            if ticket.priority:
                return same + min(other, (same + 1) * ratio)
            return same + min(other, same // ratio)
        return same

    def ahead_for_new(self, service_id: str, priority: bool = False) -> int:
        """Tickets that would be called before a ticket issued now for ``service_id``."""
        mode = self.config.policy.mode
        same = other = 0
        mine = (not priority, -self._max_weight[service_id])
        for rival in self._rivals[service_id]:
            for lane in (True, False):
                count = len(self._lines[rival, lane])
                if mode is Policy.STRICT:
                    if (not lane, -self._max_weight[rival]) <= mine:
                        same += count
                elif mode is Policy.RATIO and lane != priority:
                    other += count
                else:
                    same += count
        if mode is Policy.RATIO:
            ratio = self.config.policy.ratio
            if priority:
                return same + min(other, (same + 1) * ratio)
            return same + min(other, same // ratio)
        return same

    def estimated_wait_s(self, service_id: str, ahead: int) -> int:
        """Expected wait for a ticket with ``ahead`` tickets in front of it."""
        open_windows = sum(
            1
            for n in self._servers.get(service_id, ())
            if self.windows[n].staff is not None and not self.windows[n].paused
        )
        handle_s = self.handle_s.get(service_id, 0.0)
        return round((ahead + 0.5) * handle_s / max(open_windows, 1))

    def window_state(self, number: int) -> WindowState:
        """Return what the window is doing."""
        window = self.windows[number]
        if window.staff is None:
            return WindowState.CLOSED
        if window.paused:
            return WindowState.PAUSED
        if window.current is None:
            return WindowState.IDLE
        if self.tickets[window.current].state is TicketState.CALLED:
            return WindowState.CALLING
        return WindowState.SERVING

    def window_services(self, number: int) -> Mapping[str, int]:
        """Services (with weights) a window may call."""
        return self._serves[number]

    def window_view(self, number: int) -> dict[str, Any]:
        """Return one configured window's public state."""
        if number not in self._windows_cfg:
            raise NotFound(f"no window {number}", f"没有 {number} 号窗口", code="no_window")
        window = self._window(number)
        current = self.tickets[window.current] if window.current else None
        return {
            "number": number,
            "type": str(self._windows_cfg[number].type),
            "state": str(self.window_state(number)),
            "staff": window.staff,
            "pause_reason": window.pause_reason if window.paused else None,
            "current": (
                {"id": current.id, "number": current.number, "service": current.service}
                if current
                else None
            ),
            "held": [self.tickets[t].number for t in window.held],
        }

    def state(self) -> dict[str, Any]:
        """Return the public snapshot (``GET /state``)."""
        windows = [self.window_view(number) for number in sorted(self._windows_cfg)]
        return {
            "seq": self.seq,
            "day": self.day.isoformat() if self.day else None,
            "day_type": str(self.day_type) if self.day_type else None,
            "windows": windows,
            "waiting": {s: self.waiting_count(s) for s in self._services},
            "recent_calls": list(self.recent_calls),
            "devices": {k: dict(v) for k, v in self.devices.items()},
        }

    # ----------------------------------------------------------------- snapshots

    def to_snapshot(self) -> dict[str, Any]:
        """Return the whole state as JSON-able data (for fast start-up)."""
        return {
            "seq": self.seq,
            "day": self.day.isoformat() if self.day else None,
            "day_type": str(self.day_type) if self.day_type else None,
            "tickets": [_dump(asdict(t)) for t in self.tickets.values()],
            "counters": dict(self.counters),
            "issued": dict(self.issued),
            "windows": [asdict(w) for w in self.windows.values()],
            "cases": [_dump(asdict(c)) for c in self.cases.values()],
            "case_counter": self.case_counter,
            "handle_s": dict(self.handle_s),
            "recent_calls": list(self.recent_calls),
            "devices": dict(self.devices),
            "alerts": dict(self.alerts),
            "day_closed": self.day_closed,
            "order": self._order,
            "overrides": dict(self.overrides),
        }

    def load_snapshot(self, snap: Mapping[str, Any]) -> None:
        """Restore the state saved by ``to_snapshot`` (on a fresh engine)."""
        self.seq = int(snap["seq"])
        self.day = dt.date.fromisoformat(snap["day"]) if snap["day"] else None
        self.day_type = DayType(snap["day_type"]) if snap["day_type"] else None
        self.counters = dict(snap["counters"])
        self.issued = dict(snap["issued"])
        self.case_counter = int(snap["case_counter"])
        self.handle_s.update(snap["handle_s"])
        self.recent_calls.extend(snap["recent_calls"])
        self.devices = dict(snap["devices"])
        self.alerts = dict(snap.get("alerts", {}))  # older snapshots have none
        self.day_closed = bool(snap.get("day_closed", False))
        self._order = int(snap["order"])
        self.overrides = dict(snap.get("overrides", {}))
        self._reconfigure()
        for raw in snap["windows"]:
            self.windows[raw["number"]] = WindowRun(**raw)
        for raw in snap["cases"]:
            case = Case(**_load(raw, Case))
            self.cases[case.id] = case
        # Index in creation order (a transfer's new entry owns its number and token), then
        # rebuild the lines in call order.
        tickets = [Ticket(**_load(raw, Ticket)) for raw in snap["tickets"]]
        for ticket in tickets:
            self._index(ticket)
        for ticket in sorted(tickets, key=lambda t: (not t.front, t.queued_at, t.order)):
            if ticket.state is TicketState.WAITING:
                self._enqueue(ticket)

    # ----------------------------------------------------------------- internals: commands

    def _service(self, service_id: str) -> Service:
        service = self._services.get(service_id)
        if service is None:
            raise NotFound(
                f"unknown service {service_id!r}", f"没有此业务：{service_id}", code="no_service"
            )
        return service

    def _window(self, number: int) -> WindowRun:
        window = self.windows.get(number)
        if window is None or number not in self._windows_cfg:
            raise NotFound(f"no window {number}", f"没有 {number} 号窗口", code="no_window")
        return window

    def _kind(self, service_id: str) -> ServiceKind | None:
        service = self._services.get(service_id)
        return None if service is None else service.kind

    def _run(self, number: int) -> WindowRun:
        # The log may name a window the configuration no longer has: history still applies.
        window = self.windows.get(number)
        if window is None:
            window = self.windows[number] = WindowRun(number)
        return window

    def _line(self, service_id: str, lane: bool) -> _Line:
        line = self._lines.get((service_id, lane))
        if line is None:
            line = self._lines[service_id, lane] = _Line()
        return line

    def _pinned_line(self, number: int) -> _Line:
        line = self._pinned.get(number)
        if line is None:
            line = self._pinned[number] = _Line()
        return line

    def _acting(self, now: dt.datetime, number: int, staff: str) -> WindowRun:
        self.tick(now)
        window = self._window(number)
        if window.staff is None:
            raise Conflict(
                f"window {number} is closed", f"{number} 号窗口未开启", code="window_closed"
            )
        if window.staff != staff:
            raise Forbidden(
                f"window {number} is held by another staff member",
                f"{number} 号窗口已由其他工作人员登录",
                code="not_your_window",
            )
        return window

    def _acting_active(self, now: dt.datetime, number: int, staff: str) -> WindowRun:
        window = self._acting(now, number, staff)
        if window.paused:
            raise Conflict(
                f"window {number} is paused; resume first",
                f"{number} 号窗口暂停服务中，请先恢复",
                code="paused",
            )
        return window

    def _current(self, window: WindowRun) -> Ticket:
        if window.current is None:
            raise Conflict(
                f"window {window.number} has no current ticket",
                f"{window.number} 号窗口当前没有号码",
                code="no_current_ticket",
            )
        return self.tickets[window.current]

    def _on_current(
        self,
        now: dt.datetime,
        number: int,
        staff: str,
        type_: EventType,
        required: TicketState | None = None,
    ) -> Ticket:
        window = self._acting(now, number, staff)
        ticket = self._current(window)
        if required is not None:
            self._require_state(ticket, required)
        self._emit(
            now, type_, {"id": ticket.id, "number": ticket.number, "window": number, "staff": staff}
        )
        return ticket

    def _require_state(self, ticket: Ticket, *states: TicketState) -> None:
        if ticket.state not in states:
            wanted = " / ".join(states)
            raise Conflict(
                f"{ticket.number} is {ticket.state}, not {wanted}",
                f"{ticket.number} 号当前状态为“{_STATE_ZH[ticket.state]}”，不能执行此操作",
                code="invalid_transition",
                details={"state": str(ticket.state)},
            )

    def _find_ref(self, ref: str) -> Ticket:
        ticket_id = ref if ref in self.tickets else self.by_number.get(ref.strip().upper())
        if ticket_id is None:
            raise NotFound(f"no ticket {ref} today", f"今日没有 {ref} 号", code="no_ticket")
        return self.tickets[ticket_id]

    def _case_for_pickup(self, code: str | None) -> Case:
        if not code:
            raise BadRequest(
                "a pickup ticket needs the case's pickup code",
                "取件请提供取件码",
                code="case_code_required",
            )
        for case in self.cases.values():
            if case.pickup_code == code.strip():
                if case.state is CaseState.OPEN:
                    raise Conflict(
                        "this case is still being processed; promised by "
                        f"{case.promised_date:%Y-%m-%d}",
                        f"该件尚在办理中，承诺办结日期 {case.promised_date:%Y-%m-%d}",
                        code="case_not_ready",
                    )
                if case.state is CaseState.PICKED_UP:
                    raise Conflict(
                        "this case was already collected", "该件已领取", code="case_state"
                    )
                if (
                    case.pickup_ticket is not None
                    and self.tickets.get(case.pickup_ticket, None) is not None
                    and self.tickets[case.pickup_ticket].state in ACTIVE_STATES
                ):
                    raise Conflict(
                        "a pickup ticket for this case is already waiting",
                        "该件已取过取件号，请等候叫号",
                        code="case_state",
                    )
                return case
        raise NotFound("unknown pickup code", "取件码无效", code="no_case")

    def _auto_finish(self, now: dt.datetime, window: WindowRun) -> None:
        if window.current is not None:
            self._finish(now, window, self.tickets[window.current], Outcome.DONE, None)

    def _finish(
        self,
        now: dt.datetime,
        window: WindowRun,
        ticket: Ticket,
        outcome: Outcome,
        promised_date: dt.date | None,
    ) -> None:
        data: dict[str, Any] = {
            "id": ticket.id,
            "number": ticket.number,
            "service": ticket.service,
            "window": window.number,
            "staff": window.staff,
            "outcome": str(outcome),
            "case": None,
        }
        if outcome is Outcome.BACK_OFFICE:
            local_day = self.local(now).date()
            if promised_date is not None and promised_date < local_day:
                raise BadRequest("promised_date is in the past", "承诺日期不能早于今天")
            promised = promised_date or self.default_promised_date(ticket.service, local_day)
            case_id = f"C{self.day:%Y%m%d}-{self.case_counter + 1:04d}"
            data["case"] = case_id
            self._emit(now, EventType.TICKET_FINISHED, data)
            self._emit(
                now,
                EventType.CASE_OPENED,
                {
                    "case": case_id,
                    "ticket": ticket.id,
                    "number": ticket.number,
                    "service": ticket.service,
                    "staff": window.staff,
                    "promised_date": promised.isoformat(),
                    "pickup_code": self._unique_code(),
                },
            )
            return
        self._emit(now, EventType.TICKET_FINISHED, data)
        if ticket.case_id is not None:
            self._emit(
                now,
                EventType.CASE_PICKED_UP,
                {"case": ticket.case_id, "ticket": ticket.id, "window": window.number},
            )

    def _unique_code(self) -> str:
        # Collected cases too: while remembered, their code answers "already collected".
        taken = {c.pickup_code for c in self.cases.values()}
        while True:
            code = self._code_factory()
            if code not in taken:
                return code

    def _call(
        self,
        now: dt.datetime,
        window: WindowRun,
        ticket: Ticket,
        how: str,
        *,
        promoted: bool = False,
    ) -> None:
        self._emit(
            now,
            EventType.TICKET_CALLED,
            {
                "id": ticket.id,
                "number": ticket.number,
                "service": ticket.service,
                "window": window.number,
                "staff": window.staff,
                "how": how,
                "priority": ticket.priority,
                "promoted": promoted,
            },
        )

    def _transfer_count(self, ticket: Ticket) -> int:
        count = 0
        while ticket.origin is not None:
            count += 1
            ticket = self.tickets[ticket.origin]
        return count

    def _overdue(self, ticket: Ticket, now: dt.datetime) -> bool:
        service = self._services.get(ticket.service)
        if service is None:
            return False
        target = service.target_wait_min * 60
        return (now - ticket.issued_at).total_seconds() > target

    def _rank(self, ticket: Ticket) -> tuple[Any, ...]:
        mode = self.config.policy.mode
        tail = (not ticket.front, ticket.queued_at, ticket.order)
        if mode is Policy.STRICT:
            return (not ticket.priority, -self._max_weight[ticket.service], *tail)
        return tail

    def _count_before(self, line: _Line, mine: tuple[Any, ...], ticket: Ticket) -> int:
        head = line.head()
        if head is None:
            return 0
        if self.config.policy.mode is Policy.STRICT:
            # A line shares one lane and one service weight: compare that class first.
            theirs = self._rank(head)[:2]
            if theirs != mine[:2]:
                return len(line) if theirs < mine[:2] else 0
        # Within a line entries are in call order (front first, then by queue time), so a
        # position is an index (C speed) or a bisection, never a Python-level scan.
        if ticket.id in line.front:
            return list(line.front).index(ticket.id)
        if ticket.id in line.back:
            return len(line.front) + list(line.back).index(ticket.id)
        if ticket.front:
            return sum(1 for other in line.front.values() if self._rank(other) < mine)
        return len(line.front) + bisect.bisect_left(
            list(line.back.values()), (ticket.queued_at, ticket.order), key=_queue_key
        )

    def _pick(self, window: WindowRun, now: dt.datetime) -> Ticket | None:
        pinned = self._pinned_line(window.number).head()
        if pinned is not None:
            return pinned
        served = self._serves[window.number]
        heads: list[tuple[Ticket, int]] = []
        for service_id, weight in served.items():
            for lane in (True, False):
                head = self._line(service_id, lane).head()
                if head is not None:
                    heads.append((head, weight))
        if not heads:
            return None
        policy = self.config.policy
        if policy.promote_overdue and policy.mode is not Policy.FIFO:
            overdue = [t for t, _ in heads if self._overdue(t, now)]
            if overdue:
                return min(overdue, key=lambda t: (t.issued_at, t.order))
        if policy.mode is Policy.FIFO:
            return min(heads, key=lambda h: (not h[0].front, h[0].queued_at, h[0].order))[0]
        if policy.mode is Policy.STRICT:
            # "First in line" means first in its own line: the priority lane and the service
            # weights still come before it, exactly as ``ahead`` counts.
            return min(
                heads,
                key=lambda h: (
                    not h[0].priority,
                    -h[1],
                    not h[0].front,
                    h[0].queued_at,
                    h[0].order,
                ),
            )[0]
        priority = [t for t, _ in heads if t.priority]
        normal = [t for t, _ in heads if not t.priority]
        pool = (
            priority
            if priority and (window.normal_streak >= policy.ratio or not normal)
            else normal
        )
        return min(pool, key=lambda t: (not t.front, t.queued_at, t.order))

    def _next_opening(
        self, service: Service, local: dt.datetime, *, include_today: bool
    ) -> dt.datetime | None:
        calendar = self.config.calendar
        for offset in range(LOOKAHEAD_DAYS):
            day = local.date() + dt.timedelta(days=offset)
            if offset == 0 and not include_today:
                continue
            hours = service.hours.get(calendar.day_type(day))
            if hours is None or calendar.day_type(day) is DayType.CLOSED:
                continue
            start = dt.datetime.combine(day, hours.start, tzinfo=self.tz)
            if offset == 0 and local.time() >= hours.start:
                continue
            return start
        return None

    def default_promised_date(self, service_id: str, day: dt.date) -> dt.date:
        """The promised date of a case opened on ``day``: the service's approval working days."""
        return self._add_working_days(day, self._service(service_id).approval_days)

    def _add_working_days(self, day: dt.date, count: int) -> dt.date:
        calendar = self.config.calendar
        while count > 0:
            day += dt.timedelta(days=1)
            if calendar.day_type(day) is DayType.WEEKDAY:
                count -= 1
        return day

    def _window_services(self, number: int) -> dict[str, int]:
        cfg = self._windows_cfg[number]
        served: dict[str, int] = {}
        if cfg.type is WindowType.COMPREHENSIVE:
            served = {s.id: 1 for s in self.config.services if s.kind is ServiceKind.INTAKE}
        elif cfg.type is WindowType.REPLY and not cfg.services:
            served = {s.id: 1 for s in self.config.services if s.kind is ServiceKind.PICKUP}
        for ref in cfg.services:
            served[ref.id] = ref.weight
        return served

    # ----------------------------------------------------------------- internals: apply

    def _index(self, ticket: Ticket) -> None:
        self.tickets[ticket.id] = ticket
        self.by_token[ticket.track_token] = ticket.id
        self.by_number[ticket.number] = ticket.id
        if ticket.idempotency_key is not None:
            self.by_key[ticket.idempotency_key] = ticket.id

    def _enqueue(self, ticket: Ticket) -> None:
        if ticket.pinned_window is not None:
            self._pinned_line(ticket.pinned_window).add(ticket)
        else:
            self._line(ticket.service, ticket.priority).add(ticket)

    def _requeue(self, ticket: Ticket) -> None:
        # A new place in line: renumber so that (front, queued_at, order) stays the line
        # order, which is how load_snapshot rebuilds the lines.
        self._order += 1
        ticket.order = self._order
        self._enqueue(ticket)

    def _dequeue(self, ticket: Ticket) -> None:
        if ticket.pinned_window is not None:
            self._pinned_line(ticket.pinned_window).remove(ticket)
        else:
            self._line(ticket.service, ticket.priority).remove(ticket)

    def _apply(self, event: Event) -> None:
        self.seq = event.seq
        handler = _APPLY[event.type]
        handler(self, event, event.data)

    def _apply_day_opened(self, event: Event, data: Mapping[str, Any]) -> None:
        self.day = dt.date.fromisoformat(data["day"])
        self.day_type = DayType(data["day_type"])
        self.day_closed = False
        self.tickets.clear()
        self.by_token.clear()
        self.by_number.clear()
        self.by_key.clear()
        # Numbering starts at 1, or after the numbers a lost log had issued that day.
        self.counters = {p: int(n) for p, n in data.get("numbers_from", {}).items()}
        self.issued.clear()
        self.recent_calls.clear()
        # A new day starts from the configuration: windows and lines it no longer has are gone
        # (they are empty once the day is closed).
        self._lines = {(s, lane): _Line() for s in self._services for lane in (True, False)}
        self._pinned = {n: _Line() for n in self._windows_cfg}
        self.windows = {n: WindowRun(n) for n in self._windows_cfg}
        horizon = self.day - dt.timedelta(days=COLLECTED_CASE_DAYS)
        for case_id in [
            c.id
            for c in self.cases.values()
            if c.picked_up_at is not None and self.local(c.picked_up_at).date() < horizon
        ]:
            del self.cases[case_id]

    def _apply_day_closed(self, event: Event, data: Mapping[str, Any]) -> None:
        self.day_closed = True
        for ticket_id in data["expired"]:
            ticket = self.tickets[ticket_id]
            if ticket.state is TicketState.WAITING:
                self._dequeue(ticket)
            ticket.state = TicketState.EXPIRED
        for number in data["closed_windows"]:
            self.windows[number] = WindowRun(number)
        for number in [n for n in self.windows if n not in self._windows_cfg]:
            del self.windows[number]

    def _apply_issued(self, event: Event, data: Mapping[str, Any]) -> None:
        self._order += 1
        ticket = Ticket(
            id=data["id"],
            number=data["number"],
            service=data["service"],
            priority=bool(data["priority"]),
            channel=data["channel"],
            issued_at=event.at,
            queued_at=event.at,
            order=self._order,
            track_token=data["track_token"],
            case_id=data.get("case_id"),
            idempotency_key=data.get("idempotency_key"),
        )
        self.counters[data["prefix"]] = self.counters.get(data["prefix"], 0) + 1
        self.issued[ticket.service] = self.issued.get(ticket.service, 0) + 1
        self._index(ticket)
        self._enqueue(ticket)
        if ticket.case_id is not None:
            self.cases[ticket.case_id].pickup_ticket = ticket.id

    def _apply_called(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.tickets[data["id"]]
        window = self._run(data["window"])
        if ticket.state is TicketState.WAITING:
            self._dequeue(ticket)
        if ticket.id in window.held:
            window.held.remove(ticket.id)
        ticket.state = TicketState.CALLED
        ticket.window = window.number
        ticket.staff = data["staff"]
        ticket.called_at = event.at
        ticket.started_at = None
        window.current = ticket.id
        if ticket.priority:
            window.normal_streak = 0
        else:
            window.normal_streak += 1
        self.recent_calls.appendleft(
            {"number": ticket.number, "window": window.number, "at": event.at.isoformat()}
        )

    def _apply_recalled(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.tickets[data["id"]]
        ticket.recalls += 1
        self.recent_calls.appendleft(
            {"number": ticket.number, "window": data["window"], "at": event.at.isoformat()}
        )

    def _apply_started(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.tickets[data["id"]]
        ticket.state = TicketState.SERVING
        ticket.started_at = event.at

    def _apply_no_show(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.tickets[data["id"]]
        ticket.state = TicketState.NO_SHOW
        ticket.finished_at = event.at
        self._run(data["window"]).current = None

    def _apply_reactivated(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.tickets[data["id"]]
        ticket.state = TicketState.WAITING
        ticket.window = None
        ticket.finished_at = None
        ticket.front = data["position"] == Position.FIRST
        ticket.queued_at = event.at
        self._requeue(ticket)

    def _apply_held(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.tickets[data["id"]]
        window = self._run(data["window"])
        ticket.state = TicketState.HELD
        window.current = None
        window.held.append(ticket.id)

    def _apply_transferred(self, event: Event, data: Mapping[str, Any]) -> None:
        old = self.tickets[data["id"]]
        if data["from_window"] is None:  # a waiting ticket moved by a supervisor
            self._dequeue(old)
        else:
            self._run(data["from_window"]).current = None
        old.state = TicketState.TRANSFERRED
        old.finished_at = event.at
        old.transferred_to = data["new_id"]
        self._order += 1
        new = Ticket(
            id=data["new_id"],
            number=old.number,
            service=data["service"],
            priority=old.priority,
            channel=old.channel,
            issued_at=old.issued_at,
            queued_at=event.at,
            order=self._order,
            track_token=old.track_token,
            front=data["position"] == Position.FIRST,
            pinned_window=data["window"],
            case_id=old.case_id,
            origin=old.id,
        )
        self._index(new)
        self._enqueue(new)

    def _apply_finished(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.tickets[data["id"]]
        window = self._run(data["window"])
        ticket.state = (
            TicketState.BACK_OFFICE if data["outcome"] == Outcome.BACK_OFFICE else TicketState.DONE
        )
        ticket.finished_at = event.at
        window.current = None
        window.last_finished = ticket.id
        begun = ticket.started_at or ticket.called_at
        if begun is not None:
            handled = (event.at - begun).total_seconds()
            old = self.handle_s.get(ticket.service, handled)
            self.handle_s[ticket.service] = old + HANDLE_TIME_ALPHA * (handled - old)

    def _apply_rated(self, event: Event, data: Mapping[str, Any]) -> None:
        self.tickets[data["id"]].rating = int(data["score"])

    def _apply_cancelled(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.tickets[data["id"]]
        self._dequeue(ticket)
        ticket.state = TicketState.CANCELLED
        ticket.finished_at = event.at

    def _apply_window_opened(self, event: Event, data: Mapping[str, Any]) -> None:
        window = self._run(data["window"])
        window.staff = data["staff"]
        window.paused = False
        window.pause_reason = ""
        window.normal_streak = 0

    def _apply_window_closed(self, event: Event, data: Mapping[str, Any]) -> None:
        window = self._run(data["window"])
        # A window removed from the configuration takes nobody with it: its tickets go back
        # to their service's line (history decides, whatever the configuration says now).
        removed = data.get("reason") == WINDOW_REMOVED
        for ticket_id in data.get("unpinned", ()):
            ticket = self.tickets[ticket_id]
            self._dequeue(ticket)
            ticket.pinned_window = None
            self._requeue(ticket)
        for ticket_id in data["requeued"]:
            ticket = self.tickets[ticket_id]
            ticket.state = TicketState.WAITING
            ticket.window = None
            ticket.front = True
            ticket.queued_at = event.at
            if removed and ticket.pinned_window == window.number:
                ticket.pinned_window = None
            self._requeue(ticket)
        if window.number in self._windows_cfg:
            self.windows[window.number] = WindowRun(
                window.number, last_finished=window.last_finished
            )
        else:
            del self.windows[window.number]

    def _apply_paused(self, event: Event, data: Mapping[str, Any]) -> None:
        window = self._run(data["window"])
        window.paused = True
        window.pause_reason = data["reason"]
        window.paused_since = event.at.isoformat()

    def _apply_resumed(self, event: Event, data: Mapping[str, Any]) -> None:
        window = self._run(data["window"])
        window.paused = False
        window.pause_reason = ""
        window.paused_since = ""

    def _apply_case_opened(self, event: Event, data: Mapping[str, Any]) -> None:
        self.case_counter += 1
        self.cases[data["case"]] = Case(
            id=data["case"],
            ticket=data["ticket"],
            number=data["number"],
            service=data["service"],
            staff=data["staff"],
            opened_at=event.at,
            promised_date=dt.date.fromisoformat(data["promised_date"]),
            pickup_code=data["pickup_code"],
        )
        self.tickets[data["ticket"]].case_id = data["case"]

    def _apply_case_ready(self, event: Event, data: Mapping[str, Any]) -> None:
        case = self.cases[data["case"]]
        case.state = CaseState.READY
        case.ready_at = event.at

    def _apply_case_picked_up(self, event: Event, data: Mapping[str, Any]) -> None:
        # Kept a while so a reused pickup code is told "already collected"; pruned at day open.
        case = self.cases[data["case"]]
        case.state = CaseState.PICKED_UP
        case.picked_up_at = event.at

    def _apply_nothing(self, event: Event, data: Mapping[str, Any]) -> None:
        return

    def _apply_settings_changed(self, event: Event, data: Mapping[str, Any]) -> None:
        self.overrides[str(data["key"])] = data["after"]
        self._reconfigure()

    def _apply_device_state(self, event: Event, data: Mapping[str, Any]) -> None:
        self.devices[data["device"]] = {
            "state": data["state"],
            "detail": data["detail"],
            "since": event.at.isoformat(),
        }

    def _apply_alert_raised(self, event: Event, data: Mapping[str, Any]) -> None:
        self.alerts[data["key"]] = dict(data) | {"since": event.at.isoformat()}

    def _apply_alert_cleared(self, event: Event, data: Mapping[str, Any]) -> None:
        self.alerts.pop(data["key"], None)


_APPLY: Final[dict[EventType, Callable[[Engine, Event, Mapping[str, Any]], None]]] = {
    EventType.DAY_OPENED: Engine._apply_day_opened,
    EventType.DAY_CLOSED: Engine._apply_day_closed,
    EventType.TICKET_ISSUED: Engine._apply_issued,
    EventType.TICKET_CALLED: Engine._apply_called,
    EventType.TICKET_RECALLED: Engine._apply_recalled,
    EventType.TICKET_STARTED: Engine._apply_started,
    EventType.TICKET_NO_SHOW: Engine._apply_no_show,
    EventType.TICKET_REACTIVATED: Engine._apply_reactivated,
    EventType.TICKET_HELD: Engine._apply_held,
    EventType.TICKET_TRANSFERRED: Engine._apply_transferred,
    EventType.TICKET_FINISHED: Engine._apply_finished,
    EventType.TICKET_RATED: Engine._apply_rated,
    EventType.TICKET_CANCELLED: Engine._apply_cancelled,
    EventType.WINDOW_OPENED: Engine._apply_window_opened,
    EventType.WINDOW_CLOSED: Engine._apply_window_closed,
    EventType.WINDOW_PAUSED: Engine._apply_paused,
    EventType.WINDOW_RESUMED: Engine._apply_resumed,
    EventType.CASE_OPENED: Engine._apply_case_opened,
    EventType.CASE_READY: Engine._apply_case_ready,
    EventType.CASE_PICKED_UP: Engine._apply_case_picked_up,
    EventType.INQUIRY_LOGGED: Engine._apply_nothing,
    EventType.DEVICE_STATE: Engine._apply_device_state,
    EventType.ALERT_RAISED: Engine._apply_alert_raised,
    EventType.ALERT_CLEARED: Engine._apply_alert_cleared,
    EventType.SETTINGS_CHANGED: Engine._apply_settings_changed,
    EventType.AUDIT_RECORDED: Engine._apply_nothing,
}

_STATE_ZH: Final = {
    TicketState.WAITING: "等候中",
    TicketState.CALLED: "已叫号",
    TicketState.SERVING: "办理中",
    TicketState.HELD: "已挂起",
    TicketState.NO_SHOW: "过号",
    TicketState.TRANSFERRED: "已转移",
    TicketState.BACK_OFFICE: "已转后台",
    TicketState.DONE: "已办结",
    TicketState.CANCELLED: "已取消",
    TicketState.EXPIRED: "已过期",
}


def _queue_key(ticket: Ticket) -> tuple[dt.datetime, int]:
    return (ticket.queued_at, ticket.order)


def _opens_zh(opens: dt.datetime | None) -> str:
    return f"下次可取号时间：{opens:%m月%d日 %H:%M}。" if opens else "近期暂无取号安排。"


def _opens_en(opens: dt.datetime | None) -> str:
    return f"Next issuing: {opens:%Y-%m-%d %H:%M}." if opens else "No issuing scheduled soon."


def _dump(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, (dt.datetime, dt.date)):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out


_DATETIME_FIELDS: Final = {
    "picked_up_at",
    "issued_at",
    "queued_at",
    "called_at",
    "started_at",
    "finished_at",
    "opened_at",
    "ready_at",
}


def _load(raw: Mapping[str, Any], cls: type) -> dict[str, Any]:
    out = dict(raw)
    for key, value in raw.items():
        if value is None:
            continue
        if key in _DATETIME_FIELDS:
            out[key] = dt.datetime.fromisoformat(value)
        elif key == "promised_date":
            out[key] = dt.date.fromisoformat(value)
        elif key == "state":
            out[key] = TicketState(value) if cls is Ticket else CaseState(value)
    return out
