"""The admin pages (``/admin/``): day-to-day settings, staff accounts, API tokens, audit log.

Every page and action admits the admin role only (``guarded``: session, CSRF, origin). Each
change goes through :mod:`qcall.admin`, so it is applied at once, durable and audited.
Secrets (a new PIN, a new token) are shown once on the answer to the POST, never stored or
logged in clear.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from multidict import MultiDictProxy

from qcall import admin, settings
from qcall.api.routes import ADMINS
from qcall.errors import QcallError
from qcall.model import DayType, Role
from qcall.web.catalog import N_
from qcall.web.security import NAVIGATION, NavItem, WebContext, guarded

ADMIN_PAGES: Final = {
    "/admin/": ADMINS,
    "/admin/staff": ADMINS,
    "/admin/tokens": ADMINS,
    "/admin/audit": ADMINS,
}
NAVIGATION.extend(
    [
        NavItem("/admin/", N_("Settings"), ADMINS),
        NavItem("/admin/staff", N_("Staff accounts"), ADMINS),
        NavItem("/admin/tokens", N_("API tokens"), ADMINS),
        NavItem("/admin/audit", N_("Audit log"), ADMINS),
    ]
)
STAFF_ROLE_ORDER: Final = (Role.CLERK, Role.SUPERVISOR, Role.ADMIN)
OPEN_DAY_TYPES: Final = (DayType.WEEKDAY, DayType.WEEKEND_DUTY)
LINE_FIELDS: Final = ("procedure", "materials", "cooperating_departments")
TEXT_FIELDS: Final = ("policy_basis", "conditions", "approval_time", "place", "phone")
MAX_FIELD: Final = 2000
ACTION_LABELS: Final[Mapping[str, str]] = {
    "settings.changed": N_("Setting changed"),
    "staff.added": N_("Account added"),
    "staff.changed": N_("Account changed"),
    "staff.disabled": N_("Account disabled"),
    "staff.enabled": N_("Account enabled"),
    "staff.pin_reset": N_("PIN reset"),
    "token.created": N_("Token created"),
    "token.revoked": N_("Token revoked"),
}
ROLE_LABELS: Final[Mapping[str, str]] = {
    "clerk": N_("Clerk"),
    "supervisor": N_("Supervisor"),
    "admin": N_("Admin"),
    "kiosk": N_("Kiosk"),
    "display": N_("Display"),
    "integration": N_("Integration"),
}
DAY_TYPE_LABELS: Final[Mapping[str, str]] = {
    "weekday": N_("Working day"),
    "weekend_duty": N_("Weekend duty day"),
    "closed": N_("Closed"),
}


def setup_routes(app: web.Application) -> None:
    """Add the admin pages to the application."""
    router = app.router
    router.add_get("/admin", _slash)
    router.add_get("/admin/", settings_page)
    router.add_get("/admin/services/{id}", service_page)
    router.add_post("/admin/services/{id}", service_save)
    router.add_post("/admin/calendar", calendar_save)
    router.add_post("/admin/notices", notices_save)
    router.add_get("/admin/staff", staff_page)
    router.add_post("/admin/staff", staff_add)
    router.add_post("/admin/staff/{id}", staff_change)
    router.add_get("/admin/tokens", tokens_page)
    router.add_post("/admin/tokens", token_create)
    router.add_post("/admin/tokens/{id}/revoke", token_revoke)
    router.add_get("/admin/audit", audit_page)


async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(request.path + "/")


def _text(form: MultiDictProxy[Any], name: str, limit: int = MAX_FIELD) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def _done(ctx: WebContext, target: str, message: str) -> web.StreamResponse:
    ctx.session["flash"] = message
    raise web.HTTPSeeOther(target)


def _flash(ctx: WebContext) -> str:
    message = ctx.session.pop("flash", "")
    return message if isinstance(message, str) else ""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """A service in the settings list."""

    id: str
    name: str
    daily_cap: int
    hours: str
    stale: bool = False


def _hours_text(hours: Mapping[str, Any], ctx: WebContext) -> str:
    parts = [
        f"{ctx.gettext(DAY_TYPE_LABELS[str(d)])} {h['start'][:5]}–{h['end'][:5]}"
        for d, h in hours.items()
    ]
    return "；".join(parts) if ctx.lang == "zh" else "; ".join(parts)


@guarded(ADMINS)
async def settings_page(ctx: WebContext) -> web.StreamResponse:
    """``GET /admin/``: services, calendar overrides, lobby notices."""
    return _settings(ctx)


def _settings(
    ctx: WebContext,
    *,
    status: int = 200,
    error: str = "",
    calendar_text: str | None = None,
    notices_text: str | None = None,
) -> web.Response:
    config = ctx.hub.config
    rows = []
    for service in config.services:
        value = settings.current_value(config, settings.service_key(service.id))
        rows.append(
            ServiceRow(
                service.id,
                service.name_zh if ctx.lang == "zh" else service.name_en,
                service.daily_cap,
                _hours_text(value["hours"], ctx),
            )
        )
    calendar = settings.current_value(config, settings.CALENDAR_OVERRIDES)
    notices = settings.current_value(config, settings.LOBBY_NOTICES)
    return ctx.render(
        "admin_settings.html",
        status=status,
        flash=_flash(ctx),
        error=error,
        services=rows,
        stale=settings.stale(ctx.hub.base_config, ctx.hub.engine.overrides),
        calendar_text=calendar_text
        if calendar_text is not None
        else "\n".join(
            " | ".join((o["date"], o["day_type"], o["note_zh"], o["note_en"])).rstrip(" |")
            for o in calendar
        ),
        notices_text=notices_text
        if notices_text is not None
        else "\n".join(f"{n['zh']} | {n['en']}" if n["en"] else n["zh"] for n in notices),
        day_types=[str(d) for d in DayType],
    )


def _parse_calendar(text: str) -> list[dict[str, str]]:
    """``YYYY-MM-DD | day_type | 中文说明 | English note`` per line (notes optional)."""
    overrides = []
    for line in _lines(text):
        parts = [part.strip() for part in line.split("|", 3)] + ["", "", ""]
        overrides.append(
            {"date": parts[0], "day_type": parts[1], "note_zh": parts[2], "note_en": parts[3]}
        )
    return overrides


def _parse_notices(text: str) -> list[dict[str, str]]:
    """``中文 | English`` per line (English optional)."""
    notices = []
    for line in _lines(text):
        zh, _, en = line.partition("|")
        notices.append({"zh": zh.strip(), "en": en.strip()})
    return notices


@guarded(ADMINS)
async def calendar_save(ctx: WebContext) -> web.StreamResponse:
    """``POST /admin/calendar``: the dated overrides (holidays, make-up working days)."""
    form = await ctx.request.post()
    text = _text(form, "overrides", 20_000)
    try:
        await admin.change_setting(
            ctx.hub, ctx.staff, settings.CALENDAR_OVERRIDES, _parse_calendar(text)
        )
    except QcallError as err:
        return _settings(ctx, status=err.status, error=err.message(ctx.lang), calendar_text=text)
    return _done(ctx, "/admin/", ctx.gettext("Calendar overrides saved."))


@guarded(ADMINS)
async def notices_save(ctx: WebContext) -> web.StreamResponse:
    """``POST /admin/notices``: the lobby screen's notices."""
    form = await ctx.request.post()
    text = _text(form, "notices", 20_000)
    try:
        await admin.change_setting(ctx.hub, ctx.staff, settings.LOBBY_NOTICES, _parse_notices(text))
    except QcallError as err:
        return _settings(ctx, status=err.status, error=err.message(ctx.lang), notices_text=text)
    return _done(ctx, "/admin/", ctx.gettext("Lobby notices saved."))


def _service_value(ctx: WebContext) -> tuple[str, dict[str, Any]]:
    service_id = ctx.request.match_info["id"]
    return service_id, settings.current_value(ctx.hub.config, settings.service_key(service_id))


@guarded(ADMINS)
async def service_page(ctx: WebContext) -> web.StreamResponse:
    """``GET /admin/services/{id}``: daily cap, issuing hours, notice sheet."""
    service_id, value = _service_value(ctx)
    return _service_form(ctx, service_id, value)


def _service_form(
    ctx: WebContext,
    service_id: str,
    value: Mapping[str, Any],
    *,
    status: int = 200,
    error: str = "",
) -> web.Response:
    service = ctx.hub.config.service(service_id)
    assert service is not None
    notice = value["notice"]
    return ctx.render(
        "admin_service.html",
        status=status,
        error=error,
        service_id=service_id,
        name=service.name_zh if ctx.lang == "zh" else service.name_en,
        daily_cap=value["daily_cap"],
        hours={d: _form_hours(value["hours"].get(d)) for d in OPEN_DAY_TYPES},
        text_fields={f: notice[f] for f in TEXT_FIELDS},
        line_fields={f: "\n".join(notice[f]) for f in LINE_FIELDS},
        day_type_labels=DAY_TYPE_LABELS,
    )


def _form_hours(hours: Mapping[str, str] | None) -> dict[str, str]:
    """Hours as the form's time fields show them (``HH:MM``; midnight as the end: 00:00)."""
    if not hours:
        return {"start": "", "end": ""}
    end = hours["end"][:5]
    return {"start": hours["start"][:5], "end": "00:00" if end == "24:00" else end}


@guarded(ADMINS)
async def service_save(ctx: WebContext) -> web.StreamResponse:
    """``POST /admin/services/{id}``: save the three editable parts of a service."""
    service_id, current = _service_value(ctx)
    form = await ctx.request.post()
    cap_text = _text(form, "daily_cap", 10)
    hours: dict[str, dict[str, str]] = {}
    for day_type in OPEN_DAY_TYPES:
        start, end = _text(form, f"start_{day_type}", 5), _text(form, f"end_{day_type}", 5)
        if start or end:
            # A time field cannot say 24:00: "until 00:00" is until midnight.
            hours[str(day_type)] = {"start": start, "end": "24:00" if end == "00:00" else end}
    notice: dict[str, Any] = {f: _text(form, f) for f in TEXT_FIELDS}
    notice |= {f: _lines(_text(form, f)) for f in LINE_FIELDS}
    value: dict[str, Any] = {
        "daily_cap": int(cap_text) if cap_text.isdigit() else cap_text,
        "hours": hours,
        "notice": notice,
    }
    try:
        await admin.change_setting(ctx.hub, ctx.staff, settings.service_key(service_id), value)
    except QcallError as err:
        return _service_form(
            ctx, service_id, {**current, **value}, status=err.status, error=err.message(ctx.lang)
        )
    return _done(ctx, "/admin/", ctx.gettext("Service settings saved."))


# --------------------------------------------------------------------------- staff


async def _staff(
    ctx: WebContext, *, status: int = 200, error: str = "", **extra: Any
) -> web.Response:
    members = await ctx.hub.read(ctx.hub.reader.list_staff)
    return ctx.render(
        "admin_staff.html",
        status=status,
        flash=_flash(ctx),
        error=error,
        members=members,
        roles=[str(r) for r in STAFF_ROLE_ORDER],
        role_labels=ROLE_LABELS,
        **({"shown_pin": None, "shown_for": ""} | extra),
    )


@guarded(ADMINS)
async def staff_page(ctx: WebContext) -> web.StreamResponse:
    """``GET /admin/staff``: accounts, with add, rename, role, disable, reset PIN."""
    return await _staff(ctx)


@guarded(ADMINS)
async def staff_add(ctx: WebContext) -> web.StreamResponse:
    """``POST /admin/staff``: a new account; its first PIN is shown once."""
    form = await ctx.request.post()
    staff_id = _text(form, "staff_id", 40)
    try:
        pin = await admin.add_staff(
            ctx.hub, ctx.staff, staff_id, _text(form, "name", 80), _text(form, "role", 20)
        )
    except QcallError as err:
        return await _staff(ctx, status=err.status, error=err.message(ctx.lang))
    return await _staff(ctx, shown_pin=pin, shown_for=staff_id)


@guarded(ADMINS)
async def staff_change(ctx: WebContext) -> web.StreamResponse:
    """``POST /admin/staff/{id}``: save name and role, disable, enable or reset the PIN."""
    staff_id = ctx.request.match_info["id"]
    form = await ctx.request.post()
    action = _text(form, "action", 20)
    hub, actor = ctx.hub, ctx.staff
    try:
        if action == "save":
            await admin.set_staff(
                hub, actor, staff_id, _text(form, "name", 80), _text(form, "role", 20)
            )
        elif action in ("disable", "enable"):
            await admin.set_staff_active(hub, actor, staff_id, active=action == "enable")
        elif action == "reset_pin":
            pin = await admin.reset_pin(hub, actor, staff_id)
            return await _staff(ctx, shown_pin=pin, shown_for=staff_id)
        else:
            raise web.HTTPBadRequest(text="unknown action / 未知操作")
    except QcallError as err:
        return await _staff(ctx, status=err.status, error=err.message(ctx.lang))
    return _done(ctx, "/admin/staff", ctx.gettext("Account saved."))


# --------------------------------------------------------------------------- tokens


async def _tokens(
    ctx: WebContext, *, status: int = 200, error: str = "", **extra: Any
) -> web.Response:
    tokens = await ctx.hub.read(lambda: ctx.hub.reader.list_tokens(include_revoked=True))
    return ctx.render(
        "admin_tokens.html",
        status=status,
        flash=_flash(ctx),
        error=error,
        tokens=[t for t in tokens if not t.name.startswith("web:")],
        roles=[str(r) for r in admin.TOKEN_ROLES],
        tz=ctx.hub.tz,
        role_labels=ROLE_LABELS,
        **({"shown_token": None, "shown_id": ""} | extra),
    )


@guarded(ADMINS)
async def tokens_page(ctx: WebContext) -> web.StreamResponse:
    """``GET /admin/tokens``: device and integration tokens."""
    return await _tokens(ctx)


@guarded(ADMINS)
async def token_create(ctx: WebContext) -> web.StreamResponse:
    """``POST /admin/tokens``: a new token, shown once."""
    form = await ctx.request.post()
    try:
        token_id, token = await admin.create_token(
            ctx.hub, ctx.staff, _text(form, "name", 80), _text(form, "role", 20)
        )
    except QcallError as err:
        return await _tokens(ctx, status=err.status, error=err.message(ctx.lang))
    return await _tokens(ctx, shown_token=token, shown_id=token_id)


@guarded(ADMINS)
async def token_revoke(ctx: WebContext) -> web.StreamResponse:
    """``POST /admin/tokens/{id}/revoke``: refused everywhere at once."""
    try:
        await admin.revoke_token(ctx.hub, ctx.staff, ctx.request.match_info["id"])
    except QcallError as err:
        return await _tokens(ctx, status=err.status, error=err.message(ctx.lang))
    return _done(ctx, "/admin/tokens", ctx.gettext("Token revoked."))


# --------------------------------------------------------------------------- audit


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit line as shown."""

    seq: int
    at: str
    actor: str
    action: str
    target: str
    before: str
    after: str


def _show(value: Any) -> str:
    return "—" if value is None else json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True)


def _changed_only(before: Any, after: Any) -> tuple[Any, Any]:
    """For two mappings, only what differs, at any depth (a notice edit shows the edit)."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        old: dict[str, Any] = {}
        new: dict[str, Any] = {}
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                old[key], new[key] = _changed_only(before.get(key), after.get(key))
        return old, new
    return before, after


@guarded(ADMINS)
async def audit_page(ctx: WebContext) -> web.StreamResponse:
    """``GET /admin/audit``: who changed what and when, newest first (read only)."""
    query = ctx.request.query
    actor, text = query.get("actor", "")[:40], query.get("q", "")[:60]
    entries = await admin.audit_log(ctx.hub, actor=actor, text=text)
    tz = ctx.hub.tz
    rows = []
    for e in entries:
        before, after = _changed_only(e.before, e.after)
        label = ACTION_LABELS.get(e.action)
        rows.append(
            AuditRow(
                e.seq,
                e.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
                e.actor,
                ctx.gettext(label) if label else e.action,
                e.target,
                _show(before),
                _show(after),
            )
        )
    return ctx.render("admin_audit.html", rows=rows, actor=actor, q=text)
