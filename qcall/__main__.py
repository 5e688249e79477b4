"""The ``qcall`` command line: serve, check-config, staff, token, report, demo, emulate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from qcall import __version__
from qcall.cli_reports import add_report_parsers as _report_parsers
from qcall.config import CenterConfig, load_config
from qcall.errors import ConfigError, DatabaseCorrupt, DatabaseInUse, StorageError
from qcall.model import Role
from qcall.pin_policy import generate_pin, pin_problem
from qcall.store import Store

_LOGGER = logging.getLogger("qcall")

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2
# The database is damaged: restarting cannot help (systemd: RestartPreventExitStatus).
EXIT_CORRUPT: Final = 3
# Long enough for open event streams to be told goodbye; short enough for systemd.
SHUTDOWN_TIMEOUT_S: Final = 5.0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qcall`` console script."""
    words = list(sys.argv[1:] if argv is None else argv)
    # The device tools own their arguments (and their --help): hand the rest over as it is.
    if words[:2] == ["emulate", "bus"]:
        from devices.emulators import bus

        return bus.main(words[2:])
    if words[:2] == ["emulate", "printer"]:
        from devices.emulators import printer

        return printer.main(words[2:])
    if words[:1] == ["selftest"]:
        from devices import selftest

        return selftest.main(words[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_CONFIG
    try:
        return handler(args)
    except ConfigError as err:
        print(err.message_zh, file=sys.stderr)  # noqa: T201
        print(err.message_en.split("\n", 1)[0], file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    except DatabaseCorrupt as err:
        print(err.message_zh, file=sys.stderr)  # noqa: T201
        print(err.message_en, file=sys.stderr)  # noqa: T201
        return EXIT_CORRUPT
    except StorageError as err:
        print(err.message_zh, file=sys.stderr)  # noqa: T201
        print(err.message_en, file=sys.stderr)  # noqa: T201
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # `qcall report daily ... | head`: the reader has what it wanted.
        sys.stderr.close()
        return EXIT_OK


def _configure_logging(level: str) -> None:
    # force=True: python-escpos calls logging.basicConfig() when imported.
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qcall",
        description="qcall 排队叫号系统 / queue calling hub for community affairs service centers",
    )
    parser.add_argument("--version", action="version", version=f"qcall {__version__}")
    parser.add_argument("--log-level", default="info", help="debug|info|warning|error")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="运行中心服务 / run the hub")
    _config_db(serve)
    serve.add_argument("--host", help="listen address (default: from config)")
    serve.add_argument("--port", type=int, help="listen port (default: from config)")
    serve.add_argument(
        "--accept-data-loss",
        action="store_true",
        help="数据库损坏时：移至一旁并新建日志（保留账户和令牌）/ on a damaged database: move it "
        "aside and begin a new log (staff and tokens kept, its tickets lost)",
    )
    serve.set_defaults(handler=_serve)

    check = sub.add_parser("check-config", help="检查配置文件 / validate a configuration file")
    check.add_argument("file", type=Path)
    check.add_argument(
        "--db",
        type=Path,
        help="并检查重启对该数据库的影响（只读）/ also show what a restart changes in this "
        "database (read-only)",
    )
    check.set_defaults(handler=_check_config)

    staff = sub.add_parser("staff", help="工作人员账户 / staff accounts").add_subparsers(
        metavar="ACTION"
    )
    add = staff.add_parser("add", help="添加或更新工作人员 / add or update a staff member")
    _config_db(add)
    add.add_argument("--id", required=True, help="工号 / staff id")
    add.add_argument("--name", required=True, help="姓名 / name")
    add.add_argument("--pin", required=True, help="密码 (6–8 位数字) / PIN (6 to 8 digits)")
    add.add_argument("--role", required=True, choices=["clerk", "supervisor", "admin"])
    add.set_defaults(handler=_staff_add)

    token = sub.add_parser("token", help="设备与系统访问令牌 / API tokens").add_subparsers(
        metavar="ACTION"
    )
    create = token.add_parser("create", help="创建令牌 / create a token (printed on the last line)")
    _config_db(create)
    create.add_argument(
        "--role", required=True, choices=["kiosk", "display", "integration", "admin"]
    )
    create.add_argument("--name", required=True, help="用途说明 / what it is for")
    create.set_defaults(handler=_token_create)

    _report_parsers(sub)

    emulate = sub.add_parser(
        "emulate",
        help="设备模拟器 / device emulators: 'qcall emulate bus --help', "
        "'qcall emulate printer --help'",
    )
    emulate.add_argument("device", choices=["bus", "printer"])
    sub.add_parser(
        "selftest",
        help="设备自检 / probe every configured device: 'qcall selftest --help'",
    )

    demo = sub.add_parser("demo", help="演示：中心服务 + 模拟设备 / demo hub on emulated devices")
    demo.add_argument("--config", type=Path, default=Path("config/demo.toml"))
    demo.add_argument("--dir", type=Path, default=Path("var/demo"), help="demo data folder")
    demo.add_argument("--port", type=int, help="hub port (default: from config)")
    demo.set_defaults(handler=_demo)
    return parser


def _config_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="配置文件 / TOML configuration")
    parser.add_argument("--db", type=Path, required=True, help="数据库文件 / SQLite database")


# --------------------------------------------------------------------------- commands


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(  # noqa: T201
        f"{args.file}: 配置有效 / configuration is valid — {len(config.departments)} departments, "
        f"{len(config.services)} services, {len(config.windows)} windows"
    )
    if args.db is not None:
        from qcall.preflight import restart_preview

        changes = restart_preview(config, args.db)
        for change in changes:
            print(f"警告：{change.zh}\nwarning: {change.en}")  # noqa: T201
        if not changes:
            print(  # noqa: T201
                f"{args.db}: 重启不会改变任何号码或窗口 / a restart changes no ticket or window"
            )
    return EXIT_OK


def _open_store(args: argparse.Namespace) -> tuple[CenterConfig, Store]:
    config = load_config(args.config)
    store = Store(args.db)
    store.open()
    return config, store


def _staff_add(args: argparse.Namespace) -> int:
    problem = pin_problem(args.id, args.pin)
    if problem is not None:
        print(f"{problem[1]} / {problem[0]}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    _config, store = _open_store(args)
    try:
        member = store.add_staff(args.id, args.name, args.pin, Role(args.role))
    finally:
        store.close()
    print(f"已保存工作人员 / saved staff member: {member.id} ({member.name}, {member.role})")  # noqa: T201
    return EXIT_OK


def _token_create(args: argparse.Namespace) -> int:
    _config, store = _open_store(args)
    try:
        token = store.create_token(Role(args.role), args.name)
    finally:
        store.close()
    print(f"新令牌（只显示一次）/ new {args.role} token for {args.name!r} (shown once):")  # noqa: T201
    print(token)  # noqa: T201
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    host = args.host or config.hub.host
    port = args.port or config.hub.port
    return asyncio.run(
        _run_hub(config, args.db, host, port, accept_data_loss=args.accept_data_loss)
    )


async def _run_hub(
    config: CenterConfig,
    db: Path,
    host: str,
    port: int,
    ready: Callable[[], None] | None = None,
    *,
    accept_data_loss: bool = False,
) -> int:
    from aiohttp import web

    from qcall.api import build_app
    from qcall.hub import Hub

    hub = Hub(config, db, accept_data_loss=accept_data_loss)
    app = build_app(hub)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
    try:
        # Starts the hub: takes the database lock first, then storage, then devices.
        await runner.setup()
    except (DatabaseCorrupt, DatabaseInUse) as err:
        print(err.message_zh, file=sys.stderr)  # noqa: T201
        print(err.message_en, file=sys.stderr)  # noqa: T201
        return EXIT_CORRUPT if isinstance(err, DatabaseCorrupt) else EXIT_FAILURE
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as err:
        _LOGGER.error("cannot listen on %s:%d: %s", host, port, err.strerror)  # noqa: TRY400
        await runner.cleanup()
        return EXIT_FAILURE
    _LOGGER.info("qcall hub listening on http://%s:%d (API /api/v1)", host, port)
    # Everything loaded so far (config, replayed state, libraries) lives as long as the
    # process: keep it out of the collector's full passes, which would otherwise pause calls.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready()
    stopper = asyncio.ensure_future(stop.wait())
    fatal = asyncio.ensure_future(hub.fatal.wait())
    await asyncio.wait({stopper, fatal}, return_when=asyncio.FIRST_COMPLETED)
    for waiter in (stopper, fatal):
        waiter.cancel()
    _LOGGER.info("shutting down")
    await runner.cleanup()
    return EXIT_FAILURE if hub.fatal.is_set() else EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    """Set up a demo center with random PINs and tokens, then serve it."""
    config = load_config(args.config)
    folder: Path = args.dir
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "qcall.db"
    secrets_file = folder / "credentials.json"
    store = Store(db)
    store.open()
    try:
        if secrets_file.exists():
            credentials = json.loads(secrets_file.read_text(encoding="utf-8"))
        else:
            credentials = _demo_credentials(store, config)
            secrets_file.write_text(
                json.dumps(credentials, ensure_ascii=False, indent=2), encoding="utf-8"
            )
            with contextlib.suppress(OSError):
                os.chmod(secrets_file, 0o600)  # noqa: PTH101
    finally:
        store.close()
    port = args.port or config.hub.port
    print(  # noqa: T201
        f"\nqcall 演示 / demo — http://{config.hub.host}:{port}/api/v1/health\n"
        f"演示账户与令牌（随机生成，仅限演示）/ demo accounts and tokens (random, demo only): "
        f"{secrets_file}\n"
    )
    for member in credentials["staff"]:
        print(f"  {member['role']:<10} {member['id']:<8} PIN {member['pin']}")  # noqa: T201
    print(f"  kiosk token:   {credentials['tokens']['kiosk']}")  # noqa: T201
    print(f"  display token: {credentials['tokens']['display']}\n")  # noqa: T201
    base = f"http://{config.hub.host}:{port}"
    print(  # noqa: T201
        f"工作人员页面 / staff pages: {base}/staff/ (窗口 / clerk panel), {base}/desk/ "
        f"(咨询服务台 / consultation desk), {base}/backoffice/ (后台 / back office)\n"
    )
    return asyncio.run(_demo_hall(config, db, folder, port))


async def _demo_hall(config: CenterConfig, db: Path, folder: Path, port: int) -> int:
    """Start the emulators the demo configuration points at, then the hub."""
    from urllib.parse import urlsplit

    from devices.emulators.bus import BusEmulator
    from devices.emulators.printer import PrinterEmulator
    from devices.qbus.master import kinds_from_windows

    started: list[Callable[[], object]] = []
    try:
        bus = config.devices.bus
        if bus is not None and bus.url.startswith("socket://"):
            where = urlsplit(bus.url)
            emulator = BusEmulator(
                kinds_from_windows(w.devices for w in config.windows),
                baud=bus.baud,
                host=where.hostname or "127.0.0.1",
                port=where.port or 0,
                state_file=folder / "bus-state.json",
                control=(where.hostname or "127.0.0.1", (where.port or 0) + 1),
            )
            await emulator.start()
            started.append(emulator.stop)
            print(  # noqa: T201
                f"模拟总线 / emulated bus: {emulator.url} (显示内容 / shown: "
                f"{folder / 'bus-state.json'}; 按键控制 / key control: "
                f"{emulator.control_address})"
            )
        for printer in config.devices.printers:
            where = urlsplit(printer.url)
            if where.scheme not in ("tcp", "socket"):
                continue
            out = folder / f"printer-{printer.id}"
            emulated = PrinterEmulator(
                out,
                host=where.hostname or "127.0.0.1",
                port=where.port or 9100,
                paper=printer.paper,
                control=(where.hostname or "127.0.0.1", (where.port or 9100) + 1),
            )
            await emulated.start()
            started.append(emulated.stop)
            control = emulated.control_address
            print(  # noqa: T201
                f"模拟打印机 / emulated printer {printer.id}: {printer.url} → {out} (故障 / fault: "
                f"{emulated.describe_fault()}; 控制 / control: "
                f"{control[0] if control else ''}:{control[1] if control else ''})"
            )
        return await _run_hub(config, db, config.hub.host, port)
    except OSError as err:
        print(  # noqa: T201
            f"无法启动模拟设备（端口被占用？是否已有演示在运行？）/ cannot start the emulators "
            f"(port in use? is a demo already running?): {err}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    finally:
        for stop in reversed(started):
            result = stop()
            if asyncio.iscoroutine(result):
                await result


def _demo_credentials(store: Store, config: CenterConfig) -> dict[str, object]:
    staff = []
    for window in config.windows:
        staff_id = f"w{window.number:02d}"
        pin = generate_pin(staff_id)
        store.add_staff(staff_id, f"{window.number}号窗口演示员", pin, Role.CLERK)
        staff.append({"id": staff_id, "pin": pin, "role": "clerk", "window": window.number})
    for staff_id, role in (("sup1", Role.SUPERVISOR), ("adm1", Role.ADMIN)):
        pin = generate_pin(staff_id)
        store.add_staff(staff_id, f"演示{role}", pin, role)
        staff.append({"id": staff_id, "pin": pin, "role": str(role)})
    tokens = {
        role: store.create_token(Role(role), f"demo {role}")
        for role in ("kiosk", "display", "integration")
    }
    return {"staff": staff, "tokens": tokens}


if __name__ == "__main__":
    sys.exit(main())
