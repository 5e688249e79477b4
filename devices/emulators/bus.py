"""QBus emulator: virtual displays, keypads and rating pads on TCP or a pty, scriptable."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import signal
import sys
import tty
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from devices.qbus.frames import (
    ALL_LINES,
    BROADCAST,
    DEFAULT_RATING_TIMEOUT_S,
    MASTER,
    POLL_MAX_EVENTS,
    POLL_MAX_PAYLOAD,
    Brightness,
    BusEvent,
    Charset,
    Colour,
    Command,
    DeviceKind,
    Effect,
    EventKind,
    FinishOutcome,
    Frame,
    FrameDecoder,
    IdentReply,
    KeypadLcd,
    PayloadError,
    PingFlag,
    PingReply,
    PollAny,
    PollEvents,
    PollReply,
    QueryText,
    RatingStart,
    SetAddress,
    SetIdleText,
    ShowCall,
    ShownText,
    ShowText,
    Status,
    TransferPosition,
    TransferTarget,
    crc16,
)
from devices.qbus.protocol import INTER_FRAME_CHARS, MIN_GAP_S, StreamFramer

_LOGGER = logging.getLogger(__name__)

# One flash is 0.5 s on and 0.5 s off (PROTOCOL.md, SHOW_CALL).
FLASH_PERIOD_S: Final = 1.0
# The FIFO capacity PROTOCOL.md asks of a device.
EVENT_FIFO_SIZE: Final = 32
# Bursts of changes (a poll cycle, a call) become one state-file write.
STATE_WRITE_DELAY_S: Final = 0.02
# A "late" reply arrives after the master's default 100 ms reply timeout has passed.
DEFAULT_LATE_S: Final = 0.3
# Connection handlers end within milliseconds of their socket closing; don't hang stop().
STOP_TIMEOUT_S: Final = 2.0
# Default size of an injected noise burst.
DEFAULT_NOISE_BYTES: Final = 16
# Keypad LCD size and display size reported by IDENT.
DISPLAY_COLUMNS: Final = 16
DISPLAY_LINES: Final = 2
KEYPAD_COLUMNS: Final = 16
KEYPAD_LINES: Final = 2
# Serial numbers of virtual devices: a recognisable prefix plus the initial address.
SERIAL_BASE: Final = 0x51420000

_MODELS: Final = {
    DeviceKind.COUNTER_DISPLAY: "QB-D16",
    DeviceKind.KEYPAD: "QB-K16",
    DeviceKind.RATING_PAD: "QB-R5",
}
_KIND_NAMES: Final = {
    "display": DeviceKind.COUNTER_DISPLAY,
    "counter_display": DeviceKind.COUNTER_DISPLAY,
    "keypad": DeviceKind.KEYPAD,
    "rating": DeviceKind.RATING_PAD,
    "rating_pad": DeviceKind.RATING_PAD,
}


class EmulatorError(ValueError):
    """A scripted action cannot be applied (unknown address, wrong device kind, bad value)."""


class Fault(StrEnum):
    """Faults that can be injected per address."""

    NO_REPLY = "no_reply"
    LATE_REPLY = "late_reply"
    BAD_CRC = "bad_crc"
    TRUNCATE = "truncate"
    NOISE = "noise"
    BUSY = "busy"
    POWER_CYCLE = "power_cycle"
    UNPLUG = "unplug"
    PLUG = "plug"
    CLEAR = "clear"


_COUNTED_FAULTS: Final = frozenset(
    {Fault.NO_REPLY, Fault.LATE_REPLY, Fault.BAD_CRC, Fault.TRUNCATE, Fault.NOISE, Fault.BUSY}
)


# --- virtual devices ----------------------------------------------------------------------


_BOOT_REPLIES: Final = frozenset({Command.IDENT, Command.PING, Command.POLL_EVENTS})


class VirtualDevice:
    """A device on the bus: answers requests addressed to it, caches its last reply."""

    kind: DeviceKind = DeviceKind.COUNTER_DISPLAY
    columns = 0
    lines = 0

    def __init__(self, address: int, on_change: Callable[[], None]) -> None:
        self.address = address
        self.serial = SERIAL_BASE + address
        self.boot = 1
        self.plugged = True
        # PROTOCOL.md §6 POLL_ANY: set at power-up, cleared by a reply that carries the boot.
        self.restarted = True
        self._on_change = on_change
        self._last: tuple[int, int, bytes] | None = None
        self._after_reply: Callable[[], None] | None = None

    def handle(self, frame: Frame) -> bytes | None:
        """Execute a request; return the reply payload (None for broadcasts)."""
        broadcast = frame.dst == BROADCAST
        crc = crc16(frame.to_bytes()[2:-2])
        if not broadcast and self._last is not None and self._last[:2] == (frame.seq, crc):
            return self._last[2]
        try:
            payload = self.execute(frame.cmd, frame.payload, broadcast=broadcast)
        except PayloadError as err:
            payload = bytes((err.status,))
        if broadcast:
            action = self.take_after_reply()
            if action is not None:
                action()
            return None
        self._last = (frame.seq, crc, payload)
        return payload

    def take_after_reply(self) -> Callable[[], None] | None:
        """Return (and forget) the action to run once the reply is on its way."""
        action, self._after_reply = self._after_reply, None
        return action

    def execute(self, cmd: int, payload: bytes, *, broadcast: bool) -> bytes:
        """Run one command; return the reply payload."""
        if not broadcast and cmd in _BOOT_REPLIES and self.restarted:
            self.restarted = False
            self._on_change()
        if cmd == Command.IDENT:
            return IdentReply(
                self.kind,
                _MODELS[self.kind],
                (1, 0),
                self.columns,
                self.lines,
                Charset.ASCII | Charset.GB2312,
                self.boot,
                self.serial,
            ).to_payload()
        if cmd == Command.PING:
            return PingReply(self.boot, self.ping_flags(), self.pending()).to_payload()
        if cmd == Command.POLL_EVENTS:
            return self.poll(PollEvents.from_payload(payload)).to_payload()
        if cmd == Command.SET_ADDRESS:
            request = SetAddress.from_payload(payload)
            if request.serial != self.serial:
                return bytes((Status.BAD_PAYLOAD,))
            self._after_reply = lambda: self._readdress(request.address)
            return _ok()
        if cmd == Command.RESET:
            self._after_reply = self.power_cycle
            return _ok()
        return self.execute_kind(cmd, payload)

    def execute_kind(self, cmd: int, payload: bytes) -> bytes:
        """Run a kind-specific command; unknown ones are answered 02."""
        return bytes((Status.UNKNOWN_COMMAND,))

    def ping_flags(self) -> PingFlag:
        """Return the PING flags."""
        return PingFlag.NONE

    def pending(self) -> int:
        """Return how many events are queued."""
        return 0

    def poll(self, request: PollEvents) -> PollReply:
        """Answer POLL_EVENTS (devices without events have none)."""
        return PollReply(self.boot)

    def power_cycle(self) -> None:
        """Lose volatile state; the boot counter increments."""
        self.boot = (self.boot + 1) & 0xFF
        self.restarted = True
        self._last = None
        self._on_change()

    def view(self) -> dict[str, Any]:
        """Return the JSON-ready state of the device."""
        return {
            "kind": self.kind.role,
            "address": self.address,
            "serial": self.serial,
            "boot": self.boot,
            "plugged": self.plugged,
            "restarted": self.restarted,
        }

    def _readdress(self, address: int) -> None:
        self.address = address
        self._on_change()


class VirtualDisplay(VirtualDevice):
    """A counter display with a GB2312 font, two lines of 16 cells."""

    kind = DeviceKind.COUNTER_DISPLAY
    columns = DISPLAY_COLUMNS
    lines = DISPLAY_LINES

    def __init__(self, address: int, on_change: Callable[[], None]) -> None:
        super().__init__(address, on_change)
        self.idle_text = ""
        self.brightness = 15
        self.mode = "idle"
        self.shown_lines: tuple[str, ...] = ()
        self.ticket: str | None = None
        self.window: int | None = None
        self.flash = 0
        self.flashing = False
        self.effect = Effect.STATIC
        self.colour = Colour.RED
        self._flash_timer: asyncio.TimerHandle | None = None

    def execute_kind(self, cmd: int, payload: bytes) -> bytes:
        """Run display commands."""
        if cmd == Command.SHOW_TEXT:
            text = ShowText.from_payload(payload)
            if text.line == ALL_LINES:
                self._show("text", text.text.split("\n"))
            elif text.line < self.lines:
                lines = list(self.shown_lines) + [""] * (self.lines - len(self.shown_lines))
                lines[text.line] = text.text
                self._show("text", lines)
            else:
                raise PayloadError(f"no line {text.line}", f"没有第 {text.line} 行")
            self.effect, self.colour = text.effect, text.colour
        elif cmd == Command.SHOW_CALL:
            call = ShowCall.from_payload(payload)
            self._show("call", [f"请{call.ticket}号", f"到{call.window}号窗口"])
            self.ticket, self.window, self.flash = call.ticket, call.window, call.flash
            self.flashing = call.flash > 0
            if self.flashing:
                loop = asyncio.get_running_loop()
                self._flash_timer = loop.call_later(call.flash * FLASH_PERIOD_S, self._flash_done)
        elif cmd == Command.CLEAR:
            self._blank()
        elif cmd == Command.BRIGHTNESS:
            self.brightness = Brightness.from_payload(payload).level
        elif cmd == Command.SET_IDLE_TEXT:
            self.idle_text = SetIdleText.from_payload(payload).text
            if self.mode == "idle":
                self._blank()
        elif cmd == Command.QUERY_TEXT:
            return self.query(QueryText.from_payload(payload).line).to_payload()
        else:
            return bytes((Status.UNKNOWN_COMMAND,))
        self._on_change()
        return _ok()

    def query(self, line: int) -> ShownText:
        """Answer QUERY_TEXT: the text of ``line`` (or every line) as ``view()`` reports it."""
        if line == ALL_LINES:
            text = "\n".join(self.shown_lines)
        elif line < self.lines:
            text = self.shown_lines[line] if line < len(self.shown_lines) else ""
        else:
            raise PayloadError(f"no line {line}", f"没有第 {line} 行")
        effect = Effect.BLINK if self.flashing else self.effect
        return ShownText(_fit(text, ShownText.max_text), effect, self.colour)

    def ping_flags(self) -> PingFlag:
        """Report IDLE while the idle text is shown."""
        return PingFlag.IDLE if self.mode == "idle" else PingFlag.NONE

    def power_cycle(self) -> None:
        """Back to the (persisted) idle text at full brightness."""
        self.brightness = 15
        self._blank()
        super().power_cycle()

    def view(self) -> dict[str, Any]:
        """Return what the display shows."""
        return {
            **super().view(),
            "mode": self.mode,
            "text": "\n".join(self.shown_lines),
            "lines": list(self.shown_lines),
            "ticket": self.ticket,
            "window": self.window,
            "flash": self.flash,
            "flashing": self.flashing,
            "effect": self.effect.name.lower(),
            "colour": self.colour.name.lower(),
            "brightness": self.brightness,
            "idle_text": self.idle_text,
        }

    def _show(self, mode: str, lines: list[str]) -> None:
        if self._flash_timer is not None:
            self._flash_timer.cancel()
            self._flash_timer = None
        self.mode = mode
        self.shown_lines = tuple(lines)
        self.ticket = None
        self.window = None
        self.flash = 0
        self.flashing = False
        self.effect = Effect.STATIC
        self.colour = Colour.RED

    def _blank(self) -> None:
        self._show("idle", self.idle_text.split("\n") if self.idle_text else [])

    def _flash_done(self) -> None:
        self._flash_timer = None
        self.flashing = False
        self._on_change()


class _EventSource(VirtualDevice):
    """A device with an event FIFO acknowledged through POLL_EVENTS."""

    def __init__(self, address: int, on_change: Callable[[], None]) -> None:
        super().__init__(address, on_change)
        self.fifo: collections.deque[BusEvent] = collections.deque()
        self._event_seq = 0

    def queue(self, code: int, **fields: Any) -> BusEvent:
        """Append an event to the FIFO; raise EmulatorError when full or malformed."""
        if len(self.fifo) >= EVENT_FIFO_SIZE:
            raise EmulatorError(f"event FIFO of address {self.address} is full / 事件队列已满")
        seq = self._event_seq % 255 + 1
        event = BusEvent(seq, code, **fields)
        try:
            event.to_record()
        except ValueError as err:
            raise EmulatorError(str(err)) from err
        self._event_seq = seq
        self.fifo.append(event)
        self._on_change()
        return event

    def ping_flags(self) -> PingFlag:
        """Report pending events."""
        return PingFlag.EVENTS_PENDING if self.fifo else PingFlag.NONE

    def pending(self) -> int:
        """Return the FIFO length."""
        return len(self.fifo)

    def poll(self, request: PollEvents) -> PollReply:
        """Drop acknowledged events, answer the oldest ones."""
        if request.ack_boot == self.boot and request.ack_upto:
            seqs = [event.seq for event in self.fifo]
            if request.ack_upto in seqs:
                for _ in range(seqs.index(request.ack_upto) + 1):
                    self.fifo.popleft()
                self._on_change()
        batch: list[BusEvent] = []
        size = 4
        for event in self.fifo:
            record = len(event.to_record())
            if len(batch) == POLL_MAX_EVENTS or size + record > POLL_MAX_PAYLOAD:
                break
            batch.append(event)
            size += record
        return PollReply(self.boot, len(self.fifo) - len(batch), tuple(batch))

    def power_cycle(self) -> None:
        """Lose the FIFO; numbering restarts at 1."""
        self.fifo.clear()
        self._event_seq = 0
        super().power_cycle()

    def view(self) -> dict[str, Any]:
        """Return the queue state."""
        return {**super().view(), "queued": len(self.fifo)}


class VirtualKeypad(_EventSource):
    """A caller keypad with a two-line LCD."""

    kind = DeviceKind.KEYPAD
    columns = KEYPAD_COLUMNS
    lines = KEYPAD_LINES

    def __init__(self, address: int, on_change: Callable[[], None]) -> None:
        super().__init__(address, on_change)
        self.lcd = ""

    def execute_kind(self, cmd: int, payload: bytes) -> bytes:
        """Run keypad commands."""
        if cmd == Command.KEYPAD_LCD:
            self.lcd = KeypadLcd.from_payload(payload).text
        elif cmd == Command.CLEAR:
            self.lcd = ""
        else:
            return bytes((Status.UNKNOWN_COMMAND,))
        self._on_change()
        return _ok()

    def power_cycle(self) -> None:
        """Blank LCD."""
        self.lcd = ""
        super().power_cycle()

    def view(self) -> dict[str, Any]:
        """Return the LCD text and queue state."""
        return {**super().view(), "lcd": self.lcd}


class VirtualRatingPad(_EventSource):
    """A rating pad: RATING_START opens a session that ends with a score or a timeout."""

    kind = DeviceKind.RATING_PAD

    def __init__(self, address: int, on_change: Callable[[], None]) -> None:
        super().__init__(address, on_change)
        self.session: RatingStart | None = None
        self._timer: asyncio.TimerHandle | None = None

    def execute_kind(self, cmd: int, payload: bytes) -> bytes:
        """Run rating pad commands."""
        if cmd == Command.RATING_START:
            request = RatingStart.from_payload(payload)
            self._end_session()
            self.session = request
            timeout = request.timeout_s or DEFAULT_RATING_TIMEOUT_S
            self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)
        elif cmd == Command.CLEAR:
            self._end_session()
        else:
            return bytes((Status.UNKNOWN_COMMAND,))
        self._on_change()
        return _ok()

    def rate(self, score: int | None) -> BusEvent:
        """Queue RATING (or RATING_TIMEOUT for None) for the running session's ticket."""
        ticket = self.session.ticket if self.session else ""
        if score is None:
            event = self.queue(EventKind.RATING_TIMEOUT, ticket=ticket)
        else:
            event = self.queue(EventKind.RATING, score=score, ticket=ticket)
        self._end_session()
        self._on_change()
        return event

    def power_cycle(self) -> None:
        """The session is lost without an event."""
        self._end_session()
        super().power_cycle()

    def view(self) -> dict[str, Any]:
        """Return the session and queue state."""
        session = None
        if self.session is not None:
            session = {"ticket": self.session.ticket, "timeout_s": self.session.timeout_s}
        return {**super().view(), "session": session}

    def _end_session(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.session = None

    def _timed_out(self) -> None:
        self._timer = None
        with contextlib.suppress(EmulatorError):
            self.rate(None)


_DEVICE_CLASSES: Final[dict[DeviceKind, type[VirtualDevice]]] = {
    DeviceKind.COUNTER_DISPLAY: VirtualDisplay,
    DeviceKind.KEYPAD: VirtualKeypad,
    DeviceKind.RATING_PAD: VirtualRatingPad,
}


def _ok() -> bytes:
    return bytes((Status.OK,))


def _fit(text: str, max_bytes: int) -> str:
    """Cut ``text`` after the last whole character whose encoding fits in ``max_bytes``."""
    encoding = "ascii" if text.isascii() else "gb2312"
    while len(text.encode(encoding)) > max_bytes:
        text = text[:-1]
    return text


# --- ports ----------------------------------------------------------------------------------


class _Port:
    """One connection to the bus (a TCP client or the pty), paced at the baud rate."""

    def __init__(
        self,
        emulator: BusEmulator,
        write: Callable[[bytes], None],
        name: str,
    ) -> None:
        self.name = name
        self._emulator = emulator
        self._write = write
        self._char = emulator.char_time
        self._framer = StreamFramer(
            FrameDecoder(), max(INTER_FRAME_CHARS * self._char, MIN_GAP_S), self._on_frame
        )
        self._rx_free_at = 0.0
        self._rx_done = 0.0
        self._tx_free_at = 0.0
        self._outbox: collections.deque[tuple[float, bytes]] = collections.deque()
        self._sent = 0
        self._pump_handle: asyncio.TimerHandle | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self.closed = False

    def feed(self, data: bytes) -> None:
        """Bytes from the master: they are complete when they would be off the wire."""
        now = asyncio.get_running_loop().time()
        self._rx_free_at = max(now, self._rx_free_at) + len(data) * self._char
        self._rx_done = self._rx_free_at
        self._framer.feed(data)

    def send(self, data: bytes, not_before: float) -> None:
        """Queue bytes to the master, paced at the baud rate, starting at ``not_before``."""
        if self.closed or not data:
            return
        start = max(not_before, self._tx_free_at)
        self._tx_free_at = start + len(data) * self._char
        self._outbox.append((start, data))
        self._schedule_pump(start + self._char)

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` at loop time ``when`` unless the port closes first."""
        handle: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(handle)
            callback()

        handle = asyncio.get_running_loop().call_at(when, run)
        self._timers.add(handle)

    def close(self) -> None:
        """Stop timers and drop unsent bytes."""
        self.closed = True
        self._framer.close()
        for handle in [*self._timers, self._pump_handle]:
            if handle is not None:
                handle.cancel()
        self._timers.clear()
        self._outbox.clear()

    def _on_frame(self, frame: Frame) -> None:
        done = self._rx_done
        self.call_at(done, lambda: self._emulator.on_request(self, frame, done))

    def _schedule_pump(self, at: float) -> None:
        if self._pump_handle is None:
            self._pump_handle = asyncio.get_running_loop().call_at(at, self._pump)

    def _pump(self) -> None:
        # A byte is handed to the master when its stop bit would have arrived.
        self._pump_handle = None
        now = asyncio.get_running_loop().time()
        while self._outbox:
            start, data = self._outbox[0]
            done = min(len(data), int((now - start) / self._char + 1e-6))
            if done > self._sent:
                self._write(data[self._sent : done])
                self._sent = done
            if self._sent < len(data):
                self._schedule_pump(start + (self._sent + 1) * self._char)
                return
            self._outbox.popleft()
            self._sent = 0


# --- the emulator ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Faults:
    counts: collections.Counter[Fault]
    late_s: float = DEFAULT_LATE_S
    noise_bytes: int = DEFAULT_NOISE_BYTES


class BusEmulator:
    """Virtual QBus devices behind TCP (and optionally a pty), with scripting and faults."""

    def __init__(
        self,
        kinds: Mapping[int, DeviceKind],
        *,
        baud: int = 9600,
        host: str = "127.0.0.1",
        port: int = 0,
        pty: bool = False,
        state_file: str | Path | None = None,
        control: tuple[str, int] | None = None,
    ) -> None:
        self.baud = baud
        self.char_time = 10 / baud
        self._host, self._port = host, port
        self._want_pty = pty
        self._state_file = Path(state_file) if state_file is not None else None
        self._control_at = control
        self._devices: dict[int, VirtualDevice] = {
            address: _DEVICE_CLASSES[kind](address, self._changed)
            for address, kind in sorted(kinds.items())
        }
        self._faults: dict[int, _Faults] = collections.defaultdict(
            lambda: _Faults(collections.Counter())
        )
        self._ports: set[_Port] = set()
        self._listeners: list[Callable[[Frame, float], None]] = []
        self._changes = asyncio.Event()
        self._state_timer: asyncio.TimerHandle | None = None
        self._server: asyncio.Server | None = None
        self._control: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._pty: tuple[int, int] | None = None
        self._pty_port: _Port | None = None
        self._random = random.Random(0x51)  # noqa: S311 - reproducible noise, not crypto
        self.url = ""
        self.pty_path: str | None = None
        self.control_address: tuple[str, int] | None = None
        self.frames_received = 0

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving; ``url``, ``pty_path`` and ``control_address`` are set afterwards."""
        self._server = await asyncio.start_server(self._serve_bus, self._host, self._port)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.url = f"socket://{host}:{port}"
        if self._want_pty:
            self._open_pty()
        if self._control_at is not None:
            self._control = await asyncio.start_server(self._serve_control, *self._control_at)
            self.control_address = self._control.sockets[0].getsockname()[:2]
        self._write_state()

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        for server in (self._server, self._control):
            if server is not None:
                server.close()
        for writer in list(self._writers):
            writer.close()
        for port in list(self._ports):
            port.close()
        self._close_pty()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=STOP_TIMEOUT_S)
        for server in (self._server, self._control):
            if server is not None:
                await server.wait_closed()
        self._server = self._control = None
        if self._state_timer is not None:
            self._state_timer.cancel()
            self._state_timer = None
            self._write_state()

    # --- scripting ------------------------------------------------------------------------

    def press(
        self,
        address: int,
        kind: EventKind,
        *,
        ticket: str = "",
        staff: str = "",
        pin: str = "",
        transfer: TransferTarget | None = None,
        outcome: FinishOutcome | None = None,
    ) -> int:
        """Queue a key press on the keypad at ``address``; return its event_seq."""
        device = self._device(address)
        if not isinstance(device, VirtualKeypad):
            raise EmulatorError(f"address {address} is not a keypad / 地址 {address} 不是呼叫器")
        fields: dict[str, Any] = {"ticket": ticket, "staff": staff, "pin": pin}
        if transfer is not None:
            fields["transfer"] = transfer
        if outcome is not None:
            fields["outcome"] = outcome
        return device.queue(kind, **fields).seq

    def rating(self, address: int, score: int | None) -> int:
        """Rate on the pad at ``address`` (None: let the session time out); return event_seq."""
        device = self._device(address)
        if not isinstance(device, VirtualRatingPad):
            raise EmulatorError(
                f"address {address} is not a rating pad / 地址 {address} 不是评价器"
            )
        return device.rate(score).seq

    def fault(
        self,
        address: int,
        kind: Fault | str,
        count: int = 1,
        *,
        late_s: float = DEFAULT_LATE_S,
        noise_bytes: int = DEFAULT_NOISE_BYTES,
    ) -> None:
        """Inject a fault at ``address`` (counted faults apply to its next ``count`` replies)."""
        try:
            fault = Fault(kind)
        except ValueError:
            raise EmulatorError(f"unknown fault {kind!r} / 未知故障类型") from None
        device = self._device(address)
        faults = self._faults[address]
        if fault in _COUNTED_FAULTS:
            faults.counts[fault] += count
            faults.late_s, faults.noise_bytes = late_s, noise_bytes
        elif fault is Fault.POWER_CYCLE:
            device.power_cycle()
        elif fault is Fault.UNPLUG:
            device.plugged = False
        elif fault is Fault.PLUG:
            device.plugged = True
        else:
            faults.counts.clear()
            device.plugged = True
        self._changed()

    def shown(self, address: int) -> dict[str, Any]:
        """Return the state of the device at ``address`` (display text, LCD, queue …)."""
        return self._device(address).view()

    def state(self) -> dict[str, Any]:
        """Return the state of every device, as written to the state file."""
        return {
            "url": self.url,
            "pty": self.pty_path,
            "baud": self.baud,
            "devices": {str(a): d.view() for a, d in sorted(self._devices.items())},
        }

    def subscribe(self, listener: Callable[[Frame, float], None]) -> Callable[[], None]:
        """Call ``listener(frame, loop_time)`` when a frame from the master is fully received."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Wait until ``predicate()`` holds; raise TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changes.clear()
                await self._changes.wait()

    # --- bus side -------------------------------------------------------------------------

    def on_request(self, port: _Port, frame: Frame, received_at: float) -> None:
        """Handle a frame from the master that was fully on the wire at ``received_at``."""
        self.frames_received += 1
        # One shared line: every other connection (a second master) hears this frame too.
        for other in list(self._ports):
            if other is not port:
                other.send(frame.to_bytes(), received_at)
        for listener in list(self._listeners):
            listener(frame, received_at)
        if frame.src != MASTER or frame.is_reply:
            return
        if frame.dst == BROADCAST:
            for each in list(self._devices.values()):
                if each.plugged:
                    each.handle(frame)
            self._rekey()
            if frame.cmd == Command.POLL_ANY:
                self._attention(port, frame, received_at)
            return
        device = self._devices.get(frame.dst)
        if device is None or not device.plugged:
            return
        faults = self._faults[frame.dst]
        if self._take(faults, Fault.BUSY):
            payload: bytes | None = bytes((Status.BUSY,))
        else:
            payload = device.handle(frame)
        after = device.take_after_reply()
        if payload is not None:
            self._reply(port, frame, payload, faults, received_at)
        if after is not None:
            after()
            self._rekey()

    def _attention(self, port: _Port, frame: Frame, received_at: float) -> None:
        # Every listed device with unacknowledged events, or restarted and not yet asked, sends
        # its address in its slot; an unplugged device, or one whose next reply is to be lost,
        # stays silent.
        try:
            request = PollAny.from_payload(frame.payload)
        except PayloadError:
            return
        for slot, address in enumerate(request.addresses):
            device = self._devices.get(address)
            if (
                device is None
                or not device.plugged
                or not (device.pending() or device.restarted)
                or self._faults[address].counts[Fault.NO_REPLY] > 0
            ):
                continue
            self._line(bytes((address,)), received_at + slot * request.slot_chars * self.char_time)

    def _reply(
        self, port: _Port, frame: Frame, payload: bytes, faults: _Faults, received_at: float
    ) -> None:
        data = frame.make_reply(payload).to_bytes()
        start = received_at + INTER_FRAME_CHARS * self.char_time
        if self._take(faults, Fault.NOISE):
            noise = bytes(self._random.randrange(256) for _ in range(faults.noise_bytes))
            self._line(noise, start)
        if self._take(faults, Fault.NO_REPLY):
            return
        if self._take(faults, Fault.BAD_CRC):
            data = data[:-1] + bytes((data[-1] ^ 0xFF,))
        if self._take(faults, Fault.TRUNCATE):
            data = data[: len(data) // 2]
        if self._take(faults, Fault.LATE_REPLY):
            start += faults.late_s
        self._line(data, start)

    def _line(self, data: bytes, start: float) -> None:
        """Put device bytes on the line: every connection hears them."""
        for port in list(self._ports):
            port.send(data, start)

    @staticmethod
    def _take(faults: _Faults, fault: Fault) -> bool:
        if faults.counts[fault] <= 0:
            return False
        faults.counts[fault] -= 1
        return True

    def _rekey(self) -> None:
        if any(address != device.address for address, device in self._devices.items()):
            self._devices = {device.address: device for device in self._devices.values()}
            self._changed()

    def _device(self, address: int) -> VirtualDevice:
        device = self._devices.get(address)
        if device is None:
            raise EmulatorError(f"no device at address {address} / 地址 {address} 没有设备")
        return device

    async def _serve_bus(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = _Port(self, writer.write, f"tcp:{writer.get_extra_info('peername')}")
        self._ports.add(port)
        async with self._connection(writer):
            while data := await reader.read(4096):
                port.feed(data)
        port.close()
        self._ports.discard(port)

    @contextlib.asynccontextmanager
    async def _connection(self, writer: asyncio.StreamWriter) -> AsyncIterator[None]:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            with contextlib.suppress(ConnectionError):
                yield
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _open_pty(self) -> None:
        master_fd, slave_fd = os.openpty()
        tty.setraw(slave_fd)
        os.set_blocking(master_fd, False)
        self._pty = (master_fd, slave_fd)
        self.pty_path = os.ttyname(slave_fd)
        self._pty_port = _Port(self, self._pty_write, f"pty:{self.pty_path}")
        self._ports.add(self._pty_port)
        asyncio.get_running_loop().add_reader(master_fd, self._pty_readable)

    def _pty_readable(self) -> None:
        assert self._pty is not None
        assert self._pty_port is not None
        try:
            data = os.read(self._pty[0], 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            _LOGGER.warning("pty read failed, pty closed: %s", err)
            asyncio.get_running_loop().remove_reader(self._pty[0])
            return
        self._pty_port.feed(data)

    def _pty_write(self, data: bytes) -> None:
        if self._pty is None:
            return
        try:
            os.write(self._pty[0], data)
        except OSError as err:
            _LOGGER.debug("pty write dropped %d bytes: %s", len(data), err)

    def _close_pty(self) -> None:
        if self._pty is None:
            return
        asyncio.get_running_loop().remove_reader(self._pty[0])
        for fd in self._pty:
            os.close(fd)
        self._pty = None

    # --- state file -----------------------------------------------------------------------

    def _changed(self) -> None:
        self._changes.set()
        if self._state_file is not None and self._state_timer is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
                self._state_timer = loop.call_later(STATE_WRITE_DELAY_S, self._write_state)

    def _write_state(self) -> None:
        self._state_timer = None
        if self._state_file is None:
            return
        tmp = self._state_file.with_name(self._state_file.name + ".tmp")
        tmp.write_text(json.dumps(self.state(), ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(self._state_file)

    # --- control port ---------------------------------------------------------------------

    async def _serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async with self._connection(writer):
            while line := await reader.readline():
                writer.write(json.dumps(self.control(line), ensure_ascii=False).encode() + b"\n")
                await writer.drain()

    def control(self, line: bytes | str) -> dict[str, Any]:
        """Run one control command (a JSON object); return ``{"ok": …, "result"|"error": …}``."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise EmulatorError("a command is a JSON object / 命令须为 JSON 对象")
            return {"ok": True, "result": self._command(request)}
        except (EmulatorError, ValueError, KeyError, TypeError) as err:
            return {"ok": False, "error": str(err)}

    def _command(self, request: dict[str, Any]) -> Any:
        name = request.get("cmd")
        if name == "help":
            return CONTROL_HELP
        if name == "state":
            return self.state()
        address = int(request["addr"])
        if name == "shown":
            return self.shown(address)
        if name == "press":
            event = str(request["event"]).upper()
            try:
                kind = EventKind["NO_SHOW" if event == "SKIP" else event]
            except KeyError:
                raise EmulatorError(f"unknown event {event.lower()!r} / 未知按键事件") from None
            transfer = None
            if kind is EventKind.TRANSFER:
                position = TransferPosition[str(request.get("position", "last")).upper()]
                window = request.get("window")
                choice = request.get("choice")
                transfer = TransferTarget(
                    service_prefix=request.get("service"),
                    window=None if window is None else int(window),
                    position=position,
                    choice=None if choice is None else int(choice),
                )
            outcome = None
            if kind is EventKind.FINISH:
                outcome = FinishOutcome[str(request.get("outcome", "done")).upper()]
            return self.press(
                address,
                kind,
                ticket=str(request.get("ticket", "")),
                staff=str(request.get("staff", "")),
                pin=str(request.get("pin", "")),
                transfer=transfer,
                outcome=outcome,
            )
        if name == "rating":
            score = request.get("score")
            return self.rating(address, None if score is None else int(score))
        if name == "fault":
            self.fault(
                address,
                str(request["kind"]),
                int(request.get("count", 1)),
                late_s=float(request.get("late_ms", DEFAULT_LATE_S * 1000)) / 1000,
                noise_bytes=int(request.get("bytes", DEFAULT_NOISE_BYTES)),
            )
            return None
        raise EmulatorError(f'unknown command {name!r} / 未知命令 (try {{"cmd": "help"}})')


CONTROL_HELP: Final = """\
control port / 控制端口: one JSON object per line, one JSON answer per line
  {"cmd": "press", "addr": 5, "event": "next"}            key press / 按键
      events: next recall no_show(skip) hold pause resume logout
              finish (+ "outcome": "done"|"back_office")
              callback|call_specific (+ "ticket": "A012")
              transfer (+ "service": "B" [+ "choice": 2] or "window": 4,
                        "position": "first"|"last")
              login (+ "staff": "s01", "pin": "1234")
  {"cmd": "rating", "addr": 9, "score": 5}                 rating 1-5, null = timeout / 评价
  {"cmd": "fault", "addr": 3, "kind": "no_reply", "count": 2}
      kinds: no_reply late_reply(+"late_ms") bad_crc truncate noise(+"bytes") busy
             power_cycle unplug plug clear                 fault injection / 故障注入
  {"cmd": "shown", "addr": 3}                              what a device shows / 显示内容
  {"cmd": "state"}                                         every device / 全部设备
answers: {"ok": true, "result": ...} or {"ok": false, "error": "..."}
"""


# --- command line ---------------------------------------------------------------------------


def parse_addresses(text: str) -> list[int]:
    """Parse ``1-8,10,12-14`` into addresses 1-127; raise ValueError (bilingual)."""
    addresses: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"bad address range {part!r} / 地址范围无效") from None
        if not 1 <= first <= last <= 127:
            raise ValueError(f"addresses must be 1-127: {part!r} / 地址须在 1–127 之间")
        addresses.extend(range(first, last + 1))
    return addresses


def parse_kinds(text: str | None, addresses: Iterable[int]) -> dict[int, DeviceKind]:
    """Map addresses to kinds from ``1-4=display,5-8=keypad``; unlisted ones are displays."""
    kinds = dict.fromkeys(addresses, DeviceKind.COUNTER_DISPLAY)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        span, _, name = part.partition("=")
        kind = _KIND_NAMES.get(name.strip().lower())
        if kind is None:
            raise ValueError(
                f"unknown kind {name!r} (display, keypad, rating) / 未知设备类型 {name!r}"
            )
        for address in parse_addresses(span):
            if address not in kinds:
                raise ValueError(
                    f"--kinds names address {address} not in --addresses / 地址不在列表中"
                )
            kinds[address] = kind
    return kinds


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT / 应为 主机:端口，got {text!r}")
    return host, int(port)


def build_parser(prog: str = "qcall emulate bus") -> argparse.ArgumentParser:
    """Return the argument parser of the bus emulator."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "QBus bus emulator: virtual counter displays, keypads and rating pads. "
            "QBus 总线模拟器：模拟窗口屏、呼叫器和评价器。"
        ),
        epilog=CONTROL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen",
        type=_host_port,
        required=True,
        metavar="HOST:PORT",
        help="serve the bus on TCP (socket://HOST:PORT) / 在 TCP 上提供总线",
    )
    parser.add_argument(
        "--addresses",
        required=True,
        help="device addresses, e.g. 1-8,10 / 设备地址，如 1-8,10",
    )
    parser.add_argument(
        "--baud", type=int, default=9600, help="byte pacing (default 9600) / 波特率（默认 9600）"
    )
    parser.add_argument(
        "--state", metavar="FILE", help="keep a JSON state file up to date / 实时写入状态文件"
    )
    parser.add_argument(
        "--pty", action="store_true", help="also serve a pty and print its path / 同时提供 pty"
    )
    parser.add_argument(
        "--control",
        type=_host_port,
        metavar="HOST:PORT",
        help="line-based JSON control port (see below) / JSON 控制端口（见下文）",
    )
    parser.add_argument(
        "--kinds",
        help=(
            "address ranges to kinds, e.g. 1-4=display,5-8=keypad,9=rating; others are displays"
            " / 地址对应设备类型，未列出的为窗口屏"
        ),
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the bus emulator until interrupted; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        kinds = parse_kinds(args.kinds, parse_addresses(args.addresses))
    except ValueError as err:
        parser.error(str(err))
    if args.baud < 300:
        parser.error("--baud must be at least 300 / 波特率至少为 300")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    emulator = BusEmulator(
        kinds,
        baud=args.baud,
        host=args.listen[0],
        port=args.listen[1],
        pty=args.pty,
        state_file=args.state,
        control=args.control,
    )

    async def serve() -> None:
        # Our own handlers: a job started in the background by a shell inherits SIGINT ignored,
        # and a KeyboardInterrupt could land anywhere, even inside stop().
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await emulator.start()
        print(f"bus / 总线: {emulator.url}", flush=True)  # noqa: T201 - CLI output
        if emulator.pty_path:
            print(f"pty: {emulator.pty_path}", flush=True)  # noqa: T201 - CLI output
        if emulator.control_address:
            host, port = emulator.control_address
            print(f"control / 控制端口: {host}:{port}", flush=True)  # noqa: T201 - CLI output
        summary = ", ".join(f"{a}={k.role}" for a, k in kinds.items())
        print(f"devices / 设备: {summary}", flush=True)  # noqa: T201 - CLI output
        try:
            await stop.wait()
        finally:
            await emulator.stop()

    try:
        asyncio.run(serve())
    except OSError as err:
        print(f"cannot start / 无法启动: {err}", file=sys.stderr)  # noqa: T201 - CLI output
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
