"""The whole kiosk flow against a real hub and the printer emulator, headless."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from devices.emulators.printer import PrinterEmulator
from qcall.client import QcallClient
from tests.kiosk.conftest import UI_TIMEOUT_S, Connect, HubProcess


async def test_take_a_ticket_in_chinese(
    start_kiosk, hub: HubProcess, printer: PrinterEmulator, connect: Connect, tmp_path: Path
) -> None:
    display = await connect(hub.token("display"))
    kiosk = await start_kiosk()
    await kiosk.tap("请触摸屏幕取号")
    await kiosk.screen("departments")
    await kiosk.tap("人力资源")
    await kiosk.screen("services")
    await kiosk.tap("社会保障卡")
    scene = await kiosk.screen("notice")
    await kiosk.tap("取号")
    result = await kiosk.screen("result")
    async with asyncio.timeout(UI_TIMEOUT_S):
        jobs = await printer.wait_for_jobs(1)
    issued = kiosk.kiosk.results[-1]
    assert issued.printed
    assert issued.number in jobs[0].text
    state = await display.state()
    assert state["waiting"]
    assert issued.number in result.to_json()["elements"].__repr__()
    dumped = json.loads((tmp_path / "scene.json").read_text(encoding="utf-8"))
    assert dumped["screen"] == "result"
