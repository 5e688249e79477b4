"""The device fault phase of ``qcall simulate --faults``: a few real seconds with real devices.

The simulated day's hub is stopped and a hub serving the API on a free port of 127.0.0.1 is
started on the same database, at the simulated clock's time, with one window's bus devices
(counter display, keypad, rating pad on the real bus emulator over ``socket://``), a kiosk
(the real kiosk program on SDL's dummy driver) printing on the ESC/POS printer emulator, and
a lobby screen (the real lobby screen program, without voice) following the event stream
through a cable this phase can pull. In order:

1. Printer paper end: the emulator's roll runs out; the kiosk reads it from the printer's
   status (``DLE EOT``) and reports it; the hub must mark the kiosk's printer offline with the
   paper-end text, then ready again once the roll is replaced.
2. The lobby screen's cable is pulled: the hub must mark the screen offline (after
   ``SCREEN_OFFLINE_S``). While it is away, the bus faults below happen.
3. Bus faults at the keypad (polled one by one here, so the hub notices at the next poll;
   with the hall's group polling a silent keypad is noticed at its idle ping, up to 15 s
   later, which would only make the phase longer): a silent device, noise on the line (for
   ``NOISE_S``; the master's retries may ride it out) and a pulled plug; each time the hub
   is awaited to mark it offline, the fault is cleared, and the hub is awaited to mark it
   ready again.
4. The screen's cable is plugged back: the hub must mark the screen ready, and the screen
   must catch up with ``after=`` to the hub's last event, every event once and in order.

Then every device must be ready. The simulation goes on with its own hub (devices left out).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from devices.emulators.bus import BusEmulator, Fault
from devices.emulators.printer import PrinterEmulator, PrinterFault
from devices.qbus.frames import DeviceKind
from display.model import Call, LobbyModel
from qcall.client import StreamMessage
from qcall.config import Bus, CenterConfig, Devices, WindowDevices
from qcall.hub import Hub
from qcall.lobby import SCREEN_DEVICE_PREFIX
from qcall.model import Role

if TYPE_CHECKING:
    from display.app import LobbyScreen
    from kiosk.app import Kiosk

# One window's devices on the emulated bus (addresses as in the demo's first window).
DISPLAY: Final = 11
KEYPAD: Final = 12
RATING_PAD: Final = 13
KINDS: Final = {
    DISPLAY: DeviceKind.COUNTER_DISPLAY,
    KEYPAD: DeviceKind.KEYPAD,
    RATING_PAD: DeviceKind.RATING_PAD,
}
BAUD: Final = 9600
POLL_INTERVAL_MS: Final = 50
# Counted faults (no reply, noise) apply to this many replies: until they are cleared.
FAULT_REPLIES: Final = 10_000
# Bounds on waiting for the hub to notice a change on the real (emulated) bus; a loaded
# machine may need several re-probes. Not timing assertions.
NOTICE_TIMEOUT_S: Final = 15.0
# Noise on the line lasts this long: the master's retries ride it out (the device need not go
# offline), and it must be ready once the noise stops.
NOISE_S: Final = 2.0
# The bus faults injected, in order: a silent device, noise on the line, a pulled plug.
FAULTS: Final = (Fault.NO_REPLY, Fault.NOISE, Fault.UNPLUG)
CLEARS: Final = {Fault.NO_REPLY: Fault.CLEAR, Fault.NOISE: Fault.CLEAR, Fault.UNPLUG: Fault.PLUG}
# The kiosk and the lobby screen of the phase: their token names, hence their device names.
KIOSK_NAME: Final = "sim-kiosk"
SCREEN_NAME: Final = "sim-lobby"
PRINTER_DEVICE: Final = f"{Role.KIOSK}:{KIOSK_NAME}/printer"
SCREEN_DEVICE: Final = SCREEN_DEVICE_PREFIX + SCREEN_NAME
# A lobby screen gone this long is reported offline by the hub (the center's default is 30 s;
# the phase is a few real seconds).
SCREEN_OFFLINE_S: Final = 1.0
# The kiosk reads its printer's status this often while idle.
PRINTER_POLL_S: Final = 0.3
# The lobby screen's window (SDL's dummy driver: nothing is shown).
SCREEN_SIZE: Final = (960, 540)
# Fault names in the outcomes (the bus faults use the emulator's own names).
PAPER_END: Final = "paper_end"
DISCONNECT: Final = "disconnect"


@dataclass(frozen=True, slots=True)
class DeviceFault:
    """One injected fault: whether the hub saw the device offline, and ready again."""

    device: str
    fault: str
    went_offline: bool
    came_back: bool
    # What the hub recorded while it was offline (the printer: the kiosk's paper-end text).
    detail: str = ""
    # The screen: the seq it resumed after, the events it replayed up to the hub's last seq,
    # and whether it got every one of them once and in order.
    after_seq: int | None = None
    replayed: int = 0
    last_seq: int | None = None
    gap_free: bool | None = None


def with_devices(config: CenterConfig, url: str) -> CenterConfig:
    """``config`` with its first window's devices on the bus at ``url``; screens gone fast."""
    first, *rest = config.windows
    devices = WindowDevices(counter_display=DISPLAY, keypad=KEYPAD, rating_pad=RATING_PAD)
    window = first.model_copy(update={"devices": devices})
    bus = Bus(url=url, baud=BAUD, poll_interval_ms=POLL_INTERVAL_MS, group_poll=False)
    hub = config.hub.model_copy(update={"screen_offline_s": SCREEN_OFFLINE_S})
    return config.model_copy(
        update={"windows": [window, *rest], "devices": Devices(bus=bus), "hub": hub}
    )


def device_name(address: int) -> str:
    """The hub's name of the bus device at ``address`` (as in its device states)."""
    return f"bus:{KINDS[address].role}@{address}"


async def _until(hub: Hub, check: Callable[[], bool], bound: float = NOTICE_TIMEOUT_S) -> bool:
    """Wait until ``check()`` holds (re-checked on every hub event); False after the bound."""
    changed = asyncio.Event()
    unsubscribe = hub.bus.subscribe(lambda _: changed.set())
    try:
        async with asyncio.timeout(bound):
            while not check():
                changed.clear()
                await changed.wait()
    except TimeoutError:
        return False
    finally:
        unsubscribe()
    return True


def _state(hub: Hub, name: str) -> object:
    return hub.engine.devices.get(name, {}).get("state")


def _detail(hub: Hub, name: str) -> str:
    return str(hub.engine.devices.get(name, {}).get("detail", ""))


class Cable:
    """A TCP connection between a client and the hub that can be pulled and plugged back.

    Pulled: every open connection is cut and new ones are closed as soon as they arrive, as a
    client sees a hub it cannot reach.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._plugged = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The ``http://`` address clients use instead of the hub's."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Stop listening and cut what is open."""
        self.pull()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def pull(self) -> None:
        """Cut every open connection and refuse new ones."""
        self._plugged = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def plug(self) -> None:
        """Let connections through again."""
        self._plugged = True

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._plugged:
            writer.transport.abort()
            return
        try:
            hub_reader, hub_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, hub_writer))
        loop = asyncio.get_running_loop()
        pipes = (
            loop.create_task(_pipe(reader, hub_writer)),
            loop.create_task(_pipe(hub_reader, writer)),
        )
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
                self._pipes.discard(pipe)
            for end in (writer, hub_writer):
                self._writers.discard(end)
                end.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()


@contextlib.asynccontextmanager
async def _serving(hub: Hub) -> AsyncIterator[tuple[str, int]]:
    """Start ``hub`` behind its API on a free port; yield the address; stop both after."""
    from aiohttp import web

    from qcall.api import build_app

    runner = web.AppRunner(build_app(hub), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield str(host), int(port)
    finally:
        await runner.cleanup()


async def _token(hub: Hub, role: Role, name: str) -> str:
    token: str = await hub.write(hub.store.create_token, role, name)
    return token


@contextlib.asynccontextmanager
async def _running(program: Kiosk | LobbyScreen) -> AsyncIterator[None]:
    """Run a kiosk or a lobby screen in the background; stop it and wait for it after."""
    from kiosk.app import Kiosk

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if isinstance(program, Kiosk):
        task = loop.create_task(program.run(), name="qcall-sim:kiosk")
    else:
        task = loop.create_task(program.run(stop), name="qcall-sim:screen")
    try:
        yield
    finally:
        stop.set()
        if isinstance(program, Kiosk):
            program.stop()
        async with asyncio.timeout(NOTICE_TIMEOUT_S):
            await task


async def _paper_end(hub: Hub, url: str, folder: Path) -> DeviceFault:
    """The kiosk's printer runs out of paper, and a new roll is loaded."""
    from kiosk.app import Kiosk, KioskSettings

    printer = PrinterEmulator(folder / "printer")
    await printer.start()
    try:
        settings = KioskSettings(
            hub=url,
            token=await _token(hub, Role.KIOSK, KIOSK_NAME),
            printer=printer.url,
            state_dir=folder / "kiosk",
            printer_poll_s=PRINTER_POLL_S,
        )
        async with _running(Kiosk(settings)):
            await _until(hub, lambda: _state(hub, PRINTER_DEVICE) == "ready")
            printer.set_fault(PrinterFault.PAPER_END)
            offline = await _until(
                hub,
                lambda: (
                    _state(hub, PRINTER_DEVICE) == "offline"
                    and "缺纸" in _detail(hub, PRINTER_DEVICE)
                ),
            )
            reported = _detail(hub, PRINTER_DEVICE)
            printer.set_fault(None)
            back = await _until(hub, lambda: _state(hub, PRINTER_DEVICE) == "ready")
        return DeviceFault(PRINTER_DEVICE, PAPER_END, offline, back, reported)
    finally:
        await printer.stop()


class _Followed(LobbyModel):
    """A lobby screen's model that notes what it applied: snapshots, then events' seqs."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots = 0
        self.seqs: list[int] = []
        self._applied = asyncio.Event()

    def apply(self, message: StreamMessage, mono: float, wall: dt.datetime) -> list[Call]:
        if message["type"] == "snapshot":
            self.snapshots += 1
        else:
            self.seqs.append(message["seq"])
        self._applied.set()
        return super().apply(message, mono, wall)

    async def until(self, check: Callable[[], bool], bound: float = NOTICE_TIMEOUT_S) -> bool:
        """Wait until ``check()`` holds (re-checked after each message); False after the bound."""
        try:
            async with asyncio.timeout(bound):
                while not check():
                    self._applied.clear()
                    await self._applied.wait()
        except TimeoutError:
            return False
        return True


async def _bus_faults(hub: Hub, emulator: BusEmulator) -> list[DeviceFault]:
    """Each fault at the keypad, awaited offline (noise: may be ridden out), then cleared."""
    keypad = device_name(KEYPAD)
    outcomes: list[DeviceFault] = []
    for fault in FAULTS:
        emulator.fault(KEYPAD, fault, FAULT_REPLIES)
        bound = NOISE_S if fault is Fault.NOISE else NOTICE_TIMEOUT_S
        offline = await _until(hub, lambda: _state(hub, keypad) == "offline", bound)
        emulator.fault(KEYPAD, CLEARS[fault])
        back = await _until(hub, lambda: _state(hub, keypad) == "ready")
        outcomes.append(DeviceFault(keypad, fault.value, offline, back))
    return outcomes


async def _screen_disconnect(
    hub: Hub, address: tuple[str, int], emulator: BusEmulator, keep: contextlib.AsyncExitStack
) -> list[DeviceFault]:
    """Pull the lobby screen's cable; the bus faults happen while it is away; plug it back.

    The screen keeps running in ``keep`` (so it is still connected when the hub stops).
    """
    from display.app import LobbyScreen, Options

    cable = Cable(address)
    await cable.start()
    keep.push_async_callback(cable.stop)
    token = await _token(hub, Role.DISPLAY, SCREEN_NAME)
    options = Options(hub=cable.url, token=token, size=SCREEN_SIZE, audio=False, voice=False)
    screen = LobbyScreen(options)
    followed = screen.model = _Followed()
    await keep.enter_async_context(_running(screen))
    await followed.until(lambda: followed.online and followed.seq == hub.engine.seq)
    before = followed.seq
    cable.pull()
    offline = await _until(hub, lambda: _state(hub, SCREEN_DEVICE) == "offline")
    went_dark = not followed.online
    outcomes = await _bus_faults(hub, emulator)
    cable.plug()
    back = await _until(hub, lambda: _state(hub, SCREEN_DEVICE) == "ready")
    caught_up = await followed.until(lambda: followed.online and followed.seq == hub.engine.seq)
    last = hub.engine.seq
    seqs = followed.seqs
    replayed = [s for s in seqs if before is not None and s > before]
    # One snapshot (at the first connection), then every event once and in order.
    in_order = followed.snapshots == 1 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    whole = caught_up and in_order and bool(replayed) and replayed[-1] == last
    outcomes.append(
        DeviceFault(
            SCREEN_DEVICE,
            DISCONNECT,
            offline and went_dark,
            back and whole,
            after_seq=before,
            replayed=len(replayed),
            last_seq=last,
            gap_free=whole,
        )
    )
    return outcomes


async def device_fault_phase(
    config: CenterConfig,
    db: Path,
    clock: Callable[[], dt.datetime],
    monotonic: Callable[[], float],
) -> tuple[list[DeviceFault], bool]:
    """Run the fault phase on ``db``; return each fault's outcome and whether all are ready.

    No hub may be running on ``db``: this starts and stops its own.
    """
    # The phase's kiosk and lobby screen draw on SDL's dummy driver: nothing pops up.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    emulator = BusEmulator(KINDS, baud=BAUD)
    await emulator.start()
    try:
        hub = Hub(with_devices(config, emulator.url), db, clock=clock, monotonic=monotonic)
        with tempfile.TemporaryDirectory(prefix="qcall-sim-devices-") as folder:
            # The lobby screen stops after the hub (its leaving is no fault).
            async with contextlib.AsyncExitStack() as keep, _serving(hub) as address:
                names = [device_name(a) for a in KINDS]
                await _until(hub, lambda: all(_state(hub, n) == "ready" for n in names))
                host, port = address
                outcomes = [await _paper_end(hub, f"http://{host}:{port}", Path(folder))]
                outcomes += await _screen_disconnect(hub, address, emulator, keep)
                everything = [*names, PRINTER_DEVICE, SCREEN_DEVICE]
                ready = await _until(
                    hub, lambda: all(_state(hub, n) == "ready" for n in everything)
                )
                # Every state change is committed before the hub stops (stop commits the rest).
                return outcomes, ready
    finally:
        await emulator.stop()
