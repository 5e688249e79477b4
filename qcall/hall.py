"""The hall's bus devices wired to the engine: calls light displays, keypads act as clerks."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from devices import registry
from devices.registry import (
    BusEvent,
    DeviceKind,
    DeviceState,
    EventKind,
    FinishOutcome,
    PingFlag,
    TransferPosition,
    TransferTarget,
)
from qcall.errors import QcallError
from qcall.events import Event, EventType
from qcall.model import WINDOW_ROLES, Outcome, Position

if TYPE_CHECKING:
    from qcall.config import Service
    from qcall.hub import Hub

_LOGGER = logging.getLogger(__name__)

# Keypad LCDs show the waiting count; it changes with every ticket, so refreshes are coalesced
# to at most one per keypad per interval: an LCD write holds a 9600-baud line ~40 ms, time a
# call to a display would otherwise wait behind.
LCD_REFRESH_INTERVAL_S: Final = 0.5
# Waiting counts change with every ticket issued anywhere; every keypad gets them this often.
LCD_COUNTS_INTERVAL_S: Final = 10.0
# A message on the keypad (an error, "nobody waiting") stays this long before the status line.
LCD_NOTE_S: Final = 4.0
# How long a rating pad waits for the resident's score after a ticket is finished.
RATING_TIMEOUT_S: Final = 30
CALL_FLASH: Final = 3
# Transfer choices listed per keypad LCD line (2 x 16 cells; "1社会" takes 5).
LCD_CHOICES_PER_LINE: Final = 3
PAUSED_TEXT: Final = "暂停服务"
_OUTCOMES: Final = {
    FinishOutcome.DONE: Outcome.DONE,
    FinishOutcome.BACK_OFFICE: Outcome.BACK_OFFICE,
}


@dataclass(frozen=True, slots=True)
class _Window:
    number: int
    display: int | None
    keypad: int | None
    rating_pad: int | None


class Hall:
    """Owns the QBus master and translates between hub events and device traffic."""

    def __init__(self, hub: Hub) -> None:
        bus = hub.config.devices.bus
        assert bus is not None
        self.hub = hub
        self.windows = {
            w.number: _Window(
                w.number, w.devices.counter_display, w.devices.keypad, w.devices.rating_pad
            )
            for w in hub.config.windows
        }
        self._by_input: dict[int, _Window] = {}
        for window in self.windows.values():
            for address in (window.keypad, window.rating_pad):
                if address is not None:
                    self._by_input[address] = window
        self.master = registry.create_bus(
            bus,
            [w.devices for w in hub.config.windows],
            on_event=self._on_bus_event,
            on_state=self._on_device_state,
        )
        self._keys: asyncio.Queue[tuple[int, BusEvent]] = asyncio.Queue()
        self._dirty: set[int] = set()
        self._lcd_sent: dict[int, str] = {}
        self._notes: dict[int, tuple[str, float]] = {}
        # Windows whose clerk pressed PAUSE while serving: they pause once that ticket is done.
        self._pause_after: set[int] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self.key_presses = 0
        self.key_failures = 0

    async def start(self) -> None:
        """Start the bus, show every window's state and begin serving key presses."""
        self._unsubscribe = self.hub.bus.subscribe(self._on_hub_event)
        await self.master.start()
        for window in self.windows.values():
            if window.display is not None:
                self._idle_text(window.display, window.number)
            self._show_window(window.number)
        self._dirty.update(self.windows)
        self.hub.create_task(self._serve_keys(), "hall-keys")
        self.hub.create_task(self._refresh_lcds(), "hall-lcd")

    async def stop(self) -> None:
        """Stop listening and close the bus."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        await self.master.stop()

    def diagnostics(self) -> dict[str, Any]:
        """Bus diagnostics plus key handling counters."""
        return {
            "hall": {"key_presses": self.key_presses, "key_failures": self.key_failures},
            **self.master.diagnostics(),
        }

    async def selftest(self) -> list[dict[str, Any]]:
        """Check every bus device through the hub's own master, changing nothing they show.

        ``qcall selftest --hub`` uses this while the hub holds the line: IDENT (kind, model),
        PING (boot, fault flag) and, for a display, what it shows read back.
        """
        master = self.master
        results: list[dict[str, Any]] = []
        for probe in await master.probe():
            address = int(probe.name.rsplit("@", 1)[1]) if "@" in probe.name else None
            result: dict[str, Any] = {"device": probe.name, "ok": probe.ok, "detail": probe.detail}
            if address is not None and probe.ok:
                try:
                    ping = await master.ping(address)
                    result["boot"] = ping.boot
                    if PingFlag.FAULT in ping.flags:
                        result["ok"] = False
                        result["detail"] += (
                            "; 设备报告硬件故障 / the device reports a hardware fault"
                        )
                    if self.master.device_kind(address) is DeviceKind.COUNTER_DISPLAY:
                        result["shown"] = (await master.query_text(address)).text
                except QcallError as err:
                    result["ok"] = False
                    result["detail"] = f"{err.message_zh} / {err.message_en}"
            results.append(result)
        return results

    # ----------------------------------------------------------------- hub → devices

    def _on_hub_event(self, event: Event) -> None:
        data = event.data
        kind = event.type
        if kind in (EventType.TICKET_CALLED, EventType.TICKET_RECALLED):
            window = self.windows.get(data["window"])
            if window is not None and window.display is not None:
                self._call(window.display, data["number"], window.number, CALL_FLASH)
            self._dirty.add(data["window"])
        elif kind is EventType.TICKET_FINISHED:
            window = self.windows.get(data["window"])
            if window is not None and window.rating_pad is not None:
                pad, ticket = window.rating_pad, data["number"]
                self._fire(lambda: self.master.rating_start(pad, ticket, RATING_TIMEOUT_S))
            if data["window"] in self._pause_after:
                self._pause_when_idle(data["window"])
            self._show_window(data["window"])
            self._dirty.add(data["window"])
        elif kind in (
            EventType.WINDOW_OPENED,
            EventType.WINDOW_CLOSED,
            EventType.WINDOW_PAUSED,
            EventType.WINDOW_RESUMED,
        ):
            self._pause_after.discard(data["window"])
            self._show_window(data["window"])
            self._dirty.add(data["window"])
        elif kind in (EventType.DAY_OPENED, EventType.DAY_CLOSED):
            for number in self.windows:
                self._show_window(number)
            self._dirty.update(self.windows)
        elif kind in (
            EventType.TICKET_TRANSFERRED,
            EventType.TICKET_NO_SHOW,
            EventType.TICKET_HELD,
        ):
            # The ticket left the window: its display and keypad show the window's state now.
            number = data["from_window"] if kind is EventType.TICKET_TRANSFERRED else data["window"]
            if number is not None:  # None: a waiting ticket moved by a supervisor
                self._show_window(number)
                self._dirty.add(number)
            if kind is EventType.TICKET_TRANSFERRED and data.get("window") is not None:
                self._dirty.add(data["window"])

    def _call(self, address: int, ticket: str, number: int, flash: int) -> None:
        self._fire(lambda: self.master.show_call(address, ticket, number, flash))

    def _idle_text(self, address: int, number: int) -> None:
        self._fire(lambda: self.master.set_idle_text(address, f"{number}号窗口"))

    def _show_window(self, number: int) -> None:
        window = self.windows.get(number)
        if window is None or window.display is None:
            return
        address = window.display
        engine = self.hub.engine
        run = engine.windows[number]
        if run.staff is None:
            self._fire(lambda: self.master.clear(address))
        elif run.paused:
            self._fire(lambda: self.master.show_text(address, PAUSED_TEXT))
        elif run.current is not None:
            self._call(address, engine.tickets[run.current].number, number, 0)
        else:
            self._fire(lambda: self.master.show_text(address, f"{number}号窗口 欢迎办理"))

    def _lcd_text(self, number: int) -> str:
        note = self._notes.get(number)
        if note is not None:
            if note[1] > time.monotonic():
                return note[0]
            del self._notes[number]
        engine = self.hub.engine
        run = engine.windows[number]
        if run.staff is None:
            return "请登录 LOGIN"
        if run.paused:
            return PAUSED_TEXT
        waiting = engine.callable_count(number)
        current = engine.tickets[run.current].number if run.current else "----"
        if number in self._pause_after:
            return f"当前{current} 办完暂停"
        return f"当前{current} 等候{waiting}"

    async def _refresh_lcds(self) -> None:
        counts_due = time.monotonic() + LCD_COUNTS_INTERVAL_S
        while True:
            await asyncio.sleep(LCD_REFRESH_INTERVAL_S)
            if time.monotonic() >= counts_due:
                counts_due = time.monotonic() + LCD_COUNTS_INTERVAL_S
                self._dirty.update(self.windows)
            dirty, self._dirty = self._dirty, set()
            dirty.update(self._notes)
            for number in dirty:
                window = self.windows.get(number)
                if window is None or window.keypad is None:
                    continue
                text = self._lcd_text(number)
                if self._lcd_sent.get(window.keypad) != text:
                    self._lcd_sent[window.keypad] = text
                    self._lcd(window.keypad, text)

    def _lcd(self, address: int, text: str) -> None:
        self._fire(lambda: self.master.keypad_lcd(address, text))

    def _note(self, number: int, text: str) -> None:
        self._notes[number] = (text, time.monotonic() + LCD_NOTE_S)
        self._dirty.add(number)

    def _fire(self, write: Callable[[], asyncio.Future[None]]) -> None:
        """Queue a device write; the master logs failures and re-sends on recovery."""
        try:
            future = write()
        except (QcallError, ValueError) as err:
            _LOGGER.warning("device write refused: %s", err)
            return
        future.add_done_callback(_consume)

    def _restore(self, address: int) -> None:
        """A device (re)joined the bus: give it what it should show now."""
        for window in self.windows.values():
            if window.display == address:
                self._idle_text(address, window.number)
                self._show_window(window.number)
            if window.keypad == address:
                self._lcd_sent.pop(address, None)
                self._dirty.add(window.number)

    # ----------------------------------------------------------------- devices → hub

    def _on_device_state(self, name: str, state: DeviceState, detail: str) -> None:
        hub = self.hub
        if state is DeviceState.READY and "@" in name:
            self._restore(int(name.rsplit("@", 1)[1]))

        async def record() -> None:
            await hub.execute(lambda now: hub.engine.device_state(now, name, str(state), detail))

        hub.create_task(record(), f"device-state:{name}")

    def _on_bus_event(self, address: int, event: BusEvent) -> None:
        # Unbounded on purpose: presses arrive at human speed, and the bus acknowledges an
        # event only after this returns, so dropping one here would lose a press.
        self._keys.put_nowait((address, event))

    async def _serve_keys(self) -> None:
        """Handle key presses one at a time, in the order they were pressed."""
        while True:
            address, event = await self._keys.get()
            window = self._by_input.get(address)
            if window is None or event.kind is None or event.error:
                _LOGGER.warning("ignored bus event %r from @%d", event, address)
                continue
            self.key_presses += 1
            try:
                note = await self._act(window, address, event)
            except QcallError as err:
                self.key_failures += 1
                note = err.message_zh.split("\n", 1)[0][:24]
                _LOGGER.info("keypad @%d %s refused: %s", address, event.kind, err.message_en)
            except Exception:
                self.key_failures += 1
                note = "系统错误"
                _LOGGER.exception("keypad @%d %s failed", address, event.kind)
            if note:
                self._note(window.number, note)
            elif self._notes.pop(window.number, None) is not None:
                # A key that did its job replaces an older note (a refusal, a list of choices):
                # the LCD shows the window's new state at once.
                self._dirty.add(window.number)

    async def _act(self, window: _Window, address: int, event: BusEvent) -> str | None:
        """Carry out one key press as the window's clerk; return a note for the LCD."""
        hub = self.hub
        engine = hub.engine
        number = window.number
        kind = event.kind
        if kind is EventKind.RATING:
            await hub.execute(lambda now: engine.rate(now, number, None, event.score))
            return None
        if kind is EventKind.RATING_TIMEOUT:
            _LOGGER.info("window %d: the resident did not rate", number)
            return None
        if address != window.keypad:
            return None
        if kind is EventKind.LOGIN:
            return await self._login(number, address, event.staff, event.pin)
        staff = engine.windows[number].staff
        if staff is None:
            return "请先登录"
        if kind is EventKind.LOGOUT:
            await hub.execute(lambda now: engine.close_window(now, number, staff))
            return "已退出"
        run = engine.windows[number]
        if kind is EventKind.PAUSE and run.current is not None and not run.paused:
            self._pause_after.add(number)
            self._dirty.add(number)
            return None
        if kind is EventKind.RESUME and number in self._pause_after:
            self._pause_after.discard(number)
            self._dirty.add(number)
            return None
        if kind is EventKind.NEXT and number in self._pause_after and run.current is not None:
            return await self._finish_then_pause(number, staff, Outcome.DONE)
        if kind is EventKind.FINISH and event.outcome is not None:
            return await self._finish_then_pause(number, staff, _OUTCOMES[event.outcome])
        if kind is EventKind.TRANSFER and event.transfer is not None:
            choices = self._transfer_choices(number, event.transfer)
            if isinstance(choices, str):
                return choices
        command = self._command(number, staff, event)
        result = await hub.execute(command)
        if kind is EventKind.NEXT and result is None:
            return "无人等候"
        return None

    async def _finish_then_pause(self, number: int, staff: str, outcome: Outcome) -> str | None:
        """Finish the current ticket (a pending pause follows from the finished event)."""
        engine = self.hub.engine
        ticket = await self.hub.execute(lambda now: engine.finish(now, number, staff, outcome))
        return "已转后台" if outcome is Outcome.BACK_OFFICE else f"{ticket.number} 已办结"

    def _pause_when_idle(self, number: int) -> None:
        """The ticket a pause waited for is finished (keypad, web or API): pause the window.

        When the same command already called the next ticket (``next`` from the web), the pause
        stays pending until that one is finished.
        """
        hub = self.hub
        run = hub.engine.windows[number]
        staff = run.staff
        if run.current is not None or run.paused or staff is None:
            return
        self._pause_after.discard(number)

        async def pause() -> None:
            try:
                await hub.execute(lambda now: hub.engine.pause(now, number, staff))
            except QcallError as err:
                _LOGGER.info("window %d: pause after the ticket refused: %s", number, err)

        hub.create_task(pause(), f"pause-after:{number}")

    def _transfer_choices(self, number: int, target: TransferTarget) -> str | None:
        """Return the LCD list when a prefix names several services; None when unambiguous."""
        if target.service_prefix is None or target.choice is not None:
            return None
        services = self._transfer_services(number, target.service_prefix)
        if len(services) < 2:
            return None
        # A keypad LCD has 2 lines of 16 cells: three "1社会" entries (5 cells each) fill one.
        entries = [f"{i}{s.name_zh[:2]}" for i, s in enumerate(services, 1)]
        lines = [
            "".join(entries[i : i + LCD_CHOICES_PER_LINE])
            for i in range(0, len(entries), LCD_CHOICES_PER_LINE)
        ]
        if len(lines) == 1:
            lines.insert(0, f"{target.service_prefix}有{len(services)}项 请选序号")
        return "\n".join(lines)

    def _command(self, number: int, staff: str, event: BusEvent) -> Callable[[dt.datetime], Any]:
        engine = self.hub.engine
        kind = event.kind
        simple: dict[EventKind, Callable[[dt.datetime, int, str], Any]] = {
            EventKind.NEXT: engine.call_next,
            EventKind.RECALL: engine.recall,
            EventKind.NO_SHOW: engine.no_show,
            EventKind.HOLD: engine.hold,
            EventKind.PAUSE: engine.pause,
            EventKind.RESUME: engine.resume,
        }
        if kind in simple:
            command = simple[kind]
            return lambda now: command(now, number, staff)
        if kind is EventKind.CALL_SPECIFIC:
            return lambda now: engine.call_number(now, number, staff, event.ticket)
        if kind is EventKind.CALLBACK:
            held = engine.windows[number].held
            ref = event.ticket or (held[0] if held else "")
            return lambda now: engine.callback(now, number, staff, ref)
        if kind is EventKind.TRANSFER and event.transfer is not None:
            target = event.transfer
            position = (
                Position.FIRST if target.position is TransferPosition.FIRST else Position.LAST
            )
            service = self._service_for_prefix(number, target)
            return lambda now: engine.transfer(
                now,
                number,
                staff,
                service_id=service,
                window_number=target.window,
                position=position,
            )
        raise QcallError(f"unsupported key {kind}", "不支持的按键", code="unsupported_key")

    def _transfer_services(self, number: int, prefix: str) -> list[Service]:
        """Services with ``prefix`` the current ticket may go to, in configuration order."""
        engine = self.hub.engine
        current = engine.windows[number].current
        services = [s for s in self.hub.config.services if s.prefix == prefix]
        if current is None:
            return services
        mine = next(s for s in self.hub.config.services if s.id == engine.tickets[current].service)
        return [s for s in services if s.kind is mine.kind]

    def _service_for_prefix(self, number: int, target: TransferTarget) -> str | None:
        prefix = target.service_prefix
        if prefix is None:
            return None
        services = self._transfer_services(number, prefix)
        if not services:
            raise QcallError(
                f"no service with prefix {prefix}", f"没有前缀为 {prefix} 的业务", code="no_service"
            )
        if target.choice is None:
            if len(services) > 1:  # _act lists them instead
                raise QcallError(
                    f"prefix {prefix} names {len(services)} services",
                    f"前缀 {prefix} 对应多项业务",
                    code="ambiguous_service",
                )
            return services[0].id
        if target.choice > len(services):
            raise QcallError(
                f"prefix {prefix} has {len(services)} services, not {target.choice}",
                f"{prefix} 只有 {len(services)} 项业务",
                code="no_service",
            )
        return services[target.choice - 1].id

    async def _login(self, number: int, address: int, staff_id: str, pin: str) -> str:
        hub = self.hub
        # A keypad trying staff ids is limited like a client address trying them over HTTP.
        member = await hub.authenticate(staff_id, pin, f"keypad@{address}")
        if member.role not in WINDOW_ROLES:
            return "无权限"
        await hub.execute(lambda now: hub.engine.open_window(now, number, member.id))
        return f"{member.name} 已登录"


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
