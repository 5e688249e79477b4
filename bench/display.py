"""Lobby screen benchmark: frame time, idle CPU, next → pixels, call → audio ready.

(a) frame time at 1920×1080 with 16 windows and the scrolling band, in this process on SDL's
    dummy display (layout when something changed, renderer, display.update), with a new call
    every two seconds of simulated time;
(b) CPU of the lobby screen process while idle for ``--idle-seconds`` (the band scrolls);
(c) clerk ``POST next`` → the first frame whose scene shows the number, through a real
    ``qcall serve`` subprocess and the real event stream;
(d) the same call → its announcement assembled from the clip cache, ready to play.

    python bench/display.py [--frames 900] [--idle-seconds 10] [--calls 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import importlib.util

import aiohttp

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# This file is named like the ``display`` package: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))

from display.announcer import Spoken  # noqa: E402
from display.app import LobbyScreen, Options  # noqa: E402
from display.layout import PAGE_S, Scene, layout  # noqa: E402
from display.model import LobbyModel, WindowStatus  # noqa: E402
from display.voice import DEFAULT_TEMPLATES, build_cache  # noqa: E402
from qcall.model import Role  # noqa: E402
from qcall.store import Store  # noqa: E402

TARGET_FRAME_P99_MS = 8.0
TARGET_IDLE_CPU_PCT = 5.0
TARGET_NEXT_TO_FRAME_P99_MS = 30.0
TARGET_CALL_TO_AUDIO_P99_MS = 100.0
WINDOWS = 16
FPS = 30
PIN = "135790"
# The hub starts in about a second; this only bounds one that never comes up.
HUB_START_TIMEOUT_S = 30.0
HUB_STOP_TIMEOUT_S = 20.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _line(name: str, value: float, unit: str, target: float, higher_is_better: bool) -> None:
    ratio = value / target
    ok = value >= target if higher_is_better else value <= target
    print(
        f"  {name:<44} {value:9.2f} {unit:<6} target {'≥' if higher_is_better else '≤'}"
        f" {target:g} {unit:<6} ratio {ratio:5.2f}  {'PASS' if ok else 'MISS'}"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Hub:
    """A real ``qcall serve`` on the demo center with 16 comprehensive windows, no devices."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kiosk = ""
        self.display = ""
        self.clerks: dict[int, str] = {}

    def start(self) -> None:
        spec = importlib.util.spec_from_file_location("make_demo", ROOT / "config" / "make_demo.py")
        assert spec is not None
        assert spec.loader is not None
        make_demo = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(make_demo)
        raw = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
        raw["windows"] = [{"number": n, "type": "comprehensive"} for n in range(1, WINDOWS + 1)]
        raw["windows"].append({"number": WINDOWS + 1, "type": "reply"})
        consult = [{"id": s["id"]} for s in raw["services"] if s.get("kind") == "consult"]
        raw["windows"].append({"number": WINDOWS + 2, "type": "dedicated", "services": consult})
        raw["devices"] = {}
        for service in raw["services"]:
            service["daily_cap"] = 9999
        config = self.folder / "bench.toml"
        config.write_text(make_demo.dumps(raw), encoding="utf-8")
        db = self.folder / "bench.db"
        store = Store(db)
        store.open()
        for n in range(1, WINDOWS + 1):
            store.add_staff(f"b{n:03d}", f"bench {n}", PIN, Role.CLERK)
        self.kiosk = store.create_token(Role.KIOSK, "bench kiosk")
        self.display = store.create_token(Role.DISPLAY, "bench lobby screen")
        store.close()
        log = (self.folder / "hub.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qcall", "--log-level", "warning", "serve", "--config",
             str(config), "--db", str(db), "--port", str(self.port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    async def ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + HUB_START_TIMEOUT_S
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.base}/api/v1/health") as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                raise SystemExit((self.folder / "hub.log").read_text(errors="replace")[-3000:])
            await asyncio.sleep(0.1)
        for n in range(1, WINDOWS + 1):
            body = {"staff": f"b{n:03d}", "pin": PIN}
            async with session.post(f"{self.base}/api/v1/login", json=body) as response:
                token = (await response.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(
                f"{self.base}/api/v1/windows/{n}/open", headers=headers
            ) as response:
                assert response.status == 200, await response.text()
            self.clerks[n] = token

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=HUB_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _hall() -> LobbyModel:
    model = LobbyModel()
    model.set_settings(
        {
            "version": "bench",
            "center": {"name_zh": "梧桐街道社区事务受理服务中心", "name_en": "Wutong Center"},
            "timezone": "Asia/Shanghai",
            "windows": [{"number": n, "type": "comprehensive"} for n in range(1, WINDOWS + 1)],
            "departments": [{"id": "hr", "name_zh": "人力资源和社会保障", "name_en": "HR"}],
            "services": [{"id": "social", "department": "hr"}],
            "lobby": {
                "notices": [
                    {"zh": "办理业务请携带本人有效身份证件原件", "en": "Bring your ID card"},
                    {"zh": "老年人、残疾人、孕妇可走绿色通道", "en": "Priority lane"},
                ],
                "show_figures": True,
            },
        }
    )
    model.set_waiting({"social": 12})
    for n in range(1, WINDOWS + 1):
        model.windows[n] = WindowStatus(n, open=True, serving=True, current=f"A{n:03d}")
    model.online = True
    return model


def frame_times(frames: int) -> None:
    """(a) in-process frames on the dummy display, simulated time at 30 frames a second."""
    import pygame

    from display.render import Renderer, find_cjk_font

    pygame.display.init()
    screen = pygame.display.set_mode((1920, 1080))
    renderer = Renderer(screen, find_cjk_font())
    model = _hall()
    wall = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)
    times: list[float] = []
    key: tuple[Any, ...] | None = None
    scene: Scene | None = None
    for index in range(frames):
        mono = 1000.0 + index / FPS
        if index % (2 * FPS) == 0:
            number = f"B{index // FPS:03d}"
            window = 1 + (index // (2 * FPS)) % WINDOWS
            model.apply(
                {
                    "type": "ticket.called",
                    "seq": index + 1,
                    "at": wall.isoformat(),
                    "data": {"id": number, "number": number, "window": window},
                },
                mono,
                wall,
            )
        started = time.perf_counter()
        model.tick(mono)
        frame_key = (model.version, int(mono // PAGE_S), model.flash_on(mono))
        if frame_key != key or scene is None:
            scene = layout(model, (1920, 1080), "zh", wall, mono)
            key = frame_key
        rects = renderer.draw(scene, mono)
        pygame.display.update(rects)
        times.append((time.perf_counter() - started) * 1000)
    pygame.display.quit()
    first, steady = times[0], times[1:]
    print(
        f"\n(a) frame time, 1920×1080, {WINDOWS} windows, scrolling band, a call every 2 s, "
        f"{len(steady)} frames after the first"
    )
    print(f"  {'median':<44} {statistics.median(steady):9.2f} ms")
    _line("p99", _pct(steady, 0.99), "ms", TARGET_FRAME_P99_MS, higher_is_better=False)
    print(f"  {'max':<44} {max(steady):9.2f} ms")
    print(f"  {'first frame (start-up, everything drawn once)':<44} {first:9.2f} ms")


@dataclass(slots=True)
class TimedModel(LobbyModel):
    """The lobby model, noting when each call's event arrived (bench instrumentation)."""

    arrived: dict[str, float] = field(default_factory=dict)

    def apply(self, message: Any, mono: float, wall: dt.datetime) -> Any:
        if message["type"] == "ticket.called":
            self.arrived[str(message["data"]["number"])] = time.perf_counter()
        return LobbyModel.apply(self, message, mono, wall)


class ScreenBench:
    """(b)–(d) against a real hub subprocess (bench/hub.py's set-up)."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.hub = Hub(folder)
        self.args = args
        self.folder = folder
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.spoken: dict[str, asyncio.Future[float]] = {}
        self.arrived: dict[str, float] = {}

    def on_frame(self, scene: Scene, _mono: float) -> None:
        if not self.waiting:
            return
        shown = " ".join(scene.texts().values())
        now = time.perf_counter()
        for number, future in list(self.waiting.items()):
            if number in shown and not future.done():
                future.set_result(now)
                del self.waiting[number]

    def on_spoken(self, spoken: Spoken) -> None:
        future = self.spoken.pop(spoken.call.number, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    async def run(self) -> None:
        voice_dir = self.folder / "voice"
        started = time.perf_counter()
        report = await asyncio.to_thread(build_cache, voice_dir, DEFAULT_TEMPLATES)
        print(
            f"\nclip cache: {len(report.rendered)} clips rendered in "
            f"{time.perf_counter() - started:.1f} s (first start of a lobby PC)"
        )
        options = Options(
            self.hub.base, self.hub.display, voice_dir=voice_dir, audio=False, voice=True
        )
        screen = LobbyScreen(options, on_frame=self.on_frame, on_spoken=self.on_spoken)
        # Instrumentation: when each call's event reached the screen's model.
        screen.model = TimedModel(arrived=self.arrived)
        stop = asyncio.Event()
        task = asyncio.create_task(screen.run(stop))
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                await self.hub.ready(session)
                await asyncio.wait_for(screen.voice_ready.wait(), 120)
                while not screen.model.online:  # noqa: ASYNC110 - a model flag, not an event
                    await asyncio.sleep(0.05)
                await self._idle(screen)
                await self._calls(session)
        finally:
            stop.set()
            await task

    async def _idle(self, screen: LobbyScreen) -> None:
        await asyncio.sleep(2.0)  # let start-up work settle
        frames = screen.frames
        cpu = time.process_time()
        wall = time.perf_counter()
        await asyncio.sleep(self.args.idle_seconds)
        used = (time.process_time() - cpu) / (time.perf_counter() - wall) * 100
        drawn = screen.frames - frames
        print(f"\n(b) lobby screen process idle for {self.args.idle_seconds:g} s (band scrolling)")
        _line("CPU, % of one core", used, "%", TARGET_IDLE_CPU_PCT, higher_is_better=False)
        print(f"  {'frames drawn':<44} {drawn / self.args.idle_seconds:9.1f} /s")

    async def _calls(self, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        kiosk = {"Authorization": f"Bearer {self.hub.kiosk}"}
        to_frame: list[float] = []
        to_audio: list[float] = []
        answered: list[float] = []
        event_to_frame: list[float] = []
        for k in range(self.args.calls):
            async with session.post(
                f"{self.hub.base}/api/v1/tickets", json={"service": "social_card"}, headers=kiosk
            ) as response:
                assert response.status == 201, await response.text()
                number = (await response.json())["number"]
            frame: asyncio.Future[float] = loop.create_future()
            audio: asyncio.Future[float] = loop.create_future()
            self.waiting[number] = frame
            self.spoken[number] = audio
            window = 1 + k % WINDOWS
            clerk = {"Authorization": f"Bearer {self.hub.clerks[window]}"}
            t0 = time.perf_counter()
            async with session.post(
                f"{self.hub.base}/api/v1/windows/{window}/next", headers=clerk
            ) as response:
                assert response.status == 200, await response.text()
            answered.append((time.perf_counter() - t0) * 1000)
            shown = await asyncio.wait_for(frame, 10)
            to_frame.append((shown - t0) * 1000)
            event_to_frame.append((shown - self.arrived[number]) * 1000)
            to_audio.append((await asyncio.wait_for(audio, 10) - t0) * 1000)
            await asyncio.sleep(0.05)
        print(f"\n(c) clerk next → frame showing the number, real hub, {len(to_frame)} calls")
        print(f"  {'median':<44} {statistics.median(to_frame):9.2f} ms")
        _line("p99", _pct(to_frame, 0.99), "ms", TARGET_NEXT_TO_FRAME_P99_MS, False)
        print(
            f"  {'of which the hub answering POST next, p50/p99':<44} "
            f"{statistics.median(answered):9.2f} / {_pct(answered, 0.99):.2f} ms"
        )
        print(
            f"  {'event at the screen → frame, p50/p99':<44} "
            f"{statistics.median(event_to_frame):9.2f} / {_pct(event_to_frame, 0.99):.2f} ms"
        )
        print(f"\n(d) call → announcement audio ready to play, {len(to_audio)} calls")
        print(f"  {'median':<44} {statistics.median(to_audio):9.2f} ms")
        _line("p99", _pct(to_audio, 0.99), "ms", TARGET_CALL_TO_AUDIO_P99_MS, False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=900)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    print(f"lobby screen bench; {os.cpu_count()} cores")
    frame_times(args.frames)
    with tempfile.TemporaryDirectory(prefix="qcall-display-bench-") as tmp:
        bench = ScreenBench(args, Path(tmp))
        bench.hub.start()
        try:
            asyncio.run(bench.run())
        finally:
            bench.hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
