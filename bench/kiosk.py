"""Kiosk benchmark: tap on 取号 → last ticket byte at the printer emulator; service list frames.

Runs a real ``qcall serve`` process on 127.0.0.1, the ESC/POS printer emulator and the kiosk
(pygame on SDL's dummy driver) in this process, taps with synthetic mouse events, and prints
each figure next to its target and the ratio figure/target.

    python bench/kiosk.py [--taps 40] [--frames 300]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import aiohttp
import pygame

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devices.emulators.printer import PrinterEmulator  # noqa: E402
from devices.printer.paper import PrintedJob  # noqa: E402
from kiosk.app import Kiosk, KioskSettings  # noqa: E402
from kiosk.catalog import KioskCatalog  # noqa: E402
from kiosk.fonts import FontBook  # noqa: E402
from kiosk.layout import layout  # noqa: E402
from kiosk.model import Act, Action, KioskModel  # noqa: E402
from kiosk.render import Renderer  # noqa: E402
from kiosk.scene import Scene  # noqa: E402
from qcall.client import QcallClient  # noqa: E402
from qcall.model import Role  # noqa: E402
from qcall.store import Store  # noqa: E402

TARGET_TAP_P99_MS = 150.0
TARGET_FRAME_P99_MS = 16.0
SIZE = (1080, 1920)
# Bounds for one step of the benchmark (a screen change, a printed ticket).
STEP_TIMEOUT_S = 20.0


def _load_dumps() -> Any:
    """The TOML writer of ``config/make_demo.py``."""
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "config" / "make_demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dumps


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _line(name: str, value: float, unit: str, target: float) -> None:
    """Print a figure beside its (upper bound) target and the ratio figure/target."""
    mark = "PASS" if value <= target else "MISS"
    print(
        f"  {name:<44} {value:9.2f} {unit:<4} target ≤ {target:g} {unit:<4}"
        f" ratio {value / target:5.2f}  {mark}"
    )


class TimedEmulator(PrinterEmulator):
    """The printer emulator, noting when each job's last byte (the cut) arrived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.completed: list[float] = []
        self.done = asyncio.Event()

    def complete_job(self, raw: bytes, job: PrintedJob) -> None:
        self.completed.append(time.perf_counter())
        self.done.set()
        super().complete_job(raw, job)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _hub(folder: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    raw = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    raw["devices"] = {}
    for window in raw["windows"]:
        window.pop("devices", None)
    for service in raw["services"]:
        service["daily_cap"] = 9999
    config = folder / "kiosk-bench.toml"
    config.write_text(_load_dumps()(raw), encoding="utf-8")
    db = folder / "bench.db"
    store = Store(db)
    store.open()
    token = store.create_token(Role.KIOSK, "bench kiosk")
    store.close()
    port = _free_port()
    log = (folder / "hub.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qcall",
            "--log-level",
            "warning",
            "serve",
            "--config",
            str(config),
            "--db",
            str(db),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc, f"http://127.0.0.1:{port}", token


async def _healthy(base: str) -> None:
    async with asyncio.timeout(STEP_TIMEOUT_S), aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{base}/api/v1/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def _wait_scene(kiosk: Kiosk, screen: str) -> Scene:
    async with asyncio.timeout(STEP_TIMEOUT_S):
        return await kiosk.wait_drawn(lambda s: s.screen == screen)


def _tap(scene: Scene, label: str) -> None:
    element = scene.find(label)
    x, y = element.rect.x + element.rect.w // 2, element.rect.y + element.rect.h // 2
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=(x, y), button=1))
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, pos=(x, y), button=1))


async def tap_to_print(base: str, token: str, folder: Path, taps: int) -> list[float]:
    """Return milliseconds from each tap on 取号 to the printer's receipt of the cut."""
    printer = TimedEmulator(folder / "printer")
    await printer.start()
    settings = KioskSettings(
        hub=base, token=token, printer=printer.url, size=SIZE, state_dir=folder / "kiosk"
    )
    kiosk = Kiosk(settings)
    task = asyncio.get_running_loop().create_task(kiosk.run())
    latencies: list[float] = []
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await kiosk.wait_drawn(lambda s: s.screen == "welcome" and kiosk.model.hub_online)
        for _ in range(taps + 2):  # two warm-up taps
            welcome = await _wait_scene(kiosk, "welcome")
            _tap(welcome, "请触摸屏幕取号")
            _tap(await _wait_scene(kiosk, "departments"), "人力资源")
            _tap(await _wait_scene(kiosk, "services"), "社会保障卡")
            notice = await _wait_scene(kiosk, "notice")
            printer.done.clear()
            started = time.perf_counter()
            _tap(notice, "取号")
            async with asyncio.timeout(STEP_TIMEOUT_S):
                await printer.done.wait()
            latencies.append((printer.completed[-1] - started) * 1000)
            _tap(await _wait_scene(kiosk, "result"), "完成")
    finally:
        kiosk.stop()
        await task
        await printer.stop()
    return latencies[2:]


async def service_list_frames(
    base: str, token: str, frames: int
) -> tuple[list[float], list[float]]:
    """Return ms per frame of the service list: waiting counts changing, and full redraws."""
    async with QcallClient(base, token) as client:
        catalog = KioskCatalog.from_api(await client.catalog())
    pygame.display.init()
    try:
        surface = pygame.display.set_mode(SIZE)
        fonts = FontBook()
        model = KioskModel()
        model.catalog_loaded(catalog)
        for action in (Action(Act.START), Action(Act.DEPARTMENT, catalog.departments[0].id)):
            model.press(action, 0.0)
        renderer = Renderer(surface, fonts)
        now = dt.datetime.now(dt.UTC).astimezone()
        updates: list[float] = []
        full: list[float] = []
        for frame in range(frames):
            services = tuple(
                dataclasses.replace(s, waiting=s.waiting + frame % 7) for s in catalog.services
            )
            model.catalog_loaded(dataclasses.replace(catalog, services=services))
            started = time.perf_counter()
            scene = layout(model, SIZE, fonts, float(frame), now)
            pygame.display.update(renderer.draw(scene))
            updates.append((time.perf_counter() - started) * 1000)
        for _frame in range(frames // 4):
            started = time.perf_counter()
            renderer = Renderer(surface, fonts)  # as after a screen change: everything redrawn
            pygame.display.update(renderer.draw(layout(model, SIZE, fonts, 0.0, now)))
            full.append((time.perf_counter() - started) * 1000)
        return updates, full
    finally:
        pygame.display.quit()


async def run(args: argparse.Namespace, folder: Path) -> None:
    proc, base, token = _hub(folder)
    try:
        await _healthy(base)
        print(f"hub pid {proc.pid}; kiosk {SIZE[0]}x{SIZE[1]} (SDL dummy); {os.cpu_count()} cores")
        latencies = await tap_to_print(base, token, folder, args.taps)
        print(
            f"\n(a) tap on 取号 → last ticket byte at the printer emulator, {len(latencies)} taps"
        )
        print(f"  p50 {_pct(latencies, 0.5):.1f} ms, max {max(latencies):.1f} ms")
        _line("tap → printed p99", _pct(latencies, 0.99), "ms", TARGET_TAP_P99_MS)
        updates, full = await service_list_frames(base, token, args.frames)
        print(f"\n(b) service list frame (layout + draw + update), {len(updates)} frames")
        print(f"  waiting counts changing: p50 {_pct(updates, 0.5):.2f} ms")
        _line("service list frame p99", _pct(updates, 0.99), "ms", TARGET_FRAME_P99_MS)
        print(f"  full redraw (after a screen change): p50 {_pct(full, 0.5):.2f} ms")
        _line("full redraw p99 (reference)", _pct(full, 0.99), "ms", TARGET_FRAME_P99_MS)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--taps", type=int, default=40)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qcall-kiosk-bench-") as tmp:
        asyncio.run(run(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
