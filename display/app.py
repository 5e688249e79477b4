"""The lobby screen process: event stream → model → layout → renderer, and the announcer.

One asyncio loop on the main thread (SDL wants its display there) runs the stream, the polls
of lobby settings, figures and waiting counts, the voice and the frame loop. The frame loop
sleeps until the next animation step or until an event wakes it, so a call reaches the
pixels without waiting for a frame tick.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import random
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from display.announcer import Announcer, MixerPlayer, Spoken, templates_from, volume_at
from display.layout import PAGE_S, Scene, best_call_px, hall_depth, layout, needed_call_px
from display.model import LobbyModel
from display.voice import DEFAULT_TEMPLATES, ClipLibrary, Templates, build_cache, required_clips
from qcall.client import QcallApiError, QcallClient, QcallConnectionError

_LOGGER = logging.getLogger(__name__)

# Notices and announcement settings edited in the center's file reach screens this fast.
SETTINGS_POLL_S: Final = 10.0
# Public figures change slowly (a served ticket, a rating); twice a minute is plenty.
FIGURES_POLL_S: Final = 30.0
# Waiting counts are fetched this long after the last event that changes them (debounce).
WAITING_DEBOUNCE_S: Final = 0.3
# The scrolling band moves at most this many frames a second (frame-rate cap).
ANIMATION_FRAME_S: Final = 1 / 30
# With nothing moving, the loop still looks at the clock and at window events this often.
IDLE_FRAME_S: Final = 1.0
# Stream reconnect backoff: at once, doubling to a cap, with jitter (a hall of screens must
# not reconnect in lock-step after a hub restart).
RETRY_INITIAL_S: Final = 0.2
RETRY_MAX_S: Final = 5.0
RETRY_JITTER: Final = 0.2
# Screenshots kept besides latest.png (a technician sees the last few changes).
SCREENSHOTS_KEPT: Final = 30
DEFAULT_TZ: Final = "Asia/Shanghai"


def default_voice_dir() -> Path:
    """``$XDG_CACHE_HOME/qcall/voice`` (``~/.cache/qcall/voice``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qcall" / "voice"


@dataclass(frozen=True, slots=True)
class Options:
    """What ``qcall display`` was asked to do."""

    hub: str
    token: str
    zone: frozenset[int] | None = None
    fullscreen: bool = False
    size: tuple[int, int] = (1920, 1080)
    screenshot: Path | None = None
    scene: Path | None = None
    record: Path | None = None
    audio: bool = True
    voice: bool = True
    voice_dir: Path | None = None
    lang: str = "zh"


FrameHook = Callable[[Scene, float], None]


class LobbyScreen:
    """One lobby screen and its voice, following one hub."""

    def __init__(
        self,
        options: Options,
        *,
        on_frame: FrameHook | None = None,
        on_spoken: Callable[[Spoken], None] | None = None,
    ) -> None:
        self.options = options
        self.model = LobbyModel(zone=options.zone)
        self.announcer: Announcer | None = None
        self.scene: Scene | None = None
        self.frames = 0
        self._on_frame = on_frame
        self._on_spoken = on_spoken
        self._wake = asyncio.Event()
        self._waiting_due = asyncio.Event()
        self._settings_seen = asyncio.Event()
        self._templates: Templates = DEFAULT_TEMPLATES
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shots = ThreadPoolExecutor(1, thread_name_prefix="qcall-screenshot")
        self._shot_count = 0
        self._library = ClipLibrary(options.voice_dir or default_voice_dir())
        self.voice_ready = asyncio.Event()
        self._legibility_checked: str | None = None

    # ----------------------------------------------------------------- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Show the hall until ``stop`` is set (or the window is closed)."""
        import pygame

        from display.render import Renderer, find_cjk_font

        pygame.display.init()
        font = find_cjk_font()
        if self.options.fullscreen:
            screen = pygame.display.set_mode((0, 0), pygame.FULLSCREEN)
            pygame.mouse.set_visible(False)
        else:
            screen = pygame.display.set_mode(self.options.size)
        pygame.display.set_caption("qcall 大厅屏 / lobby screen")
        renderer = Renderer(screen, font)
        try:
            async with QcallClient(self.options.hub, self.options.token) as client:
                self._start(self._follow(client), "stream")
                self._start(self._poll_settings(client), "settings")
                self._start(self._poll_figures(client), "figures")
                self._start(self._refresh_waiting(client), "waiting")
                if self.options.voice:
                    self._start(self._voice(), "voice")
                await self._frames(pygame, renderer, stop)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._shots.shutdown(wait=True)
            pygame.display.quit()

    def _start(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"qcall-display:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("task %s crashed", task.get_name(), exc_info=task.exception())

    # ----------------------------------------------------------------- frames

    def _tz(self) -> dt.tzinfo:
        name = DEFAULT_TZ if self.model.settings is None else self.model.settings["timezone"]
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(DEFAULT_TZ)

    async def _frames(self, pygame: Any, renderer: Any, stop: asyncio.Event) -> None:
        size = pygame.display.get_surface().get_size()
        key: tuple[Any, ...] | None = None
        shot_key: tuple[tuple[str, str], ...] | None = None
        scene: Scene | None = None
        while not stop.is_set():
            self._wake.clear()
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (
                    event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE
                ):
                    stop.set()
            mono = time.monotonic()
            wall = dt.datetime.now(self._tz())
            self.model.tick(mono)
            content = (self.model.version, wall.strftime("%Y%m%d%H%M"), int(mono // PAGE_S))
            frame_key = (*content, self.model.flash_on(mono))
            if frame_key != key or scene is None:
                scene = layout(self.model, size, self.options.lang, wall, mono)
                key = frame_key
            self._check_legibility(scene)
            rects = renderer.draw(scene, mono)
            if rects:
                pygame.display.update(rects)
            self.scene = scene
            self.frames += 1
            if self._on_frame is not None:
                self._on_frame(scene, mono)
            # A visible change is a change of what is written where (not the flash or band).
            shown = tuple((e.label, e.text) for e in scene.elements)
            if shown != shot_key:
                shot_key = shown
                self._snapshot(pygame, renderer.screen, scene)
            await self._sleep(scene, mono, stop)

    def _check_legibility(self, scene: Scene) -> None:
        """Warn once per settings version when the call is too small for the hall's depth."""
        settings = self.model.settings
        if settings is None or settings["version"] == self._legibility_checked:
            return
        self._legibility_checked = settings["version"]
        depth = hall_depth(self.model)
        needed = needed_call_px(depth, scene.size)
        size = best_call_px(self.model, scene.size)
        if size < needed:
            _LOGGER.warning(
                "the called number is %d px tall type; a %g m hall needs about %d px "
                "(ui.md rule 1): use a larger screen, or one screen per zone nearer the seats",
                size,
                depth,
                needed,
            )

    async def _sleep(self, scene: Scene, mono: float, stop: asyncio.Event) -> None:
        timeout = IDLE_FRAME_S
        if scene.band is not None:
            timeout = ANIMATION_FRAME_S
        deadline = self.model.next_deadline(mono)
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - mono))
        waits = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
        _done, pending = await asyncio.wait(
            waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for future in pending:
            future.cancel()

    def _snapshot(self, pygame: Any, screen: Any, scene: Scene) -> None:
        """After a visible change: PNG (``--screenshot``) and scene JSON (``--scene``)."""
        options = self.options
        if options.screenshot is None and options.scene is None:
            return
        self._shot_count += 1
        number = self._shot_count
        dump = json.dumps(scene.dump(), ensure_ascii=False)
        copy = screen.copy() if options.screenshot is not None else None
        self._shots.submit(self._write_snapshot, pygame, copy, dump, number)

    def _write_snapshot(self, pygame: Any, surface: Any, dump: str, number: int) -> None:
        try:
            if self.options.scene is not None:
                _replace_text(self.options.scene, dump)
            folder = self.options.screenshot
            if folder is None or surface is None:
                return
            folder.mkdir(parents=True, exist_ok=True)
            numbered = folder / f"screen-{number:06d}.png"
            pygame.image.save(surface, str(numbered))
            latest = folder / "latest.partial.png"
            pygame.image.save(surface, str(latest))
            latest.replace(folder / "latest.png")
            _replace_text(folder / "latest.json", dump)
            old = folder / f"screen-{number - SCREENSHOTS_KEPT:06d}.png"
            old.unlink(missing_ok=True)
        except (OSError, pygame.error) as err:
            _LOGGER.warning("screenshot not written: %s", err)

    # ----------------------------------------------------------------- hub

    async def _follow(self, client: QcallClient) -> None:
        """Follow the event stream; on a loss keep the state, mark offline, resume after=."""
        delay = RETRY_INITIAL_S
        failures = 0
        while True:
            try:
                async for message in client.events(after=self.model.seq, reconnect=False):
                    mono = time.monotonic()
                    if failures:
                        _LOGGER.info("event stream back after %d failed attempts", failures)
                        failures = 0
                    delay = RETRY_INITIAL_S
                    self.model.set_online(True)
                    try:
                        calls = self.model.apply(message, mono, dt.datetime.now(dt.UTC))
                    except (KeyError, TypeError, ValueError) as err:
                        # A message this screen cannot read must not stop the stream.
                        _LOGGER.warning("event %s ignored: %r", message.get("seq"), err)
                        continue
                    if self.options.voice:
                        for call in calls:
                            self._announcer_submit(call, mono)
                    if message["type"] == "snapshot" or self.model.waiting_stale:
                        self._waiting_due.set()
                    self._wake.set()
            except QcallApiError as err:
                failures += 1
                _LOGGER.error(  # noqa: TRY400 - the reason is the message, no traceback
                    "the hub refused the event stream: %s (check the display token)", err
                )
                delay = RETRY_MAX_S
            except QcallConnectionError as err:
                failures += 1
                log = _LOGGER.warning if failures == 1 else _LOGGER.debug
                log("event stream to %s lost: %s", self.options.hub, err)
            if self.model.set_online(False):
                self._wake.set()
            jitter = 1 + random.uniform(-RETRY_JITTER, RETRY_JITTER)  # noqa: S311
            await asyncio.sleep(delay * jitter)
            delay = min(delay * 2, RETRY_MAX_S)

    def _announcer_submit(self, call: Any, mono: float) -> None:
        if self.announcer is None:
            self.announcer = self._make_announcer()
        self.announcer.submit(call, mono)

    def _make_announcer(self) -> Announcer:
        options = self.options
        player = MixerPlayer() if options.audio else None
        lobby = {} if self.model.settings is None else self.model.settings["lobby"]
        return Announcer(
            self._library,
            self._templates,
            player=player,
            record_dir=options.record,
            max_delay_s=float(lobby.get("announce", {}).get("max_delay_s", 60.0)),
            volume=self._volume,
            on_spoken=self._on_spoken,
        )

    def _volume(self) -> float:
        if self.model.settings is None:
            return 1.0
        return volume_at(self.model.settings["lobby"], dt.datetime.now(self._tz()).time())

    async def _poll_settings(self, client: QcallClient) -> None:
        while True:
            try:
                settings = await client.lobby()
            except (QcallConnectionError, QcallApiError) as err:
                _LOGGER.debug("lobby settings not fetched: %s", err)
            else:
                if self.model.set_settings(settings):
                    lobby = settings["lobby"]
                    self._templates = templates_from(lobby)
                    if self.announcer is not None:
                        self.announcer.templates = self._templates
                        self.announcer.max_delay_s = float(lobby["announce"]["max_delay_s"])
                    self._settings_seen.set()
                    self._wake.set()
            await asyncio.sleep(SETTINGS_POLL_S)

    async def _poll_figures(self, client: QcallClient) -> None:
        while True:
            try:
                if self.model.set_figures(await client.figures()):
                    self._wake.set()
            except (QcallConnectionError, QcallApiError) as err:
                _LOGGER.debug("public figures not fetched: %s", err)
            await asyncio.sleep(FIGURES_POLL_S)

    async def _refresh_waiting(self, client: QcallClient) -> None:
        while True:
            await self._waiting_due.wait()
            await asyncio.sleep(WAITING_DEBOUNCE_S)
            self._waiting_due.clear()
            try:
                state = await client.state()
            except (QcallConnectionError, QcallApiError) as err:
                _LOGGER.debug("waiting counts not fetched: %s", err)
                continue
            if self.model.set_waiting(state["waiting"]):
                self._wake.set()

    # ----------------------------------------------------------------- voice

    async def _voice(self) -> None:
        """Prepare the clip cache for the templates in force, then announce; follow changes."""
        await self._settings_seen.wait()
        prepared: Templates | None = None
        while True:
            templates = self._templates
            if templates != prepared:
                directory = self._library.directory
                report = await asyncio.to_thread(build_cache, directory, templates)
                if report.rendered:
                    _LOGGER.info("voice clips rendered: %d", len(report.rendered))
                if report.failed:
                    _LOGGER.warning("voice clips that failed: %s", report.failed)
                keys = [spec.key for spec in required_clips(templates)]
                await asyncio.to_thread(self._library.load, keys)
                prepared = templates
                if self.announcer is None:
                    self.announcer = self._make_announcer()
                if not self.voice_ready.is_set():
                    self.voice_ready.set()
                    self._start(self.announcer.run(), "announcer")
            self._settings_seen.clear()
            await self._settings_seen.wait()


def _replace_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
