"""The pages' fetches reach API v1's own route handlers: one path to the engine.

Every API route a staff member may use is mirrored under ``/web`` (for example
``POST /web/api/v1/windows/3/next``, or ``GET /web/api/v1/reports/daily`` for a supervisor).
The mirror differs only in how the caller is known: the session cookie plus its CSRF token
instead of a bearer header. The route's roles, body schema, handler and error mapping are the
API's, unchanged.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from qcall.api.routes import API, ROUTES, Context, Route, error_response, parse_body
from qcall.errors import QcallError
from qcall.model import STAFF_ROLES
from qcall.web.security import Handler, WebContext, guarded

PREFIX: Final = "/web"
# Sign-in and sign-out have their own page forms (the session, not a bearer token).
_NOT_BRIDGED: Final = frozenset({f"{API}/login", f"{API}/logout"})


def bridged_routes() -> list[Route]:
    """The API routes the pages may call: those open to a staff role."""
    return [
        entry
        for entry in ROUTES
        if entry.roles is not None and entry.roles & STAFF_ROLES and entry.path not in _NOT_BRIDGED
    ]


def mount(app: web.Application) -> None:
    """Add ``/web/api/v1/...`` for every bridged route."""
    for entry in bridged_routes():
        app.router.add_route(entry.method, PREFIX + entry.path, _bridge(entry))


def _bridge(entry: Route) -> Handler:
    assert entry.roles is not None

    @guarded(entry.roles, api=True)
    async def handle(ctx: WebContext) -> web.StreamResponse:
        hub = ctx.hub
        try:
            api = Context(ctx.request, hub, ctx.lang, ctx.user)
            if entry.body is not None:
                api.body = await parse_body(ctx.request, entry.body, ctx.lang)
            response = await entry.handler(api)
        except QcallError as err:
            response = error_response(err.status, err.code, err.message(ctx.lang), err.details)
        hub.metrics.requests.labels(PREFIX + entry.path, str(response.status)).inc()
        return response

    return handle
