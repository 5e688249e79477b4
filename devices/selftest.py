"""``qcall selftest``: check every configured device and say what to check when one fails."""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import enum
import errno
import json
import logging
import math
import os
import re
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from devices.base import DeviceState
from devices.printer import PrinterNotReady, PrinterStatus, TicketPrinter
from devices.printer.connection import PrinterStatusUnsupported
from devices.qbus.frames import (
    BusEvent,
    Charset,
    CommandRejected,
    DeviceKind,
    EventKind,
    IdentReply,
    PingFlag,
    Status,
)
from devices.qbus.master import (
    RESTART_SWEEP_INTERVAL_S,
    AddressedEvent,
    BusMaster,
    BusTiming,
    device_name,
)
from devices.supervisor import describe
from devices.transport import OPEN_TIMEOUT_S, parse_url
from qcall.config import Bus, CenterConfig, Printer, load_config
from qcall.errors import ConfigError, DeviceError, DeviceProtocolError, DeviceTimeout

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2

# The transport gives up opening a port after OPEN_TIMEOUT_S; 2 s more lets the supervisor
# report that failure (with its cause) before we fall back to "did not open in time".
BUS_OPEN_TIMEOUT_S: Final = OPEN_TIMEOUT_S + 2.0
# The master bounds every request itself (reply timeout x retries: well under a second even
# at 9600 baud); this outer guard only catches a wedged owner task, so a self-test always ends.
BUS_REQUEST_GUARD_S: Final = 10.0
# A technician walks from the terminal to a keypad and presses a key: a minute is plenty, and a
# keypad that really is dead fails within that minute instead of holding up the whole test.
KEY_PRESS_TIMEOUT_S: Final = 60.0
# Before asking for a press, presses queued earlier must be taken and acknowledged so an old
# one is not mistaken for the technician's: a full FIFO (32) takes 8 polls, about 1.2 s at 9600.
DRAIN_TIMEOUT_S: Final = 3.0
# A rating pad ends its session after its own timeout; keep it open a little longer than we
# wait, so the pad never answers "timeout" while we still wait for the technician.
RATING_PAD_MARGIN_S: Final = 5
# Printer operations need no guard here: the driver bounds each one with its own named
# timeouts (CONNECT_TIMEOUT_S, STATUS_GUARD_S, JOB_WRITE_TIMEOUT_S, LOCK_TIMEOUT_S).

# Before its first frame the self-test listens for a master already on the line: a running hub
# sends at least a restart sweep every RESTART_SWEEP_INTERVAL_S (and polls keypads far more
# often), so one interval plus a margin for a loaded machine hears it.
LINE_LISTEN_S: Final = RESTART_SWEEP_INTERVAL_S + 1.0
# ``--hub``: the running hub IDENTs, PINGs and reads back every device itself; with retries on a
# 9600-baud line that is well under a second per device, so a minute covers a full hall.
HUB_SELFTEST_TIMEOUT_S: Final = 60.0
# EXIT status when another master (a running hub) holds the line: nothing was sent.
EXIT_LINE_BUSY: Final = 3

TEST_TICKET: Final = "TEST"

Prompt = Callable[[str], Awaitable[None]]
"""Tell the technician what to do now (e.g. "press any key on keypad @12")."""


class Outcome(enum.StrEnum):
    """The result of one check; a device takes the worst of its checks."""

    SKIP = "skip"
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    WARN = "warn"
    FAIL = "fail"

    @property
    def label(self) -> str:
        """Return the bilingual table label (``通过 PASS``)."""
        return _OUTCOME_LABELS[self]


_OUTCOME_LABELS: Final = {
    Outcome.SKIP: "未测 SKIP",
    Outcome.PASS: "通过 PASS",
    Outcome.WARN: "注意 WARN",
    Outcome.FAIL: "失败 FAIL",
}
_SEVERITY: Final = {Outcome.SKIP: 0, Outcome.PASS: 1, Outcome.WARN: 2, Outcome.FAIL: 3}

CHECK_LABELS: Final = {
    "config": "配置 config",
    "open": "打开端口 open",
    "ident": "识别 IDENT",
    "ping": "心跳 PING",
    "pattern": "测试图案 pattern",
    "restore": "恢复 restore",
    "lcd": "液晶 LCD",
    "key_press": "按键 key press",
    "rating": "评分 rating",
    "events": "排队事件 queued events",
    "link": "线路 line",
    "listen": "先听 listen",
    "status": "状态 status",
    "print_test": "测试页 test page",
    "not_tested": "未测 not tested",
}

_KIND_NAMES: Final = {
    DeviceKind.COUNTER_DISPLAY: ("窗口屏", "display"),
    DeviceKind.KEYPAD: ("呼叫器", "keypad"),
    DeviceKind.RATING_PAD: ("评价器", "rating pad"),
}
_EVENT_ZH: Final = {
    EventKind.NEXT: "叫号",
    EventKind.RECALL: "重呼",
    EventKind.NO_SHOW: "过号",
    EventKind.HOLD: "挂起",
    EventKind.CALLBACK: "回呼",
    EventKind.PAUSE: "暂停",
    EventKind.RESUME: "恢复",
    EventKind.TRANSFER: "转移",
    EventKind.CALL_SPECIFIC: "特呼",
    EventKind.LOGIN: "登录",
    EventKind.LOGOUT: "退出",
    EventKind.RATING: "评价",
    EventKind.RATING_TIMEOUT: "评价超时",
}
_HUB_HINT: Final = (
    "自检需要独占端口：先停止 hub（sudo systemctl stop qcall-hub）/ the self-test needs the "
    "port to itself: stop the hub first (sudo systemctl stop qcall-hub)"
)
LINE_BUSY_HINT: Final = (
    "先停止 hub（sudo systemctl stop qcall-hub）再自检，或用 --hub 由运行中的 hub 检查 / stop "
    "the hub first (sudo systemctl stop qcall-hub), or let the running hub check (--hub)"
)


def line_busy_message(hub_url: str) -> str:
    """Return what to do when a running hub holds the line (both ways, with the hub's URL)."""
    return (
        "总线上已有主站在工作（运行中的 hub），自检未发送任何内容，"
        "以免改写正在使用的窗口屏和呼叫器。\n"
        "  现场：先停止 hub（sudo systemctl stop qcall-hub），自检后再启动（sudo systemctl "
        "start qcall-hub）；\n"
        f"  不停 hub（演示环境也用这个）：QCALL_TOKEN=管理员令牌 qcall selftest --config 配置 "
        f"--hub {hub_url}\n"
        "Another master (a running hub) is working on this line; the self-test sent nothing, so "
        "the displays and keypads in use are not overwritten.\n"
        "  On site: stop the hub (sudo systemctl stop qcall-hub), run the self-test, start it "
        "again (sudo systemctl start qcall-hub);\n"
        f"  without stopping it (also in the demo): QCALL_TOKEN=ADMIN_TOKEN qcall selftest "
        f"--config FILE --hub {hub_url}"
    )


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One step on one device: what was seen (``detail``) and what to check (``hint``)."""

    check: str
    outcome: Outcome
    detail: str
    hint: str = ""
    at: str = field(default_factory=_utc_now)
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "check": self.check,
            "outcome": str(self.outcome),
            "detail": self.detail,
            "hint": self.hint,
            "at": self.at,
            "data": self.data,
        }


@dataclass(slots=True)
class DeviceReport:
    """Every check of one device (the bus port, a bus address, a printer)."""

    device: str
    kind: str
    label: str
    address: int | None = None
    window: int | None = None
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        """Return the worst outcome of the checks (SKIP when nothing was checked)."""
        return max(
            (c.outcome for c in self.checks), key=_SEVERITY.__getitem__, default=Outcome.SKIP
        )

    def add(
        self, check: str, outcome: Outcome, detail: str, hint: str = "", /, **data: Any
    ) -> CheckResult:
        """Record one check and return it."""
        result = CheckResult(check, outcome, detail, hint, data=data)
        self.checks.append(result)
        return result

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "device": self.device,
            "kind": self.kind,
            "label": self.label,
            "address": self.address,
            "window": self.window,
            "outcome": str(self.outcome),
            "checks": [check.as_dict() for check in self.checks],
        }


@dataclass(slots=True)
class SelftestReport:
    """Everything a self-test found, ready for the table and the JSON report file."""

    started_at: str
    finished_at: str = ""
    config_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    devices: list[DeviceReport] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    line_busy: bool = False

    @property
    def ok(self) -> bool:
        """Return whether no check failed (warnings and skips are allowed)."""
        return all(device.outcome is not Outcome.FAIL for device in self.devices)

    @property
    def exit_code(self) -> int:
        """Return 0 when everything passed, 1 when anything failed, 3 when a hub held the line."""
        if self.line_busy:
            return EXIT_LINE_BUSY
        return EXIT_OK if self.ok else EXIT_FAILURE

    def device(self, name: str) -> DeviceReport:
        """Return the report of ``name`` (``bus``, ``bus:keypad@12``, ``printer:kiosk``)."""
        for device in self.devices:
            if device.device == name:
                return device
        raise KeyError(name)

    def counts(self) -> dict[str, int]:
        """Return how many devices ended in each outcome."""
        counter = collections.Counter(str(device.outcome) for device in self.devices)
        return {str(outcome): counter[str(outcome)] for outcome in Outcome}

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON report."""
        return {
            "tool": "qcall selftest",
            "config": self.config_path,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "options": self.options,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "summary": self.counts(),
            "devices": [device.as_dict() for device in self.devices],
            "diagnostics": self.diagnostics,
        }

    def format_table(self) -> str:
        """Return the aligned, bilingual result table (device / result / what to check)."""
        header = ("设备 Device", "结果 Result", "说明 / 请检查  Detail / what to check")
        rows = [(d.label, d.outcome.label, _table_lines(d)) for d in self.devices]
        first = max([_width(header[0]), *(_width(label) for label, _, _ in rows)])
        second = max([_width(header[1]), *(_width(result) for _, result, _ in rows)])
        indent = " " * (first + second + 4)
        where = f" · {self.config_path}" if self.config_path else ""
        lines = [f"qcall 自检 self-test{where} · {self.started_at}", ""]
        lines.append(f"{_pad(header[0], first)}  {_pad(header[1], second)}  {header[2]}")
        lines.append(f"{'-' * first}  {'-' * second}  {'-' * _width(header[2])}")
        for label, result, detail in rows:
            lines.append(f"{_pad(label, first)}  {_pad(result, second)}  {detail[0]}".rstrip())
            lines.extend(f"{indent}{more}" for more in detail[1:])
        counts = self.counts()
        lines.append("")
        lines.append(
            f"{len(self.devices)} 台设备 devices: {counts['pass']} 通过 pass, "
            f"{counts['warn']} 注意 warn, {counts['fail']} 失败 fail, "
            f"{counts['skip']} 未测 not tested"
        )
        if not self.devices:
            lines.append("配置中没有设备 / no devices are configured")
        elif self.ok:
            lines.append("全部通过 / all devices passed")
        else:
            lines.append(
                "有设备未通过，请按上表检查 / some devices failed: see what to check above"
            )
        return "\n".join(lines)


def _table_lines(device: DeviceReport) -> list[str]:
    if device.outcome in (Outcome.PASS, Outcome.SKIP):
        shown = [c for c in device.checks if c.outcome is device.outcome]
        return ["; ".join(c.detail for c in shown) or "-"]
    lines = []
    for check in device.checks:
        if check.outcome in (Outcome.FAIL, Outcome.WARN):
            lines.append(f"{CHECK_LABELS.get(check.check, check.check)}: {check.detail}")
            if check.hint:
                lines.append(f"  → {check.hint}")
    return lines


def _width(text: str) -> int:
    """Return the terminal width of ``text`` (CJK characters take two cells)."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - _width(text), 0)


# --- entry points -------------------------------------------------------------------------


async def terminal_prompt(message: str) -> None:
    """Show ``message`` to the technician on the terminal (stderr, so stdout stays the table)."""
    print(f"\n>>> {message}", file=sys.stderr, flush=True)  # noqa: T201 - CLI output


async def run_selftest(
    config: CenterConfig,
    *,
    print_test: bool = False,
    interactive: bool = False,
    prompt: Prompt | None = None,
    key_timeout_s: float | None = None,
    config_path: str | None = None,
    listen_s: float | None = None,
    hub: tuple[str, str] | None = None,
) -> SelftestReport:
    """Open the bus and the printers of ``config`` and check every device; never raises for one.

    ``key_timeout_s`` (default ``KEY_PRESS_TIMEOUT_S``) bounds each interactive press.
    """
    report = SelftestReport(
        started_at=_utc_now(),
        config_path=config_path,
        options={
            "print_test": print_test,
            "interactive": interactive,
            "key_timeout_s": KEY_PRESS_TIMEOUT_S if key_timeout_s is None else key_timeout_s,
        },
    )
    bus_devices = _bus_devices(config)
    if config.devices.bus is not None and hub is not None:
        bus_report = DeviceReport(device="bus", kind="bus", label=f"总线 bus (hub {hub[0]})")
        report.devices.append(bus_report)
        report.devices.extend(device.report for device in bus_devices)
        report.diagnostics["bus"] = await _bus_via_hub(hub[0], hub[1], bus_report, bus_devices)
    elif config.devices.bus is not None:
        check = _BusSelftest(
            config.devices.bus,
            bus_devices,
            interactive=interactive,
            prompt=prompt or terminal_prompt,
            key_timeout_s=report.options["key_timeout_s"],
            listen_s=listen_s,
        )
        report.devices.append(check.bus_report)
        report.devices.extend(device.report for device in bus_devices)
        report.diagnostics["bus"] = await check.run()
        report.line_busy = check.line_busy
    for index, printer in enumerate(config.devices.printers):
        device, diagnostics = await _check_printer(
            printer, index, print_test=print_test, tz=ZoneInfo(config.center.timezone)
        )
        report.devices.append(device)
        report.diagnostics[device.device] = diagnostics
    report.finished_at = _utc_now()
    return report


async def _bus_via_hub(
    url: str, token: str, bus_report: DeviceReport, devices: list[_BusDevice]
) -> dict[str, Any]:
    """Ask the running hub to check its bus devices (POST /api/v1/devices/selftest)."""
    import aiohttp  # only --hub needs an HTTP client

    endpoint = url.rstrip("/") + "/api/v1/devices/selftest"
    headers = {"Authorization": f"Bearer {token}", "Accept-Language": "zh-CN"}
    try:
        timeout = aiohttp.ClientTimeout(total=HUB_SELFTEST_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(endpoint, headers=headers) as response,
        ):
            body = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        bus_report.add(
            "hub",
            Outcome.FAIL,
            f"无法连接 hub / cannot reach the hub at {url}: {err or type(err).__name__}",
            "检查 hub 是否运行、地址和端口（配置 hub.host / hub.port）/ check that the hub runs "
            "and the address and port (hub.host / hub.port in the configuration)",
        )
        _skip(devices, "hub 不可达 / hub unreachable")
        return {}
    if status in (401, 403):
        bus_report.add(
            "hub",
            Outcome.FAIL,
            f"hub 拒绝了令牌 / the hub refused the token (HTTP {status})",
            "需要管理员（admin）令牌 / an admin token is needed",
        )
        _skip(devices, "令牌无效 / token refused")
        return {}
    if status != 200 or not isinstance(body, dict):
        bus_report.add("hub", Outcome.FAIL, f"hub 应答 HTTP {status}: {body}")
        _skip(devices, f"HTTP {status}")
        return {}
    bus_report.add("hub", Outcome.PASS, f"由运行中的 hub 检查 / checked by the running hub {url}")
    by_name = {device.report.device: device for device in devices}
    for result in body.get("devices", []):
        name = str(result.get("device"))
        target = by_name[name].report if name in by_name else bus_report
        outcome = Outcome.PASS if result.get("ok") else Outcome.FAIL
        data = {key: result[key] for key in ("boot", "shown") if key in result}
        target.add("ident", outcome, str(result.get("detail", "")), **data)
    return body


def _skip(devices: list[_BusDevice], why: str) -> None:
    for device in devices:
        device.report.add("not_tested", Outcome.SKIP, f"未测 not tested: {why}")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``qcall selftest``."""
    parser = argparse.ArgumentParser(
        prog="qcall selftest",
        description=(
            "设备自检：逐一检查配置中的总线设备（窗口屏、呼叫器、评价器）和打印机，"
            "列出结果和需要检查的地方。\n"
            "Self-test: checks every bus device (counter displays, keypads, rating pads) and "
            "printer in the configuration and says what to check when one fails.\n\n"
            "自检自己打开总线端口和打印机：请先停止 hub（sudo systemctl stop qcall-hub），"
            "串口同一时间只能由一个程序打开。自检先监听总线约 3 秒，听到运行中的 hub 就什么也不发送"
            "并退出（退出码 3）；hub 不能停（演示环境、营业中）时用 --hub 由它检查总线设备。\n"
            "The self-test opens the bus port and the printers itself: stop the hub first "
            "(sudo systemctl stop qcall-hub) - a serial port can be open in one program only. It "
            "listens to the line for ~3 s first and, hearing a running hub, sends nothing and "
            "exits 3; when the hub cannot be stopped (the demo, opening hours) use --hub to let "
            "it check its bus devices."
        ),
        epilog=(
            "退出码 exit status: 0 全部通过 all passed · 1 有失败 something failed · "
            "2 配置错误 bad configuration · 3 总线正被 hub 使用 a hub holds the line"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="中心配置文件 / center configuration"
    )
    parser.add_argument(
        "--print-test",
        action="store_true",
        help="每台打印机打印一张测试页 / print a test page on every printer",
    )
    parser.add_argument(
        "--interactive",
        action="store_true",
        help=(
            "逐个请技术员按呼叫器的键、在评价器上评分 / ask the technician to press a key on "
            "each keypad and a rating on each rating pad in turn"
        ),
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help=(
            "JSON 报告文件（默认 当前目录下 selftest-<UTC 时间>.json）/ JSON report file "
            "(default selftest-<UTC stamp>.json in the current directory)"
        ),
    )
    parser.add_argument(
        "--key-timeout",
        type=float,
        default=KEY_PRESS_TIMEOUT_S,
        metavar="SECONDS",
        help=(
            f"每次按键最多等待秒数（默认 {KEY_PRESS_TIMEOUT_S:g}）/ how long to wait for each "
            f"press (default {KEY_PRESS_TIMEOUT_S:g})"
        ),
    )
    parser.add_argument(
        "--hub",
        metavar="URL",
        help=(
            "hub 正在运行时由它检查总线设备（如 http://127.0.0.1:8080），令牌取自 --token 或环境"
            "变量 QCALL_TOKEN（管理员）/ while the hub runs, let it check the bus devices "
            "(e.g. http://127.0.0.1:8080); admin token from --token or QCALL_TOKEN"
        ),
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="管理员令牌（用于 --hub）/ admin token for --hub (or set QCALL_TOKEN)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="显示驱动日志 / show driver log messages"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``qcall selftest``; return 0 when all passed, 1 on a failure, 2 for a bad config."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.key_timeout <= 0:
        parser.error("--key-timeout must be positive / 等待时间须大于 0")
    hub: tuple[str, str] | None = None
    if args.hub:
        token = args.token or os.environ.get("QCALL_TOKEN", "")
        if not token:
            parser.error(
                "--hub needs an admin token: --token TOKEN or QCALL_TOKEN / --hub 需要管理员令牌"
            )
        hub = (args.hub, token)
    _configure_logging(verbose=args.verbose)
    config_path = str(Path(args.config).resolve())
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(err.message_zh, file=sys.stderr)  # noqa: T201 - CLI output
        print("配置无效，未做自检 / invalid configuration, nothing tested", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    try:
        report = asyncio.run(
            run_selftest(
                config,
                print_test=args.print_test,
                interactive=args.interactive,
                key_timeout_s=args.key_timeout,
                config_path=config_path,
                hub=hub,
            )
        )
    except KeyboardInterrupt:
        print("\n自检已中断 / self-test interrupted", file=sys.stderr)  # noqa: T201 - CLI output
        return EXIT_FAILURE
    print(report.format_table())  # noqa: T201 - CLI output
    if report.line_busy:
        hub_url = f"http://{config.hub.host}:{config.hub.port}"
        print(f"\n{line_busy_message(hub_url)}", file=sys.stderr)  # noqa: T201 - CLI output
    path = Path(args.report) if args.report else Path.cwd() / default_report_name(report)
    try:
        write_report(report, path)
    except OSError as err:
        print(  # noqa: T201 - CLI output
            f"无法写入报告 cannot write the report {path}: {err.strerror or err}", file=sys.stderr
        )
        return EXIT_FAILURE
    print(f"报告 report: {path}")  # noqa: T201 - CLI output
    return report.exit_code


def default_report_name(report: SelftestReport) -> str:
    """Return ``selftest-<UTC stamp>.json`` for the start time of ``report``."""
    started = dt.datetime.fromisoformat(report.started_at.replace("Z", "+00:00"))
    return f"selftest-{started.strftime('%Y%m%dT%H%M%SZ')}.json"


def write_report(report: SelftestReport, path: Path) -> None:
    """Write the JSON report (UTF-8, Chinese kept readable); raise OSError."""
    data = json.dumps(report.as_dict(), ensure_ascii=False, indent=2, default=str)
    path.write_text(data + "\n", encoding="utf-8")


def _configure_logging(*, verbose: bool) -> None:
    # Device warnings ("does not answer") are what the table reports; show the log on request.
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.CRITICAL,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )


# --- the bus ------------------------------------------------------------------------------


@dataclass(slots=True)
class _BusDevice:
    """One configured bus address, where it is configured and what was found."""

    address: int
    kind: DeviceKind
    window: int
    where: str
    report: DeviceReport
    answered: bool = False
    answers: int = 0

    @property
    def name_zh(self) -> str:
        return f"{_KIND_NAMES[self.kind][0]} @{self.address}"

    @property
    def name_en(self) -> str:
        return f"{_KIND_NAMES[self.kind][1]} @{self.address}"


def _bus_devices(config: CenterConfig) -> list[_BusDevice]:
    found = []
    for index, window in enumerate(config.windows):
        for kind in DeviceKind:
            address = getattr(window.devices, kind.role)
            if address is None:
                continue
            zh, en = _KIND_NAMES[kind]
            report = DeviceReport(
                device=device_name("bus", kind, address),
                kind=kind.role,
                label=f"{zh} {en} @{address} · 窗口 {window.number}",
                address=address,
                window=window.number,
            )
            where = f"windows[{index}].devices.{kind.role}"
            found.append(_BusDevice(address, kind, window.number, where, report))
    return found


def display_test_pattern(window: int) -> str:
    """Return the two-line text every counter display must show and read back."""
    return f"测试 TEST 8888\n{window}号窗口 Window {window}"


class _EventLog:
    """Every event the master delivers, per address, with a way to wait for the next one."""

    def __init__(self) -> None:
        self.events: dict[int, list[BusEvent]] = collections.defaultdict(list)
        self._changed = asyncio.Event()

    def __call__(self, item: AddressedEvent) -> None:
        self.events[item.address].append(item.event)
        self._changed.set()

    def marks(self) -> dict[int, int]:
        return {address: len(events) for address, events in self.events.items()}

    def since(self, marks: dict[int, int]) -> list[int]:
        """Return the addresses that delivered events after ``marks`` was taken."""
        return sorted(a for a, events in self.events.items() if len(events) > marks.get(a, 0))

    async def next_after(self, address: int, mark: int) -> BusEvent:
        while len(self.events[address]) <= mark:
            self._changed.clear()
            await self._changed.wait()
        return self.events[address][mark]


class _BusSelftest:
    """Open the bus with a BusMaster of our own and check every configured address."""

    def __init__(
        self,
        config: Bus,
        devices: list[_BusDevice],
        *,
        interactive: bool,
        prompt: Prompt,
        key_timeout_s: float,
        listen_s: float | None = None,
    ) -> None:
        self.config = config
        self.devices = devices
        self.interactive = interactive
        self.prompt = prompt
        self.key_timeout_s = key_timeout_s
        self.bus_report = DeviceReport(device="bus", kind="bus", label=f"总线 bus {config.url}")
        self.log = _EventLog()
        self._opened = asyncio.Event()
        self._open_result: tuple[DeviceState, str] | None = None
        self.listen_s = LINE_LISTEN_S if listen_s is None else listen_s
        self.line_busy = False

    async def run(self) -> dict[str, Any]:
        """Run every bus check; return the master's diagnostics (empty if it never opened)."""
        try:
            parse_url(self.config.url)
        except ValueError as err:
            self.bus_report.add(
                "config",
                Outcome.FAIL,
                str(err),
                "在配置 devices.bus.url 写串口路径（如 /dev/ttyUSB0）或 socket://主机:端口 / "
                "set devices.bus.url to a serial path (e.g. /dev/ttyUSB0) or socket://HOST:PORT",
            )
            self._skip_all("总线配置错误 / bad bus configuration")
            return {}
        kinds = {device.address: device.kind for device in self.devices}
        timing = BusTiming(listen_before_s=self.listen_s, stand_down=True)
        master = BusMaster(self.config, kinds, on_state=self._on_state, timing=timing)
        master.subscribe(self.log)
        try:
            await master.start()
            if await self._open(master) and await self._line_free(master):
                await self._check_devices(master)
            return master.diagnostics()
        finally:
            await master.stop()

    # --- port ---------------------------------------------------------------------------

    def _on_state(self, name: str, state: DeviceState, detail: str) -> None:
        if name == "bus" and state in (DeviceState.READY, DeviceState.FAILED):
            if self._open_result is None:
                self._open_result = (state, detail)
            self._opened.set()

    async def _open(self, master: BusMaster) -> bool:
        config = self.config
        line = f"{config.url} {config.baud} 8{config.parity}1"
        try:
            async with asyncio.timeout(BUS_OPEN_TIMEOUT_S):
                await self._opened.wait()
        except TimeoutError:
            why = (
                f"端口 {BUS_OPEN_TIMEOUT_S:g} 秒内未打开 / the port did not open within "
                f"{BUS_OPEN_TIMEOUT_S:g} s"
            )
            self._open_result = (DeviceState.FAILED, why)
        assert self._open_result is not None
        state, detail = self._open_result
        if state is DeviceState.READY and master.state is DeviceState.READY:
            self.bus_report.add("open", Outcome.PASS, f"{line.split(' ', 1)[1]} 已打开 open")
            return True
        self.bus_report.add(
            "open",
            Outcome.FAIL,
            f"无法打开 cannot open {line}: {detail}",
            _open_hint(config.url, detail),
        )
        self._skip_all("总线端口未打开 / bus port not open")
        return False

    async def _line_free(self, master: BusMaster) -> bool:
        """Listen before talking: refuse (sending nothing) when another master is heard."""
        try:
            async with asyncio.timeout(self.listen_s + BUS_REQUEST_GUARD_S):
                free = await master.wait_listened()
        except TimeoutError:
            free = False
        if free:
            self.bus_report.add("listen", Outcome.PASS, f"线路空闲 line free ({self.listen_s:g} s)")
            return True
        self.line_busy = True
        counters = master.diagnostics()["counters"]
        self.bus_report.add(
            "listen",
            Outcome.FAIL,
            f"听到另一个主站的 {counters['foreign_frames']} 帧 / heard "
            f"{counters['foreign_frames']} frames of another master",
            LINE_BUSY_HINT,
        )
        self._skip_all("总线正被 hub 使用 / the line is in use by a hub")
        return False

    def _skip_all(self, why: str) -> None:
        for device in self.devices:
            device.report.add("not_tested", Outcome.SKIP, f"未测 not tested: {why}")

    # --- devices ------------------------------------------------------------------------

    async def _check_devices(self, master: BusMaster) -> None:
        for device in self.devices:
            if not await self._ident(master, device) or not await self._ping(master, device):
                continue
            if device.kind is DeviceKind.COUNTER_DISPLAY:
                await self._display(master, device)
            elif device.kind is DeviceKind.KEYPAD:
                await self._keypad_lcd(master, device)
        if self.interactive:
            for device in self.devices:
                if device.answered and device.kind is DeviceKind.KEYPAD:
                    await self._ask_keypad(master, device)
                elif device.answered and device.kind is DeviceKind.RATING_PAD:
                    await self._ask_rating_pad(master, device)
        for device in self.devices:
            if device.answered and device.kind is DeviceKind.KEYPAD:
                await self._restore(master, device)
        self._report_taken_events()
        self._check_line(master)

    async def _ident(self, master: BusMaster, device: _BusDevice) -> bool:
        report = device.report
        try:
            ident = await _guard(master.ident(device.address))
        except DeviceError as err:
            report.add("ident", Outcome.FAIL, _seen(err), _no_answer_hint(device, err))
            return False
        data = _ident_data(ident)
        if ident.kind is not device.kind:
            if ident.kind is not None:
                seen = _KIND_NAMES[ident.kind]
            else:
                seen = (f"类型 {ident.kind_code} 的设备", f"kind {ident.kind_code}")
            report.add(
                "ident",
                Outcome.FAIL,
                f"地址 {device.address} 上是{seen[0]} / address {device.address} answers as "
                f"{seen[1]}, not as the configured {_KIND_NAMES[device.kind][1]}",
                f"检查设备的地址拨码，或配置 {device.where} / check the device's address "
                f"switch, or {device.where} in the configuration",
                **data,
            )
            return False
        detail = (
            f"{ident.model} 固件 fw {ident.firmware[0]}.{ident.firmware[1]} "
            f"序列号 SN {ident.serial}"
        )
        if device.kind is not DeviceKind.RATING_PAD and Charset.GB2312 not in ident.charsets:
            report.add(
                "ident",
                Outcome.WARN,
                f"{detail}; 无 GB2312 字库 no GB2312 font",
                "中文无法显示：请升级固件/字库 / Chinese cannot be shown: update the firmware/font",
                **data,
            )
        else:
            report.add("ident", Outcome.PASS, detail, **data)
        device.answered = True
        return True

    async def _ping(self, master: BusMaster, device: _BusDevice) -> bool:
        report = device.report
        try:
            ping = await _guard(master.ping(device.address))
        except DeviceError as err:
            report.add("ping", Outcome.FAIL, _seen(err), _no_answer_hint(device, err))
            device.answered = False
            return False
        data = {"boot": ping.boot, "flags": int(ping.flags), "pending": ping.pending}
        if PingFlag.FAULT in ping.flags:
            report.add(
                "ping",
                Outcome.FAIL,
                f"硬件故障标志 hardware fault flag (boot {ping.boot})",
                "设备报告硬件故障（如 LED 模块损坏）：断电重启，仍然报告请送修 / the device "
                "reports a hardware fault (e.g. a dead LED module): power-cycle it, have it "
                "repaired if the flag stays",
                **data,
            )
            return True
        report.add("ping", Outcome.PASS, f"boot {ping.boot}", **data)
        return True

    async def _display(self, master: BusMaster, device: _BusDevice) -> None:
        pattern = display_test_pattern(device.window)
        try:
            await _guard(master.show_text(device.address, pattern))
        except DeviceError as err:
            device.report.add("pattern", Outcome.FAIL, _seen(err), _write_hint(device, err))
            return
        try:
            await self._read_back(master, device, pattern)
        finally:
            await self._restore(master, device)

    async def _read_back(self, master: BusMaster, device: _BusDevice, pattern: str) -> None:
        report = device.report
        try:
            shown = await _guard(master.query_text(device.address))
        except CommandRejected as err:
            if err.status != Status.UNKNOWN_COMMAND:
                report.add("pattern", Outcome.FAIL, _seen(err), _write_hint(device, err))
                return
            report.add(
                "pattern",
                Outcome.WARN,
                "固件不支持读回 firmware cannot read back (QUERY_TEXT)",
                f"请目视确认显示“{_one_line(pattern)}”，并升级固件 / look at the display: it must "
                f"show “{_one_line(pattern)}”; update the firmware to read it back",
                expected=pattern,
            )
            return
        except DeviceError as err:
            report.add("pattern", Outcome.FAIL, _seen(err), _no_answer_hint(device, err))
            return
        data = {"expected": pattern, "shown": shown.text, "effect": shown.effect.name}
        if shown.text != pattern:
            report.add(
                "pattern",
                Outcome.FAIL,
                f"显示“{_one_line(shown.text)}”而不是测试图案 / shows “{_one_line(shown.text)}” "
                f"instead of “{_one_line(pattern)}”",
                "窗口屏没有显示写入的文字：检查固件和字库，断电重启后再测 / the display does not "
                "show what was written: check its firmware and font, power-cycle it and test "
                "again",
                **data,
            )
            return
        report.add("pattern", Outcome.PASS, "测试图案已读回 pattern read back", **data)

    async def _keypad_lcd(self, master: BusMaster, device: _BusDevice) -> None:
        text = f"测试 TEST 8888\n呼叫器 @{device.address}"
        try:
            await _guard(master.keypad_lcd(device.address, text))
        except DeviceError as err:
            device.report.add("lcd", Outcome.FAIL, _seen(err), _write_hint(device, err))
            return
        device.report.add("lcd", Outcome.PASS, "液晶测试行已显示 LCD test line sent", text=text)

    async def _restore(self, master: BusMaster, device: _BusDevice) -> None:
        try:
            await _guard(master.clear(device.address))
        except DeviceError as err:
            device.report.add("restore", Outcome.FAIL, _seen(err), _no_answer_hint(device, err))
            return
        device.report.add("restore", Outcome.PASS, "已恢复空闲 idle")

    # --- interactive --------------------------------------------------------------------

    async def _ask_keypad(self, master: BusMaster, device: _BusDevice) -> None:
        address = device.address
        try:
            await self._drain(master, address)
            await _guard(master.keypad_lcd(address, f"请按任意键 @{address}\nPRESS ANY KEY"))
        except DeviceError as err:
            device.report.add("key_press", Outcome.FAIL, _seen(err), _no_answer_hint(device, err))
            return
        message = (
            f"请按{device.window}号窗口呼叫器 @{address} 上的任意键 / press any key on the "
            f"keypad @{address} of window {device.window} ({self.key_timeout_s:g} s)"
        )
        event, others = await self._wait_for_press(device, message)
        if event is None:
            device.report.add(
                "key_press",
                Outcome.FAIL,
                f"{self.key_timeout_s:g} 秒内呼叫器 @{address} 没有按键 / no key press from "
                f"keypad @{address} within {self.key_timeout_s:g} s",
                f"检查呼叫器的地址拨码和连线 / check the keypad's address switch and cable"
                f"{_others_hint(others)}",
                pressed_elsewhere=others,
            )
            return
        name = event.kind.name if event.kind else f"0x{event.code:02X}"
        zh = _EVENT_ZH.get(event.kind, "未知") if event.kind else "未知"
        device.report.add(
            "key_press", Outcome.PASS, f"收到按键 key {name} ({zh})", event=name, seq=event.seq
        )

    async def _ask_rating_pad(self, master: BusMaster, device: _BusDevice) -> None:
        address = device.address
        pad_timeout = min(255, math.ceil(self.key_timeout_s) + RATING_PAD_MARGIN_S)
        try:
            await self._drain(master, address)
            await _guard(master.rating_start(address, TEST_TICKET, pad_timeout))
        except DeviceError as err:
            device.report.add("rating", Outcome.FAIL, _seen(err), _no_answer_hint(device, err))
            return
        message = (
            f"请在{device.window}号窗口评价器 @{address} 上按任意评分 / press any rating on the "
            f"rating pad @{address} of window {device.window} ({self.key_timeout_s:g} s)"
        )
        try:
            event, others = await self._wait_for_press(device, message)
            self._rated(device, event, others)
        finally:
            await self._restore(master, device)

    def _rated(self, device: _BusDevice, event: BusEvent | None, others: list[int]) -> None:
        address = device.address
        if event is None or event.kind is EventKind.RATING_TIMEOUT:
            device.report.add(
                "rating",
                Outcome.FAIL,
                f"{self.key_timeout_s:g} 秒内评价器 @{address} 没有评分 / no rating from "
                f"rating pad @{address} within {self.key_timeout_s:g} s",
                f"检查评价器的地址拨码、按键和连线 / check the rating pad's address switch, "
                f"buttons and cable{_others_hint(others)}",
                pressed_elsewhere=others,
            )
            return
        if event.kind is EventKind.RATING:
            detail = f"收到评分 rating {event.score}"
        else:
            detail = f"收到事件 event 0x{event.code:02X}"
        device.report.add("rating", Outcome.PASS, detail, score=event.score, seq=event.seq)

    async def _drain(self, master: BusMaster, address: int) -> None:
        """Let the master take and acknowledge what was queued before we ask (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while loop.time() < deadline:
            if not (await _guard(master.ping(address))).pending:
                return
            await asyncio.sleep(self.config.poll_interval_ms / 1000)

    async def _wait_for_press(
        self, device: _BusDevice, message: str
    ) -> tuple[BusEvent | None, list[int]]:
        marks = self.log.marks()
        try:
            async with asyncio.timeout(self.key_timeout_s):
                await self.prompt(message)
                event = await self.log.next_after(device.address, marks.get(device.address, 0))
        except TimeoutError:
            return None, [a for a in self.log.since(marks) if a != device.address]
        device.answers += 1
        return event, []

    # --- the line -----------------------------------------------------------------------

    def _report_taken_events(self) -> None:
        for device in self.devices:
            taken = self.log.events.get(device.address, [])
            extra = len(taken) - device.answers
            if extra > 0:
                device.report.add(
                    "events",
                    Outcome.PASS,
                    f"自检取走了 {extra} 个排队事件（未交给 hub）/ took {extra} queued events "
                    "(not passed to the hub)",
                    events=[event.kind.name if event.kind else event.code for event in taken],
                )

    def _check_line(self, master: BusMaster) -> None:
        counters = master.diagnostics()["counters"]
        noise = counters["crc_errors"] + counters["bad_headers"]
        stray = counters["stray_frames"]
        data = {key: counters[key] for key in ("crc_errors", "bad_headers", "stray_frames")}
        if noise or stray:
            self.bus_report.add(
                "link",
                Outcome.WARN,
                f"{noise} 个损坏帧 damaged frames, {stray} 个意外帧 unexpected frames",
                "损坏帧：检查两端 120 Ω 终端电阻、偏置和 A/B 接线；意外帧：线上可能还有另一个主站"
                "（hub 未停止？）/ damaged frames: check the 120 Ω terminators at both ends, "
                "biasing and A/B wiring; unexpected frames: another master (the hub?) may be on "
                "the line",
                **data,
            )
        else:
            self.bus_report.add("link", Outcome.PASS, "线路无误码 no damaged frames", **data)


async def _guard(request: Awaitable[_T]) -> _T:
    """Await a master request, bounded by BUS_REQUEST_GUARD_S."""
    try:
        async with asyncio.timeout(BUS_REQUEST_GUARD_S):
            return await request
    except DeviceError:
        raise
    except TimeoutError:
        raise DeviceTimeout(
            f"no result within {BUS_REQUEST_GUARD_S:g} s", f"{BUS_REQUEST_GUARD_S:g} 秒内无结果"
        ) from None


def _ident_data(ident: IdentReply) -> dict[str, Any]:
    return {
        "kind": ident.kind.role if ident.kind else ident.kind_code,
        "model": ident.model,
        "firmware": f"{ident.firmware[0]}.{ident.firmware[1]}",
        "serial": ident.serial,
        "columns": ident.columns,
        "lines": ident.lines,
        "charsets": int(ident.charsets),
        "boot": ident.boot,
    }


def _seen(err: DeviceError) -> str:
    if isinstance(err, DeviceTimeout):
        return f"无应答 no answer: {err.message_en}"
    return describe(err)


def _no_answer_hint(device: _BusDevice, err: DeviceError) -> str:
    if isinstance(err, DeviceTimeout):
        return (
            f"检查{device.name_zh} 的电源、A/B 接线和地址拨码（应为 {device.address}）/ check the "
            f"{device.name_en}'s power, A/B wiring and its address switch (must be "
            f"{device.address}, see {device.where})"
        )
    if isinstance(err, DeviceProtocolError):
        return (
            "应答无法解析：检查波特率、终端电阻和接线 / garbled answer: check the baud rate, "
            "termination and wiring"
        )
    return "总线中断：检查转换器和线缆 / the bus went down: check the adapter and cable"


def _write_hint(device: _BusDevice, err: DeviceError) -> str:
    if isinstance(err, CommandRejected) and err.status == Status.NOT_IN_FONT:
        return (
            "字库缺少测试文字中的字符：请更新固件/GB2312 字库 / the font lacks characters of "
            "the test text: update the firmware / GB2312 font"
        )
    if isinstance(err, CommandRejected):
        return (
            f"{device.name_zh} 拒绝了命令：检查固件版本 / the {device.name_en} refused the "
            "command: check its firmware version"
        )
    return _no_answer_hint(device, err)


def _others_hint(others: Iterable[int]) -> str:
    others = list(others)
    if not others:
        return ""
    where = ", ".join(f"@{address}" for address in others)
    return (
        f"；等待期间收到了来自 {where} 的按键：地址拨码是否对调？/ meanwhile presses came from "
        f"{where}: are the address switches swapped?"
    )


_ERRNO_RE: Final = re.compile(r"\[Errno (\d+)\]")


def _open_hint(url: str, detail: str) -> str:
    """Return what to check when the bus port did not open, from the error text."""
    general = (
        "检查线缆、USB-RS485 转换器、端口路径、权限（dialout 组）和波特率 / check the cable, "
        "the USB-RS485 adapter, the port path, permissions (dialout group) and the baud rate"
    )
    if url.startswith("socket://"):
        return (
            "检查 RS-485 网关（或模拟器）是否运行、主机和端口是否正确、网线是否接好 / check "
            f"that the RS-485 gateway (or emulator) is running at {url.removeprefix('socket://')}"
            f", the host and port, and the network cable; {_HUB_HINT}"
        )
    codes = {int(code) for code in _ERRNO_RE.findall(detail)}
    if codes & {errno.EBUSY, errno.EAGAIN} or "exclusively lock" in detail:
        return f"端口被占用 / the port is in use. {_HUB_HINT}"
    if errno.EACCES in codes or "Permission denied" in detail:
        return (
            "没有权限：把用户加入 dialout 组（sudo usermod -aG dialout $USER，然后重新登录）/ "
            "permission denied: add the user to the dialout group (sudo usermod -aG dialout "
            "$USER, then log in again)"
        )
    if codes & {errno.ENOENT, errno.ENODEV, errno.ENXIO}:
        return (
            "找不到串口：检查转换器是否插好、端口路径（ls /dev/serial/by-id/）/ no such port: "
            "check that the adapter is plugged in and the port path (ls /dev/serial/by-id/)"
        )
    return f"{general}; {_HUB_HINT}"


def _one_line(text: str) -> str:
    return text.replace("\n", " ⏎ ")


# --- printers -----------------------------------------------------------------------------


async def _check_printer(
    config: Printer, index: int, *, print_test: bool, tz: dt.tzinfo
) -> tuple[DeviceReport, dict[str, Any]]:
    report = DeviceReport(
        device=f"printer:{config.id}", kind="printer", label=f"打印机 printer {config.id}"
    )
    try:
        printer = TicketPrinter.from_config(config)
    except ValueError as err:
        report.add(
            "config",
            Outcome.FAIL,
            str(err),
            f"修改配置 devices.printers[{index}].url / fix devices.printers[{index}].url",
        )
        return report, {}
    try:
        ready = await _printer_status(printer, report)
        if print_test:
            await _printer_test_page(printer, report, ready=ready, tz=tz)
        return report, printer.diagnostics()
    finally:
        await printer.stop()


async def _printer_status(printer: TicketPrinter, report: DeviceReport) -> bool:
    where = printer.endpoint.describe()
    if not printer.supports_status:
        (probe,) = await printer.probe()
        if not probe.ok:
            report.add("status", Outcome.FAIL, probe.detail, _printer_connect_hint(where))
            return False
        report.add(
            "status",
            Outcome.WARN,
            f"{where} 只写，无状态 write-only, no status",
            "无法读取缺纸等状态：请目视检查 / paper and cover cannot be read: check by eye",
        )
        return True
    try:
        status = await printer.status()
    except PrinterStatusUnsupported as err:
        report.add("status", Outcome.WARN, describe(err), "请目视检查 / check by eye")
        return True
    except DeviceProtocolError as err:
        report.add(
            "status",
            Outcome.FAIL,
            describe(err),
            f"应答不是 ESC/POS 状态：确认是 ESC/POS 打印机、地址和波特率正确（{where}）/ the "
            f"answer is not an ESC/POS status: is it an ESC/POS printer, are url and baud right "
            f"({where})?",
        )
        return False
    except DeviceError as err:
        report.add("status", Outcome.FAIL, describe(err), _printer_connect_hint(where))
        return False
    _report_status(report, status)
    return status.can_print


def _report_status(report: DeviceReport, status: PrinterStatus) -> None:
    data = status.as_dict()
    problems = status.problems()
    if not problems:
        report.add("status", Outcome.PASS, f"就绪 ready ({status.raw.hex(' ')})", **data)
        return
    outcome = Outcome.FAIL if not status.can_print else Outcome.WARN
    seen = "、".join(p.message_zh.split("：")[0] for p in problems)
    seen_en = ", ".join(p.message_en.split(":")[0].lower() for p in problems)
    report.add(
        "status",
        outcome,
        f"{seen} / {seen_en} ({status.raw.hex(' ')})",
        "; ".join(str(problem) for problem in problems),
        **data,
    )


async def _printer_test_page(
    printer: TicketPrinter, report: DeviceReport, *, ready: bool, tz: dt.tzinfo
) -> None:
    if not ready:
        report.add(
            "print_test", Outcome.SKIP, "未打印：打印机未就绪 / not printed: printer not ready"
        )
        return
    try:
        # The page shows the center's wall clock, not the machine's (often UTC on a server).
        result = await printer.print_test(dt.datetime.now(tz))
    except PrinterNotReady as err:
        hint = "; ".join(str(problem) for problem in err.problems)
        report.add("print_test", Outcome.FAIL, describe(err), hint)
        return
    except DeviceError as err:
        hint = _printer_connect_hint(printer.endpoint.describe())
        report.add("print_test", Outcome.FAIL, describe(err), hint)
        return
    report.add(
        "print_test",
        Outcome.PASS,
        f"测试页已发送 test page sent ({result.bytes_sent} B)",
        "请确认已打印、中文清晰、二维码可扫、已切纸 / check that it printed, the Chinese is "
        "legible, the QR code scans and the paper was cut",
        bytes=result.bytes_sent,
    )


def _printer_connect_hint(where: str) -> str:
    return (
        f"检查打印机电源、网线/USB/串口线和配置的地址 {where}；"
        "取号机程序不能同时占用串口/USB 打印机 / "
        f"check the printer's power, its cable and the configured url {where}; a serial or "
        "USB printer must not be held by the kiosk at the same time"
    )


if __name__ == "__main__":
    sys.exit(main())
