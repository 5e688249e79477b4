"""Sessions, CSRF, idle timeout and role checks of every staff page, in one place.

A page or fetch handler is wrapped by :func:`guarded` with the roles it admits; the wrapper
loads the encrypted cookie session, ends it after the idle timeout, resolves the staff
member through the same bearer tokens the API uses (so logout and expiry are shared),
refuses any state-changing request without the session's CSRF token or from another origin,
checks the role, and hands the handler a :class:`WebContext`.
"""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from qcall.api.routes import HUB_KEY, error_response
from qcall.errors import AuthError, Forbidden, QcallError
from qcall.hub import Hub
from qcall.model import Role
from qcall.store import Principal
from qcall.web.catalog import LANGUAGES, pick, translations

_LOGGER = logging.getLogger(__name__)

SESSION_COOKIE: Final = "qcall_staff"
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"
# Fetches the page makes by itself (resync after an event) do not count as the user's activity.
BACKGROUND_HEADER: Final = "X-Qcall-Background"
SECRET_NAME: Final = "web_session_key"  # noqa: S105 - the name of a secret, not one
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
JINJA_KEYS: Final = {lang: web.AppKey(f"jinja_{lang}", jinja2.Environment) for lang in LANGUAGES}
# Everything a staff page loads comes from the hub itself; no frames, no inline script.
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True, slots=True)
class NavItem:
    """A page in the header's navigation, shown to the roles that may open it."""

    path: str
    label: str  # message id, translated when shown
    roles: frozenset[Role]


# Page modules add their pages here (the staff pages now, supervisor and admin pages later).
NAVIGATION: Final[list[NavItem]] = []


class SessionCookies(EncryptedCookieStorage):
    """Encrypted (Fernet) HttpOnly SameSite=Strict cookies whose key is set at start-up."""

    def __init__(self, *, secure: bool) -> None:
        # A throw-away key until start-up installs the configured or stored one.
        super().__init__(
            Fernet(Fernet.generate_key()),
            cookie_name=SESSION_COOKIE,
            httponly=True,
            samesite="Strict",
            secure=secure,
        )

    def set_key(self, key: bytes) -> None:
        """Use this 32-byte key from now on."""
        self._fernet = Fernet(base64.urlsafe_b64encode(key))


@dataclass(slots=True)
class WebState:
    """The staff pages' shared parts, kept on the application."""

    cookies: SessionCookies
    idle_s: float


WEB_KEY: Final = web.AppKey("web", WebState)


async def install_key(app: web.Application) -> None:
    """``on_startup`` (after the hub): the cookie key from the config, else from the database."""
    hub = app[HUB_KEY]
    configured = hub.config.hub.web_session_key
    if configured is not None:
        key = base64.urlsafe_b64decode(configured.encode("ascii"))
    else:
        key = await hub.write(hub.store.secret, SECRET_NAME)
    app[WEB_KEY].cookies.set_key(key)
    # A missing compiled catalog stops the start with the command that fixes it.
    for lang in LANGUAGES:
        translations(lang)


@dataclass(slots=True)
class WebContext:
    """What a page handler gets: the request, the hub, the session and the signed-in user."""

    request: web.Request
    hub: Hub
    session: Session
    lang: str
    csrf: str
    user: Principal | None
    expired: bool = False

    @property
    def staff(self) -> str:
        """The signed-in staff member's id."""
        if self.user is None or self.user.staff_id is None:
            raise AuthError("please sign in", "请先登录")
        return self.user.staff_id

    def gettext(self, message: str) -> str:
        """``message`` in the page's language."""
        return translations(self.lang).gettext(message)

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        """Render a page template with the shared context (language, CSRF token, user)."""
        base: dict[str, Any] = {
            "lang": self.lang,
            "csrf": self.csrf,
            "user": self.user,
            "user_name": self.session.get("name", ""),
            "center": self.hub.config.center,
            "path": self.request.path,
            "idle_s": int(self.request.app[WEB_KEY].idle_s),
            "nav": [n for n in NAVIGATION if self.user is not None and self.user.role in n.roles],
            "switch_url": str(
                self.request.rel_url.update_query(lang="en" if self.lang == "zh" else "zh")
            ),
        }
        return aiohttp_jinja2.render_template(
            template, self.request, base | context, status=status, app_key=JINJA_KEYS[self.lang]
        )


WebHandler = Callable[[WebContext], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(roles: frozenset[Role] | None, *, api: bool = False) -> Callable[[WebHandler], Handler]:
    """Wrap a staff page (``api=False``) or page fetch (``api=True``) with every check."""

    def wrap(handler: WebHandler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            hub = request.app[HUB_KEY]
            ctx = await _context(request, hub)
            try:
                if request.method not in SAFE_METHODS:
                    await _check_csrf(request, ctx)
                if roles is not None:
                    if ctx.user is None:
                        raise AuthError("please sign in", "请先登录")
                    if ctx.user.role not in roles:
                        raise Forbidden(
                            f"role {ctx.user.role} may not use this page",
                            f"您的角色（{ctx.user.role}）不能使用此页面",
                            code="forbidden_role",
                        )
                response = await handler(ctx)
            except QcallError as err:
                response = _refusal(ctx, err, api=api)
            except web.HTTPException as exc:
                _secure_headers(exc)
                raise
            _secure_headers(response)
            return response

        handle.__doc__ = handler.__doc__
        return handle

    return wrap


async def _context(request: web.Request, hub: Hub) -> WebContext:
    session = await get_session(request)
    wanted = request.query.get("lang")
    if wanted in LANGUAGES and session.get("lang") != wanted:
        session["lang"] = wanted
    lang = pick(session.get("lang"))
    csrf = session.get("csrf")
    if not isinstance(csrf, str):
        csrf = secrets.token_urlsafe(32)
        session["csrf"] = csrf
    ctx = WebContext(request, hub, session, lang, csrf, None)
    token = session.get("token")
    if not isinstance(token, str):
        return ctx
    now = time.time()
    seen = session.get("seen")
    idle_s = request.app[WEB_KEY].idle_s
    if not isinstance(seen, (int, float)) or now - seen > idle_s:
        _LOGGER.info("staff %s signed out after %d s idle", session.get("staff"), int(idle_s))
        await end_session(ctx)
        ctx.expired = True
        return ctx
    principal = await hub.principal(token)
    if principal is None or principal.staff_id != session.get("staff"):
        await end_session(ctx)
        ctx.expired = True
        return ctx
    ctx.user = principal
    background = BACKGROUND_HEADER in request.headers or request.headers.get("Upgrade") is not None
    if not background:
        session["seen"] = now
    return ctx


async def start_session(
    request: web.Request, hub: Hub, principal: Principal, token: str, name: str, lang: str
) -> None:
    """Begin a signed-in session (a fresh one: nothing from before sign-in carries over)."""
    session = await new_session(request)
    session.update(
        {
            "token": token,
            "staff": principal.staff_id,
            "name": name,
            "lang": lang,
            "csrf": secrets.token_urlsafe(32),
            "seen": time.time(),
        }
    )


async def end_session(ctx: WebContext) -> None:
    """Revoke the session's API token and forget the session (keeping the language)."""
    token = ctx.session.get("token")
    if isinstance(token, str):
        await ctx.hub.revoke(token)
    lang = ctx.session.get("lang")
    ctx.session.clear()
    if lang in LANGUAGES:
        ctx.session["lang"] = lang
    ctx.csrf = secrets.token_urlsafe(32)
    ctx.session["csrf"] = ctx.csrf
    ctx.user = None


async def _check_csrf(request: web.Request, ctx: WebContext) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise Forbidden("cross-site request refused", "拒绝跨站请求", code="bad_origin")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), ctx.csrf.encode()):
        raise Forbidden(
            "the form has expired or did not come from this page; reload and try again",
            "表单已过期或来源不明，请刷新页面后重试",
            code="csrf",
        )


def _refusal(ctx: WebContext, err: QcallError, *, api: bool) -> web.StreamResponse:
    message = err.message(ctx.lang)
    if api:
        code = "session_expired" if ctx.expired and isinstance(err, AuthError) else err.code
        return error_response(err.status, code, message, err.details or None)
    if isinstance(err, AuthError):
        target = f"/login?next={quote(ctx.request.path_qs, safe='')}"
        if ctx.expired:
            target += "&expired=1"
        return web.Response(status=303, headers={"Location": target})
    return ctx.render("error.html", status=err.status, message=message)


def _secure_headers(response: web.StreamResponse) -> None:
    if response.prepared:  # an event stream: its headers are on the wire already
        return
    headers = response.headers
    headers["Cache-Control"] = "no-store"
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"


def safe_next(value: str | None, allowed: Mapping[str, object], default: str) -> str:
    """A post-login target: only one of our own page paths (no open redirect)."""
    if not value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return default
    return value if parts.path in allowed else default
