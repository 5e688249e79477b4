"""Simulated residents and clerks that keep a hall alive, through the paths real ones use.

Residents take tickets the way the kiosk does (``POST /tickets`` with a kiosk token,
``channel="kiosk"``, an idempotency key) and get them printed on the kiosk's printer.
Clerks work either through the API (login, open, next, start, finish) or through their
window's keypad and rating pad on the bus emulator's key control. Nothing here touches the
hub's internals, so the same module drives a demo, a simulated day or a soak test.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from devices.printer import TicketPrint, TicketPrinter
from qcall.client import Catalog, CatalogService, QcallClient
from qcall.config import CenterConfig
from qcall.errors import QcallError

_LOGGER = logging.getLogger(__name__)

# Mean seconds between two residents at the kiosk, and of one service at a window: quick
# enough that a demo shows calls within seconds, slow enough that lines form.
ARRIVAL_S: Final = 4.0
SERVICE_S: Final = 8.0
# A called resident walks to the window in this long before service starts.
WALK_S: Final = 1.5
# A clerk with nobody to call looks again after this long.
IDLE_S: Final = 2.0
# After a failed request (hub restarting, account locked) wait this long before retrying.
RETRY_S: Final = 3.0
# The kiosk's catalog is re-read this often (waiting counts, which services are served now).
CATALOG_REFRESH_S: Final = 10.0
# One command on the bus emulator's key control (a local socket: answers in milliseconds).
CONTROL_TIMEOUT_S: Final = 5.0
# A keypad login is checked by the hub on its next poll of the bus.
KEYPAD_LOGIN_S: Final = 2.0
NO_SHOW_SHARE: Final = 0.1
# What a keypad's LCD shows in place of the current number when the window has none.
NO_CURRENT: Final = "----"


@dataclass(frozen=True, slots=True)
class Clerk:
    """A simulated clerk at one window; ``keypad`` set: works the keypad instead of the API."""

    staff: str
    pin: str
    window: int
    keypad: int | None = None
    rating_pad: int | None = None


@dataclass(frozen=True, slots=True)
class HallPlan:
    """What to simulate, against which hub and devices."""

    hub: str
    kiosk_token: str
    clerks: tuple[Clerk, ...]
    printer: str | None = None  # the kiosk printer's URL; None: tickets are not printed
    paper: int = 80
    control: tuple[str, int] | None = None  # the bus emulator's key control
    arrival_s: float = ARRIVAL_S
    service_s: float = SERVICE_S
    seed: int | None = None


@dataclass(slots=True)
class HallCounts:
    """What the simulation did so far (for logs and tests)."""

    issued: list[str] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)
    called: list[str] = field(default_factory=list)
    finished: int = 0
    errors: int = 0


def plan_for(
    config: CenterConfig,
    hub: str,
    kiosk_token: str,
    staff: Sequence[dict[str, Any]],
    *,
    windows: Sequence[int],
    control: tuple[str, int] | None,
    seed: int | None = None,
) -> HallPlan:
    """A plan with one clerk per window in ``windows``; every other one uses the keypad."""
    pins = {str(m["id"]): str(m["pin"]) for m in staff if "window" in m}
    clerks = []
    for index, number in enumerate(sorted(windows)):
        window = next((w for w in config.windows if w.number == number), None)
        staff_id = f"w{number:02d}"
        if window is None or staff_id not in pins:
            continue
        keypad = window.devices.keypad if control is not None and index % 2 else None
        clerks.append(
            Clerk(
                staff_id,
                pins[staff_id],
                number,
                keypad,
                window.devices.rating_pad if keypad is not None else None,
            )
        )
    printer = config.devices.printers[0] if config.devices.printers else None
    return HallPlan(
        hub=hub,
        kiosk_token=kiosk_token,
        clerks=tuple(clerks),
        printer=printer.url if printer else None,
        paper=printer.paper if printer else 80,
        control=control,
        seed=seed,
    )


class HallSimulation:
    """Residents arriving at the kiosk and clerks serving them until ``stop`` is set."""

    def __init__(self, plan: HallPlan) -> None:
        self.plan = plan
        self.counts = HallCounts()
        self._random = random.Random(plan.seed)  # noqa: S311 - a simulation, not security
        self._catalog: Catalog | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run every resident and clerk loop; return once ``stop`` is set."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._residents(), name="sim residents")]
            for clerk in self.plan.clerks:
                work = self._keypad_clerk(clerk) if clerk.keypad else self._api_clerk(clerk)
                tasks.append(group.create_task(work, name=f"sim clerk {clerk.staff}"))
            await stop.wait()
            for task in tasks:
                task.cancel()

    # --- residents ------------------------------------------------------------------------

    async def _residents(self) -> None:
        printer = (
            TicketPrinter("demo-kiosk", self.plan.printer, paper=self.plan.paper)
            if self.plan.printer
            else None
        )
        loop = asyncio.get_running_loop()
        read_at = -CATALOG_REFRESH_S
        try:
            async with QcallClient(self.plan.hub, self.plan.kiosk_token) as kiosk:
                while True:
                    try:
                        if loop.time() - read_at >= CATALOG_REFRESH_S:
                            self._catalog = await kiosk.catalog()
                            read_at = loop.time()
                        await self._arrive(kiosk, printer)
                    except QcallError as err:
                        self.counts.errors += 1
                        _LOGGER.info("simulated resident: %s", err)
                    await asyncio.sleep(self._random.expovariate(1 / self.plan.arrival_s))
        finally:
            if printer is not None:
                with contextlib.suppress(Exception):
                    await printer.stop()

    def _pick(self) -> CatalogService | None:
        # A pickup needs the resident's case code: simulated residents come with new business.
        services = [
            s for s in (self._catalog["services"] if self._catalog else []) if s["kind"] != "pickup"
        ]
        served = [s for s in services if s["available"] and s["served_now"]]
        choices = served or [s for s in services if s["available"]]
        return self._random.choice(choices) if choices else None

    async def _arrive(self, kiosk: QcallClient, printer: TicketPrinter | None) -> None:
        service = self._pick()
        if service is None or self._catalog is None:
            return
        ticket = await kiosk.issue_ticket(
            service["id"], channel="kiosk", idempotency_key=str(uuid.uuid4())
        )
        self.counts.issued.append(ticket["number"])
        if printer is None:
            return
        center = self._catalog["center"]
        job = TicketPrint(
            center_zh=center["name_zh"],
            center_en=center["name_en"],
            service_zh=service["name_zh"],
            service_en=service["name_en"],
            number=ticket["number"],
            ahead=ticket["ahead"],
            estimated_wait_s=ticket["estimated_wait_s"],
            issued_at=dt.datetime.fromisoformat(ticket["issued_at"]),
            track_url=ticket.get("track_url", ""),
            materials=tuple(str(item) for item in service["notice"].get("materials", ())),
            rules=tuple(center["ticket_rules"]),
        )
        await printer.print_ticket(job)
        self.counts.printed.append(ticket["number"])

    # --- clerks ---------------------------------------------------------------------------

    def _service_time(self) -> float:
        return self._random.uniform(0.5, 1.5) * self.plan.service_s

    async def _api_clerk(self, clerk: Clerk) -> None:
        async with QcallClient(self.plan.hub) as client:
            while True:
                try:
                    login = await client.login(clerk.staff, clerk.pin)
                    client.token = login["token"]
                    await client.open_window(clerk.window)
                    await self._serve_by_api(client, clerk)
                except QcallError as err:
                    self.counts.errors += 1
                    _LOGGER.info("simulated clerk %s: %s", clerk.staff, err)
                    await asyncio.sleep(RETRY_S)

    async def _serve_by_api(self, client: QcallClient, clerk: Clerk) -> None:
        while True:
            called = await client.call_next(clerk.window)
            if called is None:
                await asyncio.sleep(IDLE_S)
                continue
            self.counts.called.append(called["number"])
            await asyncio.sleep(WALK_S)
            if self._random.random() < NO_SHOW_SHARE:
                await client.no_show(clerk.window)
                continue
            await client.start(clerk.window)
            await asyncio.sleep(self._service_time())
            await client.finish(clerk.window)
            self.counts.finished += 1

    async def _keypad_clerk(self, clerk: Clerk) -> None:
        assert clerk.keypad is not None
        while True:
            try:
                await self._press(
                    {"addr": clerk.keypad, "event": "login", "staff": clerk.staff, "pin": clerk.pin}
                )
                await asyncio.sleep(KEYPAD_LOGIN_S)
                while True:
                    await self._press({"addr": clerk.keypad, "event": "next"})
                    await asyncio.sleep(WALK_S)
                    lcd = await self._control({"cmd": "shown", "addr": clerk.keypad})
                    if not isinstance(lcd, dict) or NO_CURRENT in str(lcd.get("lcd", "")):
                        await asyncio.sleep(IDLE_S)  # nobody waiting for this window
                        continue
                    await asyncio.sleep(self._service_time())
                    await self._press({"addr": clerk.keypad, "event": "finish"})
                    self.counts.finished += 1
                    if clerk.rating_pad is not None:
                        score = self._random.choice((5, 5, 5, 4, 4, 3))
                        await self._control(
                            {"cmd": "rating", "addr": clerk.rating_pad, "score": score}
                        )
            except (OSError, TimeoutError, QcallError) as err:
                self.counts.errors += 1
                _LOGGER.info("simulated keypad clerk %s: %s", clerk.staff, err)
                await asyncio.sleep(RETRY_S)

    async def _press(self, command: dict[str, Any]) -> None:
        await self._control({"cmd": "press", **command})

    async def _control(self, command: dict[str, Any]) -> Any:
        """One command on the bus emulator's key control; its result (errors are logged)."""
        assert self.plan.control is not None
        host, port = self.plan.control
        async with asyncio.timeout(CONTROL_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(json.dumps(command).encode() + b"\n")
                await writer.drain()
                reply = json.loads(await reader.readline() or b"{}")
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        if not reply.get("ok"):
            _LOGGER.debug("key control refused %s: %s", command, reply.get("error"))
        return reply.get("result")
