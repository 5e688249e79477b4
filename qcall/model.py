"""Shared value types of the queue domain (names from the glossary in docs/domain.md)."""

from __future__ import annotations

from enum import StrEnum


class ServiceKind(StrEnum):
    """What a service's tickets are for."""

    INTAKE = "intake"
    PICKUP = "pickup"
    CONSULT = "consult"


class WindowType(StrEnum):
    """Which services a window serves."""

    COMPREHENSIVE = "comprehensive"
    DEDICATED = "dedicated"
    REPLY = "reply"


class DayType(StrEnum):
    """Calendar day types of the 5+2 working system."""

    WEEKDAY = "weekday"
    WEEKEND_DUTY = "weekend_duty"
    CLOSED = "closed"


class Policy(StrEnum):
    """How call-next orders the waiting tickets."""

    STRICT = "strict"
    RATIO = "ratio"
    FIFO = "fifo"


class TicketState(StrEnum):
    """Lifecycle of a ticket (docs/domain.md, Numbers and tickets)."""

    WAITING = "waiting"
    CALLED = "called"
    SERVING = "serving"
    HELD = "held"
    NO_SHOW = "no_show"
    TRANSFERRED = "transferred"
    BACK_OFFICE = "back_office"
    DONE = "done"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


ACTIVE_STATES = frozenset(
    {TicketState.WAITING, TicketState.CALLED, TicketState.SERVING, TicketState.HELD}
)


class Outcome(StrEnum):
    """How a served ticket ends at the window."""

    DONE = "done"
    BACK_OFFICE = "back_office"


class Position(StrEnum):
    """Where a transferred ticket enters its new line."""

    FIRST = "first"
    LAST = "last"


class WindowState(StrEnum):
    """What a window is doing."""

    CLOSED = "closed"
    IDLE = "idle"
    CALLING = "calling"
    SERVING = "serving"
    PAUSED = "paused"


class CaseState(StrEnum):
    """A back-office case."""

    OPEN = "open"
    READY = "ready"
    PICKED_UP = "picked_up"


class UnavailableReason(StrEnum):
    """Why a service cannot issue tickets now (catalog contract)."""

    CLOSED_TODAY = "closed_today"
    OUTSIDE_HOURS = "outside_hours"
    DAILY_CAP_REACHED = "daily_cap_reached"
    NO_WINDOW_OPEN = "no_window_open"


class Role(StrEnum):
    """Roles carried by bearer tokens."""

    KIOSK = "kiosk"
    DISPLAY = "display"
    CLERK = "clerk"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    INTEGRATION = "integration"


STAFF_ROLES = frozenset({Role.CLERK, Role.SUPERVISOR, Role.ADMIN})
# Who may take a window and act there (web panel or caller keypad).
WINDOW_ROLES = frozenset({Role.CLERK, Role.SUPERVISOR})
