"""Hub benchmark: call latency to 50 subscribers, durable issuing throughput, RSS at 10k tickets.

Runs a real ``qcall serve`` process on 127.0.0.1 and drives it from this process (the load
generator is included in the figures, as on a real 2-core hub box). Prints each figure next to
its target and the ratio figure/target.

    python bench/hub.py [--seconds 15] [--windows 100] [--subscribers 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcall.model import Role  # noqa: E402
from qcall.store import Store  # noqa: E402

TARGET_CALL_P99_MS = 15.0
TARGET_ISSUE_RATE = 1500.0
TARGET_ISSUE_P99_MS = 20.0
TARGET_RSS_MB = 120.0
KIOSKS = 8
PIN = "135790"


def _load_dumps() -> Any:
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "config" / "make_demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dumps


def bench_config(folder: Path, windows: int) -> Path:
    """The demo center with ``windows`` comprehensive windows and caps out of the way."""
    raw = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    raw["windows"] = [{"number": n, "type": "comprehensive"} for n in range(1, windows + 1)]
    raw["windows"].append({"number": windows + 1, "type": "reply"})
    consult = [{"id": s["id"]} for s in raw["services"] if s.get("kind") == "consult"]
    raw["windows"].append({"number": windows + 2, "type": "dedicated", "services": consult})
    raw["devices"] = {}
    for service in raw["services"]:
        service["daily_cap"] = 9999
    path = folder / "bench.toml"
    path.write_text(_load_dumps()(raw), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _line(name: str, value: float, unit: str, target: float, higher_is_better: bool) -> None:
    ratio = value / target
    ok = value >= target if higher_is_better else value <= target
    mark = "PASS" if ok else "MISS"
    print(
        f"  {name:<44} {value:9.2f} {unit:<6} target {'≥' if higher_is_better else '≤'}"
        f" {target:g} {unit:<6} ratio {ratio:5.2f}  {mark}"
    )


def subscriber_process(base: str, token: str, count: int, pipe: Any) -> None:
    """Hold ``count`` event streams; report when each ticket.called arrived on each."""
    received: dict[str, list[float]] = {}
    marker = '"type":"ticket.called"'

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            connected = asyncio.Event()
            ready = 0

            async def one() -> None:
                nonlocal ready
                url = f"{base}/api/v1/events?token={token}"
                async with session.ws_connect(url, max_msg_size=0) as ws:
                    await ws.receive()  # the snapshot
                    ready += 1
                    if ready == count:
                        connected.set()
                    async for message in ws:
                        now = time.perf_counter()
                        data = message.data
                        if marker in data:
                            ticket = json.loads(data)["data"]["id"]
                            received.setdefault(ticket, []).append(now)

            tasks = [asyncio.create_task(one()) for _ in range(count)]
            await connected.wait()
            pipe.send("ready")
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    pipe.send(received)


class Bench:
    """One benchmark run against a fresh hub."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.services: list[str] = []
        self.kiosk = ""
        self.display = ""
        self.clerks: dict[int, str] = {}

    def prepare(self) -> None:
        config = bench_config(self.folder, self.args.windows)
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
        self.services = [s["id"] for s in raw["services"] if s.get("kind", "intake") == "intake"]
        db = self.folder / "bench.db"
        store = Store(db)
        store.open()
        for n in range(1, self.args.windows + 1):
            store.add_staff(f"b{n:03d}", f"bench {n}", PIN, Role.CLERK)
        self.kiosk = store.create_token(Role.KIOSK, "bench kiosk")
        self.display = store.create_token(Role.DISPLAY, "bench display")
        store.close()
        log = (self.folder / "hub.log").open("wb")
        prefix = self.args.hub_prefix.split() if self.args.hub_prefix else []
        self.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                *(self.args.hub_module.split() if self.args.hub_module else ["-m", "qcall"]),
                "--log-level",
                "warning",
                "serve",
                "--config",
                str(config),
                "--db",
                str(db),
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await self._wait_healthy(session)
            await self._open_windows(session)
            print(
                f"hub pid {self.proc.pid if self.proc else '?'}; "
                f"{self.args.windows} windows open; {os.cpu_count()} cores"
            )
            issued = await self._issue(session)
            await self._calls(session)
            await self._fill_to(session, 10_000, issued)
            assert self.proc is not None
            rss = _rss_mb(self.proc.pid)
            print("\n(c) hub memory after 10,000 tickets")
            _line("hub RSS", rss, "MB", TARGET_RSS_MB, higher_is_better=False)

    async def _wait_healthy(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.base}/api/v1/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        log = (self.folder / "hub.log").read_text(encoding="utf-8", errors="replace")
        raise SystemExit(f"hub did not start:\n{log[-3000:]}")

    async def _open_windows(self, session: aiohttp.ClientSession) -> None:
        async def one(n: int) -> None:
            body = {"staff": f"b{n:03d}", "pin": PIN}
            async with session.post(f"{self.base}/api/v1/login", json=body) as response:
                token = (await response.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(f"{self.base}/api/v1/windows/{n}/open", headers=headers) as r:
                assert r.status == 200, await r.text()
            self.clerks[n] = token

        for start in range(1, self.args.windows + 1, 10):
            await asyncio.gather(
                *(one(n) for n in range(start, min(start + 10, self.args.windows + 1)))
            )

    async def _issue(self, session: aiohttp.ClientSession) -> int:
        """(b) 8 kiosks issuing back to back; each answer means the ticket is on disk."""
        total = self.args.tickets
        headers = {"Authorization": f"Bearer {self.kiosk}"}
        latencies: list[float] = []
        counter = iter(range(total))

        async def kiosk(index: int) -> None:
            for n in counter:
                body = {"service": self.services[(n + index) % len(self.services)]}
                started = time.perf_counter()
                async with session.post(
                    f"{self.base}/api/v1/tickets", json=body, headers=headers
                ) as r:
                    await r.read()
                    assert r.status == 201, await r.text()
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(kiosk(i) for i in range(KIOSKS)))
        elapsed = time.perf_counter() - started
        rate = total / elapsed
        print(
            f"\n(b) durable ticket issuing over HTTP, {KIOSKS} concurrent kiosks, {total} tickets"
        )
        _line("throughput", rate, "tkt/s", TARGET_ISSUE_RATE, higher_is_better=True)
        print(f"  {'latency p50':<44} {statistics.median(latencies):9.2f} ms")
        _line(
            "latency p99", _pct(latencies, 0.99), "ms", TARGET_ISSUE_P99_MS, higher_is_better=False
        )
        return total

    async def _calls(self, session: aiohttp.ClientSession) -> None:
        """(a) every window calls next once a second while subscribers listen.

        The subscribers run in two separate processes (as real screens would), so their
        message handling does not queue behind the clerks' requests in this process.
        CLOCK_MONOTONIC (perf_counter) is shared by all processes of the machine.
        """
        subscribers = self.args.subscribers
        context = multiprocessing.get_context("spawn")
        groups = [subscribers // 2, subscribers - subscribers // 2]
        pipes = []
        processes = []
        for count in groups:
            parent, child = context.Pipe()
            process = context.Process(
                target=subscriber_process, args=(self.base, self.display, count, child)
            )
            process.start()
            pipes.append(parent)
            processes.append(process)
        loop = asyncio.get_running_loop()
        for pipe in pipes:
            message = await loop.run_in_executor(None, pipe.recv)
            assert message == "ready", message
        sent: dict[str, float] = {}
        windows = self.args.windows
        seconds = self.args.seconds

        async def clerk(n: int) -> None:
            headers = {"Authorization": f"Bearer {self.clerks[n]}"}
            start = loop_start + (n - 1) / windows
            for k in range(seconds):
                delay = start + k - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.perf_counter()
                async with session.post(
                    f"{self.base}/api/v1/windows/{n}/next", headers=headers
                ) as r:
                    body = await r.json()
                    assert r.status == 200, body
                sent[body["ticket"]["id"]] = t0

        loop_start = time.perf_counter() + 0.2
        await asyncio.gather(*(clerk(n) for n in range(1, windows + 1)))
        await asyncio.sleep(1.0)
        received: dict[str, list[float]] = {}
        for pipe in pipes:
            pipe.send("stop")
            part = await loop.run_in_executor(None, pipe.recv)
            for ticket, times in part.items():
                received.setdefault(ticket, []).extend(times)
        for process in processes:
            process.join(10)
        latencies = [
            (max(received[t]) - t0) * 1000
            for t, t0 in sent.items()
            if len(received.get(t, ())) == subscribers
        ]
        missing = len(sent) - len(latencies)
        print(
            f"\n(a) call latency: {windows} windows × 1 call/s for {seconds} s "
            f"({len(sent)} calls), {subscribers} WebSocket subscribers in 2 processes"
        )
        print(
            f"  {'POST → event at every subscriber, p50':<44} "
            f"{statistics.median(latencies):9.2f} ms"
        )
        _line(
            "POST → event at every subscriber, p99",
            _pct(latencies, 0.99),
            "ms",
            TARGET_CALL_P99_MS,
            higher_is_better=False,
        )
        print(f"  {'max':<44} {max(latencies):9.2f} ms; calls not seen by all: {missing}")

    async def _fill_to(self, session: aiohttp.ClientSession, total: int, issued: int) -> None:
        headers = {"Authorization": f"Bearer {self.kiosk}"}
        counter = iter(range(issued, total))

        async def kiosk() -> None:
            for n in counter:
                body = {"service": self.services[n % len(self.services)]}
                async with session.post(
                    f"{self.base}/api/v1/tickets", json=body, headers=headers
                ) as r:
                    assert r.status == 201, await r.text()

        await asyncio.gather(*(kiosk() for _ in range(KIOSKS)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of the call phase")
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--tickets", type=int, default=6000, help="tickets in the issuing phase")
    parser.add_argument("--hub-module", default="", help="run this instead of -m qcall")
    parser.add_argument("--hub-prefix", default="", help="wrap the hub command (e.g. a profiler)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qcall-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        bench.prepare()
        try:
            asyncio.run(bench.run())
        finally:
            bench.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
