"""The admin pages in real Chromium: an admin edits a notice sheet and a daily cap, the kiosk
catalog shows both at once, the audit log lists both; a token made in the page works and is
refused once revoked. Screenshots of every admin page in both languages are test artifacts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import expect

from qcall.client import QcallApiError
from tests.functional.conftest import PIN, Connect, HubProcess
from tests.functional.staffweb import PAGE_TIMEOUT_MS, admin_account, chromium, shot

expect.set_options(timeout=PAGE_TIMEOUT_MS)
WINDOW_1366 = {"width": 1366, "height": 768}
SERVICE = "social_card"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A Chromium for the test."""
    async with chromium() as launched:
        yield launched


async def _admin_page(browser: Any, hub: HubProcess) -> Any:
    staff = admin_account(hub)
    context = await browser.new_context(viewport=WINDOW_1366)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.errors = errors
    await page.goto(hub.url + "/admin/")
    await page.get_by_label("工号").fill(staff)
    await page.get_by_label("密码").fill(PIN)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(hub.url + "/admin/")
    return page


async def test_an_admin_edits_a_notice_sheet_and_a_cap_and_the_kiosk_sees_them_at_once(
    browser: Any, hub: HubProcess, connect: Connect
) -> None:
    kiosk = await connect(token=hub.token("kiosk"))
    before = next(s for s in (await kiosk.catalog())["services"] if s["id"] == SERVICE)
    page = await _admin_page(browser, hub)
    await shot(page, "admin-settings-zh")
    await page.locator(f"#service-{SERVICE}").get_by_role("link").click()
    await expect(page).to_have_url(f"{hub.url}/admin/services/{SERVICE}")
    await shot(page, "admin-service-zh")
    # The demo's hours end at 24:00; a time field says that as "until 00:00".
    await expect(page.locator("#end_weekday")).to_have_value("00:00")
    await page.get_by_label("每日号源（每天可取号数）").fill("37")
    await page.get_by_role("button", name="保存", exact=True).click()
    await expect(page.locator("#flash")).to_have_text("事项设置已保存。")
    await page.locator(f"#service-{SERVICE}").get_by_role("link").click()
    await page.get_by_label("咨询电话").fill("021-55550000")
    await page.get_by_label("申请材料（每行一项）").fill("身份证\n户口簿\n一寸照片两张")
    await page.get_by_role("button", name="保存", exact=True).click()
    await expect(page).to_have_url(f"{hub.url}/admin/")
    await expect(page.locator("#flash")).to_have_text("事项设置已保存。")
    await expect(page.locator(f"#service-{SERVICE} td.num")).to_have_text("37")
    # The kiosk's catalog shows the edit at once: no restart, no reload of anything.
    after = next(s for s in (await kiosk.catalog())["services"] if s["id"] == SERVICE)
    assert after["notice"]["phone"] == "021-55550000"
    assert after["notice"]["materials"] == ["身份证", "户口簿", "一寸照片两张"]
    assert before["notice"]["phone"] != "021-55550000"
    # The cap is enforced: issue until the hub refuses, which it does at the new cap.
    issued = 0
    refusal: QcallApiError | None = None
    for _ in range(40):
        try:
            await kiosk.issue_ticket(SERVICE)
        except QcallApiError as err:
            refusal = err
            break
        issued += 1
    assert refusal is not None
    assert refusal.code == "service_unavailable"
    assert issued <= 37
    capped = next(s for s in (await kiosk.catalog())["services"] if s["id"] == SERVICE)
    assert capped["available"] is False
    assert capped["unavailable_reason"] == "daily_cap_reached"
    assert "37" in capped["message"]["zh"]
    # A bad value is refused in the page's language and changes nothing.
    await page.goto(f"{hub.url}/admin/services/{SERVICE}")
    await page.get_by_label("每日号源（每天可取号数）").fill("0")
    await page.get_by_role("button", name="保存", exact=True).click()
    await expect(page.locator("#form-error")).to_contain_text("daily_cap")
    await shot(page, "admin-service-error-zh")
    # The audit log lists both edits, who made them, before and after.
    await page.goto(f"{hub.url}/admin/audit?q={SERVICE}")
    rows = page.locator("#audit tbody tr")
    await expect(rows).to_have_count(2)
    notice_row, cap_row = await rows.nth(0).inner_text(), await rows.nth(1).inner_text()
    for row in (notice_row, cap_row):
        assert "adm9" in row
        assert "修改设置" in row
        assert f"service:{SERVICE}" in row
    assert "021-55550000" in notice_row
    assert "daily_cap" not in notice_row  # only what changed
    assert '"daily_cap": 37' in cap_row
    assert '"daily_cap": 150' in cap_row  # before → after
    assert "phone" not in cap_row
    assert "hours" not in cap_row  # saved unchanged: still until midnight
    await shot(page, "admin-audit-zh")
    assert page.errors == []


async def test_a_token_made_in_the_page_works_and_is_refused_at_once_when_revoked(
    browser: Any, hub: HubProcess, connect: Connect
) -> None:
    page = await _admin_page(browser, hub)
    await page.goto(f"{hub.url}/admin/tokens")
    await page.get_by_label("名称（用于何处）").fill("二楼显示屏")
    await page.get_by_label("角色").select_option("display")
    await page.get_by_role("button", name="创建此令牌").click()
    token = (await page.locator("#secret-value").inner_text()).strip()
    await shot(page, "admin-tokens-zh")
    display = await connect(token=token)
    assert "windows" in await display.state()
    row = page.locator("tr", has_text="二楼显示屏")
    await row.get_by_role("button", name="吊销").click()
    await expect(page.locator("#flash")).to_have_text("令牌已吊销。")
    with pytest.raises(QcallApiError) as refused:
        await display.state()
    assert refused.value.status == 401
    await page.goto(f"{hub.url}/admin/staff")
    await shot(page, "admin-staff-zh")
    # Every page in English too.
    await page.get_by_role("link", name="English").click()
    for path, name in (
        ("/admin/", "settings"),
        (f"/admin/services/{SERVICE}", "service"),
        ("/admin/staff", "staff"),
        ("/admin/tokens", "tokens"),
        ("/admin/audit", "audit"),
    ):
        await page.goto(hub.url + path)
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await shot(page, f"admin-{name}-en")
    assert page.errors == []
