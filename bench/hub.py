"""Hub benchmark: call latency to 50 subscribers, durable issuing throughput, RSS at 10k tickets.

Machines differ, so each hub figure is printed beside a floor measured in the same run with the
same load generator (``bench/floor.py``: a bare aiohttp endpoint doing one durable SQLite commit
per request, and a bare WebSocket fan-out), with the ratio hub/floor, and beside its target.
Runs a real ``qcall serve`` process on 127.0.0.1 and drives it from this process (the load
generator is included in the figures, as on a real 2-core hub box). Also prints the WAL file
size and the time of a failed login for known and unknown staff ids. About 45 s in all.

    python bench/hub.py [--seconds 10] [--windows 100] [--subscribers 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
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
FLOOD_CLIENTS = 16  # concurrent strangers logging in with unknown ids
LOGIN_SAMPLES = 5  # wrong-PIN logins per kind (known, unknown id): under the lockout limits
# A server that is not healthy by then has failed to start; a stop longer than this is killed.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


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
    # The login flood below comes "through a proxy" from many addresses (X-Forwarded-For).
    raw.setdefault("hub", {})["trusted_proxies"] = ["127.0.0.1/32"]
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


def _row(
    name: str,
    hub: float,
    floor: float | None,
    unit: str,
    target: float | None = None,
    *,
    higher_is_better: bool = False,
) -> None:
    """One figure: the hub's, the floor's, their ratio, and the target when there is one."""
    line = f"  {name:<40} {hub:9.2f} {unit:<6}"
    if floor is not None:
        line += f" floor {floor:9.2f} {unit:<6} hub/floor {hub / floor:5.2f}"
    if target is not None:
        ok = hub >= target if higher_is_better else hub <= target
        line += (
            f"  target {'≥' if higher_is_better else '≤'} {target:g}  {'PASS' if ok else 'MISS'}"
        )
    print(line.rstrip())


def subscriber_process(url: str, count: int, pipe: Any) -> None:
    """Hold ``count`` event streams; report when each ticket.called arrived on each."""
    received: dict[str, list[float]] = {}
    marker = '"type":"ticket.called"'

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            connected = asyncio.Event()
            ready = 0

            async def one() -> None:
                nonlocal ready
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


@dataclass(frozen=True)
class Target:
    """Where the load generator sends its requests (the hub, or the floor server)."""

    base: str
    issue_path: str
    issue_headers: dict[str, str]
    issue_body: Callable[[int], dict[str, Any]]
    stream_url: str
    call_path: Callable[[int], str]
    call_headers: Callable[[int], dict[str, str]]


@dataclass(frozen=True)
class IssueFigures:
    """Durable request throughput and latency."""

    rate: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class CallFigures:
    """POST → event at every subscriber."""

    calls: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int


async def issue_phase(session: aiohttp.ClientSession, target: Target, total: int) -> IssueFigures:
    """8 kiosks sending back to back; each answer means the request is on disk."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def kiosk(index: int) -> None:
        for n in counter:
            started = time.perf_counter()
            async with session.post(
                target.base + target.issue_path,
                json=target.issue_body(n + index),
                headers=target.issue_headers,
            ) as r:
                await r.read()
                assert r.status == 201, await r.text()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(kiosk(i) for i in range(KIOSKS)))
    elapsed = time.perf_counter() - started
    return IssueFigures(total / elapsed, statistics.median(latencies), _pct(latencies, 0.99))


async def call_phase(
    session: aiohttp.ClientSession, target: Target, windows: int, seconds: int, subscribers: int
) -> CallFigures:
    """Every window calls once a second while subscribers listen.

    The subscribers run in two separate processes (as real screens would), so their message
    handling does not queue behind the clerks' requests in this process. CLOCK_MONOTONIC
    (perf_counter) is shared by all processes of the machine.
    """
    context = multiprocessing.get_context("spawn")
    groups = [subscribers // 2, subscribers - subscribers // 2]
    pipes = []
    processes = []
    for count in groups:
        parent, child = context.Pipe()
        process = context.Process(target=subscriber_process, args=(target.stream_url, count, child))
        process.start()
        pipes.append(parent)
        processes.append(process)
    loop = asyncio.get_running_loop()
    for pipe in pipes:
        message = await loop.run_in_executor(None, pipe.recv)
        assert message == "ready", message
    sent: dict[str, float] = {}

    async def clerk(n: int) -> None:
        headers = target.call_headers(n)
        start = loop_start + (n - 1) / windows
        for k in range(seconds):
            delay = start + k - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.perf_counter()
            async with session.post(target.base + target.call_path(n), headers=headers) as r:
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
    return CallFigures(
        len(sent),
        statistics.median(latencies),
        _pct(latencies, 0.99),
        max(latencies),
        len(sent) - len(latencies),
    )


@dataclass(frozen=True)
class FloodFigures:
    """The hub while strangers flood /login."""

    issue: IssueFigures
    logins: int
    busy: int
    clerk_login_ms: float
    state_ms: float


class Server:
    """A server process on a free 127.0.0.1 port, logging to a file."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, command: list[str]) -> None:
        log = (self.folder / f"{self.name}.log").open("wb")
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    async def wait_healthy(self, session: aiohttp.ClientSession, path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.base + path) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        log = (self.folder / f"{self.name}.log").read_text(encoding="utf-8", errors="replace")
        raise SystemExit(f"{self.name} did not start:\n{log[-3000:]}")

    def rss_mb(self) -> float:
        assert self.proc is not None
        return _rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wal_mb(db: Path) -> float:
    wal = Path(f"{db}-wal")
    return wal.stat().st_size / 1e6 if wal.exists() else 0.0


class Bench:
    """One benchmark run: the floor server first, then a fresh hub, same load generator."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.floor = Server(folder, "floor")
        self.hub = Server(folder, "hub")
        self.db = folder / "bench.db"
        self.services: list[str] = []
        self.kiosk = ""
        self.display = ""
        self.clerks: dict[int, str] = {}

    def prepare(self) -> None:
        config = bench_config(self.folder, self.args.windows)
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
        self.services = [s["id"] for s in raw["services"] if s.get("kind", "intake") == "intake"]
        store = Store(self.db)
        store.open()
        for n in range(1, self.args.windows + 1):
            store.add_staff(f"b{n:03d}", f"bench {n}", PIN, Role.CLERK)
        self.kiosk = store.create_token(Role.KIOSK, "bench kiosk")
        self.display = store.create_token(Role.DISPLAY, "bench display")
        store.close()
        self.config = config

    def stop(self) -> None:
        self.floor.stop()
        self.hub.stop()

    async def run(self) -> None:
        args = self.args
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            print(f"{os.cpu_count()} cores; {args.windows} windows, {args.subscribers} subscribers")
            floor_issue, floor_calls, floor_rss = await self._floor(session)
            self.hub.start(self._hub_command())
            await self.hub.wait_healthy(session, "/api/v1/health")
            await self._open_windows(session)
            target = self._hub_target()
            issue = await issue_phase(session, target, args.tickets)
            wal_after_issue = _wal_mb(self.db)
            calls = await call_phase(session, target, args.windows, args.seconds, args.subscribers)
            await self._fill_to(session, 10_000, args.tickets)
            rss = self.hub.rss_mb()
            wal_running = _wal_mb(self.db)
            known, unknown = await self._login_times(session)
            flood = await self._flood(session)
        self.hub.stop()
        wal_stopped = _wal_mb(self.db)

        print(
            f"\n(b) durable ticket issuing over HTTP, {KIOSKS} concurrent kiosks: hub "
            f"{args.tickets} tickets; floor {args.floor_requests} requests to a bare aiohttp "
            "endpoint doing one durable SQLite commit each"
        )
        _row("throughput", issue.rate, floor_issue.rate, "/s", TARGET_ISSUE_RATE,
             higher_is_better=True)  # fmt: skip
        _row("latency p50", issue.p50_ms, floor_issue.p50_ms, "ms")
        _row("latency p99", issue.p99_ms, floor_issue.p99_ms, "ms", TARGET_ISSUE_P99_MS)
        print(
            f"\n(a) call latency: {args.windows} windows × 1 call/s for {args.seconds} s "
            f"({calls.calls} calls), {args.subscribers} WebSocket subscribers in 2 processes; "
            "floor: a bare WebSocket fan-out endpoint"
        )
        _row("POST → event at every subscriber, p50", calls.p50_ms, floor_calls.p50_ms, "ms")
        _row("POST → event at every subscriber, p99", calls.p99_ms, floor_calls.p99_ms, "ms",
             TARGET_CALL_P99_MS)  # fmt: skip
        _row("max", calls.max_ms, floor_calls.max_ms, "ms")
        print(
            f"  calls not seen by every subscriber: hub {calls.missing}, "
            f"floor {floor_calls.missing}"
        )
        print("\n(c) hub memory after 10,000 tickets (floor: the bare server after its run)")
        _row("RSS", rss, floor_rss, "MB", TARGET_RSS_MB)
        print("\n(d) WAL file (bench.db-wal)")
        print(f"  {'after issuing':<40} {wal_after_issue:9.2f} MB")
        print(f"  {'after 10,000 tickets, hub running':<40} {wal_running:9.2f} MB")
        print(f"  {'after the hub stopped':<40} {wal_stopped:9.2f} MB")
        print(f"\n(e) failed login (wrong PIN), {LOGIN_SAMPLES} each, median")
        _row("known staff id", known, None, "ms")
        _row("unknown staff id", unknown, None, "ms")
        print(
            f"\n(f) during a flood of logins for unknown ids ({FLOOD_CLIENTS} clients, a new "
            f"address each time): {flood.logins} flood logins answered "
            f"({flood.busy} refused as busy) while issuing {args.flood_tickets} tickets"
        )
        _row("issuing throughput", flood.issue.rate, issue.rate, "/s")
        print("  (beside: the same hub without the flood, phase b)")
        _row("issuing latency p99", flood.issue.p99_ms, issue.p99_ms, "ms")
        _row("a clerk's login, max of 5", flood.clerk_login_ms, None, "ms")
        _row("GET /state with a fresh token, max of 5", flood.state_ms, None, "ms")

    async def _floor(
        self, session: aiohttp.ClientSession
    ) -> tuple[IssueFigures, CallFigures, float]:
        args = self.args
        self.floor.start(
            [
                sys.executable,
                str(ROOT / "bench" / "floor.py"),
                "--port",
                str(self.floor.port),
                "--db",
                str(self.folder / "floor.db"),
            ]
        )
        await self.floor.wait_healthy(session, "/health")
        target = Target(
            base=self.floor.base,
            issue_path="/commit",
            issue_headers={},
            issue_body=lambda n: {"service": self.services[n % len(self.services)]},
            stream_url=f"ws://127.0.0.1:{self.floor.port}/events",
            call_path=lambda n: f"/call/{n}",
            call_headers=lambda _n: {},
        )
        issue = await issue_phase(session, target, args.floor_requests)
        calls = await call_phase(session, target, args.windows, args.seconds, args.subscribers)
        rss = self.floor.rss_mb()
        self.floor.stop()
        return issue, calls, rss

    def _hub_command(self) -> list[str]:
        prefix = self.args.hub_prefix.split() if self.args.hub_prefix else []
        module = self.args.hub_module.split() if self.args.hub_module else ["-m", "qcall"]
        return [
            *prefix, sys.executable, *module, "--log-level", "warning", "serve",
            "--config", str(self.config), "--db", str(self.db), "--port", str(self.hub.port),
        ]  # fmt: skip

    def _hub_target(self) -> Target:
        return Target(
            base=self.hub.base,
            issue_path="/api/v1/tickets",
            issue_headers={"Authorization": f"Bearer {self.kiosk}"},
            issue_body=lambda n: {"service": self.services[n % len(self.services)]},
            stream_url=f"ws://127.0.0.1:{self.hub.port}/api/v1/events?token={self.display}",
            call_path=lambda n: f"/api/v1/windows/{n}/next",
            call_headers=lambda n: {"Authorization": f"Bearer {self.clerks[n]}"},
        )

    async def _open_windows(self, session: aiohttp.ClientSession) -> None:
        base = self.hub.base

        async def one(n: int) -> None:
            body = {"staff": f"b{n:03d}", "pin": PIN}
            async with session.post(f"{base}/api/v1/login", json=body) as response:
                token = (await response.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(f"{base}/api/v1/windows/{n}/open", headers=headers) as r:
                assert r.status == 200, await r.text()
            self.clerks[n] = token

        for start in range(1, self.args.windows + 1, 10):
            await asyncio.gather(
                *(one(n) for n in range(start, min(start + 10, self.args.windows + 1)))
            )

    async def _fill_to(self, session: aiohttp.ClientSession, total: int, issued: int) -> None:
        headers = {"Authorization": f"Bearer {self.kiosk}"}
        counter = iter(range(issued, total))

        async def kiosk() -> None:
            for n in counter:
                body = {"service": self.services[n % len(self.services)]}
                async with session.post(
                    f"{self.hub.base}/api/v1/tickets", json=body, headers=headers
                ) as r:
                    assert r.status == 201, await r.text()

        await asyncio.gather(*(kiosk() for _ in range(KIOSKS)))

    async def _flood(self, session: aiohttp.ClientSession) -> FloodFigures:
        """Issue tickets, log clerks in and read /state while strangers flood /login."""
        stop = asyncio.Event()
        answered = Counter[int]()
        addresses = itertools.count()

        async def stranger() -> None:
            while not stop.is_set():
                n = next(addresses)
                headers = {"X-Forwarded-For": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}
                body = {"staff": f"nobody-{n}", "pin": "80461357"}
                async with session.post(
                    f"{self.hub.base}/api/v1/login", json=body, headers=headers
                ) as r:
                    await r.read()
                    answered[r.status] += 1

        flooders = [asyncio.create_task(stranger()) for _ in range(FLOOD_CLIENTS)]
        await asyncio.sleep(1.0)
        issue = await issue_phase(session, self._hub_target(), self.args.flood_tickets)
        logins: list[float] = []
        states: list[float] = []
        for n in range(1, 6):
            started = time.perf_counter()
            body = {"staff": f"b{n:03d}", "pin": PIN}
            async with session.post(f"{self.hub.base}/api/v1/login", json=body) as r:
                assert r.status == 200, await r.text()
                token = (await r.json())["token"]
            logins.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{self.hub.base}/api/v1/state", headers=headers) as r:
                assert r.status == 200, await r.text()
                await r.read()
            states.append((time.perf_counter() - started) * 1000)
        stop.set()
        await asyncio.gather(*flooders)
        return FloodFigures(issue, sum(answered.values()), answered[429], max(logins), max(states))

    async def _login_times(self, session: aiohttp.ClientSession) -> tuple[float, float]:
        """Median time of a wrong-PIN login for known and unknown ids (one try per id)."""
        times: dict[bool, list[float]] = {True: [], False: []}
        for n in range(LOGIN_SAMPLES):
            for known in (True, False):
                staff = f"b{n + 1:03d}" if known else f"nobody{n}"
                started = time.perf_counter()
                async with session.post(
                    f"{self.hub.base}/api/v1/login", json={"staff": staff, "pin": "80461357"}
                ) as r:
                    assert r.status == 401, await r.text()
                times[known].append((time.perf_counter() - started) * 1000)
        return statistics.median(times[True]), statistics.median(times[False])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of the call phases")
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--tickets", type=int, default=6000, help="tickets in the issuing phase")
    parser.add_argument(
        "--flood-tickets", type=int, default=2000, help="tickets issued during the login flood"
    )
    parser.add_argument(
        "--floor-requests", type=int, default=2000, help="durable requests to the floor server"
    )
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
