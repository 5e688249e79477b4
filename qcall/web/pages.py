"""The public tracking page a ticket's QR code opens (no login: the link is the credential).

State → view → HTML: ``track_view`` turns a ticket (and its case) into the lines the page
shows in both languages; the template only lays them out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from qcall.engine import Case, Ticket
from qcall.errors import QcallError
from qcall.hub import Hub
from qcall.i18n import pick_language
from qcall.model import ACTIVE_STATES, CaseState, TicketState
from qcall.web import render

# Phones re-read the page this often while the ticket is still in play.
REFRESH_S: Final = 15
# The form field that confirms a cancellation (the first press only asks).
CONFIRM_FIELD: Final = "confirm"


@dataclass(frozen=True, slots=True)
class Line:
    """One statement on the page, in Chinese and English; ``strong`` ones stand out."""

    zh: str
    en: str
    strong: bool = False


@dataclass(frozen=True, slots=True)
class TrackView:
    """Everything the tracking page shows."""

    lang: str
    center_zh: str
    center_en: str
    found: bool
    number: str = ""
    service_zh: str = ""
    service_en: str = ""
    lines: tuple[Line, ...] = ()
    issued: str = ""
    refresh: int = 0
    called: bool = False  # the resident must go now: the card turns red
    cancel_path: str | None = None  # offered while the ticket waits
    confirming: bool = False  # the page asks "really cancel?"
    back_path: str = ""


def _case_lines(case: Case) -> tuple[Line, ...]:
    code = Line(f"取件码：{case.pickup_code}", f"Pickup code: {case.pickup_code}", strong=True)
    how = Line(
        "领取方法：在取号机选择“取件”，输入取件码取号，叫号后到回复窗口领取",
        "How to collect: at the kiosk choose “Pickup”, enter the pickup code, "
        "then go to the reply window when your number is called",
    )
    promised = f"{case.promised_date:%Y-%m-%d}"
    if case.state is CaseState.OPEN:
        return (
            Line("已受理，正在办理中", "Accepted; your case is being processed", strong=True),
            Line(f"承诺办结日期：{promised}", f"Promised by {promised}"),
            code,
            how,
        )
    if case.state is CaseState.READY:
        return (Line("已办好，可以领取", "Ready to collect", strong=True), code, how)
    return (Line("已领取", "Collected", strong=True),)


def _state_lines(ticket: Ticket, ahead: int, wait_min: int, case: Case | None) -> tuple[Line, ...]:
    window = ticket.window
    match ticket.state:
        case TicketState.WAITING:
            return (
                Line(f"前面还有 {ahead} 人等候", f"{ahead} ahead of you", strong=True),
                Line(f"预计等候约 {wait_min} 分钟", f"Estimated wait: about {wait_min} min"),
            )
        case TicketState.CALLED:
            return (Line(f"请到 {window} 号窗口办理", f"Please go to window {window} now", True),)
        case TicketState.SERVING:
            return (Line(f"正在 {window} 号窗口办理", f"Being served at window {window}"),)
        case TicketState.HELD:
            return (Line("已挂起，请留意再次叫号", "On hold: you will be called again"),)
        case TicketState.NO_SHOW:
            return (
                Line(
                    "已过号，请到服务台咨询",
                    "Your number was called and missed; please ask at the desk",
                ),
            )
        case TicketState.DONE:
            return (Line("已办结，感谢您的耐心", "Finished. Thank you for your patience."),)
        case TicketState.BACK_OFFICE if case is not None:
            return _case_lines(case)
        case TicketState.BACK_OFFICE:
            return (Line("已受理，转后台办理", "Accepted; passed to the back office"),)
        case TicketState.CANCELLED:
            return (Line("已取消", "Cancelled"),)
        case _:
            return (Line("号码已失效", "This ticket is no longer valid"),)


def track_view(
    *,
    lang: str,
    center_zh: str,
    center_en: str,
    ticket: Ticket | None,
    service_zh: str = "",
    service_en: str = "",
    ahead: int = 0,
    wait_s: float = 0,
    case: Case | None = None,
    issued: dt.datetime | None = None,
    token: str = "",
    confirming: bool = False,
) -> TrackView:
    """The page for a ticket (None: an unknown link), or the question before cancelling."""
    if ticket is None:
        return TrackView(lang, center_zh, center_en, found=False)
    waiting = ticket.state is TicketState.WAITING
    confirming = confirming and waiting
    if confirming:
        lines: tuple[Line, ...] = (
            Line("确定不再排队了吗？", "Cancel your ticket?", strong=True),
            Line(
                "取消后此号码作废；需要时请重新取号。",
                "The number becomes void; take a new ticket if you need one later.",
            ),
        )
    else:
        lines = _state_lines(ticket, ahead, max(1, round(wait_s / 60)), case)
    return TrackView(
        lang,
        center_zh,
        center_en,
        found=True,
        number=ticket.number,
        service_zh=service_zh,
        service_en=service_en,
        lines=lines,
        issued=f"{issued:%H:%M}" if issued else "",
        refresh=REFRESH_S if ticket.state in ACTIVE_STATES and not confirming else 0,
        called=ticket.state in (TicketState.CALLED, TicketState.SERVING),
        cancel_path=f"/t/{token}/cancel" if waiting else None,
        confirming=confirming,
        back_path=f"/t/{token}",
    )


def _hub(request: web.Request) -> Hub:
    # Imported here: qcall.api imports these pages to route them.
    from qcall.api.routes import HUB_KEY

    return request.app[HUB_KEY]


async def _view(hub: Hub, request: web.Request, *, confirming: bool) -> TrackView:
    from qcall.api.routes import ticket_view

    token = request.match_info["token"]
    lang = pick_language(request.headers.get("Accept-Language"))
    center = hub.config.center

    def found() -> TrackView:
        ticket = hub.engine.ticket_by_token(token)
        service = hub.config.service(ticket.service)  # None once removed from the config
        view = ticket_view(hub, ticket)
        return track_view(
            lang=lang,
            center_zh=center.name_zh,
            center_en=center.name_en,
            ticket=ticket,
            service_zh=service.name_zh if service else ticket.service,
            service_en=service.name_en if service else ticket.service,
            ahead=view["ahead"],
            wait_s=view["estimated_wait_s"],
            case=hub.engine.cases.get(ticket.case_id) if ticket.case_id else None,
            issued=hub.engine.local(ticket.issued_at),
            token=token,
            confirming=confirming,
        )

    try:
        return await hub.committed(found)  # only committed state is shown
    except QcallError as err:
        if err.status != 404:
            raise
        return track_view(
            lang=lang, center_zh=center.name_zh, center_en=center.name_en, ticket=None
        )


def _page(view: TrackView) -> web.Response:
    return web.Response(
        text=render("track.html", view=view),
        status=200 if view.found else 404,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


async def track_page(request: web.Request) -> web.StreamResponse:
    """``GET /t/{token}``: number, place in line, window when called, the case; bilingual."""
    return _page(await _view(_hub(request), request, confirming=False))


async def track_cancel_confirm(request: web.Request) -> web.StreamResponse:
    """``GET /t/{token}/cancel``: asks before cancelling (nothing changes here)."""
    return _page(await _view(_hub(request), request, confirming=True))


async def track_cancel(request: web.Request) -> web.StreamResponse:
    """``POST /t/{token}/cancel``: cancels once confirmed, else asks; then shows the page."""
    hub = _hub(request)
    token = request.match_info["token"]
    form = await request.post()
    if form.get(CONFIRM_FIELD) != "yes":
        raise web.HTTPSeeOther(f"/t/{token}/cancel")
    try:
        ticket = hub.engine.ticket_by_token(token)
        await hub.execute(lambda now: hub.engine.cancel(now, ticket.id))
    except QcallError:
        pass  # the page shows the ticket as it is (already called, unknown link …)
    raise web.HTTPSeeOther(f"/t/{token}")
