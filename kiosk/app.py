"""The kiosk process: a pygame window, the hub through ``qcall.client``, the ticket printer."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pygame

from devices.printer import (
    PrinterNotReady,
    PrinterStatus,
    PrinterStatusUnsupported,
    TicketPrint,
    TicketPrinter,
)
from devices.printer.commands import PAPER_DOTS
from devices.printer.connection import PrinterUrlError
from devices.printer.escpos_backend import DEFAULT_MODEL, EscposCommands, EscposUnavailable
from kiosk import layout as layout_module
from kiosk.catalog import KioskCatalog, Text
from kiosk.fonts import FontBook
from kiosk.journal import PendingJournal
from kiosk.model import (
    Fallback,
    IssueRequest,
    IssueResult,
    KioskModel,
    PrinterView,
    Screen,
)
from kiosk.render import Renderer
from kiosk.scene import Scene
from kiosk.texts import T
from qcall.client import IssuedTicket, QcallApiError, QcallClient, QcallConnectionError
from qcall.errors import DeviceError, QcallError

_LOGGER = logging.getLogger(__name__)

# The catalog carries the waiting counts and availability shown on the buttons; 5 s keeps
# them fresh for residents at a negligible cost (a few KB per request).
CATALOG_REFRESH_S: Final = 5.0
# While the hub is unreachable, ask again this often so service resumes within seconds.
HUB_RETRY_S: Final = 3.0
# One API call: the hub answers in milliseconds; 4 s means it is stalled or the LAN is down,
# and is still short enough for a resident standing at the screen.
REQUEST_TIMEOUT_S: Final = 4.0
# A ticket request is sent up to this many times with the same Idempotency-Key, this far apart.
ISSUE_ATTEMPTS: Final = 3
ISSUE_RETRY_S: Final = 1.0
# The printer's DLE EOT status is re-read this often while idle, so paper end and its repair
# reach the hub (and the screen) within seconds.
PRINTER_POLL_S: Final = 5.0
# Input is polled (pygame has no awaitable event queue): 60 times a second, so a tap waits
# at most one display frame before it is handled; an idle poll costs microseconds.
FRAME_S: Final = 1 / 60
# Each second the clock and countdowns may change: re-lay out at least this often.
RELAYOUT_S: Final = 1.0
# Stopping: background tasks get this long to finish their current request.
STOP_TIMEOUT_S: Final = 5.0

PRINTER_DEVICE: Final = "printer"
DeviceReport = Literal["ready", "attention", "offline"]


@dataclass(frozen=True, slots=True)
class KioskSettings:
    """How to run one kiosk (validated from the command line)."""

    hub: str
    token: str = field(repr=False)  # a secret: never in logs or tracebacks
    printer: str
    size: tuple[int, int] = (1080, 1920)
    fullscreen: bool = False
    screenshot_dir: Path | None = None
    scene_file: Path | None = None
    fallback: Fallback = "show"
    state_dir: Path = Path("var/kiosk")
    paper: int = 80
    printer_model: str = DEFAULT_MODEL
    catalog_refresh_s: float = CATALOG_REFRESH_S
    hub_retry_s: float = HUB_RETRY_S
    printer_poll_s: float = PRINTER_POLL_S
    issue_retry_s: float = ISSUE_RETRY_S


@dataclass
class _Drag:
    """A finger dragging the notice sheet: where it was last seen."""

    y: int


@dataclass
class Kiosk:
    """One kiosk: runs until ``stop()``; tests drive it with synthetic mouse events."""

    settings: KioskSettings
    wall_clock: Callable[[], dt.datetime] = field(
        default=lambda: dt.datetime.now(dt.UTC).astimezone()
    )
    monotonic: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.model = KioskModel(fallback=self.settings.fallback)
        self.scene: Scene | None = None
        self.results: list[IssueResult] = []
        self.frames = 0
        self._stop = asyncio.Event()
        self._drawn = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._drag: _Drag | None = None
        self._reported: tuple[DeviceReport, str] | None = None
        self._journal = PendingJournal(self.settings.state_dir / "pending")
        self._screenshots = 0
        self._client: QcallClient | None = None
        self._printer: TicketPrinter | None = None
        self._renderer: Renderer | None = None
        self._fonts: FontBook | None = None
        self._surface: pygame.Surface | None = None
        self._issuing = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the window, the hub client and the printer; run until ``stop()``."""
        pygame.display.init()
        try:
            flags = pygame.FULLSCREEN if self.settings.fullscreen else 0
            size = (0, 0) if self.settings.fullscreen else self.settings.size
            self._surface = pygame.display.set_mode(size, flags)
            pygame.display.set_caption("qcall kiosk 取号机")
            pygame.mouse.set_visible(not self.settings.fullscreen)
            self._fonts = FontBook()
            self._renderer = Renderer(self._surface, self._fonts)
            self._printer = TicketPrinter(
                "kiosk",
                self.settings.printer,
                paper=self.settings.paper,
                model=self.settings.printer_model,
                state_dir=self.settings.state_dir,
            )
            profile = await self._printer.load_profile()
            _LOGGER.info("printer profile: %s", profile)
            async with QcallClient(
                self.settings.hub, self.settings.token, timeout=REQUEST_TIMEOUT_S
            ) as client:
                self._client = client
                self._spawn(self._catalog_loop(), "kiosk-catalog")
                self._spawn(self._printer_loop(), "kiosk-printer")
                self._spawn(self._settle_pending(), "kiosk-settle")
                try:
                    await self._frame_loop()
                finally:
                    await self._stop_tasks()
                    await self._printer.stop()
        finally:
            pygame.display.quit()

    def stop(self) -> None:
        """Ask the kiosk to close."""
        self._stop.set()

    async def wait_drawn(self, predicate: Callable[[Scene], bool]) -> Scene:
        """Wait until a drawn scene satisfies ``predicate`` (callers bound it with a timeout)."""
        while self.scene is None or not predicate(self.scene):
            self._drawn.clear()
            await self._drawn.wait()
        return self.scene

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("kiosk task %s crashed", task.get_name(), exc_info=task.exception())

    async def _stop_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            if task.get_name() != "kiosk-issue":
                task.cancel()
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            for task in late:
                task.cancel()

    # --- frames and input ---------------------------------------------------------------------

    async def _frame_loop(self) -> None:
        drawn_version = -1
        next_layout = 0.0
        while not self._stop.is_set():
            for event in pygame.event.get():
                self._handle(event)
            now = self.monotonic()
            self.model.tick(now)
            if self.model.version != drawn_version or now >= next_layout:
                drawn_version = self.model.version
                next_layout = now + RELAYOUT_S
                self._draw(now)
            await asyncio.sleep(FRAME_S)

    def _draw(self, now: float) -> None:
        assert self._renderer is not None
        assert self._fonts is not None
        assert self._surface is not None
        scene = layout_module.layout(
            self.model, self._surface.get_size(), self._fonts, now, self._center_time()
        )
        if scene == self.scene:
            return
        rects = self._renderer.draw(scene)
        pygame.display.update(rects)
        self.scene = scene
        self.frames += 1
        self._write_outputs(scene)
        self._drawn.set()

    def _center_time(self) -> dt.datetime:
        """Return now in the center's time zone (the kiosk PC's own may differ)."""
        now = self.wall_clock()
        zone = self.model.catalog.timezone if self.model.catalog else None
        if zone is None:
            return now
        try:
            return now.astimezone(ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            return now

    def _write_outputs(self, scene: Scene) -> None:
        shots = self.settings.screenshot_dir
        if shots is not None:
            assert self._surface is not None
            shots.mkdir(parents=True, exist_ok=True)
            self._screenshots += 1
            name = shots / f"{self._screenshots:04d}-{scene.screen}.png"
            pygame.image.save(self._surface, str(name))
            tmp = shots / "latest.tmp.png"
            pygame.image.save(self._surface, str(tmp))
            tmp.replace(shots / "latest.png")
        if self.settings.scene_file is not None:
            target = self.settings.scene_file
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp_scene = target.with_name(target.name + ".tmp")
            tmp_scene.write_text(
                json.dumps(scene.to_json(), ensure_ascii=False, indent=1), encoding="utf-8"
            )
            tmp_scene.replace(target)

    def _handle(self, event: pygame.event.Event) -> None:
        """Mouse buttons are the one touch path: FINGER* events are ignored (no double taps)."""
        if event.type == pygame.QUIT:
            self.stop()
        elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
            self._pointer_down(*event.pos)
        elif event.type == pygame.MOUSEMOTION and self._drag is not None:
            self._pointer_move(event.pos[1])
        elif event.type == pygame.MOUSEBUTTONUP and event.button == 1:
            self._drag = None

    def _pointer_down(self, x: int, y: int) -> None:
        now = self.monotonic()
        scene = self.scene
        self.model.touch(now)
        if scene is None:
            return
        element = scene.hit(x, y)
        if element is not None and element.action is not None:
            request = self.model.press(element.action, now)
            if request is not None:
                self._spawn(self._issue(request), "kiosk-issue")
            return
        if scene.viewport is not None and scene.viewport.contains(x, y):
            self._drag = _Drag(y)

    def _pointer_move(self, y: int) -> None:
        drag = self._drag
        scene = self.scene
        if drag is None or scene is None:
            return
        self.model.touch(self.monotonic())
        self.model.scroll_by(drag.y - y, scene.scroll_max)
        drag.y = y

    # --- the hub ------------------------------------------------------------------------------

    async def _catalog_loop(self) -> None:
        """Keep the catalog fresh; while the hub is away, say so and keep asking."""
        client = self._require_client()
        problem: str | None = None
        while True:
            try:
                catalog = KioskCatalog.from_api(await client.catalog())
            except QcallError as err:
                # Unreachable, or refused (a revoked token): logged once per distinct problem.
                if str(err) != problem:
                    problem = str(err)
                    _LOGGER.warning("hub catalog unavailable: %s", err)
                self.model.hub_lost()
                await asyncio.sleep(self.settings.hub_retry_s)
                continue
            except Exception:  # a malformed answer must not end the loop
                _LOGGER.exception("hub sent a catalog the kiosk cannot read")
                self.model.hub_lost()
                await asyncio.sleep(self.settings.hub_retry_s)
                continue
            if problem is not None or not self.model.hub_online:
                _LOGGER.info("hub reachable at %s", self.settings.hub)
                problem = None
            self.model.catalog_loaded(catalog)
            await asyncio.sleep(self.settings.catalog_refresh_s)

    def _require_client(self) -> QcallClient:
        if self._client is None:
            raise RuntimeError("the kiosk is not running")
        return self._client

    async def _send(self, request: IssueRequest) -> IssuedTicket:
        """Send the request, retrying with the same key; raise the last connection error."""
        client = self._require_client()
        client.lang = self.model.lang
        last: QcallConnectionError | None = None
        for attempt in range(ISSUE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(self.settings.issue_retry_s)
            try:
                return await client.issue_ticket(
                    request.service,
                    priority=request.priority,
                    channel="kiosk",
                    case_code=request.case_code,
                    idempotency_key=request.key,
                )
            except QcallConnectionError as err:
                _LOGGER.warning(
                    "ticket request %s: attempt %d failed: %s", request.key, attempt + 1, err
                )
                last = err
        assert last is not None
        raise last

    async def _issue(self, request: IssueRequest) -> None:
        """Issue one ticket; whatever goes wrong, the resident is told and the screen moves on."""
        try:
            await self._issue_ticket(request)
        except Exception:
            # Task boundary: an unforeseen failure must not leave the kiosk on "issuing". The
            # request stays in the journal, so a ticket the hub did issue gets cancelled.
            _LOGGER.exception("ticket request %s failed", request.key)
            if self.model.pending == request:
                self.model.issue_refused(T["issue_failed"], self.monotonic())

    async def _issue_ticket(self, request: IssueRequest) -> None:
        """Check the printer, get the ticket acknowledged, print it (or show it), settle."""
        self._journal.save(request)
        view = await self._check_printer()
        if not view.can_print and self.settings.fallback == "refuse":
            self._journal.clear(request.key)
            self.model.issue_refused(T["printer_refuse"], self.monotonic())
            return
        try:
            ticket = await self._send(request)
        except QcallApiError as err:
            self._journal.clear(request.key)
            message = Text(err.message_text, err.message_text)
            self.model.issue_refused(
                message, self.monotonic(), retry_code=request.case_code is not None
            )
            return
        except QcallConnectionError:
            # Left in the journal: settled (and cancelled) once the hub answers again.
            self.model.hub_lost()
            self.model.issue_refused(T["issue_failed"], self.monotonic())
            return
        printed, problem = (
            await self._print(ticket, request) if view.can_print else (False, view.problem)
        )
        self._journal.clear(request.key)
        service = self.model.catalog.service(ticket["service"]) if self.model.catalog else None
        result = IssueResult(
            number=ticket["number"],
            service=service.name if service else Text(ticket["service"], ticket["service"]),
            ahead=ticket["ahead"],
            estimated_wait_s=ticket["estimated_wait_s"],
            track_url=ticket.get("track_url", ""),
            printed=printed,
            problem=problem,
        )
        self.results.append(result)
        self.model.issued(result, self.monotonic())

    async def _settle_pending(self) -> None:
        """Settle requests left unanswered (hub down, kiosk restart): nobody got those tickets."""
        while True:
            for request in self._journal.pending():
                if request == self.model.pending:
                    continue  # still being issued
                if not await self._settle(request):
                    break  # the hub is still away
            await asyncio.sleep(self.settings.hub_retry_s)

    async def _settle(self, request: IssueRequest) -> bool:
        """Fetch the request's ticket with its key and cancel it; False while the hub is away."""
        client = self._require_client()
        try:
            ticket = await client.issue_ticket(
                request.service,
                priority=request.priority,
                channel="kiosk",
                case_code=request.case_code,
                idempotency_key=request.key,
            )
            await client.cancel_tracked(ticket["track_token"])
            _LOGGER.info("cancelled ticket %s that no resident received", ticket["number"])
        except QcallConnectionError:
            return False
        except QcallApiError as err:
            _LOGGER.info("pending request %s settled by the hub: %s", request.key, err)
        self._journal.clear(request.key)
        return True

    # --- the printer --------------------------------------------------------------------------

    def _require_printer(self) -> TicketPrinter:
        if self._printer is None:
            raise RuntimeError("the kiosk is not running")
        return self._printer

    async def _check_printer(self) -> PrinterView:
        """Read the printer's status now; update the screen and tell the hub on a change."""
        printer = self._require_printer()
        if not printer.supports_status:
            view = PrinterView()
        else:
            try:
                view = _view(await printer.status())
            except PrinterStatusUnsupported:  # e.g. a USB printer without a way back
                view = PrinterView()
            except DeviceError as err:
                view = PrinterView(False, _short(err.message_zh, err.message_en))
        self.model.printer_changed(view)
        await self._report(view)
        return view

    async def _printer_loop(self) -> None:
        """Re-read the printer's status while idle, so paper end and its repair are noticed."""
        while True:
            if not self.model.pending:
                try:
                    await self._check_printer()
                except Exception:  # the next poll tries again
                    _LOGGER.exception("printer status check failed")
            await asyncio.sleep(self.settings.printer_poll_s)

    async def _report(self, view: PrinterView) -> None:
        """Report the printer's state to the hub when it changed (retried on the next poll)."""
        state: DeviceReport = (
            "offline" if not view.can_print else "attention" if view.problem else "ready"
        )
        detail = f"{view.problem.zh} / {view.problem.en}" if view.problem else ""
        if self._reported == (state, detail):
            return
        try:
            await self._require_client().report_device(PRINTER_DEVICE, state, detail)
        except QcallError as err:
            _LOGGER.debug("printer state not reported yet: %s", err)
            return
        self._reported = (state, detail)

    async def _print(self, ticket: IssuedTicket, request: IssueRequest) -> tuple[bool, Text | None]:
        catalog = self.model.catalog
        service = catalog.service(ticket["service"]) if catalog else None
        job = TicketPrint(
            center_zh=catalog.center.zh if catalog else "",
            center_en=catalog.center.en if catalog else "",
            service_zh=service.name.zh if service else ticket["service"],
            service_en=service.name.en if service else ticket["service"],
            number=ticket["number"],
            ahead=ticket["ahead"],
            estimated_wait_s=ticket["estimated_wait_s"],
            issued_at=dt.datetime.fromisoformat(ticket["issued_at"]),
            track_url=ticket.get("track_url", ""),
            materials=service.notice.materials if service and not request.case_code else (),
            priority=request.priority,
            rules=catalog.rules if catalog else (),
        )
        try:
            result = await self._require_printer().print_ticket(job)
        except PrinterNotReady as err:
            view = _view(err.printer_status)
            self.model.printer_changed(view)
            await self._report(view)
            return False, view.problem
        except DeviceError as err:
            view = PrinterView(False, _short(err.message_zh, err.message_en))
            self.model.printer_changed(view)
            await self._report(view)
            return False, view.problem
        view = _view(result.status) if result.status is not None else PrinterView()
        self.model.printer_changed(view)
        await self._report(view)
        return True, None


def _short(zh: str, en: str) -> Text:
    """Return the part a resident needs ("缺纸"), not the technician's instruction."""
    zh_part = zh.split("：", 1)[0].rsplit("——", 1)[-1]
    en_part = en.split(":", 1)[0].rsplit(" — ", 1)[-1]
    return Text(zh_part, en_part)


def _view(status: PrinterStatus) -> PrinterView:
    problems = status.problems()
    if not problems:
        return PrinterView()
    zh = "；".join(p.message_zh.split("：", 1)[0] for p in problems)
    en = "; ".join(p.message_en.split(":", 1)[0] for p in problems)
    return PrinterView(status.can_print, Text(zh, en))


# --- command line -----------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, not {text!r}") from err
    if not (640 <= width <= 7680 and 480 <= height <= 7680):
        raise argparse.ArgumentTypeError(f"size out of range: {text!r}")
    return width, height


def build_parser() -> argparse.ArgumentParser:
    """Return the ``qcall kiosk`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="qcall kiosk", description="取号机 / touchscreen ticket kiosk (a client of the hub)"
    )
    parser.add_argument("--hub", required=True, help="hub URL, e.g. http://10.0.0.2:8080")
    parser.add_argument(
        "--token",
        default=os.environ.get("QCALL_KIOSK_TOKEN"),
        help="kiosk token from 'qcall token create --role kiosk' (or $QCALL_KIOSK_TOKEN)",
    )
    parser.add_argument(
        "--printer", required=True, help="tcp://host:9100, serial device path, file:, usb:"
    )
    parser.add_argument("--fullscreen", action="store_true")
    parser.add_argument("--size", type=_size, default=(1080, 1920), help="WxH (default 1080x1920)")
    parser.add_argument("--screenshot", type=Path, help="write a PNG after every visible change")
    parser.add_argument("--scene", type=Path, help="rewrite the screen's elements as JSON")
    parser.add_argument(
        "--when-printer-fails",
        choices=["show", "refuse"],
        default="show",
        help="show the ticket on screen (default) or refuse tickets while the printer can't print",
    )
    parser.add_argument("--paper", type=int, choices=[58, 80], default=80)
    parser.add_argument(
        "--printer-model",
        default=DEFAULT_MODEL,
        help="python-escpos profile of the printer (e.g. TM-T88III; default: generic)",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path("var/kiosk"), help="pending request, caches"
    )
    parser.add_argument("--log-level", default="info", help="debug|info|warning|error")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``qcall kiosk``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    if not args.token:
        parser.error("--token (or $QCALL_KIOSK_TOKEN) is required / 需要令牌")
    try:
        TicketPrinter("kiosk", args.printer, paper=args.paper)
    except PrinterUrlError as err:
        parser.error(f"--printer: {err.message_zh} / {err.message_en}")
    except ValueError as err:
        parser.error(f"--printer: {err}")
    try:  # before the window opens: an unknown model is a configuration error
        EscposCommands(args.printer_model, PAPER_DOTS[args.paper], args.state_dir / "escpos")
    except EscposUnavailable as err:
        parser.error(f"--printer-model: {err.message_zh} / {err.message_en}")
    settings = KioskSettings(
        hub=args.hub,
        token=args.token,
        printer=args.printer,
        size=cast(tuple[int, int], args.size),
        fullscreen=args.fullscreen,
        screenshot_dir=args.screenshot,
        scene_file=args.scene,
        fallback=cast(Fallback, args.when_printer_fails),
        state_dir=args.state_dir,
        paper=args.paper,
        printer_model=args.printer_model,
    )
    return asyncio.run(_run(settings))


async def _run(settings: KioskSettings) -> int:
    kiosk = Kiosk(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, kiosk.stop)
    await kiosk.run()
    return 0


__all__ = ["Kiosk", "KioskSettings", "Screen", "build_parser", "main"]
