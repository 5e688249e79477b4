"""The supervisor page and the public page in real Chromium, on a hub whose clock the test moves.

The hub runs in this process (its engine clock is the test's :class:`Clock`), served on a free
port; Chromium signs in through the form like a supervisor would. Screenshots of both
languages at 1366×768 are saved as test artifacts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from qcall.api import build_app
from qcall.events import Event
from qcall.hub import Hub
from qcall.model import Role
from tests.common import Clock, make_config
from tests.functional.conftest import PIN, _free_port
from tests.functional.staffweb import PAGE_TIMEOUT_MS, chromium, shot

WINDOW_1366 = {"width": 1366, "height": 768}
# The hub's alert watch runs every ALERT_CHECK_S (5 s); this bounds a hung one.
ALERT_EVENT_TIMEOUT_S = 20.0
SUPERVISOR = "sup9"


class Served:
    """A hub with an injected clock, served on 127.0.0.1."""

    def __init__(self, hub: Hub, clock: Clock, url: str) -> None:
        self.hub = hub
        self.clock = clock
        self.url = url


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    clock = Clock(dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))))
    hub = Hub(make_config(), tmp_path / "qcall.db", clock=clock)
    app = build_app(hub)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        await hub.write(hub.store.add_staff, SUPERVISOR, "王主管", PIN, Role.SUPERVISOR)
        yield Served(hub, clock, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


async def _sign_in(browser: Any, served: Served, path: str) -> Any:
    context = await browser.new_context(viewport=WINDOW_1366)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("dialog", lambda dialog: dialog.accept())  # the confirm() before an action
    page.errors = errors
    await page.goto(served.url + path)
    await page.get_by_label("工号").fill(SUPERVISOR)
    await page.get_by_label("密码").fill(PIN)
    await page.keyboard.press("Enter")
    return page


async def _announced(served: Served, kind: str, key: str) -> None:
    """Wait until an ``alert.raised``/``alert.cleared`` event for ``key`` was published."""
    found = asyncio.Event()

    def watch(event: Event) -> None:
        if str(event.type) == kind and event.data.get("key") == key:
            found.set()

    unsubscribe = served.hub.bus.subscribe(watch)
    try:
        for event in await served.hub.events_after(0):
            watch(event)
        async with asyncio.timeout(ALERT_EVENT_TIMEOUT_S):
            await found.wait()
    finally:
        unsubscribe()


async def test_a_supervisor_sees_alerts_appear_and_acts_on_them(served: Served) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=PAGE_TIMEOUT_MS)  # the page re-reads its live part every 5 s

    hub, clock = served.hub, served.clock
    ticket = await hub.execute(lambda now: hub.engine.issue(now, "social"))
    await hub.execute(lambda now: hub.engine.open_window(now, 1, "c1"))
    async with chromium() as browser:
        page = await _sign_in(browser, served, "/supervisor/")
        await expect(page).to_have_url(served.url + "/supervisor/")
        await expect(page.locator("body")).to_have_attribute("data-live_connected", "1")
        social = page.locator('tr[data-service="social"]')
        await expect(social.locator("td.num").first).to_have_text("1")
        await expect(page.locator("[data-no-alerts]")).to_be_visible()
        await expect(page.locator('tr[data-window="1"]')).to_contain_text("c1")

        # The ticket's wait passes the service's 30-minute target: no event, the clock alone.
        clock.advance(minutes=31)
        long_wait = page.locator('[data-alert="long_wait:social"]')
        await expect(long_wait).to_be_visible()
        await expect(long_wait).to_contain_text("等候超过 30 分钟")
        await expect(long_wait).to_contain_text(ticket.number)

        # A counter display stops answering: the device.state event brings the alert.
        await hub.execute(
            lambda now: hub.engine.device_state(now, "bus:display@11", "offline", "no answer")
        )
        offline = page.locator('[data-alert="device_offline:bus:display@11"]')
        await expect(offline).to_be_visible()
        await expect(offline).to_contain_text("设备离线")
        await expect(page.locator('tr[data-device="bus:display@11"]')).to_contain_text("offline")
        # Today's charts come from the reports' own SVG routes and draw (no broken image).
        for chart in ("hourly", "ratings"):
            image = page.locator(f'img[src^="/web/api/v1/reports/charts/{chart}"]')
            await expect(image).to_have_js_property("complete", True)
            assert await image.evaluate("img => img.naturalWidth") > 0, chart
        await shot(page, "supervisor-zh-1366")
        # Both were announced as events (the event stream and webhooks carry them).
        await _announced(served, "alert.raised", "long_wait:social")
        await _announced(served, "alert.raised", "device_offline:bus:display@11")

        await page.get_by_role("link", name="English").click()
        await expect(page.locator('[data-alert="long_wait:social"]')).to_contain_text(
            "waiting longer than 30 min"
        )
        await expect(page.get_by_role("heading", name="Alerts (2)")).to_be_visible()
        await shot(page, "supervisor-en-1366")

        # Close the window the clerk left open: nobody serves the line any more.
        await page.get_by_role("button", name="Close window 1").click()
        await expect(page.locator('tr[data-window="1"]')).to_contain_text("Closed")
        assert hub.engine.windows[1].staff is None
        await expect(page.locator('[data-alert="unserved:social"]')).to_be_visible()

        # Move a waiting ticket to another service's line: it keeps its number.
        second = await hub.execute(lambda now: hub.engine.issue(now, "social"))
        await expect(social.locator("td.num").first).to_have_text("2")
        await page.get_by_label(f"Move {second.number} to").select_option(label="Service medical")
        await page.get_by_role("button", name=f"Move {second.number}").click()
        medical = page.locator('tr[data-service="medical"]')
        await expect(medical.locator("td.num").first).to_have_text("1")
        await expect(medical).to_contain_text(second.number)
        await expect(social.locator("td.num").first).to_have_text("1")
        assert hub.engine.tickets[f"{second.id}.1"].service == "medical"
        await hub.execute(lambda now: hub.engine.cancel(now, f"{second.id}.1"))

        # Cancel the long-waiting ticket: its alerts go.
        await page.get_by_role("button", name=f"Cancel {ticket.number}").click()
        await expect(page.locator('[data-alert="long_wait:social"]')).to_have_count(0)
        await expect(page.locator('[data-alert="unserved:social"]')).to_have_count(0)
        assert str(hub.engine.tickets[ticket.id].state) == "cancelled"

        # The device comes back: its alert goes.
        await hub.execute(lambda now: hub.engine.device_state(now, "bus:display@11", "ready"))
        await expect(page.locator("[data-no-alerts]")).to_be_visible()
        await _announced(served, "alert.cleared", "long_wait:social")
        await _announced(served, "alert.cleared", "device_offline:bus:display@11")

        # Close the day: what still waits expires, nothing more is issued today.
        last = await hub.execute(lambda now: hub.engine.issue(now, "housing"))
        await expect(page.locator('tr[data-service="housing"] td.num').first).to_have_text("1")
        await page.get_by_role("button", name="Close the day").click()
        await expect(page.locator('tr[data-service="housing"] td.num').first).to_have_text("0")
        assert str(hub.engine.tickets[last.id].state) == "expired"
        assert hub.engine.day_closed
        await page.reload()
        await expect(page.get_by_text("The day is closed.")).to_be_visible()
        await expect(page.get_by_role("button", name="Close the day")).to_have_count(0)
        await shot(page, "supervisor-day-closed-en-1366")
        assert page.errors == []


async def test_a_long_pause_and_a_printer_out_of_paper_are_alerts(served: Served) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=PAGE_TIMEOUT_MS)  # the page re-reads its live part every 5 s

    hub, clock = served.hub, served.clock
    await hub.execute(lambda now: hub.engine.open_window(now, 2, "c2"))
    await hub.execute(lambda now: hub.engine.pause(now, 2, "c2", "meeting"))
    await hub.execute(
        lambda now: hub.engine.device_state(
            now, "kiosk:lobby/printer", "attention", "缺纸 / paper end"
        )
    )
    async with chromium() as browser:
        page = await _sign_in(browser, served, "/supervisor/")
        await page.get_by_role("link", name="English").click()
        await expect(page.locator('[data-alert="paper_out:kiosk:lobby/printer"]')).to_contain_text(
            "out of paper"
        )
        limit = hub.config.hub.pause_alert_minutes
        await expect(page.locator('[data-alert="long_pause:2"]')).to_have_count(0)
        clock.advance(minutes=limit + 1)
        await expect(page.locator('[data-alert="long_pause:2"]')).to_contain_text(
            f"paused for {limit + 1} min"
        )


async def test_the_public_page_needs_no_login_shows_no_person_and_is_cacheable(
    served: Served,
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=PAGE_TIMEOUT_MS)  # the page re-reads its live part every 5 s

    hub = served.hub
    for _ in range(3):
        await hub.execute(lambda now: hub.engine.issue(now, "medical"))
    async with chromium() as browser:
        for lang, heading, waiting in (
            ("zh", "信息公开", "等候人数"),
            ("en", "Information disclosure", "Number waiting"),
        ):
            context = await browser.new_context(viewport=WINDOW_1366)
            page = await context.new_page()
            response = await page.goto(f"{served.url}/public/?lang={lang}")
            assert response.status == 200
            headers = await response.all_headers()
            assert headers["cache-control"] == "public, max-age=5"
            assert "set-cookie" not in headers
            await expect(page.get_by_role("heading", name=heading)).to_be_visible()
            await expect(page.get_by_role("columnheader", name=waiting)).to_be_visible()
            row = page.locator("tr", has_text="业务medical" if lang == "zh" else "Service medical")
            await expect(row.locator("td.num")).to_have_text("3")
            text = await page.locator("body").inner_text()
            assert "c1" not in text
            assert "王主管" not in text
            await shot(page, f"public-{lang}-1366")
            await context.close()
