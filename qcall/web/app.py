"""Compose the staff pages onto the hub's application (called once from ``build_app``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import session_middleware

from qcall.hub import Hub
from qcall.web import admin, bridge, public, staff, supervisor
from qcall.web.catalog import LANGUAGES, translations
from qcall.web.security import JINJA_KEYS, WEB_KEY, SessionCookies, WebState, install_key

STATIC_DIR: Final = Path(__file__).parent / "static"


def setup_web(app: web.Application, hub: Hub) -> None:
    """Sessions, templates (one environment per language), static assets, pages, bridge."""
    cookies = SessionCookies(secure=hub.config.hub.web_secure_cookie)
    app[WEB_KEY] = WebState(cookies, hub.config.hub.web_idle_minutes * 60.0)
    app.middlewares.append(session_middleware(cookies))
    for lang in LANGUAGES:
        env = aiohttp_jinja2.setup(
            app,
            app_key=JINJA_KEYS[lang],
            loader=jinja2.PackageLoader("qcall.web", "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
        )
        env.install_gettext_callables(  # type: ignore[attr-defined]
            _lazy_gettext(lang), _lazy_ngettext(lang), newstyle=True
        )
    app.router.add_static("/web/static", STATIC_DIR, name="web-static")
    staff.setup_routes(app)
    supervisor.setup_routes(app)
    public.setup_routes(app)
    admin.setup_routes(app)
    bridge.mount(app)
    app.on_startup.append(install_key)


def _lazy_gettext(lang: str) -> Callable[[str], str]:
    # The catalog is loaded at first use (start-up checks it), not when the app is built.
    def gettext(message: str) -> str:
        return translations(lang).gettext(message)

    return gettext


def _lazy_ngettext(lang: str) -> Callable[[str, str, int], str]:
    def ngettext(singular: str, plural: str, n: int) -> str:
        return translations(lang).ngettext(singular, plural, n)

    return ngettext
