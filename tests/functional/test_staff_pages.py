"""The staff pages in real Chromium against a real hub, driven by the keyboard.

A clerk signs in, opens a window and works through the day's operations while a kiosk
issues tickets through the API; the panel follows without reloading. The back office marks a
case ready, its pickup ticket is called at the reply window, the desk issues a ticket and
logs an inquiry. Screenshots of every page in both languages land in var/artifacts/web/.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import expect

from qcall.client import QcallClient
from tests.functional.conftest import PIN, Connect, HubProcess
from tests.functional.staffweb import PAGE_TIMEOUT_MS, admin_account, chromium, shot

expect.set_options(timeout=PAGE_TIMEOUT_MS)
WINDOW_1366 = {"width": 1366, "height": 768}
# 200 % zoom of a 1366×768 window: half the CSS pixels, each drawn twice as large.
ZOOM_200 = {"width": 683, "height": 384}
# A 10-inch tablet held upright (1280×800 panel at 1.5 device pixels per CSS pixel).
TABLET = {"width": 533, "height": 853}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A Chromium for the test (each page gets its own context)."""
    async with chromium() as launched:
        yield launched


async def signed_in(browser: Any, hub: HubProcess, staff: str, path: str, **options: Any) -> Any:
    """A fresh browser context signed in as ``staff`` with the keyboard, at ``path``."""
    fake_clock = options.pop("fake_clock", False)
    context = await browser.new_context(viewport=options.pop("viewport", WINDOW_1366), **options)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    if fake_clock:
        await context.clock.install()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.errors = errors
    await page.goto(hub.url + path)
    await expect(page).to_have_url(f"{hub.url}/login?next=" + path.replace("/", "%2F"))
    await page.get_by_label("工号").fill(staff)
    await page.get_by_label("密码").fill(PIN)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(hub.url + path)
    return page


async def live(page: Any) -> None:
    """Wait until the page's event stream is connected."""
    await expect(page.locator("body")).to_have_attribute("data-live_connected", "1")


async def press(page: Any, key: str) -> None:
    """Press a shortcut key once the previous operation has finished (keys are ignored while
    one runs: that is what keeps a button from firing twice)."""
    await expect(page.locator("body[data-busy]")).to_have_count(0)
    await page.keyboard.press(key)


def button(page: Any, name: str) -> Any:
    """An operation button by its accessible name (the glossary term)."""
    return page.get_by_role("button", name=name, exact=True)


async def test_a_clerks_day_in_the_panel_back_office_reply_window_and_desk(
    browser: Any, hub: HubProcess, kiosk: QcallClient, connect: Connect
) -> None:
    page = await signed_in(browser, hub, "c1", "/staff/")
    await shot(page, "zh-windows")
    picker = page.get_by_role("button", name="开启 1 号窗口")
    await picker.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#current-number")).to_have_text("—")
    await live(page)
    await page.evaluate("window.__sameDocument = true")
    total = page.locator("#waiting-total")
    current = page.locator("#current-number")
    for name in (
        "叫号",
        "重呼",
        "请评价",
        "暂停",
        "恢复",
        "过号",
        "转移",
        "挂起",
        "回呼",
        "办结",
        "转后台",
    ):
        await expect(button(page, name)).to_have_count(1)

    # Tickets issued at the kiosk appear without a reload.
    tickets = [await kiosk.issue_ticket("social_card") for _ in range(5)]
    await expect(total).to_have_text("5")
    numbers = [t["number"] for t in tickets]

    await press(page, "F1")  # 叫号
    await expect(current).to_have_text(numbers[0])
    await press(page, "F2")  # 重呼
    await expect(page.locator(".ticket-state")).to_contain_text("已重呼 1 次")
    await shot(page, "zh-panel-calling")
    # With a long notice sheet, every button still fits a 1366×768 screen without scrolling.
    assert page.viewport_size == WINDOW_1366
    for name in ("叫号", "过号", "办结", "转后台"):
        box = await button(page, name).bounding_box()
        assert box is not None
        assert box["y"] + box["height"] <= WINDOW_1366["height"], name
    notice = await page.locator(".notice-card").bounding_box()
    assert notice is not None
    assert notice["y"] > box["y"]  # the notice sheet comes after the buttons

    await press(page, "F7")  # 挂起
    await expect(current).to_have_text("—")
    held = page.locator(f'[id="act-callback-{tickets[0]["id"]}"]')
    await expect(held).to_be_enabled()
    await press(page, "F1")
    await expect(current).to_have_text(numbers[1])
    await held.focus()
    await press(page, "Enter")  # 回呼 (numbers[1] is finished as done first)
    await expect(current).to_have_text(numbers[0])

    await press(page, "F6")  # 转移 → window 2, first in line
    dialog = page.locator("#dlg-transfer")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("转移至").select_option("window:2")
    await dialog.get_by_role("button", name="转移").focus()
    await page.keyboard.press("Enter")
    await expect(current).to_have_text("—")
    clerk_api = await connect(staff="c1")
    moved = await clerk_api.ticket(tickets[0]["id"])
    assert moved["state"] == "transferred"

    await press(page, "F1")
    await expect(current).to_have_text(numbers[2])
    await press(page, "F9")  # 办结
    await expect(current).to_have_text("—")
    await expect(page.locator("#fig-finished")).to_have_text("2")

    await press(page, "F1")
    await expect(current).to_have_text(numbers[3])
    await press(page, "F10")  # 转后台, promised date filled in
    back = page.locator("#dlg-back-office")
    await expect(back.locator("#bo-date")).not_to_have_value("")
    await back.get_by_role("button", name="转后台").focus()
    await page.keyboard.press("Enter")
    await expect(current).to_have_text("—")
    await expect(page.locator("#fig-finished")).to_have_text("3")

    # 请评价: the resident rates on the page; a refusal shows the hub's own message.
    await press(page, "F3")
    rating = page.locator("#dlg-rating")
    await expect(rating).to_be_visible()
    await clerk_api.rate(1, 5)  # rated meanwhile (e.g. on the rating pad)
    await rating.get_by_role("button", name="4 · 满意").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#alert")).to_have_text("本窗口没有待评价的已办结号码")

    # 过号 and back in line.
    await press(page, "F1")
    await expect(current).to_have_text(numbers[4])
    await press(page, "F5")
    await expect(current).to_have_text("—")
    again = page.get_by_role("button", name=f"重新排队 {numbers[4]}")
    await expect(again).to_have_count(1)
    await again.focus()
    await press(page, "Enter")
    await expect(total).to_have_text("1")

    # 暂停 with a reason, then 恢复 (F4 both ways).
    await press(page, "F4")
    pause = page.locator("#dlg-pause")
    await pause.get_by_label("暂停原因").fill("午休")
    await page.keyboard.press("Enter")
    await expect(page.locator(".current h2")).to_contain_text("暂停服务")
    await expect(button(page, "叫号")).to_be_disabled()
    await press(page, "F4")
    await expect(page.locator(".current h2")).to_contain_text("空闲")

    # 特呼: a given number, typed in.
    await button(page, "特呼").focus()
    await press(page, "Enter")
    await page.get_by_label("号码", exact=True).fill(numbers[4].lower())
    await page.keyboard.press("Enter")
    await expect(current).to_have_text(numbers[4])
    await press(page, "F9")
    await expect(current).to_have_text("—")

    # The back office marks the case ready; its pickup ticket is called at the reply window.
    office = await signed_in(browser, hub, "c2", "/backoffice/")
    row = office.locator("tr", has_text=numbers[3])
    await expect(row).to_contain_text("测试c1")
    await shot(office, "zh-backoffice")
    code = (await row.locator("td").nth(6).inner_text()).strip()
    ready = office.get_by_role("button", name=f"办结待取 {numbers[3]}")
    await ready.focus()
    await office.keyboard.press("Enter")
    await expect(office.locator("#ready-title")).to_contain_text("(1)")
    reply = await signed_in(browser, hub, "c8", "/staff/")
    await reply.get_by_role("button", name="开启 8 号窗口").focus()
    await reply.keyboard.press("Enter")
    await live(reply)
    pickup = await kiosk.issue_ticket("case_pickup", case_code=code)
    await expect(reply.locator("#waiting-total")).to_have_text("1")
    await press(reply, "F1")
    await expect(reply.locator("#current-number")).to_have_text(pickup["number"])

    # The desk issues a ticket (priority lane) and logs an inquiry.
    desk = await signed_in(browser, hub, "c5", "/desk/")
    await desk.get_by_label("业务", exact=True).select_option("minimum_living")
    await desk.get_by_label("绿色通道（老年人、残疾人、孕妇）").focus()
    await desk.keyboard.press("Space")
    await desk.get_by_role("button", name="取号").focus()
    await desk.keyboard.press("Enter")
    slip = desk.locator("#ticket-result")
    await expect(slip).to_be_visible()
    issued = (await slip.locator('[data-field="number"]').inner_text()).strip()
    assert issued.startswith("J") or issued[0].isalpha()
    await expect(slip).to_contain_text("最低生活保障")
    await shot(desk, "zh-desk-issued")
    await desk.get_by_label("咨询事项").fill("居住证续签需要什么材料")
    await desk.get_by_label("答复内容").fill("身份证、居住证明")
    await desk.get_by_label("后续跟进（可选）").fill("下周电话回访")
    await desk.get_by_label("后续跟进（可选）").press("Enter")
    await expect(desk.locator("#status")).to_have_text("咨询已登记。")
    await desk.get_by_label("号码或取件码").fill(issued)
    await desk.keyboard.press("Enter")
    await expect(desk.locator("#lookup-result")).to_contain_text(issued)
    await expect(desk.locator("#lookup-result")).to_contain_text("等候中")
    await expect(desk.locator("#lookup-result")).to_contain_text("绿色通道")
    await shot(desk, "zh-desk")
    supervisor = await connect(staff="sup1")
    state = await supervisor.state()
    assert state["waiting"]["minimum_living"] >= 1

    # The whole session ran in one document: updates came over the event stream.
    assert await page.evaluate("window.__sameDocument === true")
    for p in (page, office, reply, desk):
        assert p.errors == []
    await shot(page, "zh-panel-idle")
    for p in (page, office, reply, desk):
        await p.context.close()


async def test_a_button_fires_once_however_fast_it_is_pressed(
    browser: Any, hub: HubProcess, kiosk: QcallClient, connect: Connect
) -> None:
    # Window 7 alone serves the residence permit: nothing else in this module waits for it.
    page = await signed_in(browser, hub, "c7", "/staff/")
    await page.get_by_role("button", name="开启 7 号窗口").click()
    await live(page)
    first = await kiosk.issue_ticket("residence_permit")
    second = await kiosk.issue_ticket("residence_permit")
    await expect(page.locator("#waiting-total")).to_have_text("2")
    # The first press's request is held back half a second: every later press lands while it
    # is in flight, which is when a double fire would happen.
    passed: list[str] = []

    async def slow(route: Any) -> None:
        passed.append(route.request.url)
        await asyncio.sleep(0.5)
        await route.continue_()

    await page.route("**/web/api/v1/windows/7/next", slow)
    await button(page, "叫号").dblclick()
    await page.keyboard.press("F1")
    await page.keyboard.press("F1")
    await expect(page.locator("#current-number")).to_have_text(first["number"])
    assert len(passed) == 1
    await expect(page.locator("#waiting-total")).to_have_text("1")
    clerk = await connect(staff="c7")
    assert (await clerk.ticket(second["id"]))["state"] == "waiting"
    await page.context.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_every_page_holds_at_200_percent_zoom_and_in_both_languages(
    browser: Any, hub: HubProcess, lang: str
) -> None:
    staff = {"zh": "c4", "en": "c6"}[lang]
    page = await signed_in(browser, hub, staff, "/staff/")
    if lang == "en":
        await page.get_by_role("link", name="English").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
    await shot(page, f"{lang}-windows")
    window = {"zh": 4, "en": 6}[lang]
    name = {"zh": f"开启 {window} 号窗口", "en": f"Open window {window}"}[lang]
    await page.get_by_role("button", name=name).click()
    await live(page)
    if lang == "en":
        for label in ("Call next", "Recall", "No-show", "Hold", "Call back", "Transfer"):
            await expect(button(page, label)).to_have_count(1)
    await shot(page, f"{lang}-panel")
    for path in ("/staff/", "/desk/", "/backoffice/"):
        await page.goto(hub.url + path)
        await shot(page, f"{lang}{path.replace('/', '-')}1366".replace("--", "-"))
        await page.set_viewport_size(ZOOM_200)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, overflow)
        # Every control can be reached by the keyboard and lies inside the page's width.
        boxes = await page.evaluate(
            """() => [...document.querySelectorAll('main button, main input, main select')]
                 .filter(e => e.offsetParent !== null)
                 .map(e => { const r = e.getBoundingClientRect();
                             return [e.id || e.name, r.left, r.right, e.tabIndex]; })"""
        )
        for ident, left, right, tab in boxes:
            assert left >= 0, (path, ident, left)
            assert right <= ZOOM_200["width"] + 0.5, (path, ident, right)
            assert tab >= 0, (path, ident)
        await shot(page, f"{lang}{path.replace('/', '-')}zoom200".replace("--", "-"))
        await page.set_viewport_size(TABLET)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, "tablet", overflow)
        await shot(page, f"{lang}{path.replace('/', '-')}tablet".replace("--", "-"))
        await page.set_viewport_size(WINDOW_1366)
    await page.get_by_role("button", name={"zh": "退出登录", "en": "Sign out"}[lang]).click()
    await expect(page).to_have_url(f"{hub.url}/login?bye=1")
    await shot(page, f"{lang}-login")
    assert page.errors == []
    await page.context.close()


async def test_a_lost_connection_is_shown_and_the_panel_resyncs_by_itself(
    browser: Any, hub: HubProcess
) -> None:
    page = await signed_in(browser, hub, "c5", "/staff/")
    await page.get_by_role("button", name="开启 5 号窗口").click()
    await live(page)
    await page.evaluate("window.__sameDocument = true")
    before = int(await page.locator("#waiting-total").inner_text())
    await asyncio.to_thread(hub.stop)
    await expect(page.locator("#offline")).to_be_visible()
    await shot(page, "zh-panel-offline")
    await asyncio.to_thread(hub.start, keep_port=True)
    await expect(page.locator("#offline")).to_be_hidden()
    async with QcallClient(hub.url, hub.token("kiosk")) as kiosk:
        await kiosk.issue_ticket("senior_allowance")
    await expect(page.locator("#waiting-total")).to_have_text(str(before + 1))
    assert await page.evaluate("window.__sameDocument === true")
    await page.context.close()


async def test_an_unused_page_warns_a_minute_ahead_then_signs_out(
    browser: Any, hub: HubProcess
) -> None:
    page = await signed_in(browser, hub, "c6", "/desk/", fake_clock=True)
    warning = page.locator("#dlg-idle")
    await expect(warning).to_be_hidden()
    await page.clock.fast_forward("29:10")
    await expect(warning).to_be_visible()
    await shot(page, "zh-idle-warning")
    # Closing the warning reports activity (a ping) from its close event: the clock moves on
    # only after that ping, or the ping would count as activity after the jump.
    async with page.expect_response(lambda response: "/web/ping" in response.url):
        await page.keyboard.press("Enter")  # 继续使用
    await expect(warning).to_be_hidden()
    await page.clock.fast_forward("29:10")
    await expect(warning).to_be_visible()
    await page.clock.fast_forward("01:00")
    await expect(page).to_have_url(f"{hub.url}/login?expired=1&next=%2Fdesk%2F")
    await expect(page.locator(".notice")).to_contain_text("因长时间未操作")
    await page.goto(f"{hub.url}/desk/")  # the session ended on the hub too
    await expect(page).to_have_url(f"{hub.url}/login?next=%2Fdesk%2F")
    await page.context.close()


async def test_a_role_without_these_pages_is_told_so_in_its_language(
    browser: Any, hub: HubProcess
) -> None:
    page = await signed_in(browser, hub, admin_account(hub), "/backoffice/")
    await expect(page.get_by_role("alert")).to_contain_text("您的角色（admin）不能使用此页面")
    await shot(page, "zh-forbidden")
    await page.get_by_role("link", name="English").click()
    await expect(page.get_by_role("alert")).to_contain_text("role admin may not use this page")
    await shot(page, "en-forbidden")
    # Its navigation offers its own pages (the admin pages), none of the staff pages.
    nav = page.get_by_role("navigation")
    await expect(nav.get_by_role("link", name="Audit log")).to_be_visible()
    assert await nav.get_by_role("link", name="Back office").count() == 0
    await page.get_by_role("button", name="Sign in as someone else").click()
    await expect(page).to_have_url(f"{hub.url}/login?bye=1")
    await page.context.close()


async def test_signing_out_in_another_tab_takes_the_open_panel_to_sign_in(
    browser: Any, hub: HubProcess
) -> None:
    page = await signed_in(browser, hub, "c4", "/desk/")
    await live(page)
    other = await page.context.new_page()  # same session, second tab
    await other.goto(f"{hub.url}/desk/")
    await other.get_by_role("button", name="退出登录").click()
    await expect(other).to_have_url(f"{hub.url}/login?bye=1")
    await expect(page).to_have_url(f"{hub.url}/login?expired=1&next=%2Fdesk%2F")
    await page.context.close()


async def test_a_disabled_account_leaves_its_open_page_at_once(
    browser: Any, hub: HubProcess
) -> None:
    from tests.functional.conftest import _run_cli

    page = await signed_in(browser, hub, "c3", "/backoffice/")
    await live(page)
    config, db = str(hub.credentials.config), str(hub.db)
    await asyncio.to_thread(
        _run_cli, "staff", "disable", "--config", config, "--db", db, "--id", "c3"
    )
    await expect(page).to_have_url(f"{hub.url}/login?expired=1&next=%2Fbackoffice%2F")
    await page.get_by_label("工号").fill("c3")
    await page.get_by_label("密码").fill(PIN)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("alert")).to_be_visible()  # refused: the account is off
    assert "/login" in page.url
    await page.context.close()
