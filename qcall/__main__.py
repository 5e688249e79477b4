"""The ``qcall`` command line: serve, check-config, staff, token, report, demo, emulate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import gc
import getpass
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from qcall import __version__
from qcall.cli_db import add_db_parsers as _db_parsers
from qcall.cli_reports import add_report_parsers as _report_parsers
from qcall.cli_simulate import add_simulate_parser as _simulate_parser
from qcall.config import CenterConfig, load_config
from qcall.errors import ConfigError, DatabaseCorrupt, DatabaseInUse, StorageError
from qcall.model import Role
from qcall.pin_policy import pin_problem
from qcall.sdnotify import Notifier
from qcall.store import Store

_LOGGER = logging.getLogger("qcall")

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2
EXIT_USAGE: Final = 2  # bad input on the command line or stdin: nothing was changed
# The database is damaged: restarting cannot help (systemd: RestartPreventExitStatus).
EXIT_CORRUPT: Final = 3
# Long enough for open event streams to be told goodbye; short enough for systemd.
SHUTDOWN_TIMEOUT_S: Final = 5.0
# Under systemd (Type=notify) READY=1 waits until the hub answers its own /health this long.
READY_PROBE_TIMEOUT_S: Final = 10.0
READY_PROBE_RETRY_S: Final = 0.1


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
    if words[:1] == ["display"]:
        from display import cli as display_cli

        return display_cli.display_main(words[1:])
    if words[:2] == ["voice", "build"]:
        from display import cli as voice_cli

        return voice_cli.voice_main(words[2:])
    if words[:1] == ["selftest"]:
        from devices import selftest

        return selftest.main(words[1:])
    if words[:1] == ["kiosk"]:
        from kiosk import app

        return app.main(words[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_CONFIG
    try:
        return handler(args)
    except _NoDatabase as err:
        return _fail(f"找不到数据库 {err.db}", f"no database at {err.db}")
    except ConfigError as err:
        print(err.report(), file=sys.stderr)  # noqa: T201
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

    config_cmd = sub.add_parser("config", help="有效配置 / the effective configuration")
    config_sub = config_cmd.add_subparsers(metavar="ACTION", required=True)
    export = config_sub.add_parser(
        "export",
        help="导出配置文件加管理页面中的修改 / write the TOML file with the admin's edits applied",
    )
    _config_db(export)
    export.add_argument(
        "--out", type=Path, help="输出文件（默认标准输出）/ output file (default stdout)"
    )
    export.set_defaults(handler=_config_export)

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
    add = staff.add_parser(
        "add",
        help="添加或更新工作人员（密码从终端或标准输入读取）/ add or update a staff member "
        "(the PIN is asked for, or read from stdin)",
    )
    _config_db(add)
    add.add_argument("--id", required=True, help="工号 / staff id")
    add.add_argument("--name", required=True, help="姓名 / name")
    add.add_argument("--role", required=True, choices=["clerk", "supervisor", "admin"])
    add.set_defaults(handler=_staff_add)
    listing = staff.add_parser("list", help="列出工作人员 / list staff accounts")
    _config_db(listing)
    listing.set_defaults(handler=_staff_list)
    for action, handler, what in (
        (
            "disable",
            _staff_disable,
            "停用账户并注销登录 / disable an account, end its sessions",
        ),
        ("enable", _staff_enable, "重新启用账户 / enable an account again"),
        ("reset-pin", _staff_reset_pin, "重设密码（并解锁）/ set a new PIN (and unlock)"),
        ("unlock", _staff_unlock, "解除密码错误锁定 / lift the lock after wrong PINs"),
    ):
        one = staff.add_parser(action, help=what)
        _config_db(one)
        one.add_argument("--id", required=True, help="工号 / staff id")
        one.set_defaults(handler=handler)

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
    tokens = token.add_parser("list", help="列出有效令牌 / list the valid tokens (by id)")
    _config_db(tokens)
    tokens.add_argument(
        "--all", action="store_true", help="也列出已吊销、已过期的 / include revoked and expired"
    )
    tokens.set_defaults(handler=_token_list)
    revoke = token.add_parser("revoke", help="吊销令牌 / revoke a token")
    _config_db(revoke)
    revoke.add_argument("--id", required=True, help="令牌编号 / token id (token list)")
    revoke.set_defaults(handler=_token_revoke)

    _report_parsers(sub)
    _db_parsers(sub)
    _simulate_parser(sub)

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

    sub.add_parser(
        "display",
        help="大厅叫号屏 / lobby screen and voice: 'qcall display --help'",
    )
    sub.add_parser(
        "voice",
        help="语音片段缓存 / render the clip cache: 'qcall voice build --help'",
    )
    sub.add_parser("kiosk", help="触摸屏取号机 / touchscreen ticket kiosk: 'qcall kiosk --help'")

    demo = sub.add_parser("demo", help="演示：中心服务 + 模拟设备 / demo hub on emulated devices")
    demo.add_argument("--config", type=Path, default=Path("config/demo.toml"))
    demo.add_argument("--dir", type=Path, default=Path("var/demo"), help="demo data folder")
    demo.add_argument("--port", type=int, help="hub port (default: from config)")
    demo.add_argument("--bus-port", type=int, help="emulated bus port (default: from config)")
    demo.add_argument(
        "--control-port", type=int, help="bus emulator's key control port (default: bus port + 1)"
    )
    demo.add_argument("--printer-port", type=int, help="emulated printer port (default: config)")
    demo.add_argument(
        "--printer-control-port",
        type=int,
        help="printer emulator's fault control port (default: printer port + 1)",
    )
    demo.add_argument(
        "--simulate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="模拟居民与工作人员 / simulated residents and clerks (default on)",
    )
    demo.add_argument(
        "--screens",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="启动大厅屏与取号机 / start the lobby screen and kiosk (default on)",
    )
    demo.add_argument(
        "--fresh", action="store_true", help="从头开始新的一天 / start clean (forget the last run)"
    )
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


def _config_export(args: argparse.Namespace) -> int:
    from qcall import settings
    from qcall.events import EventType

    with _existing(args) as (config, store):
        changes = store.iter_events(0, (EventType.SETTINGS_CHANGED,))
        text = settings.export_toml(settings.effective(config, settings.overrides_of(changes)))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"已导出 / exported: {args.out}")  # noqa: T201
    return EXIT_OK


def _open_store(args: argparse.Namespace) -> tuple[CenterConfig, Store]:
    config = load_config(args.config)
    store = Store(args.db)
    store.open()
    return config, store


def _fail(zh: str, en: str) -> int:
    print(f"{zh} / {en}", file=sys.stderr)  # noqa: T201
    return EXIT_USAGE


class _NoDatabase(Exception):
    """The command needs a database that is not there."""

    def __init__(self, db: Path) -> None:
        super().__init__(str(db))
        self.db = db


@contextlib.contextmanager
def _existing(args: argparse.Namespace) -> Iterator[tuple[CenterConfig, Store]]:
    """Open a database that must exist already (a typo must not create an empty one)."""
    if not args.db.exists():
        raise _NoDatabase(args.db)
    config, store = _open_store(args)
    try:
        yield config, store
    finally:
        store.close()


def _read_pin(staff_id: str) -> str | tuple[str, str]:
    """A new PIN from the terminal (asked twice, not echoed) or the first line of stdin."""
    if sys.stdin.isatty():
        try:
            pin = getpass.getpass(f"{staff_id} 的新密码 / new PIN for {staff_id}: ")
            again = getpass.getpass("再输入一次 / again: ")
        except EOFError:
            return ("没有输入密码", "no PIN was entered")
        if pin != again:
            return ("两次输入的密码不一致", "the two PINs differ")
    else:
        pin = sys.stdin.readline().rstrip("\r\n")
    pin = pin.strip()
    problem = pin_problem(staff_id, pin)  # (English, Chinese)
    return (problem[1], problem[0]) if problem else pin


def _staff_add(args: argparse.Namespace) -> int:
    pin = _read_pin(args.id)
    if isinstance(pin, tuple):
        return _fail(*pin)
    _config, store = _open_store(args)
    try:
        member = store.add_staff(args.id, args.name, pin, Role(args.role))
    finally:
        store.close()
    print(f"已保存工作人员 / saved staff member: {member.id} ({member.name}, {member.role})")  # noqa: T201
    return EXIT_OK


def _staff_list(args: argparse.Namespace) -> int:
    with _existing(args) as (_config, store):
        members = store.list_staff()
        locked = store.locked_staff(dt.datetime.now(dt.UTC))
    print(f"{'工号 id':<12} {'角色 role':<12} {'状态 state':<16} 姓名 name")  # noqa: T201
    for member in members:
        if not member.active:
            state = "已停用 disabled"
        elif member.id in locked:
            state = "已锁定 locked"
        else:
            state = "正常 active"
        print(f"{member.id:<12} {member.role!s:<12} {state:<16} {member.name}")  # noqa: T201
    return EXIT_OK


def _staff_change(
    args: argparse.Namespace, change: Callable[[Store], bool], done_zh: str, done_en: str
) -> int:
    with _existing(args) as (_config, store):
        found = change(store)
    if not found:
        return _fail(f"没有工号为 {args.id} 的工作人员", f"no staff member with id {args.id}")
    print(f"{args.id}: {done_zh} / {done_en}")  # noqa: T201
    return EXIT_OK


def _staff_disable(args: argparse.Namespace) -> int:
    return _staff_change(
        args,
        lambda store: store.set_staff_active(args.id, active=False),
        "已停用，登录已注销",
        "disabled, sessions ended",
    )


def _staff_enable(args: argparse.Namespace) -> int:
    return _staff_change(
        args, lambda store: store.set_staff_active(args.id, active=True), "已启用", "enabled"
    )


def _staff_reset_pin(args: argparse.Namespace) -> int:
    if not args.db.exists():
        raise _NoDatabase(args.db)
    pin = _read_pin(args.id)
    if isinstance(pin, tuple):
        return _fail(*pin)
    return _staff_change(
        args,
        lambda store: store.set_pin(args.id, pin),
        "已设置新密码并解锁",
        "new PIN set, account unlocked",
    )


def _staff_unlock(args: argparse.Namespace) -> int:
    def unlock(store: Store) -> bool:
        if store.staff(args.id) is None:
            return False
        store.clear_login_failures(args.id)
        return True

    return _staff_change(args, unlock, "已解锁", "unlocked")


def _token_create(args: argparse.Namespace) -> int:
    _config, store = _open_store(args)
    try:
        token = store.create_token(Role(args.role), args.name)
    finally:
        store.close()
    print(f"新令牌（只显示一次）/ new {args.role} token for {args.name!r} (shown once):")  # noqa: T201
    print(token)  # noqa: T201
    return EXIT_OK


def _token_list(args: argparse.Namespace) -> int:
    with _existing(args) as (config, store):
        found = store.list_tokens(include_revoked=args.all)
    now = dt.datetime.now(dt.UTC)
    if not args.all:
        found = [t for t in found if t.expires_at is None or t.expires_at > now]
    tz = ZoneInfo(config.center.timezone)

    def local(moment: dt.datetime | None) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else "-"

    print(  # noqa: T201
        f"{'编号 id':<14} {'角色 role':<12} {'创建 created':<17} {'到期 expires':<17} "
        "状态 state  名称 name"
    )
    for item in found:
        if item.revoked:
            state = "已吊销 revoked"
        elif item.expires_at is not None and item.expires_at <= now:
            state = "已过期 expired"
        else:
            state = "有效 valid"
        owner = f" (staff {item.staff_id})" if item.staff_id else ""
        print(  # noqa: T201
            f"{item.id:<14} {item.role!s:<12} {local(item.created_at):<17} "
            f"{local(item.expires_at):<17} {state}  {item.name}{owner}"
        )
    return EXIT_OK


def _token_revoke(args: argparse.Namespace) -> int:
    with _existing(args) as (_config, store):
        matched = store.revoke_token_id(args.id)
    if len(matched) != 1:
        return _fail(
            f"没有编号为 {args.id} 的令牌（编号见 qcall token list）",
            f"no token with id {args.id} (see qcall token list)",
        )
    print(f"已吊销 / revoked: {matched[0].id} ({matched[0].role}, {matched[0].name})")  # noqa: T201
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    host = args.host or config.hub.host
    port = args.port or config.hub.port
    return asyncio.run(
        _run_hub(
            config,
            args.db,
            host,
            port,
            accept_data_loss=args.accept_data_loss,
            config_path=args.config,
        )
    )


async def _run_hub(
    config: CenterConfig,
    db: Path,
    host: str,
    port: int,
    ready: Callable[[], None] | None = None,
    *,
    accept_data_loss: bool = False,
    config_path: Path | None = None,
    before_stop: Callable[[], Awaitable[None]] | None = None,
) -> int:
    from aiohttp import web

    from qcall.api import build_app
    from qcall.hub import Hub

    hub = Hub(config, db, accept_data_loss=accept_data_loss, config_path=config_path)
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
    notifier = Notifier.from_env()
    if notifier.enabled:
        if not await _answers(host, port):
            _LOGGER.error("the hub does not answer its own /health: not telling systemd ready")
            await runner.cleanup()
            return EXIT_FAILURE
        notifier.ready(f"serving on {host}:{port}")
        hub.create_task(notifier.watchdog(lambda: not hub.fatal.is_set()), "watchdog")
    if ready is not None:
        ready()
    stopper = asyncio.ensure_future(stop.wait())
    fatal = asyncio.ensure_future(hub.fatal.wait())
    await asyncio.wait({stopper, fatal}, return_when=asyncio.FIRST_COMPLETED)
    for waiter in (stopper, fatal):
        waiter.cancel()
    notifier.stopping("shutting down")
    if before_stop is not None:  # the demo's clients leave while the hub still answers
        await before_stop()
    _LOGGER.info("shutting down")
    await runner.cleanup()
    return EXIT_FAILURE if hub.fatal.is_set() else EXIT_OK


async def _answers(host: str, port: int) -> bool:
    """Whether the hub's HTTP API answers ``/health`` with 200 on ``host:port`` (retried)."""
    import aiohttp

    # A wildcard listen address is reached on the loopback of the same family.
    probe = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    if ":" in probe:
        probe = f"[{probe}]"
    url = f"http://{probe}:{port}/api/v1/health"
    timeout = aiohttp.ClientTimeout(total=READY_PROBE_TIMEOUT_S)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_PROBE_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError) as err:
                _LOGGER.debug("readiness probe: %s", err)
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(READY_PROBE_RETRY_S)


def _demo(args: argparse.Namespace) -> int:
    """Set up a demo center with random PINs and tokens, then serve it on emulated devices."""
    from qcall import demo

    ports = demo.Ports(
        args.port, args.bus_port, args.control_port, args.printer_port, args.printer_control_port
    )
    # The hub follows lobby changes in the configuration file without a restart.
    serve = functools.partial(_run_hub, config_path=args.config)
    options = demo.HallOptions(simulate=args.simulate, screens=args.screens, fresh=args.fresh)
    return demo.run(load_config(args.config), args.dir, ports, serve, options)


if __name__ == "__main__":
    sys.exit(main())
