"""The route table of API v1: one entry per route, with its roles, body and handler."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, ValidationError

from qcall import __version__
from qcall.api import schemas
from qcall.auth import client_address
from qcall.config import hhmm
from qcall.engine import Ticket
from qcall.errors import AuthError, BadRequest, Forbidden, QcallError
from qcall.hub import Hub
from qcall.i18n import pick_language, text
from qcall.lobby import lobby_view, public_figures
from qcall.model import WINDOW_ROLES, Outcome, Role
from qcall.reports.worker import Job
from qcall.settings import LOBBY_NOTICES
from qcall.store import Principal
from qcall.validation import problems_of

_LOGGER = logging.getLogger(__name__)

HUB_KEY: Final = web.AppKey("hub", Hub)
API: Final = "/api/v1"
_IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{1,100}")
_DEVICE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,40}")

EVERYONE: Final = frozenset(Role)
DISPLAY_PLUS: Final = frozenset(
    {Role.DISPLAY, Role.CLERK, Role.SUPERVISOR, Role.ADMIN, Role.INTEGRATION}
)
ISSUERS: Final = frozenset({Role.KIOSK, Role.CLERK, Role.SUPERVISOR})
WINDOW_STAFF: Final = WINDOW_ROLES
MANAGERS: Final = frozenset({Role.SUPERVISOR, Role.ADMIN})
ADMINS: Final = frozenset({Role.ADMIN})


@dataclass(slots=True)
class Context:
    """What a handler gets: the request, the hub, the caller and the parsed body."""

    request: web.Request
    hub: Hub
    lang: str
    principal: Principal | None
    body: Any = None

    @property
    def staff(self) -> str:
        """The acting staff member's id (window routes)."""
        if self.principal is None or self.principal.staff_id is None:
            raise Forbidden(
                "this action needs a staff login", "此操作需要工作人员登录", code="staff_only"
            )
        return self.principal.staff_id

    def int_param(self, name: str) -> int:
        """A numeric path parameter."""
        try:
            return int(self.request.match_info[name])
        except ValueError as err:
            raise BadRequest(f"{name} must be a number", f"{name} 必须是数字") from err


Handler = Callable[[Context], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One API route."""

    method: str
    path: str
    handler: Handler
    roles: frozenset[Role] | None
    summary: str
    body: type[BaseModel] | None = None
    ok: int = 200
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = field(default=())


ROUTES: list[Route] = []


def route(
    method: str,
    path: str,
    roles: frozenset[Role] | None,
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    ok: int = 200,
    errors: tuple[int, ...] = (),
    tag: str = "queue",
) -> Callable[[Handler], Handler]:
    """Register a handler in the route table."""

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, path, handler, roles, summary, body, ok, errors, (tag,)))
        return handler

    return register


def json_response(data: Any, status: int = 200) -> web.Response:
    """A UTF-8 JSON response."""
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    """The contract's error body."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return json_response({"error": error}, status)


def caller_address(request: web.Request, hub: Hub) -> str | None:
    """The caller's address through declared reverse proxies; None when a proxy hides it."""
    return client_address(request.remote, request.headers, hub.config.hub.trusted_proxies)


def bearer(request: web.Request) -> str | None:
    """The bearer token from the header, or ``?token=`` (browsers' WebSockets)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.query.get("token") or None


async def authorize(
    request: web.Request, hub: Hub, roles: frozenset[Role] | None
) -> Principal | None:
    """Resolve the caller and check the route's roles."""
    if roles is None:
        return None
    token = bearer(request)
    principal = await hub.principal(token) if token else None
    if principal is None:
        raise AuthError("a valid bearer token is required", "需要登录或有效的访问令牌")
    if principal.role not in roles:
        raise Forbidden(
            f"role {principal.role} may not do this",
            f"角色“{principal.role}”无权执行此操作",
            code="forbidden_role",
        )
    return principal


async def parse_body(request: web.Request, model: type[BaseModel], lang: str) -> BaseModel:
    """Read and validate a JSON body; refuse anything else with a path-bearing error."""
    raw = await request.read()
    if not raw.strip():
        raw = b"{}"
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(
            "the request body is not valid JSON", text("bad_json", "zh"), code="bad_json"
        ) from err
    except RecursionError as err:
        # No body of the contract nests more than a few levels; 1,000 levels is an attack.
        raise BadRequest(
            "the request body is nested too deeply", text("too_deep", "zh"), code="bad_json"
        ) from err
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        found = problems_of(err.errors())
        first = found[0]
        whole = not err.errors()[0]["loc"]  # about the body as a whole, not one field
        raise BadRequest(
            f"invalid body: {first.en}" if whole else f"invalid {first.where}: {first.en}",
            f"请求内容有误：{first.zh}" if whole else f"请求内容有误：{first.where} {first.zh}",
            code="invalid_body",
            details={
                "problems": [
                    {"field": p.where, "problem": p.zh if lang == "zh" else p.en} for p in found
                ]
            },
        ) from None


def make_handler(hub: Hub, entry: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a route's handler with auth, body parsing and error mapping."""

    async def handle(request: web.Request) -> web.StreamResponse:
        lang = pick_language(request.headers.get("Accept-Language"))
        try:
            principal = await authorize(request, hub, entry.roles)
            ctx = Context(request, hub, lang, principal)
            if entry.body is not None:
                ctx.body = await parse_body(request, entry.body, lang)
            response = await entry.handler(ctx)
        except QcallError as err:
            response = error_response(err.status, err.code, err.message(lang), err.details or None)
        hub.metrics.requests.labels(entry.path, str(response.status)).inc()
        return response

    return handle


# --------------------------------------------------------------------------- views


def ticket_view(hub: Hub, ticket: Ticket) -> dict[str, Any]:
    """A ticket as the API shows it, with its place in line."""
    ahead = hub.engine.ahead(ticket)
    view = ticket.to_public()
    view["ahead"] = ahead
    view["estimated_wait_s"] = (
        hub.engine.estimated_wait_s(ticket.service, ahead) if ticket.state == "waiting" else 0
    )
    return view


# --------------------------------------------------------------------------- public


@route("GET", f"{API}/health", None, "Liveness and version", tag="system")
async def health(ctx: Context) -> web.StreamResponse:
    """Liveness: the hub answers and its journal works."""
    hub = ctx.hub
    status = "failed" if hub.fatal.is_set() else "ok"
    return json_response(
        {"status": status, "version": __version__, "seq": hub.committed_seq},
        503 if hub.fatal.is_set() else 200,
    )


@route(
    "POST",
    f"{API}/login",
    None,
    "Staff login",
    body=schemas.Login,
    errors=(400, 401, 429),
    tag="auth",
)
async def login(ctx: Context) -> web.StreamResponse:
    """Check a staff PIN and hand out a session token."""
    hub = ctx.hub
    body: schemas.Login = ctx.body
    # A caller whose origin a proxy hides is limited together with the others behind it.
    address = caller_address(ctx.request, hub) or f"relayed by {ctx.request.remote}"
    member = await hub.authenticate(body.staff, body.pin, address)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hub.config.hub.session_hours)
    token = await hub.write(
        lambda: hub.store.create_token(
            member.role, f"login:{member.id}", staff_id=member.id, expires_at=expires
        )
    )
    _LOGGER.info("staff %s logged in as %s", member.id, member.role)
    return json_response(
        {
            "token": token,
            "staff": member.id,
            "name": member.name,
            "role": str(member.role),
            "expires_at": expires.astimezone(hub.tz).isoformat(),
        }
    )


@route("POST", f"{API}/logout", EVERYONE, "Revoke the caller's token", ok=204, tag="auth")
async def logout(ctx: Context) -> web.StreamResponse:
    """Revoke the token used for this request."""
    token = bearer(ctx.request)
    assert token is not None
    await ctx.hub.revoke(token)
    return web.Response(status=204)


@route("GET", f"{API}/track/{{token}}", None, "Public tracking of one ticket", errors=(404,))
async def track(ctx: Context) -> web.StreamResponse:
    """What a resident's phone shows: number, state, place in line, window when called."""
    engine = ctx.hub.engine

    def build() -> dict[str, Any]:
        ticket = engine.ticket_by_token(ctx.request.match_info["token"])
        service = engine.config.service(ticket.service)
        view = ticket_view(ctx.hub, ticket)
        return {
            "number": ticket.number,
            "state": view["state"],
            # A service removed from the configuration since keeps its id as its name.
            "service": {
                "id": ticket.service,
                "name_zh": service.name_zh if service else ticket.service,
                "name_en": service.name_en if service else ticket.service,
            },
            "ahead": view["ahead"],
            "estimated_wait_s": view["estimated_wait_s"],
            "window": ticket.window if ticket.state in ("called", "serving") else None,
            "issued_at": view["issued_at"],
        }

    return json_response(await ctx.hub.committed(build))


@route(
    "POST",
    f"{API}/track/{{token}}/cancel",
    None,
    "Resident cancels a waiting ticket",
    errors=(404, 409),
)
async def track_cancel(ctx: Context) -> web.StreamResponse:
    """Cancel through the tracking link (the link is the credential)."""
    hub = ctx.hub
    ticket = hub.engine.ticket_by_token(ctx.request.match_info["token"])
    await hub.execute(lambda now: hub.engine.cancel(now, ticket.id))
    return json_response({"number": ticket.number, "state": str(ticket.state)})


# --------------------------------------------------------------------------- kiosk+


@route("GET", f"{API}/catalog", EVERYONE, "Departments, services, notices and availability")
async def catalog(ctx: Context) -> web.StreamResponse:
    """Everything a kiosk shows, with today's availability and waiting counts."""
    return json_response(await ctx.hub.committed(lambda: _catalog(ctx.hub)))


def _catalog(hub: Hub) -> dict[str, Any]:
    engine = hub.engine
    config = hub.config
    now = hub.now()
    services = []
    for service in config.services:
        availability = engine.availability(service, now)
        ahead = engine.ahead_for_new(service.id)
        entry: dict[str, Any] = {
            "id": service.id,
            "department": service.department,
            "name_zh": service.name_zh,
            "name_en": service.name_en,
            "prefix": service.prefix,
            "kind": str(service.kind),
            "priority_lane": service.priority_lane,
            "waiting": engine.waiting_count(service.id),
            "estimated_wait_s": engine.estimated_wait_s(service.id, ahead),
            "available": availability.available,
            "served_now": engine.served_now(service, now),
            "notice": service.notice.model_dump(),
        }
        if not availability.available:
            entry["unavailable_reason"] = str(availability.reason)
            entry["message"] = {"zh": availability.message_zh, "en": availability.message_en}
            entry["opens_at"] = availability.opens_at.isoformat() if availability.opens_at else None
        services.append(entry)
    local_day = engine.local(now).date()
    hours = config.calendar.hours(local_day)
    return {
        "center": {
            "name_zh": config.center.name_zh,
            "name_en": config.center.name_en,
            "ticket_rules": list(config.center.ticket_rules),
            "timezone": config.center.timezone,
        },
        "day": {
            "date": local_day.isoformat(),
            "day_type": str(config.calendar.day_type(local_day)),
            "opens": hours.start.isoformat("minutes") if hours else None,
            "closes": hhmm(hours.end) if hours else None,
        },
        "departments": [d.model_dump() for d in config.departments],
        "services": services,
    }


@route(
    "POST",
    f"{API}/tickets",
    ISSUERS,
    "Issue a ticket (answers once it is durable)",
    body=schemas.IssueTicket,
    ok=201,
    errors=(400, 404, 409),
)
async def issue_ticket(ctx: Context) -> web.StreamResponse:
    """Issue a ticket; 201 only after it is committed to disk."""
    hub = ctx.hub
    body: schemas.IssueTicket = ctx.body
    assert ctx.principal is not None
    channel = body.channel or ("kiosk" if ctx.principal.role is Role.KIOSK else "desk")
    key = idempotency_key(ctx.request)
    if key is not None:
        # Keys are per caller: another kiosk's key can neither collide nor fetch its ticket.
        key = f"{ctx.principal.role}/{ctx.principal.name}/{key}"
    ticket = await hub.execute(
        lambda now: hub.engine.issue(
            now,
            body.service,
            priority=body.priority,
            channel=channel,
            case_code=body.case_code,
            idempotency_key=key,
        )
    )
    view = ticket_view(hub, ticket)
    base = hub.config.center.public_url.rstrip("/")
    return json_response(
        {
            "id": ticket.id,
            "number": ticket.number,
            "service": ticket.service,
            "priority": ticket.priority,
            "issued_at": view["issued_at"],
            "ahead": view["ahead"],
            "estimated_wait_s": view["estimated_wait_s"],
            "track_token": ticket.track_token,
            "track_url": f"{base}/t/{ticket.track_token}",
        },
        201,
    )


def idempotency_key(request: web.Request) -> str | None:
    """The ``Idempotency-Key`` header: 1-100 visible ASCII characters, or absent."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest(
            "Idempotency-Key must be 1-100 visible ASCII characters",
            "Idempotency-Key 须为 1 至 100 个可见 ASCII 字符",
            code="bad_idempotency_key",
        )
    return key


@route(
    "POST",
    f"{API}/devices/{{name}}/state",
    frozenset({Role.KIOSK, Role.DISPLAY, Role.ADMIN}),
    "A client reports a device it drives (kiosk printer): becomes a device.state event",
    body=schemas.DeviceReport,
    ok=204,
    errors=(400,),
    tag="system",
)
async def report_device(ctx: Context) -> web.StreamResponse:
    """Record a client's device state under the reporting token's name (only when it changed)."""
    hub = ctx.hub
    body: schemas.DeviceReport = ctx.body
    assert ctx.principal is not None
    name = ctx.request.match_info["name"]
    if not _DEVICE_NAME.fullmatch(name):
        raise BadRequest(
            "device name must be 1-40 letters, digits, '-', '_' or '.'",
            "设备名须为 1 至 40 个字母、数字、“-”“_”或“.”",
            code="bad_device_name",
        )
    device = f"{ctx.principal.role}:{ctx.principal.name}/{name}"
    await hub.execute(lambda now: hub.engine.device_state(now, device, body.state, body.detail))
    return web.Response(status=204)


@route("GET", f"{API}/tickets/{{id}}", EVERYONE, "One ticket", errors=(404,))
async def get_ticket(ctx: Context) -> web.StreamResponse:
    """A ticket of today (as committed)."""
    hub = ctx.hub
    ticket_id = ctx.request.match_info["id"]
    return json_response(
        await hub.committed(lambda: ticket_view(hub, hub.engine.ticket(ticket_id)))
    )


@route(
    "POST",
    f"{API}/tickets/{{id}}/reactivate",
    WINDOW_STAFF,
    "Put a no-show back in line",
    body=schemas.Reactivate,
    errors=(404, 409),
)
async def reactivate(ctx: Context) -> web.StreamResponse:
    """A no-show came back."""
    hub = ctx.hub
    body: schemas.Reactivate = ctx.body
    ticket_id = ctx.request.match_info["id"]
    ticket = await hub.execute(lambda now: hub.engine.reactivate(now, ticket_id, body.position))
    return json_response({"ticket": ticket_view(hub, ticket)})


@route(
    "POST",
    f"{API}/tickets/{{id}}/cancel",
    WINDOW_STAFF,
    "Cancel a waiting ticket",
    errors=(404, 409),
)
async def cancel_ticket(ctx: Context) -> web.StreamResponse:
    """Staff cancel a waiting ticket."""
    hub = ctx.hub
    ticket_id = ctx.request.match_info["id"]
    ticket = await hub.execute(lambda now: hub.engine.cancel(now, ticket_id))
    return json_response({"ticket": ticket_view(hub, ticket)})


@route(
    "POST",
    f"{API}/tickets/{{id}}/move",
    MANAGERS,
    "A supervisor moves a waiting ticket to another service or window (转移)",
    body=schemas.Transfer,
    errors=(400, 404, 409),
)
async def move_ticket(ctx: Context) -> web.StreamResponse:
    """Send a waiting ticket to another line; it keeps its number (a new entry, as a transfer)."""
    hub, staff = ctx.hub, ctx.staff
    body: schemas.Transfer = ctx.body
    ticket_id = ctx.request.match_info["id"]
    ticket = await hub.execute(
        lambda now: hub.engine.move(
            now,
            ticket_id,
            staff,
            service_id=body.service,
            window_number=body.window,
            position=body.position,
        )
    )
    return json_response({"ticket": ticket_view(hub, ticket)})


@route(
    "POST",
    f"{API}/day/close",
    MANAGERS,
    "A supervisor ends today's service early: waiting tickets expire, windows close",
    body=schemas.CloseDay,
    errors=(400, 409),
    tag="windows",
)
async def close_day(ctx: Context) -> web.StreamResponse:
    """Close today (``{day}`` must be today); nothing more is issued until tomorrow."""
    hub, staff = ctx.hub, ctx.staff
    body: schemas.CloseDay = ctx.body
    expired = await hub.execute(lambda now: hub.engine.close_day(now, body.day, staff))
    return json_response({"day": body.day.isoformat(), "expired": len(expired)})


# --------------------------------------------------------------------------- windows


def _window_route(
    action: str, summary: str, body: type[BaseModel] | None = None
) -> Callable[[Handler], Handler]:
    return route(
        "POST",
        f"{API}/windows/{{n:\\d+}}/{action}",
        WINDOW_STAFF,
        summary,
        body=body,
        errors=(400, 403, 404, 409),
        tag="windows",
    )


@_window_route("open", "Staff takes the window")
async def window_open(ctx: Context) -> web.StreamResponse:
    """Open a window for the logged-in staff member."""
    hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
    await hub.execute(lambda now: hub.engine.open_window(now, number, staff))
    return json_response({"window": hub.engine.window_view(number)})


@_window_route("close", "Staff leaves the window")
async def window_close(ctx: Context) -> web.StreamResponse:
    """Close the window."""
    hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
    await hub.execute(lambda now: hub.engine.close_window(now, number, staff))
    return json_response({"window": hub.engine.window_view(number)})


@route(
    "POST",
    f"{API}/windows/{{n:\\d+}}/next",
    WINDOW_STAFF,
    "Call the next ticket (204 when none)",
    errors=(403, 404, 409),
    tag="windows",
)
async def window_next(ctx: Context) -> web.StreamResponse:
    """Finish the current ticket if any, then call the next."""
    hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
    ticket = await hub.execute(lambda now: hub.engine.call_next(now, number, staff))
    if ticket is None:
        return web.Response(status=204)
    return json_response({"ticket": ticket_view(hub, ticket)})


@_window_route("call", "Call a specific ticket (特呼)", schemas.CallNumber)
async def window_call(ctx: Context) -> web.StreamResponse:
    """Call a given number."""
    hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
    body: schemas.CallNumber = ctx.body
    ticket = await hub.execute(lambda now: hub.engine.call_number(now, number, staff, body.number))
    return json_response({"ticket": ticket_view(hub, ticket)})


def _ticket_action(action: str, summary: str, method: str) -> Handler:
    async def handler(ctx: Context) -> web.StreamResponse:
        hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
        command = getattr(hub.engine, method)
        ticket = await hub.execute(lambda now: command(now, number, staff))
        return json_response({"ticket": ticket_view(hub, ticket)})

    handler.__doc__ = summary
    return _window_route(action, summary)(handler)


_ticket_action("recall", "Call the current ticket again (重呼)", "recall")
_ticket_action("start", "The called resident arrived; service begins", "start")
_ticket_action("no-show", "The called resident did not come (过号)", "no_show")
_ticket_action("hold", "Park the current ticket at this window (挂起)", "hold")


@_window_route("pause", "Pause the window (暂停)", schemas.Pause)
async def window_pause(ctx: Context) -> web.StreamResponse:
    """Put the window on a break."""
    hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
    body: schemas.Pause = ctx.body
    await hub.execute(lambda now: hub.engine.pause(now, number, staff, body.reason))
    return json_response({"window": hub.engine.window_view(number)})


@_window_route("resume", "Resume the window (恢复)")
async def window_resume(ctx: Context) -> web.StreamResponse:
    """End the break."""
    hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
    await hub.execute(lambda now: hub.engine.resume(now, number, staff))
    return json_response({"window": hub.engine.window_view(number)})


@_window_route("callback", "Call a held ticket back (回呼)", schemas.Callback)
async def window_callback(ctx: Context) -> web.StreamResponse:
    """Call back a ticket held at this window."""
    hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
    body: schemas.Callback = ctx.body
    ticket = await hub.execute(lambda now: hub.engine.callback(now, number, staff, body.ticket))
    return json_response({"ticket": ticket_view(hub, ticket)})


@_window_route("transfer", "Transfer the current ticket (转移)", schemas.Transfer)
async def window_transfer(ctx: Context) -> web.StreamResponse:
    """Send the current ticket to another service or window."""
    hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
    body: schemas.Transfer = ctx.body
    ticket = await hub.execute(
        lambda now: hub.engine.transfer(
            now,
            number,
            staff,
            service_id=body.service,
            window_number=body.window,
            position=body.position,
        )
    )
    return json_response({"ticket": ticket_view(hub, ticket)})


@_window_route("finish", "Finish: done, or to the back office (opens a case)", schemas.Finish)
async def window_finish(ctx: Context) -> web.StreamResponse:
    """Finish the current ticket."""
    hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
    body: schemas.Finish = ctx.body
    ticket = await hub.execute(
        lambda now: hub.engine.finish(now, number, staff, body.outcome, body.promised_date)
    )
    result: dict[str, Any] = {"ticket": ticket_view(hub, ticket)}
    if body.outcome is Outcome.BACK_OFFICE and ticket.case_id in hub.engine.cases:
        result["case"] = hub.engine.cases[ticket.case_id].to_public()
    return json_response(result)


@_window_route("rating", "The resident's rating 1–5 of the last finished ticket", schemas.Rating)
async def window_rating(ctx: Context) -> web.StreamResponse:
    """Record a rating."""
    hub, number, staff = ctx.hub, ctx.int_param("n"), ctx.staff
    body: schemas.Rating = ctx.body
    ticket = await hub.execute(lambda now: hub.engine.rate(now, number, staff, body.score))
    return json_response({"ticket": ticket_view(hub, ticket)})


# --------------------------------------------------------------------------- cases, inquiries


@route(
    "POST",
    f"{API}/cases/{{id}}/ready",
    WINDOW_STAFF,
    "The back office finished a case",
    errors=(404, 409),
    tag="cases",
)
async def case_ready(ctx: Context) -> web.StreamResponse:
    """Mark a case ready for pickup."""
    hub, staff = ctx.hub, ctx.staff
    case_id = ctx.request.match_info["id"]
    case = await hub.execute(lambda now: hub.engine.case_ready(now, case_id, staff))
    return json_response({"case": case.to_public()})


@route(
    "POST",
    f"{API}/inquiries",
    WINDOW_STAFF,
    "Log a consultation (首问负责)",
    body=schemas.Inquiry,
    ok=201,
    errors=(400, 404),
    tag="cases",
)
async def log_inquiry(ctx: Context) -> web.StreamResponse:
    """Record a first-inquiry log entry."""
    hub, staff = ctx.hub, ctx.staff
    body: schemas.Inquiry = ctx.body
    event = await hub.execute(
        lambda now: hub.engine.log_inquiry(
            now,
            staff,
            body.topic,
            service_id=body.service,
            referred_to=body.referred_to,
            note=body.note,
            follow_up=body.follow_up,
        )
    )
    return json_response({"seq": event.seq}, 201)


# --------------------------------------------------------------------------- display+, admin


@route("GET", f"{API}/state", DISPLAY_PLUS, "Snapshot of the hall", tag="events")
async def state(ctx: Context) -> web.StreamResponse:
    """Windows, waiting counts and recent calls."""
    return json_response(await ctx.hub.durable_state())


@route("GET", f"{API}/lobby", DISPLAY_PLUS, "Lobby screen settings and hall layout", tag="lobby")
async def lobby(ctx: Context) -> web.StreamResponse:
    """Center names, windows, service groups, notices and announcement settings."""
    hub = ctx.hub
    lobby = await hub.lobby.current()
    if LOBBY_NOTICES in hub.engine.overrides:  # edited in the admin pages: the log wins
        lobby = lobby.model_copy(update={"notices": hub.config.lobby.notices})
    return json_response(lobby_view(hub.config, lobby))


@route(
    "GET",
    f"{API}/figures",
    DISPLAY_PLUS,
    "Today's public figures (信息公开): served, mean wait, satisfaction",
    tag="lobby",
)
async def figures(ctx: Context) -> web.StreamResponse:
    """Counts and rates of today only: no numbers, names or staff."""
    hub = ctx.hub
    day = hub.engine.local(hub.clock()).date()

    async def compute() -> dict[str, Any]:
        # In the report process, like every report: never on the loop's interpreter lock.
        report, _body = await hub.reports.run(Job("figures", "daily", day, day, day))
        return public_figures(report)

    return json_response(await hub.figures.get((day, hub.committed_seq), compute))


@route("GET", f"{API}/diagnostics", ADMINS, "Devices and hub internals", tag="system")
async def diagnostics(ctx: Context) -> web.StreamResponse:
    """What a technician needs to see (no secrets)."""
    hub = ctx.hub
    db_bytes = await hub.read(_file_size, hub.db_path)
    return json_response(hub.diagnostics() | {"db_bytes": db_bytes})


@route(
    "POST",
    f"{API}/devices/selftest",
    ADMINS,
    "Check every bus device through the running hub (qcall selftest --hub)",
    tag="system",
)
async def devices_selftest(ctx: Context) -> web.StreamResponse:
    """IDENT, PING and read back every bus device without changing what it shows."""
    hall = ctx.hub.hall
    devices = [] if hall is None else await hall.selftest()
    return json_response({"ok": all(d["ok"] for d in devices), "devices": devices})


def _file_size(path: os.PathLike[str]) -> int | None:
    try:
        return os.stat(path).st_size  # noqa: PTH116
    except OSError:
        return None


@route(
    "GET", "/metrics", None, "Prometheus metrics (loopback / allowed networks only)", tag="system"
)
async def metrics(ctx: Context) -> web.StreamResponse:
    """Prometheus text, only to allowed addresses."""
    hub = ctx.hub
    # The allow-list decides, about the real caller: a request relayed by a proxy that is not
    # declared in hub.trusted_proxies has no known caller and is refused.
    remote = caller_address(ctx.request, hub) or ""
    try:
        address = ipaddress.ip_address(remote)
        allowed = any(
            address in ipaddress.ip_network(net, strict=False)
            for net in hub.config.hub.metrics_allow
        )
    except ValueError:
        allowed = False
    if not allowed:
        return error_response(403, "metrics_forbidden", text("metrics_forbidden", ctx.lang))
    body = await hub.committed(hub.metrics.render)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
