"""View models of the staff pages, built from the engine's state (pure: no I/O, no aiohttp).

Templates render these values and hold no logic; labels are English message ids that the
template translates. Every operation a button names goes to an API v1 route (through the
web bridge), so the pages have no second path to the engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from qcall.config import CenterConfig, Service
from qcall.engine import Case, Engine, Ticket
from qcall.model import (
    CaseState,
    Outcome,
    ServiceKind,
    TicketState,
    WindowState,
    WindowType,
)
from qcall.web.catalog import N_

# The page's fetches go to API v1 through this prefix (see qcall.web.bridge).
BRIDGE: Final = "/web/api/v1"

WINDOW_STATE_LABELS: Final[Mapping[WindowState, str]] = {
    WindowState.CLOSED: N_("Closed"),
    WindowState.IDLE: N_("Open, idle"),
    WindowState.CALLING: N_("Calling"),
    WindowState.SERVING: N_("Serving"),
    WindowState.PAUSED: N_("Paused"),
}
TICKET_STATE_LABELS: Final[Mapping[TicketState, str]] = {
    TicketState.WAITING: N_("Waiting"),
    TicketState.CALLED: N_("Called"),
    TicketState.SERVING: N_("Being served"),
    TicketState.HELD: N_("Held"),
    TicketState.NO_SHOW: N_("No-show"),
    TicketState.TRANSFERRED: N_("Transferred"),
    TicketState.BACK_OFFICE: N_("Sent to the back office"),
    TicketState.DONE: N_("Finished"),
    TicketState.CANCELLED: N_("Cancelled"),
    TicketState.EXPIRED: N_("Expired"),
}
CASE_STATE_LABELS: Final[Mapping[CaseState, str]] = {
    CaseState.OPEN: N_("In the back office"),
    CaseState.READY: N_("Ready for pickup"),
    CaseState.PICKED_UP: N_("Collected"),
}
WINDOW_TYPE_LABELS: Final[Mapping[str, str]] = {
    "comprehensive": N_("Comprehensive window"),
    "dedicated": N_("Dedicated window"),
    "reply": N_("Reply window"),
}
RATING_LABELS: Final = (
    N_("Very dissatisfied"),
    N_("Dissatisfied"),
    N_("Neutral"),
    N_("Satisfied"),
    N_("Very satisfied"),
)


@dataclass(frozen=True, slots=True)
class Named:
    """Something with a bilingual name."""

    id: str
    name_zh: str
    name_en: str

    def name(self, lang: str) -> str:
        """The name in ``lang``."""
        return self.name_zh if lang == "zh" else self.name_en


@dataclass(frozen=True, slots=True)
class Action:
    """One operation button: glossary label, shortcut, the API route it posts to."""

    key: str
    label: str
    shortcut: str
    url: str
    enabled: bool
    body: Mapping[str, Any] = field(default_factory=dict)
    dialog: str | None = None  # the id of the dialog that asks for the body first


@dataclass(frozen=True, slots=True)
class NoticeView:
    """A service's notice sheet, as lines to show."""

    policy_basis: str
    conditions: str
    procedure: tuple[str, ...]
    materials: tuple[str, ...]
    approval_time: str
    place: str
    phone: str


@dataclass(frozen=True, slots=True)
class CurrentTicket:
    """The ticket at the window now."""

    id: str
    number: str
    service: Named
    priority: bool
    state_label: str
    issued_at: str  # ISO times for the page's running timers
    called_at: str
    waited_s: int
    serving_since: str
    recalls: int
    transfers_in: bool
    notice: NoticeView
    back_office_allowed: bool


@dataclass(frozen=True, slots=True)
class ListedTicket:
    """A held ticket or a no-show of this window, with its action."""

    id: str
    number: str
    service: Named
    since: str
    action: Action


@dataclass(frozen=True, slots=True)
class Figures:
    """The clerk's own figures for today."""

    finished: int
    done: int
    back_office: int
    no_show: int
    transferred: int
    mean_handle_s: int | None
    rated: int
    mean_rating: float | None


@dataclass(frozen=True, slots=True)
class WaitingCount:
    """How many wait for one service this window serves."""

    service: Named
    waiting: int


@dataclass(frozen=True, slots=True)
class PanelView:
    """Everything the clerk panel shows for one window."""

    window: int
    window_type: str
    state: str
    state_label: str
    pause_reason: str | None
    current: CurrentTicket | None
    actions: tuple[Action, ...]
    held: tuple[ListedTicket, ...]
    no_shows: tuple[ListedTicket, ...]
    waiting: tuple[WaitingCount, ...]
    waiting_total: int
    figures: Figures
    transfer_services: tuple[Named, ...]
    transfer_windows: tuple[int, ...]
    default_promised: str
    today: str
    rating_pending: str | None
    rating_labels: tuple[str, ...] = RATING_LABELS


@dataclass(frozen=True, slots=True)
class WindowChoice:
    """A window on the picker."""

    number: int
    type_label: str
    state_label: str
    services: tuple[Named, ...]  # the window's own list (a comprehensive one serves all intake)
    all_intake: bool
    can_open: bool
    mine: bool


@dataclass(frozen=True, slots=True)
class CaseRow:
    """One back-office case."""

    id: str
    number: str
    service: Named
    staff: str
    staff_name: str
    opened_at: str
    promised_date: str
    overdue: bool
    days_late: int
    pickup_code: str
    state_label: str
    ready_action: Action | None


@dataclass(frozen=True, slots=True)
class BackOfficeView:
    """The back office: open cases (overdue first) and cases awaiting pickup."""

    open_cases: tuple[CaseRow, ...]
    ready_cases: tuple[CaseRow, ...]
    query: str
    overdue_count: int


@dataclass(frozen=True, slots=True)
class LookupResult:
    """A ticket or case the desk looked up."""

    kind: str  # "ticket" | "case" | "none"
    query: str
    number: str = ""
    service: Named | None = None
    state_label: str = ""
    window: int | None = None
    ahead: int | None = None
    issued_at: str = ""
    promised_date: str = ""
    pickup_code_ok: bool = False
    priority: bool = False


@dataclass(frozen=True, slots=True)
class DeskView:
    """The consultation desk: what it can issue, and today's waiting counts."""

    services: tuple[Named, ...]
    priority_services: frozenset[str]
    pickup_services: frozenset[str]
    waiting: tuple[WaitingCount, ...]
    lookup: LookupResult | None
    desk_printer: bool = False


# --------------------------------------------------------------------------- builders


def named(service: Service) -> Named:
    """A service's id and names."""
    return Named(service.id, service.name_zh, service.name_en)


def _service(config: CenterConfig, service_id: str) -> Named:
    service = config.service(service_id)
    if service is None:  # a ticket from an older configuration
        return Named(service_id, service_id, service_id)
    return named(service)


def _iso(moment: dt.datetime | None) -> str:
    # Milliseconds: what every browser's Date.parse reads.
    return moment.isoformat(timespec="milliseconds") if moment is not None else ""


def _window_url(window: int, action: str) -> str:
    return f"{BRIDGE}/windows/{window}/{action}"


def panel_view(engine: Engine, config: CenterConfig, window: int, staff: str) -> PanelView:
    """The clerk panel of ``window`` for the staff member signed in there."""
    run = engine.windows[window]
    state = engine.window_state(window)
    current_ticket = engine.tickets[run.current] if run.current else None
    open_ = state is not WindowState.CLOSED
    paused = state is WindowState.PAUSED
    served = engine.window_services(window)
    counts = [WaitingCount(_service(config, sid), engine.waiting_count(sid)) for sid in served]
    # Only what is waiting, most first: a comprehensive window serves dozens of services.
    waiting = tuple(sorted((c for c in counts if c.waiting), key=lambda c: -c.waiting))
    pinned = sum(
        1
        for t in engine.tickets.values()
        if t.state is TicketState.WAITING and t.pinned_window == window
    )
    waiting_total = sum(w.waiting for w in waiting) + pinned
    called = current_ticket is not None and current_ticket.state is TicketState.CALLED
    has_current = current_ticket is not None
    held_ids = list(run.held)
    intake = (
        current_ticket is not None
        and (svc := config.service(current_ticket.service)) is not None
        and svc.kind is ServiceKind.INTAKE
    )
    last = engine.tickets.get(run.last_finished) if run.last_finished else None
    rating_pending = last.number if last is not None and last.rating is None else None
    actions = (
        Action(
            "next",
            N_("Call next"),
            "F1",
            _window_url(window, "next"),
            open_ and not paused and waiting_total > 0,
        ),
        Action("recall", N_("Recall"), "F2", _window_url(window, "recall"), open_ and called),
        Action(
            "rating",
            N_("Ask for rating"),
            "F3",
            _window_url(window, "rating"),
            open_ and rating_pending is not None,
            dialog="dlg-rating",
        ),
        Action(
            "pause",
            N_("Pause"),
            "F4",
            _window_url(window, "pause"),
            open_ and not paused and not has_current,
            dialog="dlg-pause",
        ),
        Action("resume", N_("Resume"), "F4", _window_url(window, "resume"), paused),
        Action("no_show", N_("No-show"), "F5", _window_url(window, "no-show"), open_ and called),
        Action(
            "transfer",
            N_("Transfer"),
            "F6",
            _window_url(window, "transfer"),
            open_ and has_current,
            dialog="dlg-transfer",
        ),
        Action("hold", N_("Hold"), "F7", _window_url(window, "hold"), open_ and has_current),
        Action(
            "callback",
            N_("Call back"),
            "F8",
            _window_url(window, "callback"),
            open_ and not paused and bool(held_ids),
            body={"ticket": held_ids[0]} if held_ids else {},
        ),
        Action(
            "finish",
            N_("Done"),
            "F9",
            _window_url(window, "finish"),
            open_ and has_current,
            body={"outcome": str(Outcome.DONE)},
        ),
        Action(
            "back_office",
            N_("To back office"),
            "F10",
            _window_url(window, "finish"),
            open_ and intake,
            dialog="dlg-back-office",
        ),
        Action(
            "call",
            N_("Call a number"),
            "",
            _window_url(window, "call"),
            open_ and not paused and waiting_total > 0,
            dialog="dlg-call",
        ),
    )
    held = tuple(
        ListedTicket(
            t.id,
            t.number,
            _service(config, t.service),
            _iso(t.called_at),
            Action(
                "callback",
                N_("Call back"),
                "",
                _window_url(window, "callback"),
                open_ and not paused,
                body={"ticket": t.id},
            ),
        )
        for t in (engine.tickets[i] for i in held_ids)
    )
    no_shows = tuple(
        ListedTicket(
            t.id,
            t.number,
            _service(config, t.service),
            _iso(t.called_at),
            Action(
                "reactivate",
                N_("Back in line"),
                "",
                f"{BRIDGE}/tickets/{t.id}/reactivate",
                True,
                body={"position": "first"},
            ),
        )
        for t in sorted(engine.tickets.values(), key=lambda t: t.called_at or t.issued_at)
        if t.state is TicketState.NO_SHOW and t.window == window
    )
    today = engine.day or dt.date.today()  # noqa: DTZ011 - only before the first command
    default_promised = today
    if current_ticket is not None and intake:
        default_promised = engine.default_promised_date(current_ticket.service, today)
    cfg = config.window(window)
    return PanelView(
        window=window,
        window_type=WINDOW_TYPE_LABELS[str(cfg.type)] if cfg is not None else "",
        state=str(state),
        state_label=WINDOW_STATE_LABELS[state],
        pause_reason=run.pause_reason if paused else None,
        current=_current(engine, config, current_ticket) if current_ticket else None,
        actions=actions,
        held=held,
        no_shows=no_shows,
        waiting=waiting,
        waiting_total=waiting_total,
        figures=staff_figures(engine, staff),
        transfer_services=tuple(
            named(s) for s in config.services if s.kind is not ServiceKind.PICKUP
        ),
        transfer_windows=tuple(w.number for w in config.windows if w.number != window),
        default_promised=default_promised.isoformat(),
        today=today.isoformat(),
        rating_pending=rating_pending,
    )


def _current(engine: Engine, config: CenterConfig, ticket: Ticket) -> CurrentTicket:
    service = config.service(ticket.service)
    notice = service.notice if service is not None else None
    called = ticket.called_at or ticket.issued_at
    return CurrentTicket(
        id=ticket.id,
        number=ticket.number,
        service=_service(config, ticket.service),
        priority=ticket.priority,
        state_label=TICKET_STATE_LABELS[ticket.state],
        issued_at=_iso(ticket.issued_at),
        called_at=_iso(called),
        waited_s=max(0, round((called - ticket.issued_at).total_seconds())),
        serving_since=_iso(ticket.started_at or called),
        recalls=ticket.recalls,
        transfers_in=ticket.origin is not None,
        notice=NoticeView(
            notice.policy_basis if notice else "",
            notice.conditions if notice else "",
            tuple(notice.procedure) if notice else (),
            tuple(notice.materials) if notice else (),
            notice.approval_time if notice else "",
            notice.place if notice else "",
            notice.phone if notice else "",
        ),
        back_office_allowed=service is not None and service.kind is ServiceKind.INTAKE,
    )


def staff_figures(engine: Engine, staff: str) -> Figures:
    """Today's figures of one staff member, from the day's tickets."""
    mine = [t for t in engine.tickets.values() if t.staff == staff]
    finished = [
        t
        for t in mine
        if t.state in (TicketState.DONE, TicketState.BACK_OFFICE) and t.finished_at is not None
    ]
    handle = [
        (end - begin).total_seconds()
        for t in finished
        if (end := t.finished_at) is not None and (begin := t.started_at or t.called_at) is not None
    ]
    ratings = [t.rating for t in mine if t.rating is not None]
    return Figures(
        finished=len(finished),
        done=sum(1 for t in finished if t.state is TicketState.DONE),
        back_office=sum(1 for t in finished if t.state is TicketState.BACK_OFFICE),
        no_show=sum(1 for t in mine if t.state is TicketState.NO_SHOW),
        transferred=sum(1 for t in mine if t.state is TicketState.TRANSFERRED),
        mean_handle_s=round(sum(handle) / len(handle)) if handle else None,
        rated=len(ratings),
        mean_rating=round(sum(ratings) / len(ratings), 1) if ratings else None,
    )


def window_choices(engine: Engine, config: CenterConfig, staff: str) -> tuple[WindowChoice, ...]:
    """Every window with whether this staff member may open it now."""
    choices = []
    for window in config.windows:
        run = engine.windows[window.number]
        choices.append(
            WindowChoice(
                number=window.number,
                type_label=WINDOW_TYPE_LABELS[str(window.type)],
                state_label=WINDOW_STATE_LABELS[engine.window_state(window.number)],
                services=tuple(_service(config, ref.id) for ref in window.services)
                if window.type is WindowType.COMPREHENSIVE or window.services
                else tuple(_service(config, sid) for sid in engine.window_services(window.number)),
                all_intake=window.type is WindowType.COMPREHENSIVE,
                can_open=run.staff is None or run.staff == staff,
                mine=run.staff == staff,
            )
        )
    return tuple(choices)


def window_of(engine: Engine, staff: str) -> int | None:
    """The window this staff member is signed in at, if any."""
    for number, run in engine.windows.items():
        if run.staff == staff:
            return number
    return None


def backoffice_view(
    engine: Engine,
    config: CenterConfig,
    today: dt.date,
    staff_names: Mapping[str, str],
    query: str = "",
) -> BackOfficeView:
    """Open cases (overdue first, then by promised date) and cases awaiting pickup."""
    query = query.strip()

    def matches(case: Case) -> bool:
        return not query or query in (case.pickup_code, case.number, case.id)

    def row(case: Case) -> CaseRow:
        late = (today - case.promised_date).days
        return CaseRow(
            id=case.id,
            number=case.number,
            service=_service(config, case.service),
            staff=case.staff,
            staff_name=staff_names.get(case.staff, case.staff),
            opened_at=engine.local(case.opened_at).strftime("%Y-%m-%d %H:%M"),
            promised_date=case.promised_date.isoformat(),
            overdue=case.state is CaseState.OPEN and late > 0,
            days_late=max(0, late),
            pickup_code=case.pickup_code,
            state_label=CASE_STATE_LABELS[case.state],
            ready_action=Action(
                "ready", N_("Mark ready"), "", f"{BRIDGE}/cases/{case.id}/ready", True
            )
            if case.state is CaseState.OPEN
            else None,
        )

    open_rows = sorted(
        (row(c) for c in engine.cases.values() if c.state is CaseState.OPEN and matches(c)),
        key=lambda r: (not r.overdue, r.promised_date, r.id),
    )
    ready_rows = sorted(
        (row(c) for c in engine.cases.values() if c.state is CaseState.READY and matches(c)),
        key=lambda r: r.promised_date,
    )
    return BackOfficeView(
        open_cases=tuple(open_rows),
        ready_cases=tuple(ready_rows),
        query=query,
        overdue_count=sum(1 for r in open_rows if r.overdue),
    )


def desk_view(engine: Engine, config: CenterConfig, lookup: LookupResult | None) -> DeskView:
    """What the consultation desk may issue, with today's waiting counts."""
    services = tuple(named(s) for s in config.services)
    return DeskView(
        services=services,
        priority_services=frozenset(s.id for s in config.services if s.priority_lane),
        pickup_services=frozenset(s.id for s in config.services if s.kind is ServiceKind.PICKUP),
        waiting=tuple(WaitingCount(s, engine.waiting_count(s.id)) for s in services),
        lookup=lookup,
    )


def lookup(engine: Engine, config: CenterConfig, query: str) -> LookupResult:
    """Find today's ticket by its number, or a case by its pickup code."""
    query = query.strip().upper()
    ticket_id = engine.by_number.get(query)
    if ticket_id is not None:
        ticket = engine.tickets[ticket_id]
        return LookupResult(
            kind="ticket",
            query=query,
            number=ticket.number,
            service=_service(config, ticket.service),
            state_label=TICKET_STATE_LABELS[ticket.state],
            window=ticket.window if ticket.state in _AT_WINDOW else None,
            ahead=engine.ahead(ticket) if ticket.state is TicketState.WAITING else None,
            issued_at=engine.local(ticket.issued_at).strftime("%H:%M"),
            priority=ticket.priority,
        )
    for case in engine.cases.values():
        if case.pickup_code == query:
            return LookupResult(
                kind="case",
                query=query,
                number=case.number,
                service=_service(config, case.service),
                state_label=CASE_STATE_LABELS[case.state],
                promised_date=case.promised_date.isoformat(),
                pickup_code_ok=case.state is CaseState.READY,
            )
    return LookupResult(kind="none", query=query)


_AT_WINDOW: Final = frozenset({TicketState.CALLED, TicketState.SERVING, TicketState.HELD})
