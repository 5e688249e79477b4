"""python-escpos at run time: profile, QR, image and cut bytes; lazy import, cache, logging."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from devices.emulators.printer import PrinterEmulator
from devices.printer import TicketPrinter
from devices.printer import commands as cmd
from devices.printer.commands import PAPER_DOTS
from devices.printer.decode import decode
from devices.printer.escpos_backend import (
    OWN_COMMANDS,
    EscposCommands,
    EscposUnavailable,
)
from devices.printer.paper import build_job
from devices.printer.render import render_test_page, render_ticket
from tests.devices.printer.samples import ISSUED_AT, SAMPLE, TRACK_URL

ROOT = Path(__file__).resolve().parents[3]
# One job of a few KB through the emulator on 127.0.0.1; the bound catches a hung printer.
JOB_TIMEOUT_S = 10.0
# A fresh interpreter importing python-escpos: about a second here.
SUBPROCESS_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def escpos_80(tmp_path_factory: pytest.TempPathFactory) -> EscposCommands:
    return EscposCommands("default", PAPER_DOTS[80], tmp_path_factory.mktemp("escpos"))


def test_commands_equal_our_bytes(escpos_80: EscposCommands) -> None:
    data = TRACK_URL.encode()
    assert escpos_80.qr_code(data, 6) == OWN_COMMANDS.qr_code(data, 6)
    assert escpos_80.full_cut() == OWN_COMMANDS.full_cut()
    rows = bytes([0b10100000] + [0] * 71) * 24  # a 576-dot wide, 24-dot tall image
    assert escpos_80.raster_image(72, 24, rows) == OWN_COMMANDS.raster_image(72, 24, rows)


@pytest.mark.parametrize("repertoire", ["gbk", "gb2312"])
def test_whole_ticket_is_byte_identical(escpos_80: EscposCommands, repertoire: str) -> None:
    # GB2312 sends the GBK-only characters as raster images: the image path is covered too.
    ticket = dataclasses.replace(SAMPLE, service_en="喆 𠀀 image line", rules=("过号请重新取号",))
    ours = render_ticket(ticket, 80, True, repertoire)
    theirs = render_ticket(ticket, 80, True, repertoire, commands=escpos_80)
    assert theirs == ours
    assert render_test_page("k", ISSUED_AT, commands=escpos_80) == render_test_page("k", ISSUED_AT)


def test_profile_of_a_known_model(tmp_path: Path) -> None:
    commands = EscposCommands("TM-T88III", PAPER_DOTS[80], tmp_path)
    profile = commands.profile
    assert profile.model == "TM-T88III"
    assert profile.media_width_px == 512
    assert profile.code_pages
    assert profile.raster
    assert profile.as_dict()["name"]


def test_unknown_model_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(EscposUnavailable) as err:
        EscposCommands("no-such-printer-9000", PAPER_DOTS[80], tmp_path)
    assert "no-such-printer-9000" in err.value.message_en
    assert "打印机型号" in err.value.message_zh


def test_import_is_lazy_cached_in_the_state_dir_and_leaves_logging_alone(tmp_path: Path) -> None:
    script = """
import json, logging, sys
from pathlib import Path
import devices.printer, kiosk.app
lazy = "escpos" not in sys.modules
from devices.printer.escpos_backend import EscposCommands
EscposCommands("default", 576, Path(sys.argv[1]))
print(json.dumps({"lazy": lazy, "root_handlers": len(logging.getLogger().handlers)}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=True,
        env={"PATH": "/usr/bin:/bin", "SDL_VIDEODRIVER": "dummy", "TMPDIR": str(tmp_path)},
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"lazy": True, "root_handlers": 0}
    assert list((tmp_path / "cache").iterdir()), "no capability cache in the state dir"


async def test_printer_with_a_model_prints_the_same_bytes(
    emulator: PrinterEmulator, tmp_path: Path
) -> None:
    printer = TicketPrinter("kiosk", emulator.url, model="default", state_dir=tmp_path)
    try:
        profile = await printer.load_profile()
        assert profile is not None
        assert profile.model == "default"
        await printer.print_ticket(SAMPLE)
        async with asyncio.timeout(JOB_TIMEOUT_S):
            jobs = await emulator.wait_for_jobs(1)
        assert jobs[0].raw == render_ticket(SAMPLE)
        assert printer.diagnostics()["escpos_profile"]["model"] == "default"
    finally:
        await printer.stop()


def test_a_model_without_native_qr_gets_the_code_as_an_image(tmp_path: Path) -> None:
    commands = EscposCommands("ZJ-5870", PAPER_DOTS[58], tmp_path)
    assert not commands.profile.qr_native
    job = build_job(decode(render_ticket(SAMPLE, 58, True, "gb2312", commands=commands)))
    assert job.qr_data() == []  # no GS ( k for a printer that cannot do it
    assert job.images()  # the code went out as a raster image instead
    assert "A012" in job.text_lines()
    # No cutter on this model: python-escpos' profile feeds the paper out for tearing off.
    assert not job.cut
    assert commands.full_cut() == cmd.feed_lines(6)
