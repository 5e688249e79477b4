"""The public tracking page a ticket's QR code opens (no login: the link is the credential)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from qcall.api.routes import HUB_KEY, ticket_view
from qcall.errors import QcallError
from qcall.i18n import pick_language
from qcall.model import ACTIVE_STATES
from qcall.web import render

# Phones re-read the page this often while the ticket is still in play.
REFRESH_S: Final = 15


async def track_page(request: web.Request) -> web.StreamResponse:
    """``GET /t/{token}``: number, place in line, window when called; bilingual."""
    hub = request.app[HUB_KEY]
    token = request.match_info["token"]
    lang = pick_language(request.headers.get("Accept-Language"))
    center = hub.config.center
    context: dict[str, object] = {
        "lang": lang,
        "center_zh": center.name_zh,
        "center_en": center.name_en,
        "refresh": 0,
        "found": False,
        "number": "",
    }

    def found() -> dict[str, object]:
        ticket = hub.engine.ticket_by_token(token)
        service = hub.config.service(ticket.service)  # None once removed from the config
        view = ticket_view(hub, ticket)
        return {
            "found": True,
            "number": ticket.number,
            "state": str(ticket.state),
            "service_zh": service.name_zh if service else ticket.service,
            "service_en": service.name_en if service else ticket.service,
            "ahead": view["ahead"],
            "wait_min": max(1, round(view["estimated_wait_s"] / 60)),
            "window": ticket.window,
            "issued": hub.engine.local(ticket.issued_at).strftime("%H:%M"),
            "refresh": REFRESH_S if ticket.state in ACTIVE_STATES else 0,
            "cancel_path": f"/t/{token}/cancel",
        }

    try:
        context |= await hub.committed(found)  # only committed state is shown
    except QcallError as err:
        if err.status != 404:
            raise
        html = render("track.html", **context)
        return web.Response(text=html, status=404, content_type="text/html")
    return web.Response(
        text=render("track.html", **context),
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


async def track_cancel(request: web.Request) -> web.StreamResponse:
    """``POST /t/{token}/cancel``: the resident gives up a waiting ticket, then sees the page."""
    hub = request.app[HUB_KEY]
    token = request.match_info["token"]
    try:
        ticket = hub.engine.ticket_by_token(token)
        await hub.execute(lambda now: hub.engine.cancel(now, ticket.id))
    except QcallError:
        pass  # the page shows the ticket as it is (already called, unknown link …)
    raise web.HTTPSeeOther(f"/t/{token}")
