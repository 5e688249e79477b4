"""The kiosk's state and its rules, driven by presses, answers and time (pure, no I/O)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

from kiosk.catalog import KioskCatalog, Lang, ServiceItem, Text
from kiosk.texts import T

# No touch for this long ends the session (back to welcome, language and large text reset).
IDLE_TIMEOUT_S: Final = 60.0
# The last part of the idle time shows a countdown that any touch extends (WCAG 2.2.1: ≥20 s).
IDLE_WARNING_S: Final = 20.0
# The result stays up this long (ui.md rules 13 and 16: ≥5 s, and no change within 20 s).
RESULT_HOLD_S: Final = 20.0
# A pickup code is six digits today; room for longer codes, not for a phone number.
PICKUP_CODE_MAX: Final = 8

Fallback = Literal["show", "refuse"]


class Screen(StrEnum):
    """The kiosk's screens."""

    WELCOME = "welcome"
    DEPARTMENTS = "departments"
    SERVICES = "services"
    NOTICE = "notice"
    PICKUP = "pickup"
    ISSUING = "issuing"
    RESULT = "result"
    MESSAGE = "message"


class Act(StrEnum):
    """What a button does."""

    START = "start"
    LANG = "lang"
    LARGE = "large"
    HOME = "home"
    BACK = "back"
    DEPARTMENT = "department"
    SERVICE = "service"
    PAGE = "page"
    TAKE = "take"
    PRIORITY = "priority"
    PICKUP = "pickup"
    DIGIT = "digit"
    ERASE = "erase"
    SUBMIT = "submit"
    DONE = "done"
    STAY = "stay"


@dataclass(frozen=True, slots=True)
class Action:
    """A button's action and its argument (a department id, a digit, a page step)."""

    act: Act
    arg: str = ""


@dataclass(frozen=True, slots=True)
class IssueRequest:
    """A ticket the kiosk asks the hub for: one idempotency key per press."""

    key: str
    service: str
    priority: bool = False
    case_code: str | None = None


@dataclass(frozen=True, slots=True)
class IssueResult:
    """A ticket the hub acknowledged, and whether it was printed."""

    number: str
    service: Text
    ahead: int
    estimated_wait_s: int | None
    track_url: str
    printed: bool
    problem: Text | None = None  # why it was not printed


@dataclass(frozen=True, slots=True)
class PrinterView:
    """What the kiosk knows of its printer."""

    can_print: bool = True
    problem: Text | None = None


@dataclass
class KioskModel:
    """The kiosk session: screen, language, selections, and the hub and printer as seen."""

    fallback: Fallback = "show"
    key_factory: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    screen: Screen = Screen.WELCOME
    lang: Lang = "zh"
    large: bool = False
    catalog: KioskCatalog | None = None
    hub_online: bool = False
    printer: PrinterView = field(default_factory=PrinterView)
    department: str | None = None
    service: str | None = None
    page: int = 0
    scroll: int = 0
    pickup_code: str = ""
    error: Text | None = None
    message: Text | None = None
    result: IssueResult | None = None
    pending: IssueRequest | None = None
    last_touch: float = 0.0
    shown_at: float = 0.0
    version: int = 0
    _back_to: Screen = Screen.WELCOME

    # --- input ------------------------------------------------------------------------------

    def touch(self, now: float) -> None:
        """Note a touch anywhere (extends the idle time)."""
        self.last_touch = now
        if self.idle_left(now) is not None:
            self.version += 1

    def press(self, action: Action, now: float) -> IssueRequest | None:
        """Apply a button press; return the ticket request to send, if the press asks for one."""
        self.touch(now)
        if self.screen is Screen.ISSUING:
            return None  # a second press while issuing never gives a second ticket
        handler = _HANDLERS[action.act]
        request = handler(self, action, now)
        self.version += 1
        return request

    def scroll_by(self, delta: int, limit: int) -> None:
        """Scroll the notice sheet by ``delta`` pixels within ``0..limit``."""
        scroll = max(0, min(limit, self.scroll + delta))
        if scroll != self.scroll:
            self.scroll = scroll
            self.version += 1

    # --- the hub and the printer --------------------------------------------------------------

    def catalog_loaded(self, catalog: KioskCatalog) -> None:
        """Take a fresh catalog (the hub answered)."""
        if catalog != self.catalog or not self.hub_online:
            self.catalog = catalog
            self.hub_online = True
            self.version += 1

    def hub_lost(self) -> None:
        """The hub did not answer: services show as unavailable until it does."""
        if self.hub_online:
            self.hub_online = False
            self.version += 1

    def printer_changed(self, view: PrinterView) -> None:
        """Take the printer's latest state."""
        if view != self.printer:
            self.printer = view
            self.version += 1

    def issued(self, result: IssueResult, now: float) -> None:
        """The hub acknowledged the pending ticket (printed or shown)."""
        self.pending = None
        self.result = result
        self._show(Screen.RESULT, now)

    def issue_refused(self, message: Text, now: float, *, retry_code: bool = False) -> None:
        """The hub refused the ticket or could not be reached: nothing was issued."""
        request, self.pending = self.pending, None
        if retry_code and request is not None and request.case_code is not None:
            self.error = message
            self.pickup_code = ""
            self._show(Screen.PICKUP, now)
            return
        self.message = message
        self._show(Screen.MESSAGE, now)

    # --- time ---------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """End the session after inactivity, and leave the result after its time."""
        if self.screen is Screen.RESULT:
            expired = now - max(self.shown_at, self.last_touch) >= RESULT_HOLD_S
        elif self.screen in (Screen.WELCOME, Screen.ISSUING):
            expired = False
        else:
            expired = now - self.last_touch >= IDLE_TIMEOUT_S
        if expired:
            self.reset(now)

    def idle_left(self, now: float) -> int | None:
        """Return whole seconds left before the session ends, while the warning shows."""
        if self.screen in (Screen.WELCOME, Screen.ISSUING, Screen.RESULT):
            return None
        left = IDLE_TIMEOUT_S - (now - self.last_touch)
        if left > IDLE_WARNING_S:
            return None
        return max(0, int(left + 0.999))

    def result_left(self, now: float) -> int:
        """Return whole seconds before the result screen returns to welcome."""
        left = RESULT_HOLD_S - (now - max(self.shown_at, self.last_touch))
        return max(0, int(left + 0.999))

    def reset(self, now: float) -> None:
        """End the session: welcome screen, Chinese, normal text, nothing selected."""
        self.lang = "zh"
        self.large = False
        self.department = None
        self.service = None
        self.pickup_code = ""
        self.error = None
        self.message = None
        self.result = None
        self._show(Screen.WELCOME, now)

    # --- queries ------------------------------------------------------------------------------

    def selected_service(self) -> ServiceItem | None:
        """Return the service whose notice sheet is open."""
        if self.catalog is None or self.service is None:
            return None
        return self.catalog.service(self.service)

    def can_take(self, service: ServiceItem | None) -> bool:
        """Return whether a ticket for ``service`` may be requested now."""
        if service is None or not self.hub_online or not service.available:
            return False
        return self.printer.can_print or self.fallback == "show"

    # --- handlers -----------------------------------------------------------------------------

    def _show(self, screen: Screen, now: float) -> None:
        if screen is not self.screen:
            self.page = 0
            self.scroll = 0
        self.screen = screen
        self.shown_at = now
        self.version += 1

    def _on_start(self, action: Action, now: float) -> None:
        self._show(Screen.DEPARTMENTS, now)

    def _on_lang(self, action: Action, now: float) -> None:
        self.lang = "en" if action.arg == "en" else "zh"

    def _on_large(self, action: Action, now: float) -> None:
        self.large = not self.large
        self.page = 0
        self.scroll = 0

    def _on_home(self, action: Action, now: float) -> None:
        self.reset(now)

    def _on_back(self, action: Action, now: float) -> None:
        target = {
            Screen.DEPARTMENTS: Screen.WELCOME,
            Screen.SERVICES: Screen.DEPARTMENTS,
            Screen.NOTICE: Screen.SERVICES,
            Screen.PICKUP: Screen.DEPARTMENTS,
            Screen.MESSAGE: self._back_to,
            Screen.RESULT: Screen.WELCOME,
        }.get(self.screen, Screen.WELCOME)
        if target is Screen.WELCOME:
            self.reset(now)
        else:
            self.error = None
            self._show(target, now)

    def _on_department(self, action: Action, now: float) -> None:
        self.department = action.arg
        self._show(Screen.SERVICES, now)

    def _on_service(self, action: Action, now: float) -> None:
        if self.catalog is None or self.catalog.service(action.arg) is None:
            return
        self.service = action.arg
        self._show(Screen.NOTICE, now)

    def _on_page(self, action: Action, now: float) -> None:
        self.page = max(0, self.page + (1 if action.arg == "+1" else -1))

    def _on_take(self, action: Action, now: float) -> IssueRequest | None:
        return self._request(self.selected_service(), priority=False, now=now)

    def _on_priority(self, action: Action, now: float) -> IssueRequest | None:
        service = self.selected_service()
        if service is None or not service.priority_lane:
            return None
        return self._request(service, priority=True, now=now)

    def _on_pickup(self, action: Action, now: float) -> None:
        self.pickup_code = ""
        self.error = None
        self._show(Screen.PICKUP, now)

    def _on_digit(self, action: Action, now: float) -> None:
        if action.arg.isdigit() and len(self.pickup_code) < PICKUP_CODE_MAX:
            self.pickup_code += action.arg
            self.error = None

    def _on_erase(self, action: Action, now: float) -> None:
        self.pickup_code = self.pickup_code[:-1]

    def _on_submit(self, action: Action, now: float) -> IssueRequest | None:
        if not self.pickup_code or self.catalog is None:
            return None
        service = self.catalog.pickup_service()
        return self._request(service, priority=False, now=now, case_code=self.pickup_code)

    def _on_done(self, action: Action, now: float) -> None:
        self.reset(now)

    def _on_stay(self, action: Action, now: float) -> None:
        return None

    def _request(
        self,
        service: ServiceItem | None,
        *,
        priority: bool,
        now: float,
        case_code: str | None = None,
    ) -> IssueRequest | None:
        if service is None:
            return None
        if not self.can_take(service):
            self._back_to = self.screen
            self.message = _refusal(self, service)
            self._show(Screen.MESSAGE, now)
            return None
        self._back_to = self.screen
        self.pending = IssueRequest(self.key_factory(), service.id, priority, case_code)
        self._show(Screen.ISSUING, now)
        return self.pending


def _refusal(model: KioskModel, service: ServiceItem) -> Text:
    if not model.hub_online:
        return T["hub_down"]
    if not service.available and service.message is not None:
        return service.message
    return T["printer_refuse"]


_Handler = Callable[[KioskModel, Action, float], IssueRequest | None]
_HANDLERS: Final[dict[Act, _Handler]] = {
    Act.START: KioskModel._on_start,
    Act.LANG: KioskModel._on_lang,
    Act.LARGE: KioskModel._on_large,
    Act.HOME: KioskModel._on_home,
    Act.BACK: KioskModel._on_back,
    Act.DEPARTMENT: KioskModel._on_department,
    Act.SERVICE: KioskModel._on_service,
    Act.PAGE: KioskModel._on_page,
    Act.TAKE: KioskModel._on_take,
    Act.PRIORITY: KioskModel._on_priority,
    Act.PICKUP: KioskModel._on_pickup,
    Act.DIGIT: KioskModel._on_digit,
    Act.ERASE: KioskModel._on_erase,
    Act.SUBMIT: KioskModel._on_submit,
    Act.DONE: KioskModel._on_done,
    Act.STAY: KioskModel._on_stay,
}
