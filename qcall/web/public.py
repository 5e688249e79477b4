"""Public information disclosure (信息公开) at ``/public/``: no login, no personal data.

For a phone or a screen at the door: today's hours, the services open now with their waiting
counts and expected waits, and today's public figures (the same as ``GET /api/v1/figures``).
No session is started (no cookie is set), so shared caches may keep the page for a few seconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

import aiohttp_jinja2
from aiohttp import web

from qcall.api.routes import HUB_KEY
from qcall.hub import Hub
from qcall.i18n import pick_language
from qcall.lobby import public_figures
from qcall.reports.worker import Job
from qcall.web.catalog import LANGUAGES
from qcall.web.security import CSP, JINJA_KEYS

# Shared caches and browsers may keep the page this long (it is the same for everyone).
CACHE_S: Final = 5
# A phone left open re-reads the page this often.
REFRESH_S: Final = 30


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """One service as the public sees it now."""

    name_zh: str
    name_en: str
    open_now: bool
    waiting: int
    wait_min: int
    note_zh: str
    note_en: str


@dataclass(frozen=True, slots=True)
class PublicView:
    """Everything the public page shows."""

    center_zh: str
    center_en: str
    date: str
    hours: str  # "09:00–17:00", or "" when closed today
    services: tuple[ServiceRow, ...]
    served: int | None
    wait_mean_min: int | None
    satisfaction_pct: float | None


def public_view(hub: Hub, now: dt.datetime, figures: dict[str, Any] | None) -> PublicView:
    """The page at ``now`` from the engine's state and today's figures (counts only)."""
    engine, config = hub.engine, hub.config
    local = engine.local(now)
    hours = config.calendar.hours(local.date())
    rows: list[ServiceRow] = []
    for service in config.services:
        availability = engine.availability(service, now)
        waiting = engine.waiting_count(service.id) if engine.day == local.date() else 0
        ahead = engine.ahead_for_new(service.id) if availability.available else 0
        wait_s = engine.estimated_wait_s(service.id, ahead) if availability.available else 0
        rows.append(
            ServiceRow(
                service.name_zh,
                service.name_en,
                availability.available,
                waiting,
                round(wait_s / 60),
                availability.message_zh,
                availability.message_en,
            )
        )
    mean = figures.get("waiting_mean_s") if figures else None
    return PublicView(
        center_zh=config.center.name_zh,
        center_en=config.center.name_en,
        date=local.date().isoformat(),
        hours=hours.label() if hours else "",
        services=tuple(rows),
        served=int(figures["served"]) if figures else None,
        wait_mean_min=None if mean is None else round(mean / 60),
        satisfaction_pct=figures.get("satisfaction_pct") if figures else None,
    )


def setup_routes(app: web.Application) -> None:
    """Add ``/public/``."""
    app.router.add_get("/public", _slash)
    app.router.add_get("/public/", public_page)


async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(request.path + "/")


async def public_page(request: web.Request) -> web.StreamResponse:
    """``GET /public/[?lang=en]``: the disclosure page, cacheable for a few seconds."""
    hub = request.app[HUB_KEY]
    wanted = request.query.get("lang")
    lang = wanted if wanted in LANGUAGES else pick_language(request.headers.get("Accept-Language"))
    now = hub.now()
    day = hub.engine.local(now).date()

    async def compute() -> dict[str, Any]:
        report, _body = await hub.reports.run(Job("figures", "daily", day, day, day))
        return public_figures(report)

    figures = await hub.figures.get((day, hub.committed_seq), compute)
    view = public_view(hub, now, figures)
    response = aiohttp_jinja2.render_template(
        "public.html",
        request,
        {"lang": lang, "view": view, "refresh": REFRESH_S, "other": "en" if lang == "zh" else "zh"},
        app_key=JINJA_KEYS[lang],
    )
    response.headers["Cache-Control"] = f"public, max-age={CACHE_S}"
    response.headers["Vary"] = "Accept-Language"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
