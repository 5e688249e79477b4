"""The HTTP/WebSocket API of the hub (aiohttp)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from qcall.api import reports as _reports  # noqa: F401 (registers the report routes)
from qcall.api.openapi import openapi_document
from qcall.api.routes import HUB_KEY, ROUTES, error_response, json_response, make_handler
from qcall.api.ws import ENCODED_KEY, STREAMS_KEY, EncodedEvents, close_streams, events_ws
from qcall.hub import Hub
from qcall.i18n import pick_language, text
from qcall.web.app import setup_web
from qcall.web.pages import track_cancel, track_cancel_confirm, track_page

__all__ = ["HUB_KEY", "build_app"]

_LOGGER = logging.getLogger(__name__)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error leaves as the contract's JSON body, in the caller's language."""
    lang = pick_language(request.headers.get("Accept-Language"))
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "too_large", text("too_large", lang))
    except web.HTTPMethodNotAllowed:
        return error_response(405, "bad_method", text("bad_method", lang))
    except web.HTTPNotFound:
        return error_response(404, "no_route", text("no_route", lang))
    except web.HTTPException:
        raise
    except Exception:
        _LOGGER.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", text("internal", lang))
    return response


def build_app(hub: Hub, *, manage_hub: bool = True) -> web.Application:
    """Compose the aiohttp application around a hub (started and stopped with the app)."""
    app = web.Application(middlewares=[_errors], client_max_size=hub.config.hub.max_body_bytes)
    app[HUB_KEY] = hub
    for entry in ROUTES:
        app.router.add_route(entry.method, entry.path, make_handler(hub, entry))
    app.router.add_get("/api/v1/events", events_ws)
    app.router.add_get("/t/{token}", track_page)
    app.router.add_get("/t/{token}/cancel", track_cancel_confirm)
    app.router.add_post("/t/{token}/cancel", track_cancel)
    setup_web(app, hub)
    app[STREAMS_KEY] = set()
    app[ENCODED_KEY] = EncodedEvents()  # per app, so per hub: seqs of two hubs never mix
    app.on_shutdown.append(close_streams)
    document = openapi_document()

    async def openapi(_request: web.Request) -> web.StreamResponse:
        return json_response(document)

    app.router.add_get("/api/v1/openapi.json", openapi)
    if manage_hub:

        async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
            await hub.start()
            yield
            await hub.stop()

        app.cleanup_ctx.append(lifecycle)
    return app
