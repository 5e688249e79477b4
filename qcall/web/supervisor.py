"""The supervisor's page: the live hall, its alerts and the supervisor's actions.

State → view → HTML: :func:`hall_view` turns the engine's state at a moment into a frozen
:class:`HallView` (windows, lines, devices, alerts); the templates only lay it out. Alerts are
a pure function of that state and the time, so the page shows a wait crossing its target as
soon as the clock passes it, without an event.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from qcall.alerts import DOWN_STATES, Alert, current_alerts
from qcall.config import CenterConfig
from qcall.engine import Engine, Ticket
from qcall.errors import Conflict, NotFound
from qcall.model import Role, TicketState, WindowState
from qcall.web import views
from qcall.web.catalog import N_
from qcall.web.security import NAVIGATION, NavItem, WebContext, guarded

_LOGGER = logging.getLogger(__name__)

SUPERVISORS: Final = frozenset({Role.SUPERVISOR, Role.ADMIN})
# The page re-reads its live part this often even without events: waits cross their target
# and pauses their limit by the clock alone.
POLL_S: Final = 5
# The longest waiting tickets listed (with their cancel and move buttons) per service.
LONGEST_LISTED: Final = 5

NAVIGATION.append(NavItem("/supervisor/", N_("Supervisor"), SUPERVISORS))


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One window as the supervisor sees it."""

    number: int
    type_label: str
    state: WindowState
    state_label: str
    staff: str
    staff_name: str
    services: tuple[views.Named, ...]
    ticket: str
    ticket_state: str
    since: str  # ISO time the current ticket was called (the page counts from it)
    pause_reason: str
    can_close: bool


@dataclass(frozen=True, slots=True)
class WaitingTicket:
    """A waiting ticket the supervisor may cancel or move."""

    id: str
    number: str
    issued_at: str
    wait_min: int
    over_target: bool


@dataclass(frozen=True, slots=True)
class Target:
    """Where a waiting ticket may be moved: ``service:<id>`` or ``window:<n>``."""

    value: str
    zh: str
    en: str

    def name(self, lang: str) -> str:
        """The target in ``lang``."""
        return self.zh if lang == "zh" else self.en


@dataclass(frozen=True, slots=True)
class LineRow:
    """One service's line."""

    service: views.Named
    waiting: int
    longest_min: int
    target_min: int
    over_target: bool
    served_now: bool
    longest: tuple[WaitingTicket, ...]
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device or lobby screen and its last reported state."""

    name: str
    state: str
    detail: str
    since: str
    down: bool


@dataclass(frozen=True, slots=True)
class HallView:
    """Everything the supervisor page shows at one moment."""

    day: str
    day_closed: bool
    now: str
    windows: tuple[WindowRow, ...]
    lines: tuple[LineRow, ...]
    devices: tuple[DeviceRow, ...]
    alerts: tuple[Alert, ...]
    services: tuple[views.Named, ...]


def _minutes(seconds: float) -> int:
    return max(0, int(seconds // 60))


def hall_view(
    engine: Engine,
    config: CenterConfig,
    now: dt.datetime,
    names: Mapping[str, str],
) -> HallView:
    """The live hall and its alerts at ``now`` (pure: engine state and the time only)."""
    windows: list[WindowRow] = []
    for number, run in sorted(engine.windows.items()):
        cfg = next((w for w in config.windows if w.number == number), None)
        if cfg is None:
            continue
        state = engine.window_state(number)
        current = engine.tickets[run.current] if run.current else None
        since = current.called_at.isoformat() if current and current.called_at else ""
        windows.append(
            WindowRow(
                number=number,
                type_label=views.WINDOW_TYPE_LABELS.get(str(cfg.type), str(cfg.type)),
                state=state,
                state_label=views.WINDOW_STATE_LABELS[state],
                staff=run.staff or "",
                staff_name=names.get(run.staff or "", ""),
                services=tuple(
                    views.named(s)
                    for s in (config.service(i) for i in engine.window_services(number))
                    if s is not None
                ),
                ticket=current.number if current else "",
                ticket_state=views.TICKET_STATE_LABELS[current.state] if current else "",
                since=since,
                pause_reason=run.pause_reason if run.paused else "",
                can_close=run.staff is not None and current is None,
            )
        )
    # Only counts and the few longest waits are shown: objects for those alone (a hall may
    # hold hundreds waiting and the page is re-read after every burst of events).
    waiting_by_service: dict[str, list[tuple[dt.datetime, Ticket]]] = {}
    for ticket in engine.tickets.values():
        if ticket.state is TicketState.WAITING:
            waiting_by_service.setdefault(ticket.service, []).append((ticket.issued_at, ticket))
    lines: list[LineRow] = []
    for service in config.services:
        waiting = waiting_by_service.get(service.id, [])
        target_at = now - dt.timedelta(minutes=service.target_wait_min)
        longest = tuple(
            WaitingTicket(
                ticket.id,
                ticket.number,
                issued_at.isoformat(),
                _minutes((now - issued_at).total_seconds()),
                issued_at <= target_at,
            )
            for issued_at, ticket in heapq.nsmallest(
                LONGEST_LISTED, waiting, key=lambda entry: entry[0]
            )
        )
        lines.append(
            LineRow(
                service=views.named(service),
                waiting=len(waiting),
                longest_min=longest[0].wait_min if longest else 0,
                target_min=service.target_wait_min,
                over_target=bool(longest) and longest[0].over_target,
                served_now=engine.served_now(service, now),
                longest=longest,
                targets=_targets(engine, config, service.id),
            )
        )
    devices: list[DeviceRow] = []
    for name, known in sorted(engine.devices.items()):
        reported, detail = str(known["state"]), str(known.get("detail", ""))
        down = reported in DOWN_STATES
        devices.append(DeviceRow(name, reported, detail, str(known.get("since", "")), down))
    return HallView(
        day=engine.day.isoformat() if engine.day else "",
        day_closed=engine.day_closed,
        now=now.isoformat(),
        windows=tuple(windows),
        lines=tuple(lines),
        devices=tuple(devices),
        alerts=current_alerts(engine, now),
        services=tuple(views.named(s) for s in config.services),
    )


def _targets(engine: Engine, config: CenterConfig, service_id: str) -> tuple[Target, ...]:
    """The other lines of the same kind, then the windows serving this service."""
    kind = next(s.kind for s in config.services if s.id == service_id)
    services = [
        Target(f"service:{s.id}", s.name_zh, s.name_en)
        for s in config.services
        if s.id != service_id and s.kind is kind
    ]
    windows = [
        Target(f"window:{n}", f"{n} 号窗口", f"Window {n}")
        for n in sorted(engine.windows)
        if service_id in engine.window_services(n)
    ]
    return tuple(services + windows)


# --------------------------------------------------------------------------- routes


def setup_routes(app: web.Application) -> None:
    """Add the supervisor page, its live part and its own actions."""
    router = app.router
    router.add_get("/supervisor", _slash)
    router.add_get("/supervisor/", supervisor_page)
    router.add_get("/supervisor/live", supervisor_fragment)
    router.add_post("/supervisor/windows/{n:\\d+}/close", close_window)


async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(request.path + "/")


async def _view(ctx: WebContext) -> HallView:
    hub = ctx.hub
    names = await hub.read(hub.reader.staff_names)
    return hall_view(
        hub.engine,
        hub.config,
        hub.now(),
        names,
    )


@guarded(SUPERVISORS)
async def supervisor_page(ctx: WebContext) -> web.StreamResponse:
    """``GET /supervisor/``: the live hall, alerts, today's charts and exports."""
    return ctx.render("supervisor.html", view=await _view(ctx), poll_s=POLL_S)


@guarded(SUPERVISORS, api=True)
async def supervisor_fragment(ctx: WebContext) -> web.StreamResponse:
    """``GET /supervisor/live``: the live part (swapped in after events and every few s)."""
    return ctx.render("_supervisor_live.html", view=await _view(ctx))


@guarded(SUPERVISORS, api=True)
async def close_window(ctx: WebContext) -> web.StreamResponse:
    """``POST /supervisor/windows/{n}/close``: close a window a clerk left open (idle only)."""
    hub = ctx.hub
    number = int(ctx.request.match_info["n"])
    run = hub.engine.windows.get(number)
    if run is None:
        raise NotFound(f"no window {number}", f"没有 {number} 号窗口", code="no_window")
    holder = run.staff
    if holder is None:
        raise Conflict(f"window {number} is not open", f"{number} 号窗口未开启", code="not_open")
    await hub.execute(lambda now: hub.engine.close_window(now, number, holder))
    _LOGGER.info("supervisor %s closed window %d left open by %s", ctx.staff, number, holder)
    return web.json_response({"window": hub.engine.window_view(number)})
