"""Kiosk tests: a real hub process, the printer emulator, pygame on SDL's dummy driver.

Screenshots of every screen are kept as test artifacts under ``var/artifacts/kiosk/<test>``
(``$QCALL_ARTIFACTS`` overrides the root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pygame
import pytest

from devices.emulators.printer import PrinterEmulator
from kiosk.app import Kiosk, KioskSettings
from kiosk.model import Fallback
from kiosk.scene import Element, Scene
from tests.functional.conftest import (  # noqa: F401 - fixtures used by the kiosk tests
    Connect,
    HubProcess,
    connect,
    credentials,
    hub,
)

ROOT: Final = Path(__file__).resolve().parents[2]
ARTIFACTS: Final = Path(os.environ.get("QCALL_ARTIFACTS", ROOT / "var" / "artifacts")) / "kiosk"
# The kiosk draws within a frame or two of an event; a catalog round trip is milliseconds.
# The bound only catches a kiosk that never gets there.
UI_TIMEOUT_S: Final = 15.0


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
    hub: HubProcess, printer: PrinterEmulator, tmp_path: Path, request: pytest.FixtureRequest
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
