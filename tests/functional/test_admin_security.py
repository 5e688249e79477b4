"""The admin pages against a real hub: every page and action with each role and none, CSRF,
tokens created (shown once, working) and revoked (refused at once), accounts, the audit log."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import aiohttp

from tests.functional.conftest import HubProcess, OpenWeb
from tests.functional.staffweb import admin_account

PAGES = ("/admin/", "/admin/services/social_card", "/admin/staff", "/admin/tokens", "/admin/audit")
# Every state-changing action, with a body that would be accepted from an admin.
ACTIONS: tuple[tuple[str, dict[str, str]], ...] = (
    ("/admin/calendar", {"overrides": ""}),
    ("/admin/notices", {"notices": "安全检查 | Safety check"}),
    ("/admin/services/social_card", {"daily_cap": "321"}),
    ("/admin/staff", {"staff_id": "x1", "name": "某人", "role": "clerk"}),
    ("/admin/staff/c8", {"action": "reset_pin"}),
    ("/admin/tokens", {"name": "lobby-3", "role": "display"}),
    ("/admin/tokens/0123456789ab/revoke", {}),
)


def _audit_count(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as con:
        row = con.execute(
            "SELECT COUNT(*) FROM events WHERE type IN ('settings.changed', 'audit.recorded')"
        ).fetchone()
    return int(row[0])


async def _api_status(hub: HubProcess, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{hub.url}/api/v1/catalog", headers=headers) as response,
    ):
        return response.status


async def test_every_admin_page_and_action_with_each_role_and_none(
    web: OpenWeb, hub: HubProcess
) -> None:
    admin = await web(admin_account(hub))
    before = _audit_count(hub.db)
    anonymous = await web()
    await anonymous.get("/login")
    clerk, supervisor = await web("c6"), await web("sup1")
    for page in PAGES:
        status, _, response = await anonymous.get(page)
        assert status == 303, page
        assert response.headers["Location"].startswith("/login?next="), page
        for other in (clerk, supervisor):
            status, text, _ = await other.get(page)
            assert status == 403, page
            assert "您的角色" in text
        status, text, _ = await admin.get(page)
        assert status == 200, page
    # A bearer token (even an admin's) does not open the pages: they need a signed-in session.
    status, _, _ = await anonymous.get(
        "/admin/", headers={"Authorization": f"Bearer {hub.token('admin')}"}
    )
    assert status == 303
    await clerk.get("/staff/")
    await supervisor.get("/staff/")
    for path, body in ACTIONS:
        assert (await anonymous.form(path, body))[0] == 303, path
        for other in (clerk, supervisor):
            status, text, _ = await other.form(path, body)
            assert status == 403, path
    assert _audit_count(hub.db) == before  # nobody but the admin changed anything
    # The admin pages are in the admin's navigation only.
    _, text, _ = await admin.get("/admin/")
    assert 'href="/admin/audit"' in text
    _, text, _ = await clerk.get("/staff/")
    assert "/admin/" not in text


async def test_state_changes_without_the_csrf_token_or_from_another_origin_are_refused(
    web: OpenWeb, hub: HubProcess
) -> None:
    admin = await web(admin_account(hub))
    await admin.get("/admin/")
    before = _audit_count(hub.db)
    for path, body in ACTIONS:
        status, _, _ = await admin.form(path, body, csrf=False)
        assert status == 403, path
        status, _, _ = await admin.form(path, body | {"csrf_token": "forged"}, csrf=False)
        assert status == 403, path
    async with admin.http.post(
        f"{hub.url}/admin/tokens",
        data={"name": "evil", "role": "integration", "csrf_token": admin.csrf},
        headers={"Origin": "http://evil.example"},
        allow_redirects=False,
    ) as response:
        assert response.status == 403
    assert _audit_count(hub.db) == before
    _, text, _ = await admin.get("/admin/tokens")
    assert "evil" not in text


async def test_a_new_token_works_and_a_revoked_one_is_refused_at_once(
    web: OpenWeb, hub: HubProcess
) -> None:
    admin = await web(admin_account(hub))
    await admin.get("/admin/tokens")
    status, text, _ = await admin.form("/admin/tokens", {"name": "kiosk-east", "role": "kiosk"})
    assert status == 200
    token = re.search(r'<code id="secret-value">([^<]+)</code>', text)
    assert token is not None, text[:2000]
    token_id = re.search(r"新令牌 ([0-9a-f]{12})", text)
    assert token_id is not None
    assert re.search(
        rf'id="token-{token_id.group(1)}">\s*<td><code>\w+</code></td><td>kiosk-east', text
    )
    assert await _api_status(hub, token.group(1)) == 200
    # Shown once: the list shows only the id from now on.
    _, listing, _ = await admin.get("/admin/tokens")
    assert token.group(1) not in listing
    assert token_id.group(1) in listing
    status, _, _ = await admin.form(f"/admin/tokens/{token_id.group(1)}/revoke", {})
    assert status == 303
    assert await _api_status(hub, token.group(1)) == 401
    _, audit, _ = await admin.get("/admin/audit?q=token")
    assert audit.count(token_id.group(1)) >= 2  # created and revoked
    assert token.group(1) not in audit  # the token itself is never recorded
    # A token may not carry a staff role: staff sign in with their PIN.
    status, text, _ = await admin.form("/admin/tokens", {"name": "x", "role": "admin"})
    assert status == 400
    assert "令牌不能使用此角色" in text
    status, text, _ = await admin.form("/admin/tokens/ffffffffffff/revoke", {})
    assert status == 404


async def test_accounts_added_disabled_and_reset_and_the_audit_names_who(
    web: OpenWeb, hub: HubProcess
) -> None:
    admin_id = admin_account(hub)
    admin = await web(admin_id)
    await admin.get("/admin/staff")
    status, text, _ = await admin.form(
        "/admin/staff", {"staff_id": "new7", "name": "新同事", "role": "clerk"}
    )
    assert status == 200
    pin = re.search(r'<code id="secret-value">(\d+)</code>', text)
    assert pin is not None
    newcomer = await web()
    assert (await newcomer.login("new7", pin.group(1)))[0] == 303
    assert (await newcomer.get("/staff/"))[0] == 200
    # Disabling ends the account's session at once.
    status, _, _ = await admin.form("/admin/staff/new7", {"action": "disable"})
    assert status == 303
    assert (await newcomer.get("/staff/"))[0] == 303
    again = await web()
    assert (await again.login("new7", pin.group(1)))[0] != 303
    status, _, _ = await admin.form("/admin/staff/new7", {"action": "enable"})
    assert status == 303
    status, text, _ = await admin.form("/admin/staff/new7", {"action": "reset_pin"})
    assert status == 200
    fresh = re.search(r'<code id="secret-value">(\d+)</code>', text)
    assert fresh is not None
    assert fresh.group(1) != pin.group(1)
    assert (await again.login("new7", fresh.group(1)))[0] == 303
    # The admin cannot lock themself out; a bad role is refused.
    status, text, _ = await admin.form(f"/admin/staff/{admin_id}", {"action": "disable"})
    assert status == 400
    assert "不能停用自己的账户" in text
    status, text, _ = await admin.form(
        f"/admin/staff/{admin_id}", {"action": "save", "name": "管理员", "role": "clerk"}
    )
    assert status == 400
    assert "不能修改自己的角色" in text
    status, text, _ = await admin.form(
        "/admin/staff/new7", {"action": "save", "name": "新同事", "role": "kiosk"}
    )
    assert status == 400
    _, audit, _ = await admin.get(f"/admin/audit?actor={admin_id}&q=new7")
    rows = re.findall(
        r'<tr data-seq="\d+"><td>[^<]+</td><td>([^<]+)</td><td>([^<]+)</td><td>new7</td>', audit
    )
    assert [r[1] for r in rows] == ["重设密码", "启用账户", "停用账户", "新增账户"]
    assert {r[0] for r in rows} == {admin_id}
    assert fresh.group(1) not in audit
    assert pin.group(1) not in audit
    _, other, _ = await admin.get("/admin/audit?actor=nobody")
    assert "new7" not in other


async def test_calendar_overrides_and_lobby_notices_round_trip_and_reach_the_lobby(
    web: OpenWeb, hub: HubProcess
) -> None:
    admin = await web(admin_account(hub))
    _, page, _ = await admin.get("/admin/")
    calendar = re.search(r'<textarea id="overrides"[^>]*>([^<]*)</textarea>', page)
    notices = re.search(r'<textarea id="notices"[^>]*>([^<]*)</textarea>', page)
    assert calendar is not None
    assert notices is not None
    assert " | " in calendar.group(1)  # the demo's make-up working days, notes with spaces
    before = _audit_count(hub.db)
    # Saving what the page shows changes nothing (and records nothing).
    unescaped = calendar.group(1).replace("&#34;", '"').replace("&amp;", "&")
    assert (await admin.form("/admin/calendar", {"overrides": unescaped}))[0] == 303
    assert _audit_count(hub.db) == before
    # A bad line is refused with the problem, nothing changes.
    status, text, _ = await admin.form("/admin/calendar", {"overrides": "2027-13-40 | closed"})
    assert status == 400
    assert "calendar.overrides" in text
    assert _audit_count(hub.db) == before
    status, _, _ = await admin.form(
        "/admin/notices", {"notices": "下午三点消防演练 | Fire drill at 3 pm"}
    )
    assert status == 303
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{hub.url}/api/v1/lobby", headers={"Authorization": f"Bearer {hub.token('display')}"}
        ) as response,
    ):
        lobby = await response.json()
    assert lobby["lobby"]["notices"] == [{"zh": "下午三点消防演练", "en": "Fire drill at 3 pm"}]
    assert _audit_count(hub.db) == before + 1
