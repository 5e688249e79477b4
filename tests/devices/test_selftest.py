"""``qcall selftest`` against the real bus and printer emulators on 127.0.0.1."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import sys
import tty
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from devices import selftest
from devices.base import DeviceState
from devices.emulators.bus import BusEmulator
from devices.emulators.printer import PrinterEmulator
from devices.qbus.frames import Command, DeviceKind, EventKind, Frame
from devices.qbus.master import BusMaster, BusTiming
from devices.selftest import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    Outcome,
    SelftestReport,
    display_test_pattern,
    run_selftest,
    write_report,
)
from qcall.config import CenterConfig, parse_config
from tests.common import small_center

ROOT: Final = Path(__file__).resolve().parents[2]
# Bounded waits: generous so a loaded CI machine never fails a correct run.
WAIT_S: Final = 30.0
# The CLI subprocess imports the printer stack (Pillow, fonts) before it tests anything.
CLI_TIMEOUT_S: Final = 60.0
FAST_BAUD: Final = 115200
# A key press the test never makes: long enough for the prompt, short enough to keep tests fast.
NO_PRESS_TIMEOUT_S: Final = 0.5
# Listen-before-talk in tests: the "hub" below sweeps every 0.1 s, so 0.5 s always hears it.
TEST_LISTEN_S: Final = 0.5

D, K, R = DeviceKind.COUNTER_DISPLAY, DeviceKind.KEYPAD, DeviceKind.RATING_PAD
HALL: Final = {11: D, 12: K, 13: R, 21: D, 22: K}
WINDOW_DEVICES: Final = [
    {"counter_display": 11, "keypad": 12, "rating_pad": 13},
    {"counter_display": 21, "keypad": 22},
]


def center(
    bus_url: str | None,
    printer_url: str | None = None,
    windows: list[dict[str, int]] = WINDOW_DEVICES,
) -> dict[str, Any]:
    """Return the raw small center with bus devices on its windows, a bus and a printer."""
    raw = small_center()
    for window, devices in zip(raw["windows"], windows, strict=False):
        window["devices"] = devices
    raw["devices"] = {"printers": []}
    if bus_url is not None:
        # 150 ms and two retries: a loaded machine never misses a reply from a healthy device.
        raw["devices"]["bus"] = {
            "url": bus_url,
            "baud": FAST_BAUD,
            "reply_timeout_ms": 150,
            "retries": 2,
            "poll_interval_ms": 10,
        }
    if printer_url is not None:
        raw["devices"]["printers"] = [{"id": "kiosk", "url": printer_url}]
    return raw


def config_of(raw: dict[str, Any]) -> CenterConfig:
    return parse_config(raw, "<test>")


def to_toml(raw: dict[str, Any]) -> str:
    """Write the raw config as TOML: every top-level key as one inline value."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, str):
            return json.dumps(item, ensure_ascii=False)
        if isinstance(item, list):
            return "[" + ", ".join(value(each) for each in item) + "]"
        assert isinstance(item, dict)
        return "{ " + ", ".join(f"{key} = {value(each)}" for key, each in item.items()) + " }"

    return "".join(f"{key} = {value(each)}\n" for key, each in raw.items())


@pytest.fixture
async def bus() -> AsyncIterator[BusEmulator]:
    emulator = BusEmulator(HALL, baud=FAST_BAUD)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def printer(tmp_path: Path) -> AsyncIterator[PrinterEmulator]:
    emulator = PrinterEmulator(tmp_path / "printed")
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


async def selftest_of(raw: dict[str, Any], **options: Any) -> SelftestReport:
    options.setdefault("listen_s", TEST_LISTEN_S)
    async with asyncio.timeout(WAIT_S):
        return await run_selftest(config_of(raw), **options)


def outcomes(report: SelftestReport) -> dict[str, Outcome]:
    return {device.device: device.outcome for device in report.devices}


def failed(report: SelftestReport, name: str, check: str) -> selftest.CheckResult:
    (result,) = [c for c in report.device(name).checks if c.check == check]
    assert result.outcome is Outcome.FAIL, result
    return result


class Technician:
    """Answers the prompts: presses on the emulator at the address the prompt names."""

    def __init__(self, bus: BusEmulator, *, answer: bool = True) -> None:
        self.bus = bus
        self.answer = answer
        self.prompts: list[str] = []
        self.instead: dict[int, int] = {}

    async def __call__(self, message: str) -> None:
        self.prompts.append(message)
        match = re.search(r"@(\d+)", message)
        assert match, message
        address = self.instead.get(int(match[1]), int(match[1]))
        if not self.answer:
            return
        if self.bus.shown(address)["kind"] == "keypad":
            self.bus.press(address, EventKind.RECALL)
        else:
            self.bus.rating(address, 4)


# --- everything passes ----------------------------------------------------------------------


async def test_everything_passes_and_the_report_has_every_device(
    bus: BusEmulator, printer: PrinterEmulator, tmp_path: Path
) -> None:
    report = await selftest_of(center(bus.url, printer.url), config_path="/etc/qcall/x.toml")
    shown_after = {address: bus.shown(address) for address in HALL}
    assert report.exit_code == EXIT_OK
    assert outcomes(report) == {
        "bus": Outcome.PASS,
        "bus:counter_display@11": Outcome.PASS,
        "bus:keypad@12": Outcome.PASS,
        "bus:rating_pad@13": Outcome.PASS,
        "bus:counter_display@21": Outcome.PASS,
        "bus:keypad@22": Outcome.PASS,
        "printer:kiosk": Outcome.PASS,
    }
    display = report.device("bus:counter_display@21")
    assert [c.check for c in display.checks] == ["ident", "ping", "pattern", "restore"]
    pattern = display.checks[2]
    assert pattern.data["shown"] == pattern.data["expected"] == display_test_pattern(2)
    assert display_test_pattern(2) == "测试 TEST 8888\n2号窗口 Window 2"
    assert display.checks[0].data["model"] == "QB-D16"
    assert [c.check for c in report.device("bus:keypad@12").checks] == [
        "ident",
        "ping",
        "lcd",
        "restore",
    ]
    # Displays are back at their idle text, keypad LCDs blank, nothing printed.
    assert shown_after[11]["mode"] == shown_after[21]["mode"] == "idle"
    assert shown_after[12]["lcd"] == shown_after[22]["lcd"] == ""
    assert printer.jobs == []

    path = tmp_path / "report.json"
    write_report(report, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["ok"] is True
    assert data["exit_code"] == 0
    assert data["config"] == "/etc/qcall/x.toml"
    assert data["started_at"].endswith("Z")
    assert data["finished_at"] >= data["started_at"]
    assert data["summary"] == {"skip": 0, "pass": 7, "warn": 0, "fail": 0}
    assert [d["outcome"] for d in data["devices"]] == ["pass"] * 7
    assert all(c["at"].endswith("Z") for d in data["devices"] for c in d["checks"])
    assert data["diagnostics"]["bus"]["counters"]["crc_errors"] == 0
    assert data["diagnostics"]["printer:kiosk"]["last_status"]["online"] is True


async def test_table_is_aligned_and_bilingual(bus: BusEmulator) -> None:
    report = await selftest_of(center(bus.url, windows=[{"counter_display": 11}, {"keypad": 12}]))
    table = report.format_table()
    rows = [line for line in table.splitlines() if "PASS" in line]
    assert len(rows) == 3
    columns = {selftest._width(row[: row.index("通过 PASS")]) for row in rows}
    assert len(columns) == 1  # every result starts in the same terminal column
    header = next(line for line in table.splitlines() if line.startswith("设备 Device"))
    assert selftest._width(header[: header.index("结果 Result")]) in columns
    assert "窗口屏 display @11 · 窗口 1" in table
    assert "呼叫器 keypad @12 · 窗口 2" in table
    assert "全部通过 / all devices passed" in table


# --- failures name the device and what to check ---------------------------------------------


async def test_displays_that_do_not_answer_fail_naming_the_address(bus: BusEmulator) -> None:
    bus.fault(21, "no_reply", 1000)
    windows = [*WINDOW_DEVICES, {"counter_display": 31}]
    report = await selftest_of(center(bus.url, windows=windows))
    assert report.exit_code == EXIT_FAILURE
    for address, window in ((21, 1), (31, 2)):
        ident = failed(report, f"bus:counter_display@{address}", "ident")
        assert "no answer" in ident.detail
        assert f"address switch (must be {address}" in ident.hint
        assert f"windows[{window}].devices.counter_display" in ident.hint
        assert "地址拨码" in ident.hint
        assert [c.check for c in report.device(f"bus:counter_display@{address}").checks] == [
            "ident"
        ]
    assert outcomes(report)["bus:counter_display@11"] is Outcome.PASS
    assert outcomes(report)["bus:keypad@22"] is Outcome.PASS
    table = report.format_table()
    assert "失败 FAIL" in table
    assert "check the display @31's power, A/B wiring and its address switch" in table


async def test_a_display_that_shows_something_else_fails(bus: BusEmulator) -> None:
    def restart_before_read_back(frame: Frame, _: float) -> None:
        # The display restarts between the write and the read-back: it shows its idle text.
        if frame.dst == 11 and frame.cmd == Command.QUERY_TEXT:
            bus.fault(11, "power_cycle")

    bus.subscribe(restart_before_read_back)
    report = await selftest_of(center(bus.url))
    pattern = failed(report, "bus:counter_display@11", "pattern")
    assert pattern.data["shown"] == ""
    assert "instead of “测试 TEST 8888 ⏎ 1号窗口 Window 1”" in pattern.detail
    assert "firmware and font" in pattern.hint
    assert report.device("bus:counter_display@11").checks[-1].check == "restore"
    assert report.exit_code == EXIT_FAILURE


async def test_a_device_of_the_wrong_kind_fails(bus: BusEmulator) -> None:
    report = await selftest_of(center(bus.url, windows=[{"keypad": 11}]))
    ident = failed(report, "bus:keypad@11", "ident")
    assert "address 11 answers as display, not as the configured keypad" in ident.detail
    assert "windows[0].devices.keypad" in ident.hint


async def test_printer_paper_end_fails_with_what_to_check(
    bus: BusEmulator, printer: PrinterEmulator
) -> None:
    printer.set_fault("paper-end")
    report = await selftest_of(center(bus.url, printer.url), print_test=True)
    status = failed(report, "printer:kiosk", "status")
    assert "缺纸 / paper end" in status.detail
    assert "缺纸：请装入新纸卷 / Paper end: load a new paper roll" in status.hint
    (test_page,) = [c for c in report.device("printer:kiosk").checks if c.check == "print_test"]
    assert test_page.outcome is Outcome.SKIP
    assert printer.jobs == []
    assert report.exit_code == EXIT_FAILURE
    assert "缺纸：请装入新纸卷 / Paper end: load a new paper roll" in report.format_table()


async def test_printer_near_end_is_a_warning_and_the_test_page_prints(
    printer: PrinterEmulator,
) -> None:
    printer.set_fault("near-end")
    report = await selftest_of(center(None, printer.url, windows=[]), print_test=True)
    checks = {c.check: c for c in report.device("printer:kiosk").checks}
    assert checks["status"].outcome is Outcome.WARN
    assert "Paper near end" in checks["status"].hint
    assert checks["print_test"].outcome is Outcome.PASS
    async with asyncio.timeout(WAIT_S):
        (job,) = await printer.wait_for_jobs(1)
    assert "Printer self-test" in job.text
    assert report.exit_code == EXIT_OK
    # The page shows the center's wall clock (Asia/Shanghai here), whatever the machine's zone.
    assert re.search(r"时间 Time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\+08:00", job.text)


async def test_printer_nobody_listens_on(unused_tcp_port: int) -> None:
    report = await selftest_of(center(None, f"tcp://127.0.0.1:{unused_tcp_port}", windows=[]))
    status = failed(report, "printer:kiosk", "status")
    assert f"127.0.0.1:{unused_tcp_port}" in status.hint
    assert "must not be held by the kiosk" in status.hint


# --- interactive ------------------------------------------------------------------------------


async def test_interactive_presses_on_each_keypad_and_rating_pad_pass(bus: BusEmulator) -> None:
    bus.press(12, EventKind.NEXT)  # queued before the test: not the technician's answer
    technician = Technician(bus)
    report = await selftest_of(center(bus.url), interactive=True, prompt=technician)
    assert report.exit_code == EXIT_OK, report.format_table()
    assert [re.findall(r"@(\d+)", p)[0] for p in technician.prompts] == ["12", "13", "22"]
    assert "press any key on the keypad @12 of window 1" in technician.prompts[0]
    assert "请按1号窗口呼叫器 @12 上的任意键" in technician.prompts[0]
    checks = {c.check: c for c in report.device("bus:keypad@12").checks}
    assert checks["key_press"].data["event"] == "RECALL"
    assert checks["events"].data["events"] == ["NEXT", "RECALL"]
    rating = {c.check: c for c in report.device("bus:rating_pad@13").checks}["rating"]
    assert rating.data["score"] == 4
    assert bus.shown(13)["session"] is None
    assert bus.shown(12)["lcd"] == ""


async def test_interactive_without_a_press_fails_after_the_timeout(
    bus: BusEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selftest, "KEY_PRESS_TIMEOUT_S", NO_PRESS_TIMEOUT_S)
    bus.press(12, EventKind.NEXT)  # an old press must not count as the answer
    technician = Technician(bus)
    technician.instead = {12: 22}  # the technician presses on the wrong keypad
    technician.answer = True
    report = await selftest_of(
        center(bus.url, windows=[{"keypad": 12}, {"keypad": 22}]),
        interactive=True,
        prompt=technician,
    )
    press = failed(report, "bus:keypad@12", "key_press")
    assert "no key press from keypad @12" in press.detail
    assert "check the keypad's address switch and cable" in press.hint
    assert "检查呼叫器的地址拨码和连线" in press.hint
    assert "meanwhile presses came from @22: are the address switches swapped?" in press.hint
    assert outcomes(report)["bus:keypad@22"] is Outcome.PASS
    assert report.exit_code == EXIT_FAILURE


async def test_interactive_rating_pad_without_a_rating_fails(bus: BusEmulator) -> None:
    report = await selftest_of(
        center(bus.url, windows=[{"rating_pad": 13}]),
        interactive=True,
        prompt=Technician(bus, answer=False),
        key_timeout_s=NO_PRESS_TIMEOUT_S,
    )
    rating = failed(report, "bus:rating_pad@13", "rating")
    assert "no rating from rating pad @13" in rating.detail
    assert bus.shown(13)["session"] is None  # the session was ended again


# --- the port -------------------------------------------------------------------------------


async def test_a_bus_url_nobody_listens_on_is_one_clear_failure(unused_tcp_port: int) -> None:
    report = await selftest_of(center(f"socket://127.0.0.1:{unused_tcp_port}"))
    opened = failed(report, "bus", "open")
    assert f"cannot open socket://127.0.0.1:{unused_tcp_port}" in opened.detail
    assert "RS-485 gateway (or emulator) is running" in opened.hint
    assert "stop the hub first" in opened.hint
    assert {d.outcome for d in report.devices if d.device != "bus"} == {Outcome.SKIP}
    assert report.exit_code == EXIT_FAILURE
    assert "总线端口未打开 / bus port not open" in report.format_table()


@pytest.fixture
def locked_pty() -> Iterator[str]:
    """Return the path of a pty another program holds exclusively (like a running hub)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    holder = os.open(path, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield path
    finally:
        for fd in (holder, slave, master):
            os.close(fd)


async def test_a_busy_serial_port_says_to_stop_the_hub(locked_pty: str) -> None:
    report = await selftest_of(center(locked_pty))
    opened = failed(report, "bus", "open")
    assert "exclusively lock" in opened.detail
    assert "the port is in use" in opened.hint
    assert "sudo systemctl stop qcall-hub" in opened.hint


async def test_a_missing_serial_port_says_to_check_the_adapter(tmp_path: Path) -> None:
    report = await selftest_of(center(str(tmp_path / "ttyUSB9")))
    assert "no such port" in failed(report, "bus", "open").hint


async def test_a_malformed_bus_url_is_a_config_failure() -> None:
    report = await selftest_of(center("socket://nohost"))
    check = failed(report, "bus", "config")
    assert "devices.bus.url" in check.hint


# --- the command line -----------------------------------------------------------------------


async def test_cli_against_the_emulators(
    bus: BusEmulator, printer: PrinterEmulator, tmp_path: Path
) -> None:
    config = tmp_path / "center.toml"
    config.write_text(to_toml(center(bus.url, printer.url)), encoding="utf-8")
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devices.selftest",
        "--config",
        str(config),
        "--report",
        str(report),
        "--print-test",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(CLI_TIMEOUT_S):
        out, err = await process.communicate()
    stdout = out.decode()
    assert process.returncode == EXIT_OK, stdout + err.decode()
    assert "全部通过 / all devices passed" in stdout
    assert f"报告 report: {report}" in stdout
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["config"] == str(config)
    assert data["options"]["print_test"] is True
    assert {d["outcome"] for d in data["devices"]} == {"pass"}
    assert len(printer.jobs) == 1

    bus.fault(22, "unplug")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devices.selftest",
        "--config",
        str(config),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(CLI_TIMEOUT_S):
        out, _ = await process.communicate()
    assert process.returncode == EXIT_FAILURE
    assert "呼叫器 keypad @22" in out.decode()
    (written,) = await asyncio.to_thread(lambda: list(tmp_path.glob("selftest-*Z.json")))
    assert json.loads(written.read_text(encoding="utf-8"))["ok"] is False


def test_cli_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[center]\nname_zh = "x"\n', encoding="utf-8")
    assert selftest.main(["--config", str(path)]) == EXIT_CONFIG
    assert "invalid configuration, nothing tested" in capsys.readouterr().err
    assert selftest.main(["--config", str(tmp_path / "missing.toml")]) == EXIT_CONFIG
    assert not list(tmp_path.glob("selftest-*.json"))


def test_cli_help_says_to_stop_the_hub(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        selftest.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: qcall selftest")
    assert "stop the hub first" in out
    assert "先停止 hub" in out


def test_cli_without_devices_writes_the_default_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "center.toml"
    path.write_text(to_toml(center(None, windows=[])), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert selftest.main(["--config", str(path)]) == EXIT_OK
    assert "配置中没有设备 / no devices are configured" in capsys.readouterr().out
    (written,) = tmp_path.glob("selftest-*Z.json")
    assert re.fullmatch(r"selftest-\d{8}T\d{6}Z\.json", written.name)


# --- a hub holds the line -------------------------------------------------------------------


async def test_selftest_refuses_while_a_hub_holds_the_line_and_sends_nothing(
    bus: BusEmulator,
) -> None:
    raw = center(bus.url)
    config = config_of(raw)
    assert config.devices.bus is not None
    hub_timing = BusTiming(restart_sweep_interval_s=0.1)
    ready = asyncio.Event()
    answered: set[str] = set()

    def on_state(name: str, state: DeviceState, _: str) -> None:
        if state is DeviceState.READY and "@" in name:
            answered.add(name)
        if len(answered) == len(HALL):
            ready.set()

    hub_master = BusMaster(config.devices.bus, HALL, timing=hub_timing, on_state=on_state)
    await hub_master.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await ready.wait()
            await hub_master.show_call(11, "A001", 1, flash=0)
            await hub_master.keypad_lcd(12, "当前A001 等候0")
        frames: list[Frame] = []
        bus.subscribe(lambda frame, _: frames.append(frame))
        report = await selftest_of(raw)
    finally:
        await hub_master.stop()
    assert report.line_busy
    assert report.exit_code == selftest.EXIT_LINE_BUSY
    result = failed(report, "bus", "listen")
    assert "另一个主站" in result.detail
    assert "another master" in result.detail
    assert "systemctl stop qcall-hub" in result.hint
    assert "--hub" in result.hint
    assert "--hub http://127.0.0.1:" in selftest.line_busy_message("http://127.0.0.1:8080")
    assert {outcomes(report)[f"bus:{k.role}@{a}"] for a, k in HALL.items()} == {Outcome.SKIP}
    # Nothing of the self-test reached the line: no IDENT, no test pattern, no LCD text.
    assert not [f for f in frames if f.cmd in (Command.IDENT, Command.SHOW_TEXT)]
    assert bus.shown(11)["ticket"] == "A001"
    assert bus.shown(12)["lcd"] == "当前A001 等候0"
    table = report.format_table()
    assert "先听 listen" in table
