"""The staff pages: sign-in, clerk panel, consultation desk, back office, live stream."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from devices.printer import TicketPrint
from qcall.api.routes import ISSUERS, WINDOW_STAFF, caller_address, ticket_view
from qcall.api.ws import events_ws
from qcall.errors import AuthError, BadRequest, Conflict, Forbidden, QcallError
from qcall.model import STAFF_ROLES, Role
from qcall.store import Principal
from qcall.web import views
from qcall.web.catalog import N_
from qcall.web.security import (
    NAVIGATION,
    WEB_KEY,
    NavItem,
    WebContext,
    end_session,
    guarded,
    safe_next,
    start_session,
)

_LOGGER = logging.getLogger(__name__)

# Where each role lands after signing in (supervisor and admin pages come with issue 11).
HOME: Final[dict[Role, str]] = {
    Role.CLERK: "/staff/",
    Role.SUPERVISOR: "/supervisor/",
    Role.ADMIN: "/admin/",
}
# The pages a sign-in may return to.
PAGES: Final[dict[str, frozenset[Role]]] = {
    "/staff/": WINDOW_STAFF,
    "/desk/": ISSUERS & WINDOW_STAFF,
    "/backoffice/": WINDOW_STAFF,
    "/supervisor/": frozenset({Role.SUPERVISOR, Role.ADMIN}),
}
MAX_QUERY: Final = 40
NAVIGATION.extend(
    [
        NavItem("/staff/", N_("Clerk panel"), PAGES["/staff/"]),
        NavItem("/desk/", N_("Consultation desk"), PAGES["/desk/"]),
        NavItem("/backoffice/", N_("Back office"), PAGES["/backoffice/"]),
    ]
)


def setup_routes(app: web.Application) -> None:
    """Add the staff pages to the application."""
    router = app.router
    router.add_get("/login", login_page)
    router.add_post("/login", login_submit)
    router.add_post("/logout", logout)
    router.add_post("/web/ping", ping)
    router.add_get("/web/events", events)
    router.add_get("/staff", _slash)
    router.add_get("/staff/", clerk_page)
    router.add_get("/staff/panel", clerk_fragment)
    router.add_get("/desk", _slash)
    router.add_get("/desk/", desk_page)
    router.add_post("/desk/", desk_lookup)
    router.add_get("/desk/fragment", desk_fragment)
    router.add_post("/desk/print", desk_print)
    router.add_get("/backoffice", _slash)
    router.add_get("/backoffice/", backoffice_page)
    router.add_post("/backoffice/", backoffice_search)
    router.add_get("/backoffice/fragment", backoffice_fragment)


def _login_targets() -> dict[str, frozenset[Role]]:
    """The pages a sign-in may return to: the staff pages and the admin pages."""
    from qcall.web.admin import ADMIN_PAGES  # admin pages load after these (import cycle)

    return PAGES | ADMIN_PAGES


async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(request.path + "/")


# --------------------------------------------------------------------------- sign-in


@guarded(None)
async def login_page(ctx: WebContext) -> web.StreamResponse:
    """``GET /login``: staff id and PIN."""
    query = ctx.request.query
    target = safe_next(query.get("next"), _login_targets(), "")
    if ctx.user is not None and ctx.user.role in HOME:
        raise web.HTTPSeeOther(target or HOME[ctx.user.role])
    notice = ""
    if query.get("expired") or ctx.expired:
        notice = ctx.gettext("You were signed out after a period without use. Please sign in.")
    elif query.get("bye"):
        notice = ctx.gettext("You have signed out.")
    return ctx.render("login.html", next=target, notice=notice, error="", staff_id="")


@guarded(None)
async def login_submit(ctx: WebContext) -> web.StreamResponse:
    """``POST /login``: the same PIN check and lockout as the API login."""
    hub = ctx.hub
    form = await ctx.request.post()
    staff_id = str(form.get("staff", "")).strip()[:40]
    pin = str(form.get("pin", ""))
    target = safe_next(str(form.get("next", "")), _login_targets(), "")
    if not staff_id or not pin:
        error = ctx.gettext("Enter your staff id and PIN.")
        return ctx.render(
            "login.html", status=400, next=target, notice="", error=error, staff_id=staff_id
        )
    # The same PIN check, lockout and per-address limit as the API login.
    address = caller_address(ctx.request, hub) or f"relayed by {ctx.request.remote}"
    try:
        member = await hub.authenticate(staff_id, pin, address)
    except QcallError as err:
        return ctx.render(
            "login.html",
            status=err.status,
            next=target,
            notice="",
            error=err.message(ctx.lang),
            staff_id=staff_id,
        )
    if member.role not in STAFF_ROLES:
        raise Forbidden("not a staff account", "不是工作人员账户")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hub.config.hub.session_hours)
    token = await hub.write(
        lambda: hub.store.create_token(
            member.role, f"web:{member.id}", staff_id=member.id, expires_at=expires
        )
    )
    principal = Principal(member.role, f"web:{member.id}", member.id, expires)
    await start_session(ctx.request, hub, principal, token, member.name, ctx.lang)
    _LOGGER.info("staff %s signed in to the pages as %s", member.id, member.role)
    raise web.HTTPSeeOther(target or HOME.get(member.role, "/staff/"))


@guarded(None)
async def logout(ctx: WebContext) -> web.StreamResponse:
    """``POST /logout``: revoke the session's token and forget the session."""
    staff = ctx.session.get("staff")
    await end_session(ctx)
    if staff:
        _LOGGER.info("staff %s signed out of the pages", staff)
    raise web.HTTPSeeOther("/login?bye=1")


@guarded(STAFF_ROLES, api=True)
async def ping(ctx: WebContext) -> web.StreamResponse:
    """``POST /web/ping``: the user is still there (resets the idle timer)."""
    return web.json_response({"idle_s": int(ctx.request.app[WEB_KEY].idle_s)})


@guarded(STAFF_ROLES, api=True)
async def events(ctx: WebContext) -> web.StreamResponse:
    """``GET /web/events``: the API event stream for a signed-in page (same origin only)."""
    origin = ctx.request.headers.get("Origin")
    if origin is None or urlsplit(origin).netloc != ctx.request.host:
        raise Forbidden("cross-site request refused", "拒绝跨站请求", code="bad_origin")
    token = ctx.session.get("token")
    if not isinstance(token, str):
        raise AuthError("please sign in", "请先登录")
    headers = ctx.request.headers.copy()
    headers["Authorization"] = f"Bearer {token}"
    return await events_ws(ctx.request.clone(headers=headers))


# --------------------------------------------------------------------------- clerk panel


def _panel(ctx: WebContext, window: int) -> views.PanelView:
    return views.panel_view(ctx.hub.engine, ctx.hub.config, window, ctx.staff)


@guarded(WINDOW_STAFF)
async def clerk_page(ctx: WebContext) -> web.StreamResponse:
    """``GET /staff/``: the window picker, or the panel of the window this clerk holds."""
    engine = ctx.hub.engine
    window = views.window_of(engine, ctx.staff)
    if window is None:
        choices = views.window_choices(engine, ctx.hub.config, ctx.staff)
        return ctx.render("windows.html", choices=choices)
    return ctx.render("panel.html", view=_panel(ctx, window))


@guarded(WINDOW_STAFF, api=True)
async def clerk_fragment(ctx: WebContext) -> web.StreamResponse:
    """``GET /staff/panel``: the live part of the panel (the page swaps it in after events)."""
    window = views.window_of(ctx.hub.engine, ctx.staff)
    if window is None:
        # Closed elsewhere (keypad, another tab): the page reloads into the picker.
        return web.Response(status=205)
    return ctx.render("_panel_live.html", view=_panel(ctx, window))


# --------------------------------------------------------------------------- desk


def _desk(ctx: WebContext, lookup: views.LookupResult | None) -> views.DeskView:
    view = views.desk_view(ctx.hub.engine, ctx.hub.config, lookup)
    return dataclasses.replace(view, desk_printer=ctx.hub.desk_printer is not None)


@guarded(PAGES["/desk/"])
async def desk_page(ctx: WebContext) -> web.StreamResponse:
    """``GET /desk/``: issue a ticket, log an inquiry, look something up."""
    return ctx.render("desk.html", view=_desk(ctx, None))


@guarded(PAGES["/desk/"])
async def desk_lookup(ctx: WebContext) -> web.StreamResponse:
    """``POST /desk/``: look up a ticket by number or a case by pickup code."""
    form = await ctx.request.post()
    query = str(form.get("query", "")).strip()[:MAX_QUERY]
    result = views.lookup(ctx.hub.engine, ctx.hub.config, query) if query else None
    return ctx.render("desk.html", view=_desk(ctx, result))


@guarded(PAGES["/desk/"], api=True)
async def desk_fragment(ctx: WebContext) -> web.StreamResponse:
    """``GET /desk/fragment``: today's waiting counts."""
    return ctx.render("_desk_live.html", view=_desk(ctx, None))


@guarded(PAGES["/desk/"], api=True)
async def desk_print(ctx: WebContext) -> web.StreamResponse:
    """``POST /desk/print`` ``{ticket}``: print an issued ticket on the desk's printer."""
    hub = ctx.hub
    printer = hub.desk_printer
    if printer is None:
        raise Conflict(
            "no desk printer is configured; print the slip from the browser",
            "未配置服务台打印机，请用浏览器打印小票",
            code="no_desk_printer",
        )
    try:
        body = await ctx.request.json()
        ticket_id = str(body["ticket"])[:40]
    except (ValueError, KeyError, TypeError) as err:
        raise BadRequest("give the ticket to print", "请指定要打印的号码", code="bad_body") from err
    ticket = hub.engine.ticket(ticket_id)
    service = hub.config.service(ticket.service)
    assert service is not None
    view = ticket_view(hub, ticket)
    center = hub.config.center
    await printer.print_ticket(
        TicketPrint(
            center_zh=center.name_zh,
            center_en=center.name_en,
            service_zh=service.name_zh,
            service_en=service.name_en,
            number=ticket.number,
            ahead=int(view["ahead"]),
            estimated_wait_s=int(view["estimated_wait_s"]),
            issued_at=hub.engine.local(ticket.issued_at),
            track_url=f"{center.public_url.rstrip('/')}/t/{ticket.track_token}",
            materials=tuple(service.notice.materials),
            priority=ticket.priority,
        )
    )
    _LOGGER.info("desk printed ticket %s", ticket.number)
    return web.json_response({"printed": ticket.number})


# --------------------------------------------------------------------------- back office


async def _backoffice(ctx: WebContext, query: str) -> views.BackOfficeView:
    hub = ctx.hub
    staff_ids = {case.staff for case in hub.engine.cases.values()}
    names: dict[str, str] = {}
    for staff_id in staff_ids:
        member = await hub.read(hub.reader.staff, staff_id)
        if member is not None:
            names[staff_id] = member.name
    today = hub.engine.local(hub.clock()).date()
    return views.backoffice_view(hub.engine, hub.config, today, names, query[:MAX_QUERY])


@guarded(PAGES["/backoffice/"])
async def backoffice_page(ctx: WebContext) -> web.StreamResponse:
    """``GET /backoffice/``: open cases, overdue first."""
    return ctx.render("backoffice.html", view=await _backoffice(ctx, ""))


@guarded(PAGES["/backoffice/"])
async def backoffice_search(ctx: WebContext) -> web.StreamResponse:
    """``POST /backoffice/``: the cases matching a pickup code, ticket number or case id."""
    form = await ctx.request.post()
    query = str(form.get("query", "")).strip().upper()
    return ctx.render("backoffice.html", view=await _backoffice(ctx, query))


@guarded(PAGES["/backoffice/"], api=True)
async def backoffice_fragment(ctx: WebContext) -> web.StreamResponse:
    """``GET /backoffice/fragment?query=``: the case lists (swapped in after events)."""
    query = ctx.request.query.get("query", "").strip().upper()
    return ctx.render("_backoffice_live.html", view=await _backoffice(ctx, query))
