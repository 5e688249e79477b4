"""The public asyncio client of hub API v1: the lobby display, the kiosk and integrators use it.

``QcallClient`` wraps every route of docs/api.md in a typed method and raises
``QcallApiError`` for the contract's error bodies. ``events()`` follows the event stream and
reconnects on its own, resuming with ``after=<last seq>`` so the consumer sees every event
exactly once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Final, Literal, NotRequired, Self, TypedDict, Unpack, cast, overload

import aiohttp

from qcall.errors import QcallError

__all__ = [
    "AssessmentSheet",
    "CaseView",
    "Catalog",
    "CatalogService",
    "DailyReport",
    "Diagnostics",
    "FinishResult",
    "Health",
    "InquiryResult",
    "IssuedTicket",
    "LobbySettings",
    "LoginResult",
    "PublicFigures",
    "QcallApiError",
    "QcallClient",
    "QcallConnectionError",
    "QcallTimeout",
    "Report",
    "State",
    "StreamMessage",
    "TicketView",
    "TrackCancelResult",
    "TrackView",
    "WindowView",
]

_LOGGER = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
# A hub answers every request from memory or one small SQLite transaction; 10 s covers a
# loaded hub on a slow office network, yet a kiosk can still tell a resident "try again".
REQUEST_TIMEOUT_S: Final = 10.0
# TCP connect on a LAN takes milliseconds; more than this means the hub host is down.
CONNECT_TIMEOUT_S: Final = 5.0
# The WebSocket upgrade is one HTTP round trip plus a token check.
HANDSHAKE_TIMEOUT_S: Final = 10.0
# Our pings: a hub that vanished (power cut, cable pulled) is noticed within two of these,
# well before a resident would miss a call. Matches the hub's own WS_HEARTBEAT_S.
STREAM_HEARTBEAT_S: Final = 20.0
# Closing the stream politely must not hold up a display's shutdown.
STREAM_CLOSE_TIMEOUT_S: Final = 2.0
# Reconnect backoff: first retry almost at once (a lagging-client close or a hub restart is
# over in well under a second), doubling up to a cap short enough that a lobby screen is back
# within seconds of the hub, with jitter so a hall of screens does not reconnect in lock-step.
RECONNECT_INITIAL_S: Final = 0.1
RECONNECT_MAX_S: Final = 5.0
RECONNECT_FACTOR: Final = 2.0
RECONNECT_JITTER: Final = 0.2


# Handshake answers that retrying cannot fix: bad ``after``, no or wrong token, no route.
class _LogEndsEarlier(Exception):
    """The hub refused ``after`` because its log does not reach that far."""


_FATAL_HANDSHAKE: Final = frozenset({400, 401, 403, 404})
_HANDSHAKE_CODES: Final = {
    400: "bad_param",
    401: "unauthorized",
    403: "forbidden_role",
    404: "no_route",
}

Position = Literal["first", "last"]
Outcome = Literal["done", "back_office"]
ReportFormat = Literal["json", "csv"]
ReportKind = Literal["daily", "monthly", "range"]
ExportFormat = Literal["csv", "xlsx"]
ChartName = Literal["hourly", "ratings", "trend"]


# --------------------------------------------------------------------------- errors


class QcallApiError(QcallError):
    """The hub refused a request with ``{"error": {"code", "message"}}`` and an HTTP status.

    The status tells the caller what to do: 400/404 fix the request, 401 log in again, 403 the
    role or window is wrong, 409 the state does not allow it now, 5xx retry later.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, message, code=code, details=dict(details or {}))
        self.status = status
        self.message_text = message

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message_text}"


class QcallConnectionError(QcallError, ConnectionError):
    """The hub could not be reached or dropped the connection; retrying may help."""

    code = "connection_error"
    status = 503


class QcallTimeout(QcallConnectionError, TimeoutError):
    """The hub did not answer within the client's timeout."""

    code = "timeout"
    status = 504


# --------------------------------------------------------------------------- wire types


class Health(TypedDict):
    """``GET /health``."""

    status: str
    version: str
    seq: int


class LoginResult(TypedDict):
    """``POST /login``."""

    token: str
    staff: str
    name: str
    role: str
    expires_at: str


class IssuedTicket(TypedDict):
    """``POST /tickets`` (201)."""

    id: str
    number: str
    service: str
    priority: bool
    issued_at: str
    ahead: int
    estimated_wait_s: int
    track_token: str
    track_url: str


class TicketView(TypedDict):
    """A ticket as the API shows it, with its place in line."""

    id: str
    number: str
    service: str
    priority: bool
    channel: str
    state: str
    issued_at: str
    window: int | None
    called_at: str | None
    finished_at: str | None
    case_id: str | None
    transferred_to: str | None
    rating: int | None
    ahead: int
    estimated_wait_s: int


class ServiceName(TypedDict):
    """A service's id and names."""

    id: str
    name_zh: str
    name_en: str


class TrackView(TypedDict):
    """``GET /track/{token}``: what a resident's phone shows."""

    number: str
    state: str
    service: ServiceName
    ahead: int
    estimated_wait_s: int
    window: int | None
    issued_at: str


class TrackCancelResult(TypedDict):
    """``POST /track/{token}/cancel``."""

    number: str
    state: str


class CurrentTicket(TypedDict):
    """The ticket at a window, in the hall state."""

    id: str
    number: str
    service: str


class WindowView(TypedDict):
    """One window's public state."""

    number: int
    type: str
    state: str
    staff: str | None
    pause_reason: str | None
    current: CurrentTicket | None
    held: list[str]


class RecentCall(TypedDict):
    """One entry of the hall's recent calls."""

    number: str
    window: int
    at: str


class State(TypedDict):
    """``GET /state``: the hall snapshot."""

    seq: int
    day: str | None
    day_type: str | None
    windows: list[WindowView]
    waiting: dict[str, int]
    recent_calls: list[RecentCall]
    devices: dict[str, dict[str, Any]]


class CaseView(TypedDict):
    """A back-office case."""

    id: str
    ticket: str
    number: str
    service: str
    staff: str
    opened_at: str
    promised_date: str
    pickup_code: str
    state: str


class FinishResult(TypedDict):
    """``POST /windows/{n}/finish``: the ticket, and the case it opened (back office)."""

    ticket: TicketView
    case: NotRequired[CaseView]


class InquiryResult(TypedDict):
    """``POST /inquiries`` (201)."""

    seq: int


class Bilingual(TypedDict):
    """A message in both languages."""

    zh: str
    en: str


class CatalogService(TypedDict):
    """One service in the catalog, with today's availability."""

    id: str
    department: str
    name_zh: str
    name_en: str
    prefix: str
    kind: str
    priority_lane: bool
    waiting: int
    estimated_wait_s: int
    available: bool
    served_now: bool
    notice: dict[str, Any]
    unavailable_reason: NotRequired[str]
    message: NotRequired[Bilingual]
    opens_at: NotRequired[str | None]


class CatalogDay(TypedDict):
    """Today's calendar entry."""

    date: str
    day_type: str
    opens: str | None
    closes: str | None


class Department(TypedDict):
    """A department of the catalog."""

    id: str
    name_zh: str
    name_en: str


class CenterNames(TypedDict):
    """The center's names."""

    name_zh: str
    name_en: str
    ticket_rules: list[str]
    timezone: str


class Catalog(TypedDict):
    """``GET /catalog``."""

    center: CenterNames
    day: CatalogDay
    departments: list[Department]
    services: list[CatalogService]


class StreamMessage(TypedDict):
    """One message of the event stream.

    ``type`` is ``"snapshot"`` (``data`` is a ``State``) or an event type such as
    ``"ticket.called"`` (``at`` is set, ``data`` the event's fields).
    """

    type: str
    seq: int
    data: dict[str, Any]
    at: NotRequired[str]


class LobbySettings(TypedDict):
    """``GET /lobby``: center names, windows, service groups and the ``[lobby]`` settings."""

    center: CenterNames
    timezone: str
    windows: list[dict[str, Any]]
    departments: list[Department]
    services: list[dict[str, Any]]
    lobby: dict[str, Any]
    version: str


class PublicFigures(TypedDict):
    """``GET /figures``: today's public figures (信息公开), counts and rates only."""

    date: str
    issued: int
    served: int
    waiting_mean_s: int | None
    ratings: int
    satisfaction_pct: float | None


DailyReport = dict[str, Any]
Report = dict[str, Any]
AssessmentSheet = dict[str, Any]
Diagnostics = dict[str, Any]
OpenApiDocument = dict[str, Any]


# --------------------------------------------------------------------------- client


class _Send(TypedDict, total=False):
    """How a request is sent (``QcallClient._bytes``' options)."""

    auth: bool
    params: Mapping[str, str] | None
    root: bool
    extra_headers: Mapping[str, str] | None


class QcallClient:
    """A client of one hub; use as ``async with QcallClient(url, token) as hub: ...``."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        lang: str = "zh",
        timeout: float = REQUEST_TIMEOUT_S,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.lang = lang
        self.timeout = timeout
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        if self._session is None:
            # No session-wide total: each request sets its own, and the event stream is
            # long-lived by design.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client opened it (a shared one stays open)."""
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    # ----------------------------------------------------------------- public, auth

    async def health(self) -> Health:
        """Liveness and version (no token needed)."""
        return cast(Health, await self._json("GET", "/health", auth=False))

    async def login(self, staff: str, pin: str) -> LoginResult:
        """Log a staff member in; the session token is kept for the following calls."""
        result = cast(
            LoginResult,
            await self._json("POST", "/login", {"staff": staff, "pin": pin}, auth=False),
        )
        self.token = result["token"]
        return result

    async def logout(self) -> None:
        """Revoke the current token and forget it."""
        await self._request("POST", "/logout")
        self.token = None

    async def track(self, track_token: str) -> TrackView:
        """The public tracking view of one ticket (no token needed)."""
        return cast(TrackView, await self._json("GET", f"/track/{_seg(track_token)}", auth=False))

    async def cancel_tracked(self, track_token: str) -> TrackCancelResult:
        """A resident cancels their waiting ticket through its tracking link."""
        path = f"/track/{_seg(track_token)}/cancel"
        return cast(TrackCancelResult, await self._json("POST", path, auth=False))

    # ----------------------------------------------------------------- kiosk

    async def catalog(self) -> Catalog:
        """Departments, services, notice sheets, availability and waiting counts."""
        return cast(Catalog, await self._json("GET", "/catalog"))

    async def issue_ticket(
        self,
        service: str,
        *,
        priority: bool = False,
        channel: str | None = None,
        case_code: str | None = None,
        idempotency_key: str | None = None,
    ) -> IssuedTicket:
        """Issue a ticket; returns once the hub has stored it durably.

        Retrying with the same ``idempotency_key`` within the service day answers the same
        ticket instead of issuing another.
        """
        body: dict[str, Any] = {"service": service, "priority": priority}
        if channel is not None:
            body["channel"] = channel
        if case_code is not None:
            body["case_code"] = case_code
        extra = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        data = await self._request("POST", "/tickets", body, extra_headers=extra)
        return cast(IssuedTicket, data)

    async def report_device(
        self, name: str, state: Literal["ready", "attention", "offline"], detail: str = ""
    ) -> None:
        """Report the state of a device this client drives (becomes a ``device.state`` event)."""
        await self._request(
            "POST", f"/devices/{_seg(name)}/state", {"state": state, "detail": detail}
        )

    async def ticket(self, ticket_id: str) -> TicketView:
        """One of today's tickets."""
        return cast(TicketView, await self._json("GET", f"/tickets/{_seg(ticket_id)}"))

    async def cancel(self, ticket_id: str) -> TicketView:
        """Staff cancel a waiting ticket."""
        return await self._ticket("POST", f"/tickets/{_seg(ticket_id)}/cancel")

    async def reactivate(self, ticket_id: str, position: Position = "last") -> TicketView:
        """Put a no-show back in line, first or last."""
        return await self._ticket(
            "POST", f"/tickets/{_seg(ticket_id)}/reactivate", {"position": position}
        )

    # ----------------------------------------------------------------- windows

    async def open_window(self, window: int) -> WindowView:
        """The logged-in staff member takes the window."""
        return await self._window(window, "open")

    async def close_window(self, window: int) -> WindowView:
        """The staff member leaves the window."""
        return await self._window(window, "close")

    async def pause(self, window: int, reason: str = "") -> WindowView:
        """Put the window on a break."""
        return await self._window(window, "pause", {"reason": reason})

    async def resume(self, window: int) -> WindowView:
        """End the window's break."""
        return await self._window(window, "resume")

    async def call_next(self, window: int) -> TicketView | None:
        """Finish the current ticket (if any) and call the next; None when nobody waits."""
        data = await self._request("POST", f"/windows/{window}/next")
        if data is None:
            return None
        return cast(TicketView, data["ticket"])

    async def call_number(self, window: int, number: str) -> TicketView:
        """Call a specific waiting ticket by its number (特呼)."""
        return await self._ticket("POST", f"/windows/{window}/call", {"number": number})

    async def recall(self, window: int) -> TicketView:
        """Call the current ticket again (重呼)."""
        return await self._ticket("POST", f"/windows/{window}/recall")

    async def start(self, window: int) -> TicketView:
        """The called resident arrived; service begins."""
        return await self._ticket("POST", f"/windows/{window}/start")

    async def no_show(self, window: int) -> TicketView:
        """The called resident did not come (过号)."""
        return await self._ticket("POST", f"/windows/{window}/no-show")

    async def hold(self, window: int) -> TicketView:
        """Park the current ticket at the window (挂起)."""
        return await self._ticket("POST", f"/windows/{window}/hold")

    async def callback(self, window: int, ticket: str) -> TicketView:
        """Call a ticket held at this window back (回呼); ``ticket`` is its id or number."""
        return await self._ticket("POST", f"/windows/{window}/callback", {"ticket": ticket})

    async def transfer(
        self,
        window: int,
        *,
        service: str | None = None,
        to_window: int | None = None,
        position: Position = "last",
    ) -> TicketView:
        """Transfer the current ticket to a service or a window; returns the new entry."""
        body: dict[str, Any] = {"position": position}
        if service is not None:
            body["service"] = service
        if to_window is not None:
            body["window"] = to_window
        return await self._ticket("POST", f"/windows/{window}/transfer", body)

    async def finish(
        self,
        window: int,
        outcome: Outcome = "done",
        *,
        promised_date: dt.date | None = None,
    ) -> FinishResult:
        """Finish the current ticket: done, or to the back office (opens a case)."""
        body: dict[str, Any] = {"outcome": outcome}
        if promised_date is not None:
            body["promised_date"] = promised_date.isoformat()
        return cast(FinishResult, await self._json("POST", f"/windows/{window}/finish", body))

    async def rate(self, window: int, score: int) -> TicketView:
        """The resident's rating (1–5) of the ticket last finished at the window."""
        return await self._ticket("POST", f"/windows/{window}/rating", {"score": score})

    # ----------------------------------------------------------------- cases, inquiries

    async def case_ready(self, case_id: str) -> CaseView:
        """The back office finished a case; the resident may collect it."""
        data = await self._json("POST", f"/cases/{_seg(case_id)}/ready")
        return cast(CaseView, data["case"])

    async def log_inquiry(
        self,
        topic: str,
        *,
        service: str | None = None,
        referred_to: str | None = None,
        note: str = "",
    ) -> InquiryResult:
        """Record a consultation under first-inquiry responsibility (首问负责)."""
        body: dict[str, Any] = {"topic": topic, "note": note}
        if service is not None:
            body["service"] = service
        if referred_to is not None:
            body["referred_to"] = referred_to
        return cast(InquiryResult, await self._json("POST", "/inquiries", body))

    # ----------------------------------------------------------------- supervision

    async def state(self) -> State:
        """The hall snapshot: windows, waiting counts, recent calls, ``seq``."""
        return cast(State, await self._json("GET", "/state"))

    async def lobby(self) -> LobbySettings:
        """What a lobby screen shows and says (follows edits of the center's file)."""
        return cast(LobbySettings, await self._json("GET", "/lobby"))

    async def figures(self) -> PublicFigures:
        """Today's public figures: served, mean wait, satisfaction (信息公开)."""
        return cast(PublicFigures, await self._json("GET", "/figures"))

    @overload
    async def daily_report(
        self, day: dt.date | None = None, *, fmt: Literal["json"] = "json"
    ) -> DailyReport: ...

    @overload
    async def daily_report(self, day: dt.date | None = None, *, fmt: Literal["csv"]) -> str: ...

    async def daily_report(
        self, day: dt.date | None = None, *, fmt: ReportFormat = "json"
    ) -> DailyReport | str:
        """The figures of one service day (today by default), as JSON or CSV text."""
        params: dict[str, str] = {"format": fmt}
        if day is not None:
            params["date"] = day.isoformat()
        if fmt == "csv":
            return await self._text("GET", "/reports/daily", params=params)
        return cast(DailyReport, await self._json("GET", "/reports/daily", params=params))

    async def report(
        self,
        kind: ReportKind = "daily",
        *,
        day: dt.date | None = None,
        month: str | None = None,
        first: dt.date | None = None,
        last: dt.date | None = None,
        service: str | None = None,
        window: int | None = None,
        staff: str | None = None,
    ) -> Report:
        """Figures of a day (``day``, default today), a month (``YYYY-MM``, default this
        month) or ``first``–``last``, optionally narrowed to a service, window or staff member."""
        params = _report_params(day, month, first, last, service, window, staff)
        return cast(Report, await self._json("GET", f"/reports/{kind}", params=params))

    async def report_export(
        self,
        kind: ReportKind = "daily",
        fmt: ExportFormat = "xlsx",
        *,
        day: dt.date | None = None,
        month: str | None = None,
        first: dt.date | None = None,
        last: dt.date | None = None,
        lang: str | None = None,
    ) -> bytes:
        """The same report as a CSV (UTF-8 with BOM) or XLSX file's bytes."""
        params = _report_params(day, month, first, last, None, None, None)
        params |= {"format": fmt} | ({"lang": lang} if lang else {})
        return await self._bytes("GET", f"/reports/{kind}", params=params)

    async def assessment(self, month: str | None = None) -> AssessmentSheet:
        """The monthly staff assessment (统一考核) with the configured weights."""
        params = {"month": month} if month else {}
        return cast(AssessmentSheet, await self._json("GET", "/reports/assessment", params=params))

    async def report_chart(
        self,
        chart: ChartName,
        *,
        day: dt.date | None = None,
        month: str | None = None,
        first: dt.date | None = None,
        last: dt.date | None = None,
        lang: str | None = None,
    ) -> str:
        """A report chart as an SVG document."""
        params = _report_params(day, month, first, last, None, None, None)
        params |= {"lang": lang} if lang else {}
        return await self._text("GET", f"/reports/charts/{_seg(chart)}", params=params)

    async def diagnostics(self) -> Diagnostics:
        """Devices and hub internals (admin)."""
        return cast(Diagnostics, await self._json("GET", "/diagnostics"))

    async def openapi(self) -> OpenApiDocument:
        """The OpenAPI 3 document of API v1."""
        return cast(OpenApiDocument, await self._json("GET", "/openapi.json", auth=False))

    async def metrics(self) -> str:
        """The Prometheus text (served to allowed addresses only)."""
        return await self._text("GET", "/metrics", auth=False, root=True)

    # ----------------------------------------------------------------- event stream

    async def events(
        self, after: int | None = None, *, reconnect: bool = True
    ) -> AsyncIterator[StreamMessage]:
        """Yield the snapshot (when ``after`` is None) and then every event, in order.

        A dropped connection is resumed with ``after=<last seq>``, so no event is missed or
        repeated. Errors that retrying cannot fix (bad token, bad ``after``) raise
        ``QcallApiError``. With ``reconnect=False`` the stream ends when the connection does,
        and a failure to connect raises ``QcallConnectionError``.
        """
        last = after
        delay = RECONNECT_INITIAL_S
        failures = 0
        while True:
            try:
                async with contextlib.aclosing(self._stream_once(last)) as stream:
                    async for message in stream:
                        if failures:
                            _LOGGER.info("event stream back after %d failed attempts", failures)
                            failures = 0
                        # The snapshot's seq is the last event applied in it, so resuming
                        # after either kind of message continues exactly where it left off.
                        last = message["seq"]
                        delay = RECONNECT_INITIAL_S
                        yield message
            except _LogEndsEarlier:
                # The hub's log is shorter than what we saw (its database was replaced):
                # start over from a snapshot rather than wait for seqs that will mean other things.
                _LOGGER.warning("event stream: hub log ends before seq %s; resyncing", last)
                last = None
                continue
            except QcallConnectionError as err:
                if not reconnect:
                    raise
                failures += 1
                log = _LOGGER.warning if failures == 1 else _LOGGER.debug
                log("event stream to %s unavailable after seq %s: %s", self.base_url, last, err)
            if not reconnect:
                return
            jitter = 1 + random.uniform(-RECONNECT_JITTER, RECONNECT_JITTER)  # noqa: S311
            await asyncio.sleep(delay * jitter)
            delay = min(delay * RECONNECT_FACTOR, RECONNECT_MAX_S)

    async def _stream_once(self, after: int | None) -> AsyncGenerator[StreamMessage, None]:
        """One connection: yield what it delivers until it closes or breaks the order."""
        session = self._require_session()
        params = {} if after is None else {"after": str(after)}
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(
                    self._url("/events"),
                    params=params,
                    headers=self._headers(auth=True),
                    heartbeat=STREAM_HEARTBEAT_S,
                    timeout=aiohttp.ClientWSTimeout(ws_close=STREAM_CLOSE_TIMEOUT_S),
                ),
                HANDSHAKE_TIMEOUT_S,
            )
        except aiohttp.WSServerHandshakeError as err:
            if err.status == 409:
                raise _LogEndsEarlier(f"the hub's log ends before seq {after}") from err
            if err.status in _FATAL_HANDSHAKE:
                raise QcallApiError(
                    err.status, _HANDSHAKE_CODES[err.status], err.message or "handshake refused"
                ) from err
            raise QcallConnectionError(f"event stream handshake failed: {err.status}") from err
        except TimeoutError as err:
            raise QcallTimeout("event stream handshake timed out") from err
        except aiohttp.ClientError as err:
            raise QcallConnectionError(f"event stream unreachable: {err}") from err
        last = after
        try:
            async for raw in ws:
                if raw.type is not aiohttp.WSMsgType.TEXT:
                    # ERROR: the connection broke; CLOSE/CLOSED are ended by the iterator.
                    break
                message = _stream_message(raw.data)
                if message is None:
                    continue
                if message["type"] == "snapshot":
                    last = message["seq"]
                    yield message
                    continue
                seq = message["seq"]
                if last is not None and seq <= last:
                    continue  # already delivered (a replay overlapping a live event)
                if last is not None and seq != last + 1:
                    # A gap must never reach the consumer: resume from the log instead.
                    _LOGGER.warning("event stream gap: %d after %d; resuming", seq, last)
                    break
                last = seq
                yield message
        except aiohttp.ClientError as err:
            raise QcallConnectionError(f"event stream broke: {err}") from err
        finally:
            await ws.close()
        if ws.close_code is not None:
            _LOGGER.debug("event stream closed by the hub: %s", ws.close_code)

    # ----------------------------------------------------------------- plumbing

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use QcallClient as 'async with QcallClient(...) as client'")
        return self._session

    def _url(self, path: str, *, root: bool = False) -> str:
        return f"{self.base_url}{path if root else API_PREFIX + path}"

    def _headers(self, *, auth: bool) -> dict[str, str]:
        headers = {"Accept-Language": self.lang}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def _ticket(self, method: str, path: str, body: Any = None) -> TicketView:
        data = await self._json(method, path, body)
        return cast(TicketView, data["ticket"])

    async def _window(self, window: int, action: str, body: Any = None) -> WindowView:
        data = await self._json("POST", f"/windows/{window}/{action}", body)
        return cast(WindowView, data["window"])

    async def _json(self, method: str, path: str, body: Any = None, **send: Unpack[_Send]) -> Any:
        data = await self._request(method, path, body, **send)
        if data is None:
            raise QcallApiError(204, "no_content", f"{method} {path} returned no content")
        return data

    async def _request(
        self, method: str, path: str, body: Any = None, **send: Unpack[_Send]
    ) -> Any:
        """Send a request; return the decoded JSON body, or None for 204."""
        text = await self._text(method, path, body, **send)
        return json.loads(text) if text else None

    async def _text(self, method: str, path: str, body: Any = None, **send: Unpack[_Send]) -> str:
        return (await self._bytes(method, path, body, **send)).decode("utf-8")

    async def _bytes(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        params: Mapping[str, str] | None = None,
        root: bool = False,
        extra_headers: Mapping[str, str] | None = None,
    ) -> bytes:
        session = self._require_session()
        headers = self._headers(auth=auth)
        if extra_headers:
            headers.update(extra_headers)
        try:
            async with session.request(
                method,
                self._url(path, root=root),
                json=body,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=CONNECT_TIMEOUT_S),
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise _api_error(response.status, raw.decode("utf-8", "replace"))
                return b"" if response.status == 204 else raw
        except TimeoutError as err:
            raise QcallTimeout(f"{method} {path}: no answer in {self.timeout:g} s") from err
        except aiohttp.ClientError as err:
            raise QcallConnectionError(f"{method} {path}: {err}") from err


def _report_params(
    day: dt.date | None,
    month: str | None,
    first: dt.date | None,
    last: dt.date | None,
    service: str | None,
    window: int | None,
    staff: str | None,
) -> dict[str, str]:
    """The query of a report: its period and scope."""
    params: dict[str, str] = {}
    if day is not None:
        params["date"] = day.isoformat()
    if month is not None:
        params["month"] = month
    if first is not None:
        params["from"] = first.isoformat()
    if last is not None:
        params["to"] = last.isoformat()
    if service is not None:
        params["service"] = service
    if window is not None:
        params["window"] = str(window)
    if staff is not None:
        params["staff"] = staff
    return params


def _seg(value: str) -> str:
    """Quote an id for use as one path segment."""
    return urllib.parse.quote(value, safe="")


def _api_error(status: int, text: str) -> QcallApiError:
    """Build the error from the contract's body, or from the status when the body is not it."""
    try:
        error = json.loads(text)["error"]
        return QcallApiError(
            status, str(error["code"]), str(error["message"]), error.get("details")
        )
    except (ValueError, KeyError, TypeError):
        return QcallApiError(status, f"http_{status}", text[:200] or f"HTTP {status}")


def _stream_message(raw: str) -> StreamMessage | None:
    """Decode one stream message; ignore anything that is not a sequenced message."""
    try:
        message = json.loads(raw)
    except ValueError:
        _LOGGER.warning("event stream sent invalid JSON; ignored")
        return None
    if not isinstance(message, dict) or not isinstance(message.get("seq"), int):
        _LOGGER.debug("event stream message without seq ignored: %.80s", raw)
        return None
    return cast(StreamMessage, message)
