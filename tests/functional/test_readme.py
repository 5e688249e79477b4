"""The README is the door: its shell blocks work as written, in order, on a fresh demo.

The demo runs on free ports; the README's fixed ports are rewritten to them, nothing else.
The blocks run in one bash session (``set -euo pipefail``) from a folder laid out like the
repository (``config/``, ``.venv/``, ``var/demo/``), with a PATH that does not yet hold
``qcall``: the README's own instruction must put it there.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from qcall.api.routes import ROUTES
from qcall.events import EventType
from qcall.model import Role

ROOT: Final = Path(__file__).resolve().parents[2]
README: Final = ROOT / "README.md"
DOCS: Final = ROOT / "docs"
# The fixed ports of config/demo.toml as the README writes them (emulator + its control port).
DEMO_PORTS: Final = {
    "hub": 8080,
    "bus": 7101,
    "control": 7102,
    "printer": 9101,
    "printer_control": 9102,
}
# Starting the demo (emulators, hub, a database) takes a few seconds on a busy machine.
START_TIMEOUT_S: Final = 60.0
# The README's blocks include a few one-second sleeps; the rest is quick.
SCRIPT_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 15.0
# A device write reaches the emulated display within this (9600 baud, a queue ahead of it).
SHOWN_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.2
# What a user types at the PIN prompts of the operator blocks (one line per prompt on stdin).
TYPED_PIN: Final = "739164"
# Tools the blocks call, which CI installs through the Makefile's APT_PACKAGES.
TOOLS: Final = ("bash", "curl", "socat", "python3")


def sh_blocks(text: str) -> list[str]:
    """Every fenced ``sh`` block, dedented, in order (indented ones in lists too)."""
    fence = re.compile(r"^( *)```sh\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
    return [textwrap.dedent(match[2]) for match in fence.finditer(text)]


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_the_first_lines_are_the_two_commands_and_they_exist() -> None:
    first = sh_blocks(README.read_text(encoding="utf-8"))[0].splitlines()
    assert [line.split()[:2] for line in first] == [["make", "demo"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:.*\n\t.*-m qcall demo ", makefile, re.MULTILINE)
    assert re.search(r"^test:.*\n\t.*-m pytest", makefile, re.MULTILINE)


def test_the_documents_stand_on_their_own() -> None:
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    for path in _markdown_files():
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text, path
        assert "/work/" not in text, path
        for target in link.findall(text):
            if re.match(r"[a-z]+://", target):
                continue
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


def test_the_docs_name_every_route_event_and_role() -> None:
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    for route in ROUTES:
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.path)
        assert f"{route.method} {path}" in api, f"add {route.method} {path} to docs/api.md"
    events = (DOCS / "events.md").read_text(encoding="utf-8")
    for event_type in EventType:
        assert f"`{event_type}`" in events, f"add {event_type} to docs/events.md"
    roles = (DOCS / "roles.md").read_text(encoding="utf-8")
    for role in Role:
        assert f"`{role}`" in roles, f"add {role} to docs/roles.md"


# ----------------------------------------------------------------------------- a fresh demo


def _free_pair() -> int:
    """A port whose successor is free too (an emulator and its control port)."""
    for _attempt in range(100):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two free ports in a row")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/health", timeout=1.0
        ) as response:
            return response.status == 200 and json.load(response)["status"] == "ok"
    # HTTPException: something else holds the port (another process took it meanwhile) and
    # answers in its own protocol; the start-up loop then sees the hub exit and says so.
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        return False


def _shown(control: int, address: int) -> dict[str, object]:
    with socket.create_connection(("127.0.0.1", control), timeout=5.0) as sock:
        sock.sendall(json.dumps({"cmd": "shown", "addr": address}).encode() + b"\n")
        reply = sock.makefile("rb").readline()
    return dict(json.loads(reply)["result"])


class Demo:
    """``qcall demo`` in a fresh folder laid out like the repository, on free ports."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        bus, printer = _free_pair(), _free_pair()
        self.ports = {
            "hub": _free_pair(),
            "bus": bus,
            "control": bus + 1,
            "printer": printer,
            "printer_control": printer + 1,
        }
        # config/ as in the repository, its demo moved to these ports: every command of the
        # README (selftest included) reads the same file the demo serves.
        shutil.copytree(ROOT / "config", folder / "config")
        demo_toml = folder / "config" / "demo.toml"
        demo_toml.write_text(self.moved(demo_toml.read_text(encoding="utf-8")), encoding="utf-8")
        (folder / ".venv").symlink_to(Path(sys.prefix))
        self.log = folder / "demo.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def moved(self, text: str) -> str:
        """Text with the demo's fixed ports replaced by this demo's."""
        for name, fixed in DEMO_PORTS.items():
            text = re.sub(rf"(?<=[:= ]){fixed}\b", str(self.ports[name]), text)
        return text

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "qcall", "demo", "--config", "config/demo.toml",
                    "--dir", "var/demo", "--port", str(self.ports["hub"]),
                    "--bus-port", str(self.ports["bus"]),
                    "--control-port", str(self.ports["control"]),
                    "--printer-port", str(self.ports["printer"]),
                    # The Try blocks expect a quiet hall, as the README says.
                    "--no-simulate", "--no-screens",
                ],
                cwd=self.folder, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(self.ports["hub"]):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo did not start:\n{self.log.read_text(errors='replace')}")
            time.sleep(POLL_S)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)
            pytest.fail("the demo did not stop on Ctrl-C")

    def script(self, blocks: list[str]) -> str:
        """The blocks as one bash script, the README's ports moved to this demo's."""
        return self.moved("set -euo pipefail\n" + "\n".join(blocks))


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the README's commands need {missing} (APT_PACKAGES in the Makefile)")
    running = Demo(tmp_path)
    running.start()
    try:
        yield running
    finally:
        code = running.stop()
        assert code == 0, running.log.read_text(errors="replace")


def test_the_readme_blocks_work_in_order_on_a_fresh_demo(demo: Demo) -> None:
    blocks = sh_blocks(README.read_text(encoding="utf-8"))[1:]  # after `make demo / make test`
    assert len(blocks) >= 4
    script = demo.script(blocks)
    prompts = len(re.findall(r"qcall staff (?:add|reset-pin)\b", script))
    # No qcall on the PATH yet: the README must say how to get it.
    path = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if Path(p).is_dir())
    result = subprocess.run(
        ["bash", "-c", script],
        input=f"{TYPED_PIN}\n" * prompts,
        capture_output=True,
        text=True,
        cwd=demo.folder,
        env={"PATH": path, "HOME": str(demo.folder), "LANG": "C.UTF-8"},
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert '"error"' not in result.stdout, output
    assert '"ok": false' not in result.stdout, output
    assert "Traceback" not in output
    # What the Try blocks promise: each window's display shows the number its clerk called.
    for address, number in ((11, "A001"), (21, "A002")):
        deadline = time.monotonic() + SHOWN_TIMEOUT_S
        while (shown := _shown(demo.ports["control"], address)).get("ticket") != number:
            assert time.monotonic() < deadline, (address, shown, result.stdout)
            time.sleep(POLL_S)
    # The keypad that called A002 shows it on its LCD.
    deadline = time.monotonic() + SHOWN_TIMEOUT_S
    while "A002" not in str((lcd := _shown(demo.ports["control"], 22)).get("lcd")):
        assert time.monotonic() < deadline, lcd
        time.sleep(POLL_S)
    # And the operator blocks did what they say.
    assert "1001" in result.stdout
    assert "一楼取号机" in result.stdout
