"""The whole kiosk flow against a real hub and the printer emulator, headless.

Synthetic MOUSEBUTTON events are the finger; screenshots of every screen go to
``var/artifacts/kiosk/<test>/``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pygame
import pytest
from aiohttp import web

from devices.emulators.printer import PrinterEmulator, PrinterFault
from kiosk.journal import PendingJournal
from kiosk.model import IssueRequest
from qcall.client import QcallClient
from tests.kiosk.conftest import (
    CAPPED,
    LATE,
    NOT_TODAY,
    UI_TIMEOUT_S,
    Connect,
    Driver,
    HubProcess,
)

PRINTER_NAME = "kiosk:test kiosk/printer"
SOCIAL = "social_card"


async def _waiting(client: QcallClient, service: str) -> int:
    catalog = await client.catalog()
    return next(s["waiting"] for s in catalog["services"] if s["id"] == service)


# Between two looks at another process's state (the hub's diagnostics, a file the kiosk drops).
POLL_S = 0.1


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` holds (polled: these states have no push to the test)."""
    async with asyncio.timeout(UI_TIMEOUT_S):
        while not await check():  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(POLL_S)


async def _jobs(printer: PrinterEmulator, count: int) -> list[Any]:
    async with asyncio.timeout(UI_TIMEOUT_S):
        return await printer.wait_for_jobs(count)


async def _to_notice(kiosk: Driver, lang: str = "zh") -> None:
    zh = lang == "zh"
    await kiosk.tap("请触摸屏幕取号")
    await kiosk.screen("departments")
    await kiosk.tap("人力资源" if zh else "Human Resources")
    await kiosk.screen("services")
    await kiosk.tap("社会保障卡" if zh else "Social Security Card")
    await kiosk.screen("notice")


@pytest.mark.parametrize(
    ("size", "lang", "large"),
    [
        ((1080, 1920), "zh", False),
        ((1920, 1080), "en", False),
        ((1366, 768), "zh", True),
        ((1080, 1920), "en", True),
    ],
    ids=["portrait-zh", "landscape-en", "1366-zh-large", "portrait-en-large"],
)
async def test_take_a_ticket(
    start_kiosk: Any,
    hub: HubProcess,
    printer: PrinterEmulator,
    kiosk_client: QcallClient,
    size: tuple[int, int],
    lang: str,
    large: bool,
    tmp_path: Path,
) -> None:
    kiosk: Driver = await start_kiosk(size=size)
    if lang == "en":
        await kiosk.tap("English")
        await kiosk.wait(lambda s: s.lang == "en", "English")
    if large:
        await kiosk.tap("大字模式" if lang == "zh" else "Large text")
        await kiosk.wait(lambda s: s.large, "large text")
    before = await _waiting(kiosk_client, SOCIAL)
    await _to_notice(kiosk, lang)
    # The notice sheet is longer than its viewport: drag it up.
    scene = kiosk.scene
    assert scene.viewport is not None
    assert scene.scroll_max > 0
    x = scene.viewport.x + scene.viewport.w // 2
    y = scene.viewport.y + scene.viewport.h - 10
    kiosk.down(x, y)
    pygame.event.post(
        pygame.event.Event(pygame.MOUSEMOTION, pos=(x, y - 150), rel=(0, -150), buttons=(1, 0, 0))
    )
    kiosk.up(x, y - 150)
    await kiosk.wait(lambda s: s.scroll == min(150, s.scroll_max), "the sheet scrolled")
    await kiosk.tap("取号" if lang == "zh" else "Take a ticket")
    result = await kiosk.screen("result")
    jobs = await _jobs(printer, 1)
    issued = kiosk.kiosk.results[-1]
    assert issued.printed
    # The printed ticket holds the number the hub issued (its tracking link says which).
    tracked = await kiosk_client.track(issued.track_url.rsplit("/", 1)[-1])
    assert tracked["number"] == issued.number
    assert tracked["state"] == "waiting"
    text = jobs[0].text
    for part in (
        issued.number,
        "梧桐街道",
        "社会保障卡申领",
        "本人有效居民身份证原件",
        "过号请重新取号",
    ):
        assert part in text, (part, text)
    assert jobs[0].png_path is not None
    shutil.copyfile(jobs[0].png_path, kiosk.shots / "printed-ticket.png")  # kept as an artifact
    assert await _waiting(kiosk_client, SOCIAL) == before + 1
    shown = "\n".join(e.label for e in result.elements)
    assert issued.number in shown
    assert ("前面还有" if lang == "zh" else "ahead of you") in shown
    dumped = json.loads((tmp_path / "scene.json").read_text(encoding="utf-8"))
    assert dumped["screen"] == "result"
    assert dumped["lang"] == lang
    assert dumped["large"] is large
    assert any(issued.number in e["label"] for e in dumped["elements"])
    assert all(set(e) == {"kind", "label", "rect", "enabled"} for e in dumped["elements"])
    # Done ends the session: welcome, Chinese, normal text.
    await kiosk.tap("完成" if lang == "zh" else "Done")
    welcome = await kiosk.screen("welcome")
    assert (welcome.lang, welcome.large) == ("zh", False)
    assert (kiosk.shots / "latest.png").exists()


async def test_greyed_services_give_their_reasons(
    start_kiosk: Any, kiosk_client: QcallClient
) -> None:
    await kiosk_client.issue_ticket(CAPPED)  # the only ticket of the day
    kiosk: Driver = await start_kiosk()
    await kiosk.tap("请触摸屏幕取号")
    await kiosk.tap("人力资源")
    scene = await kiosk.screen("services")
    catalog = kiosk.kiosk.model.catalog
    assert catalog is not None
    names = {sid: catalog.service(sid).name.zh for sid in (CAPPED, LATE, NOT_TODAY)}  # type: ignore[union-attr]
    reasons = {CAPPED: "今日已满", LATE: "不在取号时间", NOT_TODAY: "今日不办理"}
    buttons = {b.label.split("\n")[0]: b for b in scene.buttons()}
    found = {}
    for sid, name in names.items():
        button = next(b for label, b in buttons.items() if name.startswith(label) or label in name)
        assert not button.enabled, button
        assert reasons[sid] in button.label, button.label
        assert "起可取号" in button.label, button.label
        found[sid] = button
    # A greyed button does nothing when touched.
    kiosk.tap_at(found[CAPPED])
    await asyncio.sleep(0.3)
    assert kiosk.scene.screen == "services"
    open_button = next(b for b in scene.buttons() if "社会保障卡" in b.label)
    assert open_button.enabled
    assert "等候" in open_button.label


async def test_double_tap_gives_one_ticket(
    start_kiosk: Any, printer: PrinterEmulator, kiosk_client: QcallClient
) -> None:
    kiosk: Driver = await start_kiosk()
    before = await _waiting(kiosk_client, SOCIAL)
    await _to_notice(kiosk)
    take = kiosk.scene.find("取号")
    for _ in range(3):  # a double (triple) tap lands before the first answer
        kiosk.tap_at(take)
    await kiosk.screen("result")
    await _jobs(printer, 1)
    await asyncio.sleep(0.5)  # room for a wrong second ticket to show up
    assert len(printer.jobs) == 1
    assert len(kiosk.kiosk.results) == 1
    assert await _waiting(kiosk_client, SOCIAL) == before + 1


@dataclass
class FlakyHub:
    """A proxy in front of the hub that can lose answers or be down."""

    hub: HubProcess
    lose_ticket_answers: int = 0
    down: bool = False
    ticket_keys: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=503)
        body = await request.read()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.hub.url + request.path_qs, data=body, headers=headers
            ) as answer,
        ):
            payload = await answer.read()
            status = answer.status
        if request.method == "POST" and request.path == "/api/v1/tickets":
            self.ticket_keys.append(request.headers.get("Idempotency-Key", ""))
            if self.lose_ticket_answers > 0:
                self.lose_ticket_answers -= 1
                assert request.transport is not None
                request.transport.close()  # the hub issued it; the kiosk never hears back
                return web.Response(status=502)
        return web.Response(body=payload, status=status, content_type="application/json")


@pytest.fixture
async def flaky(hub: HubProcess) -> AsyncIterator[FlakyHub]:
    proxy = FlakyHub(hub)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        await runner.cleanup()


async def test_a_lost_answer_is_retried_with_the_same_key(
    start_kiosk: Any, flaky: FlakyHub, printer: PrinterEmulator, kiosk_client: QcallClient
) -> None:
    kiosk: Driver = await start_kiosk(hub_url=flaky.url)
    await kiosk.wait(lambda s: kiosk.kiosk.model.hub_online, "the catalog")
    before = await _waiting(kiosk_client, SOCIAL)
    await _to_notice(kiosk)
    flaky.lose_ticket_answers = 1
    await kiosk.tap("取号")
    await kiosk.screen("result")
    await _jobs(printer, 1)
    assert len(flaky.ticket_keys) == 2
    assert flaky.ticket_keys[0] == flaky.ticket_keys[1] != ""
    assert await _waiting(kiosk_client, SOCIAL) == before + 1
    assert kiosk.kiosk.results[-1].number in printer.jobs[0].text


async def test_hub_down_says_so_and_prints_nothing(
    start_kiosk: Any,
    flaky: FlakyHub,
    printer: PrinterEmulator,
    kiosk_client: QcallClient,
    tmp_path: Path,
) -> None:
    kiosk: Driver = await start_kiosk(hub_url=flaky.url)
    await kiosk.wait(lambda s: kiosk.kiosk.model.hub_online, "the catalog")
    before = await _waiting(kiosk_client, SOCIAL)
    await _to_notice(kiosk)
    flaky.down = True
    kiosk.tap_at(kiosk.scene.find("取号"))
    message = await kiosk.wait(lambda s: s.screen == "message", "a message")
    text = "\n".join(e.label for e in message.elements)
    assert "无法" in text
    assert printer.jobs == []
    # Services show as unavailable while the hub is away; the start button waits for it.
    await kiosk.tap("首页")
    welcome = await kiosk.screen("welcome")
    assert not welcome.find("请触摸屏幕取号").enabled
    assert any("无法连接" in e.label for e in welcome.elements)
    # The hub comes back: the kiosk notices by itself, and nothing was issued for nobody.
    flaky.down = False
    await kiosk.wait(
        lambda s: s.screen == "welcome" and s.find("请触摸屏幕取号").enabled, "recovery"
    )
    pending = tmp_path / "state" / "pending"

    async def settled() -> bool:
        return not list(pending.glob("*.json"))

    await _eventually(settled)
    assert await _waiting(kiosk_client, SOCIAL) == before
    assert printer.jobs == []


async def test_hub_unreachable_from_the_start(start_kiosk: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    kiosk: Driver = await start_kiosk(hub_url=dead)
    welcome = await kiosk.wait(lambda s: s.screen == "welcome", "welcome")
    assert not welcome.find("请触摸屏幕取号").enabled
    assert any("无法连接" in e.label for e in welcome.elements)


async def _is_state(admin: QcallClient, state: str) -> bool:
    return await _device_state(admin, PRINTER_NAME) == state


async def _device_state(admin: QcallClient, name: str) -> str | None:
    diagnostics = await admin.diagnostics()
    device = diagnostics["devices"].get(name)
    return None if device is None else str(device["state"])


@pytest.mark.parametrize("fallback", ["show", "refuse"])
async def test_paper_end_then_recovery(
    start_kiosk: Any,
    hub: HubProcess,
    connect: Connect,
    printer: PrinterEmulator,
    kiosk_client: QcallClient,
    fallback: str,
) -> None:
    admin = await connect(hub.token("admin"))
    kiosk: Driver = await start_kiosk(fallback=fallback, label=fallback)
    await _eventually(lambda: _is_state(admin, "ready"))
    printer.set_fault(PrinterFault.PAPER_END)
    before = await _waiting(kiosk_client, SOCIAL)
    await _to_notice(kiosk)
    await kiosk.wait(lambda s: any("缺纸" in e.label for e in s.elements), "the paper-end notice")
    await _eventually(lambda: _is_state(admin, "offline"))
    diagnostics = await admin.diagnostics()
    assert "缺纸" in diagnostics["devices"][PRINTER_NAME]["detail"]
    if fallback == "show":
        await kiosk.tap("取号")
        result = await kiosk.screen("result")
        issued = kiosk.kiosk.results[-1]
        assert not issued.printed
        assert any(e.kind == "qr" and e.label == issued.track_url for e in result.elements)
        assert any("请拍下" in e.label for e in result.elements)
        assert await _waiting(kiosk_client, SOCIAL) == before + 1
    else:
        take = kiosk.scene.find("取号")
        assert not take.enabled
        assert any("暂停取号" in e.label for e in kiosk.scene.elements)
        kiosk.tap_at(take)
        await asyncio.sleep(0.3)
        assert kiosk.scene.screen == "notice"
        assert await _waiting(kiosk_client, SOCIAL) == before
    assert printer.jobs == []
    # Paper loaded: the kiosk reports the recovery and prints again.
    printer.set_fault(None)
    await _eventually(lambda: _is_state(admin, "ready"))
    await kiosk.tap("完成" if fallback == "show" else "首页")
    await _to_notice(kiosk)
    await kiosk.tap("取号")
    await kiosk.screen("result")
    jobs = await _jobs(printer, 1)
    assert kiosk.kiosk.results[-1].number in jobs[0].text


async def test_collect_a_finished_case_with_the_pickup_code(
    start_kiosk: Any, connect: Connect, printer: PrinterEmulator, kiosk_client: QcallClient
) -> None:
    clerk = await connect(staff="c1")
    await clerk.open_window(1)
    try:
        ticket = await kiosk_client.issue_ticket(SOCIAL)
        called = await clerk.call_number(1, ticket["number"])
        assert called["number"] == ticket["number"]
        await clerk.start(1)
        finished = await clerk.finish(1, "back_office")
        case = finished["case"]
        await clerk.case_ready(case["id"])
    finally:
        await clerk.close_window(1)
    kiosk: Driver = await start_kiosk()
    await kiosk.tap("请触摸屏幕取号")
    await kiosk.tap("领取办结件")
    await kiosk.screen("pickup")
    for digit in "000000" if case["pickup_code"] != "000000" else "999999":
        await kiosk.tap_key(digit)
    await kiosk.tap("确认")
    wrong = await kiosk.wait(
        lambda s: s.screen == "pickup" and any(e.style == "error" for e in s.elements),
        "the hub's refusal",
    )
    assert any("取件码" in e.label for e in wrong.elements if e.style == "error")
    for digit in case["pickup_code"]:
        await kiosk.tap_key(digit)
    await kiosk.tap("确认")
    await kiosk.screen("result")
    jobs = await _jobs(printer, 1)
    issued = kiosk.kiosk.results[-1]
    assert issued.number in jobs[0].text
    # The same code again: already collected, says the hub.
    await kiosk.tap("完成")
    await kiosk.tap("请触摸屏幕取号")
    await kiosk.tap("领取办结件")
    for digit in case["pickup_code"]:
        await kiosk.tap_key(digit)
    await kiosk.tap("确认")
    again = await kiosk.wait(
        lambda s: s.screen == "pickup" and any(e.style == "error" for e in s.elements),
        "already collected",
    )
    assert any("已" in e.label for e in again.elements if e.style == "error")
    assert len(printer.jobs) == 1


async def test_a_request_left_by_a_crash_is_settled_at_start(
    start_kiosk: Any, kiosk_client: QcallClient, tmp_path: Path
) -> None:
    """The kiosk died after sending: on restart it fetches that ticket by key and cancels it."""
    key = "crashed-request-0001"
    ghost = await kiosk_client.issue_ticket(SOCIAL, idempotency_key=key)
    PendingJournal(tmp_path / "state" / "pending").save(IssueRequest(key, SOCIAL))
    kiosk: Driver = await start_kiosk()
    pending = tmp_path / "state" / "pending"

    async def settled() -> bool:
        return not list(pending.glob("*.json"))

    await _eventually(settled)
    assert (await kiosk_client.track(ghost["track_token"]))["state"] == "cancelled"
    assert kiosk.kiosk.results == []


async def test_finger_events_are_ignored(start_kiosk: Any) -> None:
    """Touch panels send FINGER* and synthesised mouse events: only the mouse path counts."""
    kiosk: Driver = await start_kiosk()
    start = kiosk.scene.find("请触摸屏幕取号")
    width, height = kiosk.scene.size
    x = (start.rect.x + start.rect.w / 2) / width
    y = (start.rect.y + start.rect.h / 2) / height
    for kind in (pygame.FINGERDOWN, pygame.FINGERUP):
        pygame.event.post(
            pygame.event.Event(
                kind, touch_id=1, finger_id=0, x=x, y=y, dx=0.0, dy=0.0, pressure=1.0
            )
        )
    await asyncio.sleep(0.3)
    assert kiosk.scene.screen == "welcome"
    kiosk.tap_at(start)
    await kiosk.screen("departments")
