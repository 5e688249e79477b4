"""``qcall demo``: a demo center with random credentials, served on emulated devices.

What the demo prints is what works: the credentials file is checked against the database at
every start, and whatever the database lacks (it was deleted, a token was revoked, a PIN
reset) is recreated from the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from qcall.config import CenterConfig, Printer
from qcall.demo_children import Children, ChildSpec, qcall_argv
from qcall.errors import DatabaseInUse
from qcall.model import Role
from qcall.pin_policy import generate_pin, pin_problem
from qcall.store import Store

DEMO_TOKEN_ROLES: Final = ("kiosk", "display", "integration")
EXIT_FAILURE: Final = 1


class Serve(Protocol):
    """Runs the hub until SIGINT/SIGTERM; ``before_stop`` runs before it shuts down."""

    def __call__(
        self,
        config: CenterConfig,
        db: Path,
        host: str,
        port: int,
        *,
        before_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> Awaitable[int]: ...


@dataclass(frozen=True, slots=True)
class Ports:
    """Where the demo listens; None keeps the configuration's value."""

    hub: int | None = None
    bus: int | None = None
    control: int | None = None  # the bus emulator's key control (default: bus port + 1)
    printer: int | None = None
    printer_control: int | None = None  # the printer's fault control (default: its port + 1)


def host_port(host: str, port: int) -> str:
    """An address as ``host:port`` (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def with_ports(config: CenterConfig, ports: Ports) -> CenterConfig:
    """The demo configuration moved to other ports (tests run a demo beside another)."""
    hub = config.hub
    center = config.center
    if ports.hub is not None:
        hub = hub.model_copy(update={"port": ports.hub})
        center = center.model_copy(
            update={"public_url": f"http://{host_port(hub.host, ports.hub)}"}
        )
    devices = config.devices
    if ports.bus is not None and devices.bus is not None:
        where = urlsplit(devices.bus.url)
        bus = devices.bus.model_copy(
            update={"url": f"socket://{host_port(where.hostname or '127.0.0.1', ports.bus)}"}
        )
        devices = devices.model_copy(update={"bus": bus})
    if ports.printer is not None and devices.printers:
        first = devices.printers[0]
        where = urlsplit(first.url)
        moved: Printer = first.model_copy(
            update={
                "url": f"{where.scheme}://{host_port(where.hostname or '127.0.0.1', ports.printer)}"
            }
        )
        devices = devices.model_copy(update={"printers": [moved, *devices.printers[1:]]})
    return config.model_copy(update={"hub": hub, "center": center, "devices": devices})


def new_credentials(config: CenterConfig) -> dict[str, Any]:
    """Fresh random PINs and tokens: one clerk per window, a supervisor, an admin."""
    staff: list[dict[str, Any]] = [
        {
            "id": f"w{window.number:02d}",
            "name": f"{window.number}号窗口演示员",
            "pin": generate_pin(f"w{window.number:02d}"),
            "role": "clerk",
            "window": window.number,
        }
        for window in config.windows
    ]
    staff += [
        {"id": "sup1", "name": "演示值班长", "pin": generate_pin("sup1"), "role": "supervisor"},
        {"id": "adm1", "name": "演示管理员", "pin": generate_pin("adm1"), "role": "admin"},
    ]
    tokens = {role: f"qc_{secrets.token_urlsafe(32)}" for role in DEMO_TOKEN_ROLES}
    return {"staff": staff, "tokens": tokens}


def _load(path: Path, config: CenterConfig) -> dict[str, Any] | None:
    """The kept credentials, or None when missing, unreadable or not for this demo."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        staff = {str(m["id"]): (str(m["pin"]), Role(m["role"])) for m in data["staff"]}
        tokens = data["tokens"]
        wanted = {f"w{w.number:02d}" for w in config.windows} | {"sup1", "adm1"}
        if set(staff) != wanted or any(not str(tokens.get(r, "")) for r in DEMO_TOKEN_ROLES):
            return None
        # PINs kept from before the PIN policy would be refused now: start clean instead.
        if any(pin_problem(sid, pin) is not None for sid, (pin, _role) in staff.items()):
            return None
        for member in data["staff"]:
            member.setdefault("name", str(member["id"]))
        return dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure(store: Store, credentials: dict[str, Any]) -> list[str]:
    """Make every printed credential work in this database; return what had to be redone."""
    redone = []
    for member in credentials["staff"]:
        staff_id, pin = str(member["id"]), str(member["pin"])
        current = store.staff(staff_id)
        if current is None or not current.active or store.check_pin(staff_id, pin) is None:
            store.add_staff(staff_id, str(member["name"]), pin, Role(member["role"]))
            redone.append(staff_id)
        store.clear_login_failures(staff_id)
    for role, token in credentials["tokens"].items():
        if store.principal(str(token)) is None:
            store.ensure_token(str(token), Role(role), f"demo {role}")
            redone.append(f"{role} token")
    return redone


def prepare(folder: Path, config: CenterConfig) -> tuple[dict[str, Any], list[str], bool]:
    """Credentials that work in ``folder``'s database: (credentials, redone, newly made)."""
    folder.mkdir(parents=True, exist_ok=True)
    secrets_file = folder / "credentials.json"
    credentials = _load(secrets_file, config)
    made = credentials is None
    if credentials is None:
        credentials = new_credentials(config)
        secrets_file.write_text(
            json.dumps(credentials, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        with contextlib.suppress(OSError):
            secrets_file.chmod(0o600)
    store = Store(folder / "qcall.db")
    store.open()
    try:
        redone = ensure(store, credentials)
    finally:
        store.close()
    return credentials, redone, made


def _path_hint() -> str | None:
    """How to get ``qcall`` on the PATH, when it is not there yet."""
    scripts = Path(sys.executable).parent
    if not (scripts / "qcall").exists():
        return None
    found = shutil.which("qcall")
    if found is not None and Path(found).parent.resolve() == scripts.resolve():
        return None
    return f'export PATH="{scripts}:$PATH"'


def page_logins(credentials: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each staff page with the least privileged demo account that may open it."""
    from qcall.web.staff import PAGES

    order = {Role.CLERK: 0, Role.SUPERVISOR: 1, Role.ADMIN: 2}
    members = sorted(credentials["staff"], key=lambda m: order.get(Role(m["role"]), 9))
    logins = {}
    for path, roles in PAGES.items():
        member = next((m for m in members if Role(m["role"]) in roles), None)
        if member is not None:
            logins[path] = (str(member["id"]), str(member["pin"]))
    return logins


def banner(
    config: CenterConfig, folder: Path, credentials: dict[str, Any], notes: list[str]
) -> str:
    """What the demo prints before it serves."""
    hub = host_port(config.hub.host, config.hub.port)
    lines = [
        "",
        f"qcall 演示 / demo — 中心服务 / hub: {hub}  (API http://{hub}/api/v1/)",
        "工作人员页面（附可用登录）/ staff pages, with a login that works:",
    ]
    for path, (staff_id, pin) in page_logins(credentials).items():
        lines.append(f"  http://{hub}{path:<14} {staff_id:<6} PIN {pin}")
    lines += notes
    lines.append(
        "演示账户与令牌（随机生成，仅限演示）/ demo accounts and tokens (random, demo only): "
        f"{folder / 'credentials.json'}"
    )
    for member in credentials["staff"]:
        window = f"  window {member['window']}" if "window" in member else ""
        lines.append(f"  {member['role']:<10} {member['id']:<6} PIN {member['pin']}{window}")
    for role in DEMO_TOKEN_ROLES:
        lines.append(f"  {role + ' token:':<20} {credentials['tokens'][role]}")
    hint = _path_hint()
    if hint is not None:
        lines.append(f"命令行 / the qcall command: {hint}")
    return "\n".join([*lines, ""])


@dataclass(frozen=True, slots=True)
class HallOptions:
    """What runs beside the hub and emulators."""

    simulate: bool = True  # simulated residents and clerks
    screens: bool = True  # the lobby screen and the kiosk as child processes
    fresh: bool = False  # forget the previous run's day (database, shown state, outputs)


# What a fresh start removes from the demo folder (the voice clip cache is kept: it is not
# state, and rendering it again takes a while).
FRESH_REMOVES: Final = (
    "qcall.db",
    "qcall.db-wal",
    "qcall.db-shm",
    "bus-state.json",
    "credentials.json",
    "lobby",
    "kiosk",
    "kiosk-state",
    "announcements",
    "logs",
)
# Windows the simulated clerks leave to the person trying the demo.
KEPT_FOR_YOU: Final = 2
# The hub answers /health within this after its emulators are up (a database replay of a
# long day takes a few seconds on a busy machine).
HUB_READY_TIMEOUT_S: Final = 60.0
HUB_POLL_S: Final = 0.2
# Lines of a child's log shown when it ends unexpectedly.
CHILD_LOG_TAIL: Final = 5


def clean(folder: Path) -> list[str]:
    """Remove the previous run's state from ``folder``; return what was removed.

    Raises ``DatabaseInUse`` (and removes nothing) while a hub serves the folder's database.
    """
    from qcall.dblock import DatabaseLock

    lock = DatabaseLock(folder / "qcall.db")
    lock.acquire()
    try:
        removed = []
        targets = [folder / name for name in FRESH_REMOVES] + sorted(folder.glob("printer-*"))
        for target in targets:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            else:
                continue
            removed.append(target.name)
    finally:
        lock.release()
    return removed


def run(
    config: CenterConfig,
    folder: Path,
    ports: Ports,
    serve: Serve,
    options: HallOptions = HallOptions(simulate=False, screens=False),
) -> int:
    """Prepare the demo folder, print the banner, then run the emulators and the hub."""
    config = with_ports(config, ports)
    notes = []
    if options.fresh and folder.exists():
        try:
            removed = clean(folder)
        except DatabaseInUse as err:
            print(err.message_zh, err.message_en, sep="\n", file=sys.stderr)  # noqa: T201
            return EXIT_FAILURE
        notes.append(f"已清空上次的演示 / started clean, removed: {', '.join(removed) or '-'}")
    credentials, redone, made = prepare(folder, config)
    if made:
        notes.append("已生成新的演示账户与令牌 / made new demo accounts and tokens")
    elif redone:
        notes.append(
            "已按 credentials.json 重建数据库中缺少的账户与令牌 / recreated from credentials.json "
            f"what the database lacked: {', '.join(redone)}"
        )
    print(banner(config, folder, credentials, notes), flush=True)  # noqa: T201
    try:
        code = asyncio.run(_hall(config, folder, ports, serve, credentials, options))
    except KeyboardInterrupt:  # Ctrl-C before the hub took over SIGINT: _hall has cleaned up
        code = 0
    print(  # noqa: T201
        "演示已停止 / demo stopped: 所启动的进程均已结束 / every process it started has ended; "
        "再次运行将接着今天 / run it again to resume the day (--fresh: start clean)",
        flush=True,
    )
    return code


def simulated_windows(config: CenterConfig) -> list[int]:
    """The windows simulated clerks work: all but the first few, left to the reader."""
    numbers = sorted(w.number for w in config.windows)
    return numbers[KEPT_FOR_YOU:] if len(numbers) > KEPT_FOR_YOU else numbers


def screen_specs(
    config: CenterConfig, folder: Path, credentials: dict[str, Any], *, windowed: bool
) -> list[ChildSpec]:
    """The lobby screen and the kiosk, windowed or headless (screenshots either way)."""
    hub = f"http://{host_port(config.hub.host, config.hub.port)}"
    env: tuple[tuple[str, str], ...] = (
        () if windowed else (("SDL_VIDEODRIVER", "dummy"), ("SDL_AUDIODRIVER", "dummy"))
    )
    lobby = [
        "display",
        "--hub",
        hub,
        "--size",
        "1280x720" if windowed else "1920x1080",
        "--screenshot",
        str(folder / "lobby"),
        "--record",
        str(folder / "announcements"),
    ]
    if not windowed:
        lobby.append("--no-audio")
    specs = [
        ChildSpec(
            "lobby",
            qcall_argv(*lobby),
            folder / "logs" / "lobby.log",
            (
                *env,
                *((("SDL_VIDEO_WINDOW_POS", "0,0"),) if windowed else ()),
                ("QCALL_DISPLAY_TOKEN", str(credentials["tokens"]["display"])),
            ),
        )
    ]
    if config.devices.printers:
        printer = config.devices.printers[0]
        kiosk = [
            "kiosk",
            "--hub",
            hub,
            "--printer",
            printer.url,
            "--paper",
            str(printer.paper),
            "--size",
            "640x1000" if windowed else "1080x1920",
            "--screenshot",
            str(folder / "kiosk"),
            "--state-dir",
            str(folder / "kiosk-state"),
        ]
        specs.append(
            ChildSpec(
                "kiosk",
                qcall_argv(*kiosk),
                folder / "logs" / "kiosk.log",
                (
                    *env,
                    # Beside the 1280-wide lobby window on a 1920×1080 desktop.
                    *((("SDL_VIDEO_WINDOW_POS", "1280,0"),) if windowed else ()),
                    ("QCALL_KIOSK_TOKEN", str(credentials["tokens"]["kiosk"])),
                ),
            )
        )
    return specs


async def _hub_ready(url: str, server: asyncio.Task[int]) -> bool:
    """Wait until the hub answers /health; False if it stopped or did not answer in time."""
    from qcall.client import QcallClient
    from qcall.errors import QcallError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + HUB_READY_TIMEOUT_S
    async with QcallClient(url) as client:
        while not server.done() and loop.time() < deadline:
            with contextlib.suppress(QcallError):
                await client.health()
                return True
            await asyncio.sleep(HUB_POLL_S)
    return False


async def _alongside(
    config: CenterConfig,
    folder: Path,
    credentials: dict[str, Any],
    options: HallOptions,
    control: tuple[str, int] | None,
    children: Children,
    stop: asyncio.Event,
) -> None:
    """Start the screens and the simulation once the hub answers; run until ``stop``."""
    watchers: list[asyncio.Future[None]] = []
    try:
        await _run_alongside(
            config, folder, credentials, options, control, children, stop, watchers
        )
    finally:
        for watcher in watchers:
            watcher.cancel()


async def watch_child(children: Children, spec: ChildSpec, stop: asyncio.Event) -> None:
    """Say so when a child ends before the demo stops it (with the end of its log)."""
    code = await children.wait(spec.name)
    if stop.is_set():
        return
    try:
        tail = spec.log.read_text(encoding="utf-8", errors="replace").splitlines()[-CHILD_LOG_TAIL:]
    except OSError:
        tail = []
    print(  # noqa: T201
        "\n".join(
            [
                f"{spec.name} 意外退出 / ended unexpectedly (status {code}); log: {spec.log}",
                *(f"  {line}" for line in tail),
            ]
        ),
        file=sys.stderr,
        flush=True,
    )


async def _run_alongside(
    config: CenterConfig,
    folder: Path,
    credentials: dict[str, Any],
    options: HallOptions,
    control: tuple[str, int] | None,
    children: Children,
    stop: asyncio.Event,
    watchers: list[asyncio.Future[None]],
) -> None:
    from qcall.hall_sim import HallSimulation, plan_for

    hub = f"http://{host_port(config.hub.host, config.hub.port)}"
    if options.screens:
        windowed = bool(os.environ.get("DISPLAY"))
        for spec in screen_specs(config, folder, credentials, windowed=windowed):
            pid = await children.start(spec)
            watchers.append(asyncio.ensure_future(watch_child(children, spec, stop)))
            print(  # noqa: T201
                f"{'大厅叫号屏 / lobby screen' if spec.name == 'lobby' else '取号机 / kiosk'} "
                f"(pid {pid}, {'窗口 / window' if windowed else '无界面 / headless'}): "
                f"截图 / screenshots {folder / spec.name}; 日志 / log {spec.log}",
                flush=True,
            )
        print(  # noqa: T201
            f"播报录音 / recorded announcements: {folder / 'announcements'}", flush=True
        )
    if not options.simulate:
        await stop.wait()
        return
    windows = simulated_windows(config)
    plan = plan_for(
        config,
        hub,
        str(credentials["tokens"]["kiosk"]),
        credentials["staff"],
        windows=windows,
        control=control,
    )
    print(  # noqa: T201
        f"模拟 / simulation: 居民在取号机取号，{', '.join(map(str, windows))} 号窗口由模拟工作人员"
        f"服务（API 与呼叫器）/ residents take tickets at the kiosk, simulated clerks serve "
        f"windows {', '.join(map(str, windows))} (API and keypads); --no-simulate: a quiet hall",
        flush=True,
    )
    try:
        await HallSimulation(plan).run(stop)
    except Exception as err:  # noqa: BLE001 - the hall goes on without it; say so now
        print(  # noqa: T201
            f"模拟已停止 / the simulation stopped: {err!r}", file=sys.stderr, flush=True
        )
        await stop.wait()


async def _hall(
    config: CenterConfig,
    folder: Path,
    ports: Ports,
    serve: Serve,
    credentials: dict[str, Any],
    options: HallOptions,
) -> int:
    """Start the emulators, the hub, then the screens and the simulation; stop them all."""
    from devices.emulators.bus import BusEmulator
    from devices.emulators.printer import PrinterEmulator
    from devices.qbus.master import kinds_from_windows

    started: list[Callable[[], object]] = []
    children = Children()
    stop_extras = asyncio.Event()
    extras: asyncio.Task[None] | None = None
    key_control: tuple[str, int] | None = None
    try:
        bus = config.devices.bus
        if bus is not None and bus.url.startswith("socket://"):
            where = urlsplit(bus.url)
            host = where.hostname or "127.0.0.1"
            port = where.port or 0
            emulator = BusEmulator(
                kinds_from_windows(w.devices for w in config.windows),
                baud=bus.baud,
                host=host,
                port=port,
                state_file=folder / "bus-state.json",
                control=(host, ports.control if ports.control is not None else port + 1),
            )
            await emulator.start()
            started.append(emulator.stop)
            control = emulator.control_address
            key_control = control
            print(  # noqa: T201
                f"模拟总线 / emulated bus: {host_port(host, port)}; "
                f"显示内容 / shown: {folder / 'bus-state.json'}; "
                f"按键控制 / key control: {host_port(*control) if control else '-'}",
                flush=True,
            )
        for printer in config.devices.printers:
            where = urlsplit(printer.url)
            if where.scheme not in ("tcp", "socket"):
                continue
            out = folder / f"printer-{printer.id}"
            host, port = where.hostname or "127.0.0.1", where.port or 9100
            first = printer is config.devices.printers[0]
            control_port = ports.printer_control if first and ports.printer_control else port + 1
            emulated = PrinterEmulator(
                out, host=host, port=port, paper=printer.paper, control=(host, control_port)
            )
            await emulated.start()
            started.append(emulated.stop)
            control = emulated.control_address
            print(  # noqa: T201
                f"模拟打印机 / emulated printer {printer.id}: {host_port(host, port)} → {out}; "
                f"故障 / fault: {emulated.describe_fault()}; "
                f"控制 / control: {host_port(*control) if control else '-'}",
                flush=True,
            )

        async def stop_clients() -> None:
            stop_extras.set()
            if extras is not None:
                await asyncio.wait({extras})  # its failure, if any, is reported below
            await children.stop()

        server = asyncio.ensure_future(
            serve(
                config,
                folder / "qcall.db",
                config.hub.host,
                config.hub.port,
                before_stop=stop_clients,
            )
        )
        hub_url = f"http://{host_port(config.hub.host, config.hub.port)}"
        if (options.screens or options.simulate) and await _hub_ready(hub_url, server):
            extras = asyncio.ensure_future(
                _alongside(config, folder, credentials, options, key_control, children, stop_extras)
            )
        return await server
    except OSError as err:
        print(  # noqa: T201
            f"无法启动模拟设备（端口被占用？是否已有演示在运行？）/ cannot start the emulators "
            f"(port in use? is a demo already running?): {err}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    finally:
        stop_extras.set()
        if extras is not None:
            await asyncio.wait({extras})  # also when this task is being cancelled (early ^C)
            failure = None if extras.cancelled() else extras.exception()
            if failure is not None:
                print(  # noqa: T201
                    f"模拟出错 / the simulation failed: {failure!r}", file=sys.stderr, flush=True
                )
        await children.stop()
        for stop in reversed(started):
            result = stop()
            if asyncio.iscoroutine(result):
                await result
