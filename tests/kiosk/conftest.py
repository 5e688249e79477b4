"""Kiosk tests: a real hub process, the printer emulator, pygame on SDL's dummy driver.

Screenshots of every screen are kept as test artifacts under ``var/artifacts/kiosk/<test>``
(``$QCALL_ARTIFACTS`` overrides the root).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import os
import re
import shutil
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

from zoneinfo import ZoneInfo

import pygame
import pytest

from devices.emulators.printer import PrinterEmulator
from kiosk.app import Kiosk, KioskSettings
from kiosk.model import Fallback
from kiosk.scene import Element, Scene
from qcall.client import QcallClient
from qcall.config import parse_config
from tests.common import ROOT as REPO
from tests.common import standalone_demo_config
from tests.functional import conftest as functional
from tests.functional.conftest import Connect, HubProcess

__all__ = ["Connect", "HubProcess"]

# The staff and tokens of the functional tests, and their client fixture.
credentials = functional.credentials
connect = functional.connect

# Services the kiosk tests make unavailable, each for another reason.
CAPPED: Final = "flexible_employment"  # daily cap 1: full after one ticket
LATE: Final = "unemployment_registration"  # issuing hours that exclude now
NOT_TODAY: Final = "retirement_review"  # not offered on today's day type

ARTIFACTS: Final = Path(os.environ.get("QCALL_ARTIFACTS", REPO / "var" / "artifacts")) / "kiosk"


def _toml_dumps() -> Callable[[dict[str, Any]], str]:
    """The TOML writer of ``config/make_demo.py`` (the standard library only reads TOML)."""
    spec = importlib.util.spec_from_file_location("make_demo", REPO / "config" / "make_demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dumps: Callable[[dict[str, Any]], str] = module.dumps
    return dumps


toml_dumps = _toml_dumps()
# The kiosk draws within a frame or two of an event; a catalog round trip is milliseconds.
# The bound only catches a kiosk that never gets there.
UI_TIMEOUT_S: Final = 15.0


def kiosk_center(folder: Path) -> Path:
    """The demo center (no devices) with three services unavailable now, for different reasons."""
    base = standalone_demo_config(folder)
    raw = tomllib.loads(base.read_text(encoding="utf-8"))
    config = parse_config(raw, str(base))
    now = dt.datetime.now(ZoneInfo(config.center.timezone))
    today = str(config.calendar.day_type(now.date()))
    late = (
        {"start": "23:00", "end": "23:59"} if now.hour < 12 else {"start": "00:00", "end": "01:00"}
    )
    for service in raw["services"]:
        if service["id"] == CAPPED:
            service["daily_cap"] = 1
        elif service["id"] == LATE:
            service["hours"] = {day: dict(late) for day in service["hours"]}
        elif service["id"] == NOT_TODAY:
            service["hours"] = {
                day: hours for day, hours in service["hours"].items() if day != today
            } or {"weekend_duty" if today != "weekend_duty" else "weekday": dict(late)}
    path = folder / "kiosk.toml"
    path.write_text(toml_dumps(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def hub(
    credentials: functional.Credentials, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcess]:
    """A ``qcall serve`` process on the kiosk center, with the functional tests' accounts."""
    folder = tmp_path_factory.mktemp("kiosk-hub")
    db = folder / "qcall.db"
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{credentials.template}{suffix}")
        if source.exists():
            shutil.copyfile(source, Path(f"{db}{suffix}"))
    config = kiosk_center(folder)
    process = HubProcess(dataclasses.replace(credentials, config=config), db, folder / "hub.log")
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            code = process.stop()
            assert code == 0, f"the hub exited with {code}:\n{process.log_tail()}"
        process.kill()


@pytest.fixture
async def kiosk_client(hub: HubProcess) -> AsyncIterator[QcallClient]:
    """A client with the kiosk token, for checking what the hub holds."""
    async with QcallClient(hub.url, hub.token("kiosk")) as client:
        yield client


@pytest.fixture
async def printer(tmp_path: Path) -> AsyncIterator[PrinterEmulator]:
    """The ESC/POS printer emulator on a free port; jobs as .txt/.png in tmp_path/printer."""
    emulator = PrinterEmulator(tmp_path / "printer")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@dataclass
class Driver:
    """Drives a running kiosk with synthetic mouse events, as a finger on the glass would."""

    kiosk: Kiosk
    task: asyncio.Task[None]
    shots: Path

    @property
    def scene(self) -> Scene:
        """The scene on screen now."""
        assert self.kiosk.scene is not None
        return self.kiosk.scene

    async def wait(self, predicate: Callable[[Scene], bool], what: str = "") -> Scene:
        """Wait until the drawn scene satisfies ``predicate``."""
        try:
            async with asyncio.timeout(UI_TIMEOUT_S):
                return await self.kiosk.wait_drawn(predicate)
        except TimeoutError:
            scene = self.kiosk.scene
            shown = scene.to_json() if scene else None
            pytest.fail(f"kiosk never showed {what or predicate}; it shows {shown}")

    async def screen(self, name: str) -> Scene:
        """Wait for the screen called ``name``."""
        return await self.wait(lambda s: s.screen == name, f"screen {name}")

    def down(self, x: int, y: int) -> None:
        """Post a press (MOUSEBUTTONDOWN) at a point."""
        pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=(x, y), button=1))

    def up(self, x: int, y: int) -> None:
        """Post a release (MOUSEBUTTONUP) at a point."""
        pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, pos=(x, y), button=1))

    def tap_at(self, element: Element) -> None:
        """Press and release in the middle of an element."""
        x, y = element.rect.x + element.rect.w // 2, element.rect.y + element.rect.h // 2
        self.down(x, y)
        self.up(x, y)

    async def tap_key(self, digit: str) -> Element:
        """Tap a key of the pickup pad (its label is exactly the digit)."""
        scene = await self.wait(lambda s: s.screen == "pickup", "the pickup pad")
        key = next(b for b in scene.buttons() if b.label == digit and b.kind == "button")
        version = self.kiosk.model.version
        self.tap_at(key)
        await self.wait(lambda s: self.kiosk.model.version != version, f"key {digit} taken")
        return key

    async def tap(self, label_part: str) -> Element:
        """Tap the first enabled button whose label contains ``label_part``."""
        scene = await self.wait(
            lambda s: any(label_part in b.label and b.enabled for b in s.buttons()),
            f"an enabled button {label_part!r}",
        )
        element = next(b for b in scene.buttons() if label_part in b.label and b.enabled)
        self.tap_at(element)
        return element


@pytest.fixture
async def start_kiosk(
    hub: HubProcess,
    printer: PrinterEmulator,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., Any]]:
    """``await start_kiosk(size=(w, h), fallback=...)`` → a Driver on a running kiosk."""
    running: list[Driver] = []
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    async def start(
        size: tuple[int, int] = (1080, 1920),
        fallback: Fallback = "show",
        hub_url: str | None = None,
        label: str = "",
    ) -> Driver:
        shots = ARTIFACTS / name / (label or f"{size[0]}x{size[1]}")
        shutil.rmtree(shots, ignore_errors=True)
        settings = KioskSettings(
            catalog_refresh_s=0.5,
            hub_retry_s=0.3,
            printer_poll_s=0.3,
            issue_retry_s=0.2,
            hub=hub_url or hub.url,
            token=hub.token("kiosk"),
            printer=printer.url,
            size=size,
            screenshot_dir=shots,
            scene_file=tmp_path / "scene.json",
            fallback=fallback,
            state_dir=tmp_path / "state",
        )
        kiosk = Kiosk(settings)
        task = asyncio.get_running_loop().create_task(kiosk.run(), name="kiosk-under-test")
        driver = Driver(kiosk, task, shots)
        running.append(driver)
        if hub_url is None:
            await driver.wait(
                lambda s: s.screen == "welcome" and kiosk.model.hub_online, "the hub's catalog"
            )
        return driver

    yield start
    for driver in running:
        driver.kiosk.stop()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(UI_TIMEOUT_S):
                await driver.task
