"""Real X11 pointer input takes a ticket end to end: Xvfb, ``qcall kiosk`` and xdotool clicks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from devices.emulators.printer import PrinterEmulator
from tests.kiosk.conftest import ARTIFACTS, UI_TIMEOUT_S, HubProcess

QCALL: Final = Path(sys.executable).with_name("qcall")
# Xvfb prints its display number within a second; the kiosk opens its window in about two.
START_TIMEOUT_S: Final = 20.0
# One xdotool call is a few milliseconds; the bound catches a wedged X server.
XDOTOOL_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.05
SIZE: Final = (1366, 768)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: apt-get install xvfb xdotool (make sysdeps)")
    return path


@pytest.fixture
def xserver(tmp_path: Path) -> Iterator[str]:
    """A private Xvfb server; yields its DISPLAY."""
    read, write = os.pipe()
    with (tmp_path / "xvfb.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                _tool("Xvfb"),
                "-displayfd",
                str(write),
                "-screen",
                "0",
                "1920x1080x24",
                "-nolisten",
                "tcp",
            ],
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            pytest.fail(f"Xvfb did not start: {(tmp_path / 'xvfb.log').read_text()}")
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


def _xdotool(display: str, *args: str) -> str:
    result = subprocess.run(
        [_tool("xdotool"), *args],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=XDOTOOL_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"xdotool {' '.join(args)}: {result.stderr}")
    return result.stdout


def _read_scene(path: Path) -> dict[str, Any] | None:
    try:
        scene: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return scene


async def _scene(path: Path, screen: str, kiosk: asyncio.subprocess.Process) -> dict[str, Any]:
    """Wait until the kiosk's --scene file shows ``screen`` (the kiosk rewrites it atomically)."""
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            assert kiosk.returncode is None, "the kiosk exited"
            scene = await asyncio.to_thread(_read_scene, path)
            if scene is not None and scene["screen"] == screen:
                return scene
            await asyncio.sleep(POLL_S)


async def _click(display: str, window: str, scene: dict[str, Any], label: str) -> None:
    button = next(
        e
        for e in scene["elements"]
        if e["kind"] == "button" and label in e["label"] and e["enabled"]
    )
    x, y, w, h = button["rect"]
    await asyncio.to_thread(
        _xdotool, display, "mousemove", "--window", window, str(x + w // 2), str(y + h // 2)
    )
    await asyncio.to_thread(_xdotool, display, "click", "1")


async def test_x11_pointer_takes_a_ticket(
    xserver: str, hub: HubProcess, printer: PrinterEmulator, tmp_path: Path
) -> None:
    scene_file = tmp_path / "scene.json"
    shots = ARTIFACTS / "test_x11_pointer_takes_a_ticket"
    shutil.rmtree(shots, ignore_errors=True)
    env = {
        **os.environ,
        "DISPLAY": xserver,
        "SDL_VIDEODRIVER": "x11",
        "SDL_AUDIODRIVER": "dummy",
        "QCALL_KIOSK_TOKEN": hub.token("kiosk"),
    }
    kiosk = await asyncio.create_subprocess_exec(
        str(QCALL),
        "kiosk",
        "--hub",
        hub.url,
        "--printer",
        printer.url,
        "--size",
        f"{SIZE[0]}x{SIZE[1]}",
        "--scene",
        str(scene_file),
        "--screenshot",
        str(shots),
        "--state-dir",
        str(tmp_path / "state"),
        "--log-level",
        "warning",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        welcome = await _scene(scene_file, "welcome", kiosk)
        async with asyncio.timeout(START_TIMEOUT_S):
            while not any(
                e["enabled"] and "请触摸屏幕取号" in e["label"] for e in welcome["elements"]
            ):
                welcome = await _scene(scene_file, "welcome", kiosk)
        found = await asyncio.to_thread(_xdotool, xserver, "search", "--sync", "--class", "qcall")
        windows = found.split()
        assert windows, "no kiosk window on the X server"
        window = windows[0]
        await _click(xserver, window, welcome, "请触摸屏幕取号")
        departments = await _scene(scene_file, "departments", kiosk)
        await _click(xserver, window, departments, "人力资源")
        services = await _scene(scene_file, "services", kiosk)
        await _click(xserver, window, services, "社会保障卡")
        notice = await _scene(scene_file, "notice", kiosk)
        await _click(xserver, window, notice, "取号")
        result = await _scene(scene_file, "result", kiosk)
        async with asyncio.timeout(UI_TIMEOUT_S):
            jobs = await printer.wait_for_jobs(1)
        number = next(
            e["label"] for e in result["elements"] if re.fullmatch(r"[A-Z]{1,2}\d{3,4}", e["label"])
        )
        assert number in jobs[0].text
        assert len(printer.jobs) == 1
    finally:
        if kiosk.returncode is None:
            kiosk.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                _out, err = await kiosk.communicate()
        except TimeoutError:
            kiosk.kill()
            _out, err = await kiosk.communicate()
    assert kiosk.returncode == 0, err.decode(errors="replace")
