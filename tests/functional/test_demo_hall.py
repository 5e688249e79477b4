"""``make demo``'s entry point, headless: the whole hall comes alive, then Ctrl-C ends it all.

The demo runs as ``make demo`` runs it (``python -m qcall demo --config config/demo.toml``),
on free ports, without ``DISPLAY``: the lobby screen and kiosk start as headless children
writing screenshots, the simulation takes tickets at the kiosk and serves them. The test
watches what a visitor would see (printed tickets, counter displays, the lobby screen, the
recorded announcements), stops the demo with SIGINT and looks for anything left running.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from qcall import demo as demo_module
from qcall.config import load_config
from qcall.hall_sim import plan_for
from tests.functional.test_readme import _free_pair, _healthy, _shown

ROOT: Final = Path(__file__).resolve().parents[2]
DEMO_CONFIG: Final = ROOT / "config" / "demo.toml"
# The hub, emulators and two pygame children start in seconds; a first clip render adds ~20 s.
START_TIMEOUT_S: Final = 60.0
# Calls need a resident (one every few seconds), a free simulated clerk and the bus.
ALIVE_TIMEOUT_S: Final = 120.0
# Children get their own stop timeout inside; the demo then stops the hub (event streams).
STOP_TIMEOUT_S: Final = 40.0
POLL_S: Final = 0.5
# A spoken call is "请 A001 号到 3 号窗口" in Chinese and English: seconds, not a click.
MIN_ANNOUNCEMENT_S: Final = 1.0
# Anything above this peak (16-bit samples) is speech rather than silence.
AUDIBLE_PEAK: Final = 1000
TOOLS: Final = ("espeak-ng",)
# A process that has just exited is still listed until reaped: look a few times.
REAP_ATTEMPTS: Final = 6


class RunningDemo:
    """``python -m qcall demo`` in its own session, in a folder of the test's."""

    def __init__(self, folder: Path, voice_dir: Path) -> None:
        self.folder = folder
        self.dir = folder / "var" / "demo"
        bus, printer = _free_pair(), _free_pair()
        self.ports = {"hub": _free_pair(), "bus": bus, "control": bus + 1, "printer": printer}
        cache = folder / "cache" / "qcall"
        cache.mkdir(parents=True)
        (cache / "voice").symlink_to(voice_dir)  # the clip cache rendered once per session
        self.env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        self.env["XDG_CACHE_HOME"] = str(folder / "cache")
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.folder / f"demo-{self.runs}.log"

    def start(self, *extra: str) -> None:
        self.runs += 1
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "qcall", "demo", "--config", str(DEMO_CONFIG),
                    "--dir", str(self.dir), "--port", str(self.ports["hub"]),
                    "--bus-port", str(self.ports["bus"]),
                    "--control-port", str(self.ports["control"]),
                    "--printer-port", str(self.ports["printer"]), *extra,
                ],
                cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(self.ports["hub"]):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo did not start:\n{self.output()}")
            time.sleep(POLL_S)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the demo's whole process group, as a terminal sends it."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)
            pytest.fail(f"the demo did not stop on Ctrl-C:\n{self.output()}")

    def kill_leftovers(self) -> None:
        for pid, _what in _leftovers(self.folder, self.proc.pid if self.proc else -1):
            os.kill(pid, signal.SIGKILL)


def leftovers(folder: Path, session: int) -> list[int]:
    """Like ``_leftovers``, after the last ones had a moment to be reaped by their parents."""
    for _attempt in range(REAP_ATTEMPTS):
        found = _leftovers(folder, session)
        if not found:
            return []
        time.sleep(POLL_S)
    return [pid for pid, _what in found]


def _leftovers(folder: Path, session: int) -> list[tuple[int, str]]:
    """Processes still in the demo's session or naming its folder on their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        state, sid = fields[0], int(fields[3])
        if state != "Z" and (sid == session or str(folder) in cmdline):
            found.append((int(entry.name), f"{state} {cmdline}"))
    if found:
        print("still running:", found)
    return found


@pytest.fixture
def demo(tmp_path: Path, voice_dir: Path) -> Iterator[RunningDemo]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the demo's lobby screen needs {missing} (APT_PACKAGES in the Makefile)")
    running = RunningDemo(tmp_path, voice_dir)
    try:
        yield running
    finally:
        if running.proc is not None and running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()
        running.kill_leftovers()


def _events(db: Path, kind: str) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT data FROM events WHERE type = ? ORDER BY seq", (kind,))
        return [json.loads(row[0]) for row in rows]


def _announcements(folder: Path) -> dict[str, Path]:
    """Finished recordings by called number (``000001-A001-w3.wav``)."""
    return {path.name.split("-")[1]: path for path in sorted(folder.glob("*.wav"))}


def _lobby_texts(folder: Path) -> list[str]:
    try:
        dump = json.loads((folder / "latest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # not written yet
    return [str(element["text"]) for element in dump["elements"]]


def _printed(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt")))


def _audible_seconds(path: Path) -> tuple[float, int]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2, path
        frames = wav.readframes(wav.getnframes())
        seconds = wav.getnframes() / wav.getframerate()
    samples = array("h", frames)
    return seconds, max((abs(s) for s in samples), default=0)


def test_make_demo_brings_the_hall_alive_and_ctrl_c_leaves_nothing(demo: RunningDemo) -> None:
    config = load_config(DEMO_CONFIG)
    displays = {w.number: w.devices.counter_display for w in config.windows}
    staff = demo_module.new_credentials(config)["staff"]
    windows = demo_module.simulated_windows(config)
    plan = plan_for(config, "http://x", "t", staff, windows=windows, control=("x", 1))
    by_keypad = {clerk.window for clerk in plan.clerks if clerk.keypad is not None}
    assert by_keypad
    demo.start("--fresh")
    out = demo.dir
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + ALIVE_TIMEOUT_S
    while time.monotonic() < deadline:
        if demo.proc is not None and demo.proc.poll() is not None:
            pytest.fail(f"the demo ended by itself:\n{demo.output()}")
        spoken = _announcements(out / "announcements")
        texts = " ".join(_lobby_texts(out / "lobby"))
        on_lobby = [number for number in spoken if number in texts]
        shown = {
            window: _shown(demo.ports["control"], address).get("ticket")
            for window, address in displays.items()
            if address is not None
        }
        calls = _events(out / "qcall.db", "ticket.called")
        keyed = [e["number"] for e in calls if e["window"] in by_keypad]
        seen = {"spoken": spoken, "on_lobby": on_lobby, "shown": shown, "keyed": keyed}
        if (
            list(out.glob("printer-*/*.png"))
            and on_lobby
            and keyed
            and any(ticket for ticket in shown.values())
        ):
            break
        time.sleep(POLL_S)
    else:
        pytest.fail(f"the hall did not come alive: {seen}\n{demo.output()}")
    on_display = {window: ticket for window, ticket in shown.items() if ticket}

    assert demo.interrupt() == 0, demo.output()
    assert leftovers(demo.folder, demo.proc.pid if demo.proc else -1) == [], demo.output()
    assert "演示已停止 / demo stopped" in demo.output()
    assert "Traceback" not in demo.output()

    # Issued at the kiosk, printed, called, shown, announced: the log says so for each.
    db = out / "qcall.db"
    issued = {e["number"]: e for e in _events(db, "ticket.issued")}
    called = {e["number"]: e for e in _events(db, "ticket.called")}
    printed = _printed(next(out.glob("printer-*")))
    kiosk_numbers = [n for n, e in issued.items() if e["channel"] == "kiosk"]
    assert kiosk_numbers, issued
    assert all(re.search(rf"\] {n}$", printed, re.MULTILINE) for n in kiosk_numbers[:3])
    for window, ticket in on_display.items():
        assert str(ticket) in called, (window, ticket, called)
        assert any(c["window"] == window for c in called.values() if c["number"] == ticket)
    for number in seen["on_lobby"]:
        assert number in called
        assert number in kiosk_numbers
    assert list(out.glob("lobby/*.png"))
    assert list(out.glob("kiosk/*.png"))
    for number, path in _announcements(out / "announcements").items():
        assert number in called, number
        seconds, peak = _audible_seconds(path)
        assert seconds >= MIN_ANNOUNCEMENT_S, (path, seconds)
        assert peak >= AUDIBLE_PEAK, (path, peak)

    # A second run resumes the day: no number is issued twice.
    demo.start("--no-screens")
    deadline = time.monotonic() + ALIVE_TIMEOUT_S
    while len(_events(db, "ticket.issued")) <= len(issued) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert demo.interrupt() == 0, demo.output()
    again = [e["number"] for e in _events(db, "ticket.issued")]
    assert len(again) > len(issued), demo.output()
    assert len(again) == len(set(again)), again
    assert "made new demo accounts" not in demo.output()

    # --fresh starts clean: a new database, new accounts, no tickets yet.
    demo.start("--fresh", "--no-simulate", "--no-screens")
    assert demo.interrupt() == 0, demo.output()
    assert _events(db, "ticket.issued") == []
    assert "made new demo accounts" in demo.output()
    assert not list(out.glob("printer-*/*.png"))
    assert leftovers(demo.folder, demo.proc.pid if demo.proc else -1) == []
