"""The QBus bus master: one task owns the port; writes, polling and per-device liveness."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from devices.base import Device, DeviceState, ProbeResult, StateCallback
from devices.qbus.frames import (
    ALL_LINES,
    BROADCAST,
    DEFAULT_RATING_TIMEOUT_S,
    DEFAULT_SLOT_CHARS,
    MASTER,
    Brightness,
    BusEvent,
    Colour,
    Command,
    CommandRejected,
    DecoderStats,
    DeviceKind,
    Effect,
    Frame,
    IdentReply,
    KeypadLcd,
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
    max_reply_size,
    reply_status,
)
from devices.qbus.protocol import MIN_GAP_S, LinkStats, QBusProtocol, char_time
from devices.supervisor import DeviceSupervisor, SupervisorPolicy, describe
from devices.transport import OPEN_TIMEOUT_S, open_connection, parse_url
from qcall.config import Bus, WindowDevices
from qcall.errors import DeviceError, DeviceProtocolError, DeviceTimeout, DeviceUnavailable

_LOGGER = logging.getLogger(__name__)

# An offline device gets one PING this often: a returning display is found well before the
# next call, and even 20 offline devices cost under 3 % of the bus at 9600.
REPROBE_INTERVAL_S: Final = 2.0
# Displays are otherwise only written on calls (whose replies prove them alive too); a ping every
# 15 s tells staff a display is dead within a quarter minute, and keeps the bus free for calls:
# each ping holds the line ~25 ms at 9600, time a call would have to wait.
IDLE_PING_INTERVAL_S: Final = 15.0
# A busy device is writing flash (tens of ms); 50 ms avoids hammering it.
BUSY_RETRY_DELAY_S: Final = 0.05
# Events waiting in one events() stream; a consumer this far behind is broken (logged, dropped).
EVENT_QUEUE_SIZE: Final = 1024
# Displays are listed in a POLL_ANY this often (the restart sweep, PROTOCOL.md §6): a display
# that was power-cycled at an idle window gets its content back as fast as one that went
# offline, for ~70 ms of line time per 2 s with 10 displays at 9600.
RESTART_SWEEP_INTERVAL_S: Final = REPROBE_INTERVAL_S
# Another master on the line (a self-test, a second hub) is over when none of its frames was
# heard for this long: longer than any pause between its requests (a self-test waits up to a
# few seconds between devices), short enough to repaint soon after it ends.
FOREIGN_MASTER_QUIET_S: Final = 10.0
# Default flash count of a call on a counter display (3 s of flashing).
DEFAULT_FLASH: Final = 3
# After the POLL_ANY slots the master listens this much longer: attention bytes come through
# the same USB adapters (bursts up to ~16 ms apart) as replies do.
ATTENTION_MARGIN_S: Final = MIN_GAP_S
# Keypads and rating pads: what group polling (POLL_ANY) covers.
_EVENT_SOURCES: Final = frozenset({DeviceKind.KEYPAD, DeviceKind.RATING_PAD})

EventCallback = Callable[[int, BusEvent], None]
"""``on_event(address, event)`` for every key press or rating, exactly once."""

_ONLY_FOR: Final[dict[Command, frozenset[DeviceKind]]] = {
    Command.SHOW_TEXT: frozenset({DeviceKind.COUNTER_DISPLAY}),
    Command.SHOW_CALL: frozenset({DeviceKind.COUNTER_DISPLAY}),
    Command.BRIGHTNESS: frozenset({DeviceKind.COUNTER_DISPLAY}),
    Command.SET_IDLE_TEXT: frozenset({DeviceKind.COUNTER_DISPLAY}),
    Command.KEYPAD_LCD: frozenset({DeviceKind.KEYPAD}),
    Command.RATING_START: frozenset({DeviceKind.RATING_PAD}),
    Command.QUERY_TEXT: frozenset({DeviceKind.COUNTER_DISPLAY}),
}


@dataclass(frozen=True, slots=True)
class BusTiming:
    """Master timing beyond the ``Bus`` config (defaults are the module constants)."""

    reprobe_interval_s: float = REPROBE_INTERVAL_S
    idle_ping_interval_s: float = IDLE_PING_INTERVAL_S
    busy_retry_delay_s: float = BUSY_RETRY_DELAY_S
    slot_chars: int = DEFAULT_SLOT_CHARS
    attention_margin_s: float = ATTENTION_MARGIN_S
    restart_sweep_interval_s: float = RESTART_SWEEP_INTERVAL_S
    foreign_master_quiet_s: float = FOREIGN_MASTER_QUIET_S
    # Listen this long after the port opens before the first frame (0: talk at once), and with
    # ``stand_down`` never transmit when another master was heard meanwhile (the self-test).
    listen_before_s: float = 0.0
    stand_down: bool = False


@dataclass(frozen=True, slots=True)
class AddressedEvent:
    """An event together with the bus address and kind of the device that queued it."""

    address: int
    kind: DeviceKind
    event: BusEvent


def device_name(bus: str, kind: DeviceKind, address: int) -> str:
    """Return the ``on_state`` name of a bus device, e.g. ``bus:counter_display@3``."""
    return f"{bus}:{kind.role}@{address}"


def kinds_from_windows(windows: Iterable[WindowDevices]) -> dict[int, DeviceKind]:
    """Return address → kind for every device configured on the windows."""
    kinds: dict[int, DeviceKind] = {}
    for devices in windows:
        for kind in DeviceKind:
            address = getattr(devices, kind.role)
            if address is not None:
                kinds[address] = kind
    return kinds


@dataclass(slots=True)
class _Node:
    """What the master knows about one bus address."""

    address: int
    kind: DeviceKind
    name: str
    state: DeviceState = DeviceState.DISCONNECTED
    seq: int = field(default_factory=lambda: random.randrange(256))  # noqa: S311
    due: float = 0.0
    poll_due: float = 0.0
    boot: int | None = None
    acked: int = 0
    ident: IdentReply | None = None
    last_error: str = ""
    last_reply_at: float | None = None
    content: dict[str, tuple[Command, bytes]] = field(default_factory=dict)
    timeouts: int = 0
    events: int = 0
    # The display answered a restart sweep: its next PING reply restores it, even when its boot
    # counter was not known before (it came online through a write, which carries no boot).
    restart_heard: bool = False

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFF
        return self.seq


@dataclass(slots=True)
class _Job:
    node: _Node
    command: Command
    payload: bytes
    future: asyncio.Future[Any] | None
    parse: Callable[[Frame], Any]
    fail_if_offline: bool = False
    attempts: int | None = None
    # What the write sets on the device ("screen", "line0", "lcd", ...); None for the rest.
    slot: str | None = None


@dataclass(frozen=True, slots=True)
class _GroupPoll:
    """One POLL_ANY: the event sources' cycle, or the displays' restart sweep."""

    nodes: list[_Node]
    sweep: bool = False


@dataclass(slots=True)
class _Counters:
    timeouts: int = 0
    retries: int = 0
    busy: int = 0
    rejected: int = 0
    events_delivered: int = 0
    duplicate_events: int = 0
    bad_replies: int = 0
    poll_any_cycles: int = 0
    attention_polls: int = 0
    restart_sweeps: int = 0
    sweeps_cut_short: int = 0
    restarts_signalled: int = 0


class EventStream:
    """An async iterator over bus events, registered from creation; ``close()`` when done."""

    def __init__(self, master: BusMaster) -> None:
        self._master = master
        self._queue: asyncio.Queue[AddressedEvent] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._unsubscribe = master.subscribe(self._put)

    def __aiter__(self) -> AsyncIterator[AddressedEvent]:
        return self

    async def __anext__(self) -> AddressedEvent:
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving events."""
        self._unsubscribe()

    def _put(self, event: AddressedEvent) -> None:
        if self._queue.full():
            _LOGGER.error("event stream full: dropped %s from %d", event.event, event.address)
            return
        self._queue.put_nowait(event)


class BusMaster(Device):
    """Drive one QBus line; call from the event loop only."""

    # One task owns the port. Writes go first; keypads and rating pads are polled in between
    # and acknowledged only after their events were handed on, so no press is lost or
    # repeated. Write methods return a future the caller may await or drop: failures are
    # logged, and what a device should show is sent again when it answers again.

    def __init__(
        self,
        config: Bus,
        devices: Mapping[int, DeviceKind],
        *,
        name: str = "bus",
        on_event: EventCallback | None = None,
        on_state: StateCallback | None = None,
        timing: BusTiming | None = None,
        policy: SupervisorPolicy | None = None,
    ) -> None:
        parse_url(config.url)
        self.name = name
        self.config = config
        self._timing = timing or BusTiming()
        self._on_state = on_state
        self._char_time = char_time(config.baud, config.parity)
        self._nodes = {
            address: _Node(address, kind, device_name(name, kind, address))
            for address, kind in sorted(devices.items())
        }
        self._subscribers: list[Callable[[AddressedEvent], None]] = []
        if on_event is not None:
            self.subscribe(lambda item: on_event(item.address, item.event))
        self._calls: collections.deque[_Job] = collections.deque()
        self._urgent: collections.deque[_Job] = collections.deque()
        # Group polling: event sources that signalled in the last POLL_ANY, in slot order.
        self._signalled: collections.deque[_Node] = collections.deque()
        self._broadcast_seq = random.randrange(256)  # noqa: S311
        self._sweep_due = 0.0
        # Another master heard on the line: when (loop time) its last frame came, and the timer
        # that ends the episode after FOREIGN_MASTER_QUIET_S of silence.
        self._foreign_at: float | None = None
        self._foreign_quiet: asyncio.TimerHandle | None = None
        self._foreign_episodes = 0
        self._listened = asyncio.Event()
        # Set when a call is queued during a restart sweep: the sweep stops listening at once.
        self._sweep_interrupt: asyncio.Event | None = None
        self._wakeup = asyncio.Event()
        self._protocol: QBusProtocol | None = None
        self._owner: asyncio.Task[None] | None = None
        self._link_stats = LinkStats()
        self._decoder_stats = DecoderStats()
        self._counters = _Counters()
        self._supervisor = DeviceSupervisor(name, _Port(self), on_state=on_state, policy=policy)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the port in the background; it is reopened whenever it fails."""
        await self._supervisor.start()

    async def stop(self) -> None:
        """Close the port and stop."""
        await self._supervisor.stop()

    @property
    def state(self) -> DeviceState:
        """Return the state of the port."""
        return self._supervisor.state

    @property
    def line_name(self) -> str:
        """Return the ``on_state`` name of the line itself (``bus:line``), for line alarms."""
        return f"{self.name}:line"

    @property
    def foreign_master(self) -> bool:
        """Return whether another master is being heard on the line now."""
        return self._foreign_quiet is not None

    async def wait_listened(self) -> bool:
        """Wait until the listen-before-talk period ended; return whether the line was free."""
        await self._listened.wait()
        return self._foreign_episodes == 0

    def device_kind(self, address: int) -> DeviceKind:
        """Return the configured kind of the device at ``address``."""
        return self._node(address).kind

    def device_state(self, address: int) -> DeviceState:
        """Return the state of the device at ``address``."""
        return self._node(address).state

    # --- events ---------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[AddressedEvent], None]) -> Callable[[], None]:
        """Call ``callback`` for every event; return the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def events(self) -> EventStream:
        """Return an async iterator of events, registered now."""
        return EventStream(self)

    # --- writes ---------------------------------------------------------------------------

    def show_call(
        self, address: int, ticket: str, window: int, flash: int = DEFAULT_FLASH
    ) -> asyncio.Future[None]:
        """Show ``ticket`` called to ``window`` on a counter display, flashing ``flash`` times."""
        payload = ShowCall(ticket, window, flash).to_payload()
        restore = ShowCall(ticket, window, 0).to_payload()
        return self._write(address, Command.SHOW_CALL, payload, "screen", restore)

    def show_text(
        self,
        address: int,
        text: str,
        *,
        line: int = ALL_LINES,
        effect: Effect = Effect.STATIC,
        colour: Colour = Colour.RED,
    ) -> asyncio.Future[None]:
        """Show text on a counter display; raise TextEncodingError (outside GB2312) at once."""
        payload = ShowText(text, line, effect, colour).to_payload()
        slot = "screen" if line == ALL_LINES else f"line{line}"
        return self._write(address, Command.SHOW_TEXT, payload, slot, payload)

    def clear(self, address: int) -> asyncio.Future[None]:
        """Return a device to idle (display idle text, blank LCD, rating session ended)."""
        node = self._node(address)
        slot = {DeviceKind.COUNTER_DISPLAY: "screen", DeviceKind.KEYPAD: "lcd"}.get(node.kind)
        return self._write(address, Command.CLEAR, b"", slot, b"")

    def brightness(self, address: int, level: int) -> asyncio.Future[None]:
        """Set a counter display's brightness, 0-15."""
        payload = Brightness(level).to_payload()
        return self._write(address, Command.BRIGHTNESS, payload, "brightness", payload)

    def set_idle_text(self, address: int, text: str) -> asyncio.Future[None]:
        """Store the idle text of a counter display (persisted by the device)."""
        payload = SetIdleText(text).to_payload()
        return self._write(address, Command.SET_IDLE_TEXT, payload, None, b"")

    def keypad_lcd(self, address: int, text: str) -> asyncio.Future[None]:
        """Show text on a keypad's LCD (lines separated by newlines)."""
        payload = KeypadLcd(text).to_payload()
        return self._write(address, Command.KEYPAD_LCD, payload, "lcd", payload)

    def rating_start(
        self, address: int, ticket: str, timeout_s: int = DEFAULT_RATING_TIMEOUT_S
    ) -> asyncio.Future[None]:
        """Ask the resident at a rating pad to rate the service of ``ticket``."""
        payload = RatingStart(ticket, timeout_s).to_payload()
        return self._write(address, Command.RATING_START, payload, None, b"")

    # --- queries --------------------------------------------------------------------------

    async def ident(self, address: int) -> IdentReply:
        """Ask the device at ``address`` what it is."""
        reply: IdentReply = await self._submit(self._node(address), Command.IDENT, _parse_ident)
        return reply

    async def ping(self, address: int) -> PingReply:
        """Ping the device at ``address``."""
        reply: PingReply = await self._submit(self._node(address), Command.PING, _parse_ping)
        return reply

    async def query_text(self, address: int, line: int = ALL_LINES) -> ShownText:
        """Read back what the counter display at ``address`` shows (one line or every line)."""
        node = self._node(address)
        _check_kind(node, Command.QUERY_TEXT)
        payload = QueryText(line).to_payload()
        reply: ShownText = await self._submit(node, Command.QUERY_TEXT, _parse_shown, payload)
        return reply

    async def reset(self, address: int) -> None:
        """Restart the device at ``address`` (its content is restored afterwards)."""
        await self._submit(self._node(address), Command.RESET, _no_result)

    async def set_address(self, serial: int, address: int) -> None:
        """Broadcast SET_ADDRESS: the device with ``serial`` takes ``address`` (commissioning)."""
        payload = SetAddress(serial, address).to_payload()
        protocol = self._protocol
        if protocol is None or not protocol.is_open:
            raise _port_down(self.name)
        await protocol.send(Frame(BROADCAST, MASTER, 0, Command.SET_ADDRESS, payload))

    # --- diagnostics ----------------------------------------------------------------------

    def diagnostics(self) -> dict[str, Any]:
        """Return the port state, last error, counters and every device's state."""
        now = asyncio.get_running_loop().time()
        counters = {
            "frames_tx": self._link_stats.frames_tx,
            "frames_rx": self._link_stats.frames_rx,
            "crc_errors": self._decoder_stats.crc_errors,
            "bad_headers": self._decoder_stats.bad_headers,
            "discarded_bytes": self._decoder_stats.discarded_bytes,
            "stray_frames": self._link_stats.stray_frames,
            "echo_frames": self._link_stats.echo_frames,
            "foreign_frames": self._link_stats.foreign_frames,
            "timeouts": self._counters.timeouts,
            "retries": self._counters.retries,
            "busy": self._counters.busy,
            "rejected": self._counters.rejected,
            "bad_replies": self._counters.bad_replies,
            "events_delivered": self._counters.events_delivered,
            "duplicate_events": self._counters.duplicate_events,
            "poll_any_cycles": self._counters.poll_any_cycles,
            "attention_bytes": self._link_stats.attention_bytes,
            "attention_polls": self._counters.attention_polls,
            "restart_sweeps": self._counters.restart_sweeps,
            "sweeps_cut_short": self._counters.sweeps_cut_short,
            "restarts_signalled": self._counters.restarts_signalled,
            "reconnects": self._supervisor.reconnects,
        }
        devices = {}
        for node in self._nodes.values():
            ident = node.ident
            devices[str(node.address)] = {
                "name": node.name,
                "kind": node.kind.role,
                "state": str(node.state),
                "last_error": node.last_error,
                "seconds_since_reply": (
                    None if node.last_reply_at is None else round(now - node.last_reply_at, 3)
                ),
                "boot": node.boot,
                "timeouts": node.timeouts,
                "events": node.events,
                "model": ident.model if ident else None,
                "firmware": f"{ident.firmware[0]}.{ident.firmware[1]}" if ident else None,
                "serial": ident.serial if ident else None,
            }
        return {
            "name": self.name,
            "url": self.config.url,
            "baud": self.config.baud,
            **self._supervisor.diagnostics(),
            "foreign_master": {
                "now": self.foreign_master,
                "episodes": self._foreign_episodes,
                "seconds_since_frame": (
                    None if self._foreign_at is None else round(now - self._foreign_at, 3)
                ),
            },
            "counters": counters,
            "devices": devices,
        }

    async def probe(self) -> list[ProbeResult]:
        """Check the port and IDENT every configured device (with retries)."""
        if self._protocol is None or not self._protocol.is_open:
            detail = (
                f"port {self.config.url} is not open ({self._supervisor.last_error}); check the "
                f"cable/adapter and the url / 端口未打开，请检查串口线、转换器和配置的地址"
            )
            return [ProbeResult(self.name, False, detail)] + [
                ProbeResult(node.name, False, "bus port down / 总线端口未打开")
                for node in self._nodes.values()
            ]
        results = [ProbeResult(self.name, True, f"port {self.config.url} open / 端口已打开")]
        for node in self._nodes.values():
            try:
                ident = await self.ident(node.address)
            except DeviceError as err:
                results.append(
                    ProbeResult(
                        node.name,
                        False,
                        f"{describe(err)}; check power, A/B wiring and address "
                        f"{node.address} / 请检查电源、A/B 接线和地址 {node.address}",
                    )
                )
                continue
            if ident.kind is not node.kind:
                seen = ident.kind.role if ident.kind else f"kind {ident.kind_code}"
                results.append(
                    ProbeResult(
                        node.name,
                        False,
                        f"address {node.address} answers as {seen}, configured as "
                        f"{node.kind.role} / 地址 {node.address} 的设备类型与配置不符",
                    )
                )
                continue
            results.append(
                ProbeResult(
                    node.name,
                    True,
                    f"{ident.model} fw {ident.firmware[0]}.{ident.firmware[1]} "
                    f"serial {ident.serial} / 应答正常",
                )
            )
        return results

    # --- internals: submission ------------------------------------------------------------

    def _node(self, address: int) -> _Node:
        node = self._nodes.get(address)
        if node is None:
            raise ValueError(
                f"no device configured at bus address {address} / 总线地址 {address} 未配置设备"
            )
        return node

    def _write(
        self, address: int, command: Command, payload: bytes, slot: str | None, restore: bytes
    ) -> asyncio.Future[None]:
        node = self._node(address)
        _check_kind(node, command)
        if slot == "screen":
            for key in [key for key in node.content if key.startswith("line")]:
                del node.content[key]
        if slot is not None:
            node.content[slot] = (command, restore)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_mark_retrieved)
        if node.state is DeviceState.OFFLINE or not self._port_open():
            future.set_exception(_port_down(self.name) if not self._port_open() else _offline(node))
            return future
        self._enqueue(_Job(node, command, payload, future, _no_result, True, slot=slot))
        return future

    def _submit(
        self, node: _Node, command: Command, parse: Callable[[Frame], Any], payload: bytes = b""
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._port_open():
            future.set_exception(_port_down(self.name))
            return future
        self._enqueue(_Job(node, command, payload, future, parse))
        return future

    def _enqueue(self, job: _Job) -> None:
        # A call is what residents wait for: it overtakes every other queued write. It never
        # overtakes older content for the same place on the same device, though: a newer write
        # supersedes the queued older one (which then settles with the newer one's result), so
        # what a device shows last is always what was asked for last.
        if job.slot is not None:
            self._supersede(job)
        (self._calls if job.command is Command.SHOW_CALL else self._urgent).append(job)
        if job.command is Command.SHOW_CALL and self._sweep_interrupt is not None:
            self._sweep_interrupt.set()
        self._wakeup.set()

    def _supersede(self, newer: _Job) -> None:
        """Drop queued writes to the place ``newer`` overwrites; chain their futures to it."""
        for queue in (self._calls, self._urgent):
            stale = [job for job in queue if _covers(newer, job)]
            for job in stale:
                queue.remove(job)
                if job.future is None:
                    continue
                if newer.future is None:
                    newer.future = asyncio.get_running_loop().create_future()
                    newer.future.add_done_callback(_mark_retrieved)
                newer.future.add_done_callback(functools.partial(_follow, job.future))

    def _port_open(self) -> bool:
        return self._protocol is not None and self._protocol.is_open

    # --- internals: port lifecycle (called by _Port) --------------------------------------

    def _port_opened(self, protocol: QBusProtocol) -> None:
        self._protocol = protocol
        now = asyncio.get_running_loop().time()
        for node in self._nodes.values():
            node.due = now
            node.poll_due = now
        self._sweep_due = now + self._timing.restart_sweep_interval_s
        self._signalled.clear()
        self._owner = asyncio.create_task(self._run(protocol), name=f"qbus-owner:{self.name}")

    def _port_closed(self, reason: str) -> None:
        self._protocol = None
        if self._foreign_quiet is not None:
            self._foreign_quiet.cancel()
            self._foreign_quiet = None
        self._signalled.clear()
        for queue in (self._calls, self._urgent):
            while queue:
                job = queue.popleft()
                if job.future is not None and not job.future.done():
                    job.future.set_exception(_port_down(self.name))
        for node in self._nodes.values():
            self._set_node_state(node, DeviceState.DISCONNECTED, reason)

    # --- internals: the owner task --------------------------------------------------------

    async def _run(self, protocol: QBusProtocol) -> None:
        try:
            await self._serve(protocol)
        except DeviceUnavailable:
            _LOGGER.debug("%s: owner task ends with the connection", self.name)
        except Exception:
            _LOGGER.exception("%s: bus owner task crashed", self.name)
            raise

    async def _serve(self, protocol: QBusProtocol) -> None:
        loop = asyncio.get_running_loop()
        if self._timing.listen_before_s > 0:
            await asyncio.sleep(self._timing.listen_before_s)
        self._listened.set()
        if self._timing.stand_down and self._foreign_episodes:
            _LOGGER.error("%s: another master holds the line; sending nothing", self.name)
            await protocol.wait_closed()
            return
        while True:
            job = self._next_job(loop.time())
            if isinstance(job, _Job):
                await self._execute(protocol, job)
                continue
            if job is not None:
                await self._poll_group(protocol, job)
                continue
            self._wakeup.clear()
            dues = [node.due for node in self._nodes.values()]
            dues += [node.poll_due for node in self._group()]
            if self._sweep():
                dues.append(self._sweep_due)
            due = min(dues, default=None)
            delay = None if due is None else max(due - loop.time(), 0.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()

    def _next_job(self, now: float) -> _Job | _GroupPoll | None:
        # Calls, other writes, polls of devices that signalled, then whatever is due first:
        # a device's probe or ping (or, one by one, its poll), or the group's POLL_ANY.
        if self._calls:
            return self._calls.popleft()
        if self._urgent:
            return self._urgent.popleft()
        while self._signalled:
            node = self._signalled.popleft()
            if node.state is DeviceState.READY:
                return self._poll_job(node)
        if not self._nodes:
            return None
        node = min(self._nodes.values(), key=lambda n: n.due)
        group = self._group()
        group_due = min((n.poll_due for n in group), default=None)
        sweep = self._sweep()
        # The sweep is due far less often than the group; it goes first when both are due, or
        # a busy group (polled again as soon as a cycle ends) would starve it.
        if sweep and self._sweep_due <= min(now, node.due):
            return _GroupPoll(sweep, sweep=True)
        if group_due is not None and group_due <= min(now, node.due):
            return _GroupPoll(group)
        if node.due > now:
            return None
        if node.state is DeviceState.DISCONNECTED:
            return _Job(node, Command.IDENT, b"", None, _parse_ident, attempts=1)
        if node.state is DeviceState.OFFLINE:
            return _Job(node, Command.PING, b"", None, _parse_ping, attempts=1)
        if node.kind is DeviceKind.COUNTER_DISPLAY or self._grouped(node):
            return _Job(node, Command.PING, b"", None, _parse_ping)
        return self._poll_job(node)

    def _poll_job(self, node: _Node) -> _Job:
        if node.kind not in _EVENT_SOURCES:  # a display that signalled a restart
            return _Job(node, Command.PING, b"", None, _parse_ping)
        ack = PollEvents(node.boot or 0, node.acked).to_payload()
        return _Job(node, Command.POLL_EVENTS, ack, None, _parse_poll)

    def _grouped(self, node: _Node) -> bool:
        """Return whether ``node`` is asked by POLL_ANY rather than polled one by one."""
        return self.config.group_poll and node.kind in _EVENT_SOURCES

    def _group(self) -> list[_Node]:
        """Return the READY keypads and rating pads POLL_ANY covers (empty when it is off)."""
        if not self.config.group_poll:
            return []
        return [
            node
            for node in self._nodes.values()
            if node.kind in _EVENT_SOURCES and node.state is DeviceState.READY
        ]

    def _sweep(self) -> list[_Node]:
        """Return the READY displays the restart sweep lists."""
        return [
            node
            for node in self._nodes.values()
            if node.kind not in _EVENT_SOURCES and node.state is DeviceState.READY
        ]

    async def _poll_group(self, protocol: QBusProtocol, poll: _GroupPoll) -> None:
        """Broadcast POLL_ANY for a group; queue a POLL_EVENTS or PING for each that signalled."""
        group = poll.nodes
        request = PollAny(self._timing.slot_chars, tuple(node.address for node in group))
        self._broadcast_seq = (self._broadcast_seq + 1) & 0xFF
        payload = request.to_payload()
        frame = Frame(BROADCAST, MASTER, self._broadcast_seq, Command.POLL_ANY, payload)
        window = protocol.wire_time(request.window_chars) + self._timing.attention_margin_s
        # Every device is asked at most every poll_interval_ms, counted from the cycle's start.
        due = asyncio.get_running_loop().time() + self.config.poll_interval_ms / 1000
        # A call does not wait for a sweep's listening window: a restarted display (rare) whose
        # attention byte then meets the call frame signals again in the next sweep, and the
        # call is retried like any request that got no reply.
        interrupt = asyncio.Event() if poll.sweep else None
        self._sweep_interrupt = interrupt
        try:
            heard = await protocol.poll_any(frame, window, interrupt)
        finally:
            self._sweep_interrupt = None
        if interrupt is not None and interrupt.is_set():
            self._counters.sweeps_cut_short += 1
        if poll.sweep:
            self._counters.restart_sweeps += 1
            self._sweep_due = (
                asyncio.get_running_loop().time() + self._timing.restart_sweep_interval_s
            )
        else:
            self._counters.poll_any_cycles += 1
            for node in group:
                node.poll_due = due
        signalled = set(heard)
        for node in group:  # slot order
            if node.address in signalled:
                if node.kind in _EVENT_SOURCES:
                    self._counters.attention_polls += 1
                else:
                    self._counters.restarts_signalled += 1
                    node.restart_heard = True
                self._signalled.append(node)
        unknown = signalled.difference(request.addresses)
        if unknown:
            _LOGGER.debug("%s: attention bytes from unlisted addresses %s", self.name, unknown)

    async def _execute(self, protocol: QBusProtocol, job: _Job) -> None:
        node = job.node
        if job.fail_if_offline and node.state is DeviceState.OFFLINE:
            _settle(job.future, error=_offline(node))
            return
        attempts = job.attempts if job.attempts is not None else 1 + self.config.retries
        try:
            reply = await self._transact(protocol, node, job.command, job.payload, attempts)
        except DeviceTimeout as err:
            self._went_silent(node, err)
            _settle(job.future, error=err)
            return
        except DeviceUnavailable as err:
            _settle(job.future, error=err)
            raise
        except DeviceError as err:
            node.last_error = describe(err)
            self._answered(node, None)
            _settle(job.future, error=err)
            return
        status = reply_status(reply.payload)
        if status != Status.OK:
            self._counters.rejected += 1
            error = CommandRejected(node.address, job.command, status)
            node.last_error = describe(error)
            _LOGGER.warning("%s: %s", node.name, error)
            self._answered(node, None)
            _settle(job.future, error=error)
            return
        try:
            result = job.parse(reply)
        except DeviceProtocolError as err:
            self._counters.bad_replies += 1
            node.last_error = describe(err)
            _LOGGER.warning("%s: bad %s reply: %s", node.name, job.command.name, err)
            self._answered(node, None)
            _settle(job.future, error=err)
            return
        boot = result.boot if isinstance(result, PingReply | PollReply | IdentReply) else None
        self._answered(node, boot)
        if isinstance(result, IdentReply):
            self._check_kind(node, result)
        if isinstance(result, PollReply):
            self._take_events(node, result)
        _settle(job.future, result=result)

    async def _transact(
        self, protocol: QBusProtocol, node: _Node, command: Command, payload: bytes, attempts: int
    ) -> Frame:
        frame = Frame(node.address, MASTER, node.next_seq(), command, payload)
        timeout = (
            protocol.wire_time(frame.wire_size)
            + self.config.reply_timeout_ms / 1000
            + protocol.wire_time(max_reply_size(command))
        )
        error: DeviceError | None = None
        for attempt in range(attempts):
            if attempt:
                self._counters.retries += 1
            try:
                reply = await protocol.request(frame, timeout)
            except DeviceTimeout as err:
                self._counters.timeouts += 1
                node.timeouts += 1
                error = err
                _LOGGER.debug("%s: %s (try %d of %d)", node.name, err, attempt + 1, attempts)
                continue
            if reply.payload[:1] == bytes((Status.BUSY,)):
                self._counters.busy += 1
                error = CommandRejected(node.address, command, Status.BUSY)
                await asyncio.sleep(self._timing.busy_retry_delay_s)
                frame = Frame(node.address, MASTER, node.next_seq(), command, payload)
                continue
            if not reply.payload:
                self._counters.bad_replies += 1
                error = DeviceProtocolError("reply without status byte", "应答缺少状态字节")
                continue
            return reply
        if isinstance(error, DeviceTimeout) or error is None:
            raise DeviceTimeout(
                f"{node.name} did not answer {command.name} ({attempts} tries)",
                f"{node.name} 对 {command.name} 无应答（{attempts} 次）",
            )
        raise error

    # --- internals: per-address state -----------------------------------------------------

    def _check_kind(self, node: _Node, ident: IdentReply) -> None:
        node.ident = ident
        if ident.kind is not node.kind:
            _LOGGER.warning(
                "%s answers IDENT as kind %d (%s); check the configuration",
                node.name,
                ident.kind_code,
                ident.kind.role if ident.kind else "unknown",
            )

    def _answered(self, node: _Node, boot: int | None) -> None:
        now = asyncio.get_running_loop().time()
        node.last_reply_at = now
        restore = False
        if node.state is not DeviceState.READY:
            if node.state is DeviceState.OFFLINE:
                _LOGGER.info("%s answers again", node.name)
            self._set_node_state(node, DeviceState.READY, "")
            node.due = now
            node.poll_due = now
            restore = True
        if boot is not None and boot != node.boot:
            if node.boot is not None:
                _LOGGER.info("%s restarted (boot %d -> %d)", node.name, node.boot, boot)
                restore = True
            node.boot = boot
            node.acked = 0
        if boot is not None and node.restart_heard:
            node.restart_heard = False
            if not restore:
                _LOGGER.info("%s signalled a restart (boot %d)", node.name, boot)
            restore = True
        if restore:
            self._restore(node)
        if node.kind is DeviceKind.COUNTER_DISPLAY or self._grouped(node):
            # A device that came online through a write has told us no boot counter yet: PING
            # it soon (at the re-probe pace, so a device whose PING replies are garbled is not
            # hammered), or its first restart would look like first contact.
            timing = self._timing
            unknown = node.boot is None
            node.due = now + (timing.reprobe_interval_s if unknown else timing.idle_ping_interval_s)

    def _went_silent(self, node: _Node, err: DeviceError) -> None:
        node.last_error = describe(err)
        node.due = asyncio.get_running_loop().time() + self._timing.reprobe_interval_s
        if node.state is DeviceState.OFFLINE:
            return
        if node.state is DeviceState.READY:
            _LOGGER.warning("%s stopped answering: %s", node.name, err)
        else:
            _LOGGER.warning("%s does not answer: %s", node.name, err)
        self._set_node_state(node, DeviceState.OFFLINE, describe(err))

    def _take_events(self, node: _Node, poll: PollReply) -> None:
        fresh = False
        for event in poll.events:
            if node.acked and not _seq_after(event.seq, node.acked):
                self._counters.duplicate_events += 1
                _LOGGER.debug("%s: duplicate event %d dropped", node.name, event.seq)
                continue
            node.acked = event.seq
            fresh = True
            node.events += 1
            self._counters.events_delivered += 1
            self._deliver(AddressedEvent(node.address, node.kind, event))
        if self._grouped(node):
            # Poll again at once while events remain, and after new ones to acknowledge them
            # now (the device would otherwise signal again for events already delivered).
            if poll.remaining or fresh:
                self._signalled.appendleft(node)
            return
        now = asyncio.get_running_loop().time()
        node.due = now if poll.remaining else now + self.config.poll_interval_ms / 1000

    def _deliver(self, item: AddressedEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(item)
            except Exception:
                _LOGGER.exception("bus event subscriber failed on %s", item)

    def _heard_foreign(self, frame: Frame) -> None:
        """A frame from the master address that we did not send: another master is on the line."""
        loop = asyncio.get_running_loop()
        self._foreign_at = loop.time()
        first = self._foreign_quiet is None
        if self._foreign_quiet is not None:
            self._foreign_quiet.cancel()
        self._foreign_quiet = loop.call_later(
            self._timing.foreign_master_quiet_s, self._foreign_gone
        )
        if not first:
            return
        self._foreign_episodes += 1
        detail = (
            f"another master on the line (frame to {frame.dst} cmd 0x{frame.cmd:02X}): a "
            "self-test or a second hub rewrites the devices / 总线上还有另一个主站（自检程序或"
            "另一个 hub），正在改写设备内容"
        )
        _LOGGER.error("%s: %s", self.name, detail)
        self._line_state(DeviceState.FAILED, detail)
        self._repaint()

    def _foreign_gone(self) -> None:
        self._foreign_quiet = None
        _LOGGER.warning("%s: the other master is silent; repainting every device", self.name)
        self._line_state(DeviceState.READY, "")
        self._repaint()

    def _repaint(self) -> None:
        """Send every device what it should show (another master may have overwritten it)."""
        if not self._port_open():
            return
        for node in self._nodes.values():
            if node.state is DeviceState.READY:
                self._restore(node)
        self._wakeup.set()

    def _line_state(self, state: DeviceState, detail: str) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state(self.line_name, state, detail)
        except Exception:
            _LOGGER.exception("%s: state callback failed", self.line_name)

    def _restore(self, node: _Node) -> None:
        for slot, (command, payload) in list(node.content.items()):
            self._enqueue(_Job(node, command, payload, None, _no_result, True, slot=slot))

    def _set_node_state(self, node: _Node, state: DeviceState, detail: str) -> None:
        if node.state is state:
            return
        node.state = state
        if self._on_state is None:
            return
        try:
            self._on_state(node.name, state, detail)
        except Exception:
            _LOGGER.exception("%s: state callback failed", node.name)


class _Port:
    """The Link the supervisor keeps open: transport, protocol and the owner task."""

    def __init__(self, master: BusMaster) -> None:
        self._master = master
        self._protocol: QBusProtocol | None = None

    async def open(self) -> None:
        master = self._master
        config = master.config
        _, protocol = await open_connection(
            config.url,
            lambda: QBusProtocol(
                char_time_s=master._char_time,
                stats=master._link_stats,
                decoder_stats=master._decoder_stats,
                on_foreign=master._heard_foreign,
            ),
            baud=config.baud,
            parity=config.parity,
            rs485=config.rs485,
        )
        self._protocol = protocol
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                await protocol.wait_connected()
        except TimeoutError:
            protocol.close()
            raise DeviceTimeout("bus port did not connect", "总线端口未能连接") from None
        master._port_opened(protocol)

    async def wait_closed(self) -> None:
        protocol, owner = self._protocol, self._master._owner
        assert protocol is not None
        assert owner is not None
        closed = asyncio.ensure_future(protocol.wait_closed())
        try:
            await asyncio.wait({closed, owner}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        error = owner.exception() if owner.done() and not owner.cancelled() else None
        if error is not None:
            raise error

    async def check(self) -> None:
        owner = self._master._owner
        if self._protocol is None or not self._protocol.is_open:
            raise _port_down(self._master.name)
        if owner is None or owner.done():
            raise DeviceUnavailable("bus owner task stopped", "总线处理任务已停止")

    async def close(self) -> None:
        master = self._master
        owner, master._owner = master._owner, None
        if owner is not None:
            owner.cancel()
            await asyncio.wait({owner})
            if not owner.cancelled():
                owner.exception()  # a crash was logged by _run; only mark it retrieved
        protocol, self._protocol = self._protocol, None
        if protocol is None:
            return
        try:
            protocol.close()
            await protocol.wait_closed()
        finally:
            master._port_closed("bus port closed / 总线端口已关闭")


def _seq_after(new: int, last: int) -> bool:
    """Return whether event_seq ``new`` comes after ``last`` in the ring 1-255."""
    return 1 <= (new - last) % 255 <= 127


def _covers(newer: _Job, older: _Job) -> bool:
    """Return whether ``newer`` overwrites everything queued ``older`` would show."""
    if older.node is not newer.node or older.slot is None:
        return False
    return older.slot == newer.slot or (newer.slot == "screen" and older.slot.startswith("line"))


def _follow(follower: asyncio.Future[Any], leader: asyncio.Future[Any]) -> None:
    """Settle a superseded write's future like the write that replaced it."""
    if follower.done():
        return
    if leader.cancelled():
        follower.cancel()
    elif leader.exception() is not None:
        follower.set_exception(leader.exception())  # type: ignore[arg-type]
    else:
        follower.set_result(leader.result())


def _no_result(_: Frame) -> None:
    return None


def _parse_ident(reply: Frame) -> IdentReply:
    return IdentReply.from_payload(reply.payload)


def _parse_ping(reply: Frame) -> PingReply:
    return PingReply.from_payload(reply.payload)


def _parse_poll(reply: Frame) -> PollReply:
    return PollReply.from_payload(reply.payload)


def _parse_shown(reply: Frame) -> ShownText:
    return ShownText.from_payload(reply.payload)


def _check_kind(node: _Node, command: Command) -> None:
    allowed = _ONLY_FOR.get(command)
    if allowed is not None and node.kind not in allowed:
        raise ValueError(
            f"{command.name} is not for a {node.kind.role} (address {node.address}) / "
            f"地址 {node.address} 的设备不支持 {command.name}"
        )


def _settle(
    future: asyncio.Future[Any] | None, *, result: Any = None, error: BaseException | None = None
) -> None:
    if future is None or future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _port_down(name: str) -> DeviceUnavailable:
    return DeviceUnavailable(f"{name}: bus port is not open", f"{name}：总线端口未打开")


def _offline(node: _Node) -> DeviceUnavailable:
    return DeviceUnavailable(
        f"{node.name} is offline ({node.last_error})", f"{node.name} 离线（{node.last_error}）"
    )
