"""Staff pages benchmark: key press in the clerk panel → ``ticket.called`` on the event stream,
and the clerk panel's load time, in Debian's Chromium driven by Playwright.

Runs a real ``qcall serve`` on 127.0.0.1 (free port) and a headless Chromium; the press is
timed from just before Playwright sends F1 to the moment a separate event-stream client
receives the call, so it includes the browser round trip (CDP, page script, fetch, the
bridge, the durable commit, the stream). Prints p50/p99 next to a target and the ratio.

    python bench/web.py [--presses 100] [--loads 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcall.model import Role  # noqa: E402
from qcall.store import Store  # noqa: E402
from tests.common import standalone_demo_config  # noqa: E402

# A press should feel instant: 100 ms is the usual bound for "no perceptible delay".
TARGET_PRESS_P99_MS = 100.0
# The panel, from navigation to live (event stream connected), within a second.
TARGET_LOAD_P99_MS = 1000.0
PIN = "135790"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Bounds that only catch a hung hub or page.
START_TIMEOUT_S = 30.0
EVENT_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _line(name: str, value: float, target: float) -> None:
    mark = "PASS" if value <= target else "MISS"
    print(
        f"  {name:<40} {value:8.1f} ms  target ≤ {target:g} ms  ratio {value / target:5.2f}  {mark}"
    )


def _prepare(folder: Path) -> tuple[Path, Path, str, str]:
    config = standalone_demo_config(folder)
    db = folder / "web.db"
    store = Store(db)
    store.open()
    store.add_staff("b001", "bench clerk", PIN, Role.CLERK)
    kiosk = store.create_token(Role.KIOSK, "bench kiosk")
    display = store.create_token(Role.DISPLAY, "bench display")
    store.close()
    return config, db, kiosk, display


async def _wait_healthy(base: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{base}/api/v1/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("the hub did not start")


async def _called(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Wait for the next ``ticket.called`` on the stream."""
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        async for message in ws:
            if json.loads(message.data).get("type") == "ticket.called":
                return
    raise SystemExit("the event stream ended")


async def run(args: argparse.Namespace, base: str, kiosk: str, display: str) -> None:
    """Measure panel loads, then key presses, and print the figures."""
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {kiosk}"}) as http,
        async_playwright() as driver,
    ):
        browser = await driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1366, "height": 768})
        await page.goto(f"{base}/login?next=%2Fstaff%2F")
        await page.fill("#staff", "b001")
        await page.fill("#pin", PIN)
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/staff/")
        await page.click("#open-1")
        await page.wait_for_selector('body[data-live_connected="1"]')
        print(f"chromium {browser.version}; {os.cpu_count()} cores; hub {base}")

        loads = []
        for _ in range(args.loads):
            started = time.perf_counter()
            await page.goto(f"{base}/staff/")
            await page.wait_for_selector('body[data-live_connected="1"]')
            loads.append((time.perf_counter() - started) * 1000)

        for _ in range(args.presses):
            async with http.post(f"{base}/api/v1/tickets", json={"service": "social_card"}) as r:
                assert r.status == 201, await r.text()
        await page.wait_for_selector(f"#waiting-total:text-is('{args.presses}')")
        presses = []
        async with (
            aiohttp.ClientSession() as stream,
            stream.ws_connect(f"{base}/api/v1/events?token={display}") as ws,
        ):
            first = await ws.receive_json()
            assert first["type"] == "snapshot"
            for _ in range(args.presses):
                await page.wait_for_selector("body:not([data-busy])")
                started = time.perf_counter()
                await page.keyboard.press("F1")
                await _called(ws)
                presses.append((time.perf_counter() - started) * 1000)
        await browser.close()
    print(f"\n(a) key press F1 (叫号) in the panel → ticket.called on the stream, n={len(presses)}")
    _line("p50", _pct(presses, 0.50), TARGET_PRESS_P99_MS)
    _line("p99", _pct(presses, 0.99), TARGET_PRESS_P99_MS)
    print(f"\n(b) clerk panel load (navigation → event stream connected), n={len(loads)}")
    _line("p50", _pct(loads, 0.50), TARGET_LOAD_P99_MS)
    _line("p99", _pct(loads, 0.99), TARGET_LOAD_P99_MS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--loads", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qcall-web-bench-") as tmp:
        folder = Path(tmp)
        config, db, kiosk, display = _prepare(folder)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = (folder / "hub.log").open("wb")
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "qcall", "--log-level", "warning", "serve"),
                *("--config", str(config), "--db", str(db), "--port", str(port)),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            asyncio.run(_wait_healthy(base))
            asyncio.run(run(args, base, kiosk, display))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
