"""The lobby screen (display/) against a real ``qcall serve``: headless pygame, real sockets.

The screen runs in this process (its scene and model can be read); the hub is a subprocess
on its own copy of the template database and of the demo configuration, so editing the
notices here cannot disturb another module.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from display.app import LobbyScreen, Options
from display.layout import Scene
from qcall.client import QcallApiError, QcallClient
from qcall.simulate_faults import Cable
from tests.functional.conftest import PIN, QCALL, ROOT, Credentials, HubProcess

# A call reaches the screen in milliseconds; these bound a hang on a loaded shared machine.
SCREEN_TIMEOUT_S: Final = 20.0
# Notices are re-read by the screen every SETTINGS_POLL_S (10 s); then some slack.
SETTINGS_TIMEOUT_S: Final = 40.0
# The hub reports a screen gone after [hub].screen_offline_s, set to 1 s in this module.
OFFLINE_AFTER_S: Final = 1.0
OFFLINE_TIMEOUT_S: Final = 20.0
POLL_S: Final = 0.02
CLI_SCREEN_TIMEOUT_S: Final = 60.0
ARTIFACTS: Final = ROOT / "var" / "artifacts" / "lobby"  # screenshots a reviewer opens


def _make_demo_module() -> Any:
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "config" / "make_demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_config(path: Path, raw: dict[str, Any]) -> None:
    """Write a configuration (atomically, so the hub never reads half a file)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(_make_demo_module().dumps(raw), encoding="utf-8")
    partial.replace(path)


def read(path: Path) -> str:
    """A text file's content."""
    return path.read_text(encoding="utf-8")


def write(path: Path, text: str) -> None:
    """Replace a text file's content."""
    path.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def lobby_config(credentials: Credentials, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The standalone demo center with a short screen-offline time and no quiet hours."""
    raw = tomllib.loads(credentials.config.read_text(encoding="utf-8"))
    raw.setdefault("hub", {})["screen_offline_s"] = OFFLINE_AFTER_S
    raw["lobby"]["quiet_hours"] = []
    raw["lobby"]["volume_schedule"] = []
    path = tmp_path_factory.mktemp("lobby-config") / "center.toml"
    write_config(path, raw)
    return path


@pytest.fixture(scope="module")
def hub(
    credentials: Credentials, lobby_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcess]:
    """This module's hub, on its own configuration file."""
    folder = tmp_path_factory.mktemp("lobby-hub")
    db = folder / "qcall.db"
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{credentials.template}{suffix}")
        if source.exists():
            shutil.copyfile(source, Path(f"{db}{suffix}"))
    process = HubProcess(dataclasses.replace(credentials, config=lobby_config), db, folder / "log")
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            assert process.stop() == 0, process.log_tail()
        process.kill()


async def until(predicate: Callable[[], bool], what: str, limit: float = SCREEN_TIMEOUT_S) -> None:
    """Wait (polling) until ``predicate`` holds; fail naming ``what``."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)


@contextlib.asynccontextmanager
async def running(options: Options) -> AsyncIterator[LobbyScreen]:
    """A lobby screen running in this loop until the block ends."""
    screen = LobbyScreen(options)
    stop = asyncio.Event()
    task = asyncio.create_task(screen.run(stop))
    try:
        await until(lambda: screen.scene is not None and screen.model.online, "the screen online")
        yield screen
    finally:
        stop.set()
        await asyncio.wait_for(task, SCREEN_TIMEOUT_S)


def rows(scene: Scene) -> dict[str, tuple[str, str]]:
    """Window rows on screen: window label → (ticket, state word)."""
    texts = scene.texts()
    out = {}
    for label, text in texts.items():
        if label.endswith(".window") and text:
            slot = label.removesuffix(".window")
            out[text] = (texts[f"{slot}.ticket"], texts[f"{slot}.state"])
    return out


async def clerk(hub: HubProcess, staff: str, window: int) -> QcallClient:
    """A logged-in clerk client at an open window (closed again by the test)."""
    client = QcallClient(hub.url)
    await client.__aenter__()
    await client.login(staff, PIN)
    view = await client.state()
    if next(w for w in view["windows"] if w["number"] == window)["state"] == "closed":
        await client.open_window(window)
    return client


async def leave(client: QcallClient, window: int) -> None:
    """Finish whatever is at the window, close it and the client."""
    with contextlib.suppress(QcallApiError):
        await client.resume(window)
    with contextlib.suppress(QcallApiError):
        await client.finish(window)
    await client.close_window(window)
    await client.close()


async def test_a_call_shows_number_and_window_and_is_announced(
    hub: HubProcess, tmp_path: Path, voice_dir: Path
) -> None:
    shots = tmp_path / "shots"
    record = tmp_path / "record"
    options = Options(
        hub.url,
        hub.token("display"),
        screenshot=shots,
        record=record,
        voice_dir=voice_dir,
    )
    async with (
        running(options) as screen,
        QcallClient(hub.url, hub.token("kiosk")) as kiosk,
    ):
        c3 = await clerk(hub, "c3", 3)
        try:
            issued = await kiosk.issue_ticket("medical_reimbursement")
            called = await c3.call_next(3)
            assert called is not None
            assert called["number"] == issued["number"]
            number = called["number"]
            await until(
                lambda: (
                    screen.scene is not None
                    and screen.scene.texts()["call.line1"] == f"请 {number} 号"
                ),
                "the call on screen",
            )
            texts = screen.scene.texts()
            assert texts["call.line2"] == "到 3 号窗口"
            # In a 10 m hall the new call first covers the hall (popup), then the list is back.
            await until(
                lambda: (
                    screen.scene is not None
                    and rows(screen.scene).get("3号窗口") == (number, "呼叫中")
                ),
                "window 3 calling in the list after the popup",
            )
            await until((shots / "latest.json").exists, "a screenshot")
            await until(
                lambda: f"请 {number} 号" in read(shots / "latest.json"),
                "the screenshot of the call",
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shots / "latest.png", ARTIFACTS / "lobby-call-1920x1080.png")
            assert (shots / "latest.png").stat().st_size > 20_000
            # No personal data: the staff member at the window never appears.
            assert all("c3" not in text and "测试" not in text for text in texts.values())
            await until(lambda: any(record.glob("*.wav")), "the announcement", 60.0)
            spoken = sorted(record.glob("*.wav"))
            assert spoken[0].name == f"000001-{number}-w3.wav"
        finally:
            await leave(c3, 3)


async def test_paused_window_shows_paused_and_zone_hides_other_windows(
    hub: HubProcess, voice_dir: Path
) -> None:
    options = Options(hub.url, hub.token("display"), zone=frozenset({1, 2}), voice=False)
    whole = Options(hub.url, hub.token("display"), voice=False)
    async with running(options) as zone_screen, running(whole) as screen:
        c1 = await clerk(hub, "c1", 1)
        c4 = await clerk(hub, "c4", 4)
        try:
            await c1.pause(1, "午休")
            await until(
                lambda: (
                    zone_screen.scene is not None
                    and rows(zone_screen.scene).get("1号窗口", ("", ""))[1] == "暂停服务"
                ),
                "window 1 paused on the zone screen",
            )
            await until(
                lambda: (
                    screen.scene is not None
                    and rows(screen.scene).get("4号窗口", ("", ""))[1] == "空闲"
                ),
                "window 4 open on the hall screen",
            )
            assert zone_screen.scene is not None
            zone_rows = rows(zone_screen.scene)
            assert set(zone_rows) == {"1号窗口", "2号窗口"}
            async with QcallClient(hub.url, hub.token("kiosk")) as kiosk:
                await kiosk.issue_ticket("minimum_living")
            called = await c4.call_next(4)
            assert called is not None
            await until(
                lambda: (
                    screen.scene is not None
                    and screen.scene.texts()["call.line1"] == f"请 {called['number']} 号"
                ),
                "the call on the hall screen",
            )
            # The zone screen neither features nor lists a call at another zone's window.
            assert zone_screen.scene is not None
            assert called["number"] not in json.dumps(zone_screen.scene.dump(), ensure_ascii=False)
            assert all(c.window in (1, 2) for c in zone_screen.model.recent)
        finally:
            await leave(c1, 1)
            await leave(c4, 4)


async def test_disconnect_and_reconnect_lose_and_repeat_nothing(
    hub: HubProcess, voice_dir: Path, tmp_path: Path
) -> None:
    cable = Cable(("127.0.0.1", hub.port))  # a network cable the test pulls
    await cable.start()
    options = Options(
        cable.url,
        hub.token("display"),
        voice_dir=voice_dir,
        audio=False,
        record=tmp_path / "record",
    )
    async with (
        running(options) as screen,
        QcallClient(hub.url, hub.token("kiosk")) as kiosk,
    ):
        c5 = await clerk(hub, "c5", 5)
        try:
            await until(screen.voice_ready.is_set, "the voice", 60.0)
            cable.pull()
            await until(lambda: not screen.model.online, "the offline mark")
            assert screen.scene is not None
            await until(
                lambda: (
                    screen.scene is not None
                    and "网络中断" in screen.scene.texts()["header.offline"]
                ),
                "the offline mark on screen",
            )
            numbers = []
            for _ in range(3):
                await kiosk.issue_ticket("senior_allowance")
                called = await c5.call_next(5)
                assert called is not None
                numbers.append(called["number"])
            await c5.recall(5)
            cable.plug()
            await until(lambda: screen.model.online, "the screen back online", 30.0)
            await until(
                lambda: screen.announcer is not None and len(screen.announcer.history) >= 4,
                "the announcements after the outage",
                60.0,
            )
            announcer = screen.announcer
            assert announcer is not None
            spoken = [(s.call.number, s.call.recall) for s in announcer.history]
            assert spoken == [(n, False) for n in numbers] + [(numbers[-1], True)]
            seqs = [s.call.seq for s in announcer.history]
            assert seqs == sorted(set(seqs))
            recent = [(c.number, c.window) for c in screen.model.recent][:4]
            assert recent == [(numbers[2], 5), (numbers[2], 5), (numbers[1], 5), (numbers[0], 5)]
            await until(
                lambda: (
                    screen.scene is not None
                    and rows(screen.scene).get("5号窗口", ("", ""))[0] == numbers[-1]
                ),
                "window 5 in the list with the last call",
            )
        finally:
            await leave(c5, 5)
            await cable.stop()


async def test_notices_edited_in_the_config_reach_the_screen(
    hub: HubProcess, lobby_config: Path
) -> None:
    options = Options(hub.url, hub.token("display"), voice=False)
    async with running(options) as screen:
        await until(lambda: screen.scene is not None and screen.scene.band is not None, "band")
        raw = tomllib.loads(read(lobby_config))
        raw["lobby"]["notices"] = [{"zh": "今天下午三点系统维护", "en": "Maintenance at 3 pm"}]
        write_config(lobby_config, raw)
        await until(
            lambda: (
                screen.scene is not None
                and screen.scene.band is not None
                and "今天下午三点系统维护" in screen.scene.band.text
            ),
            "the new notice on the band",
            SETTINGS_TIMEOUT_S,
        )
        # A broken edit is refused by the hub and the screen keeps the last good notices.
        good = read(lobby_config)
        try:
            write(lobby_config, good.replace("repeat = 2", "repeat = 99"))
            async with QcallClient(hub.url, hub.token("display")) as display:
                settings = await display.lobby()
            assert settings["lobby"]["announce"]["repeat"] == 2
            assert settings["lobby"]["notices"][0]["zh"] == "今天下午三点系统维护"
        finally:
            write(lobby_config, good)


async def test_hub_lists_screens_and_reports_one_gone(hub: HubProcess) -> None:
    name = f"lobby-{time.monotonic_ns()}"
    token = hub.create_token("display", name)
    async with QcallClient(hub.url, hub.token("admin")) as admin:
        async with running(Options(hub.url, token, voice=False)):
            diagnostics = await admin.diagnostics()
            mine = [s for s in diagnostics["screens"] if s["name"] == name]
            assert len(mine) == 1
            assert isinstance(mine[0]["last_seq"], int)
            assert mine[0]["since"]
            # A screen seen for the first time is no event; gone too long, it is one.
            assert f"screen:{name}" not in (await admin.state())["devices"]
        device = f"screen:{name}"
        await device_state(admin, device, "offline")
        diagnostics = await admin.diagnostics()
        assert not [s for s in diagnostics["screens"] if s["name"] == name]
        async with running(Options(hub.url, token, voice=False)):
            await device_state(admin, device, "ready")


async def device_state(admin: QcallClient, device: str, wanted: str) -> None:
    """Wait until the hub reports ``device`` in state ``wanted``."""
    deadline = time.monotonic() + OFFLINE_TIMEOUT_S
    while True:
        state = await admin.state()
        if state["devices"].get(device, {}).get("state") == wanted:
            return
        assert time.monotonic() < deadline, state["devices"]
        await asyncio.sleep(0.1)


async def test_public_figures_have_no_personal_data(hub: HubProcess) -> None:
    async with QcallClient(hub.url, hub.token("display")) as display:
        figures = await display.figures()
    assert set(figures) == {
        "date",
        "issued",
        "served",
        "waiting_mean_s",
        "ratings",
        "satisfaction_pct",
    }
    assert all(isinstance(v, (int, float, str)) or v is None for v in figures.values())


def test_cli_screen_writes_screenshots_and_refuses_no_token(
    hub: HubProcess, tmp_path: Path
) -> None:
    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    env.pop("QCALL_DISPLAY_TOKEN", None)
    refused = subprocess.run(
        [str(QCALL), "display", "--hub", hub.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_SCREEN_TIMEOUT_S,
        check=False,
    )
    assert refused.returncode == 2
    assert "令牌" in refused.stderr
    bad_hub = subprocess.run(
        [str(QCALL), "display", "--hub", "127.0.0.1:8080", "--token", "x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_SCREEN_TIMEOUT_S,
        check=False,
    )
    assert bad_hub.returncode == 2
    assert "http://" in bad_hub.stderr
    shots = tmp_path / "shots"
    proc = subprocess.Popen(
        [
            str(QCALL),
            "display",
            "--hub",
            hub.url,
            "--token",
            hub.token("display"),
            "--size",
            "1080x1920",
            "--screenshot",
            str(shots),
            "--scene",
            str(tmp_path / "scene.json"),
            "--no-voice",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + CLI_SCREEN_TIMEOUT_S
        scene: dict[str, Any] = {}

        def connected(scene: dict[str, Any]) -> bool:
            texts = {e["label"]: e["text"] for e in scene.get("elements", [])}
            return "8号窗口" in texts.values() and texts.get("header.offline") == ""

        while not connected(scene):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, scene
            time.sleep(0.1)
            if (shots / "latest.json").exists():
                scene = json.loads((shots / "latest.json").read_text(encoding="utf-8"))
        assert scene["size"] == [1080, 1920]
        texts = {e["label"]: e["text"] for e in scene["elements"]}
        assert texts["header.offline"] == ""
        assert texts["header.center"].startswith("梧桐街道社区事务受理服务中心")
        dumped = json.loads((tmp_path / "scene.json").read_text(encoding="utf-8"))
        assert dumped["size"] == [1080, 1920]
        assert {e["label"] for e in dumped["elements"]} == set(texts)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shots / "latest.png", ARTIFACTS / "lobby-1080x1920.png")
    finally:
        proc.terminate()
        assert proc.wait(CLI_SCREEN_TIMEOUT_S) == 0
        if proc.stdout is not None:
            proc.stdout.close()
