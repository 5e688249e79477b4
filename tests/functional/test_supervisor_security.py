"""Security of the supervisor and public pages against a real hub: each role and none, CSRF."""

from __future__ import annotations

from tests.functional.conftest import HubProcess, OpenWeb
from tests.functional.staffweb import admin_account

CLOSE = "/supervisor/windows/1/close"
MOVE = "/web/api/v1/tickets/T-none/move"


async def test_each_role_and_none_on_the_supervisor_page_and_its_action(
    web: OpenWeb, hub: HubProcess
) -> None:
    anonymous = await web()
    status, _, response = await anonymous.get("/supervisor/")
    assert status == 303
    assert response.headers["Location"] == "/login?next=%2Fsupervisor%2F"
    assert (await anonymous.get("/supervisor/live"))[0] == 401
    await anonymous.get("/login")
    status, body = await anonymous.act(CLOSE)
    assert (status, body["error"]["code"]) == (401, "unauthorized")

    clerk = await web("c1")
    status, text, _ = await clerk.get("/supervisor/")
    assert status == 403
    assert "不能使用此页面" in text
    assert "/supervisor/" not in (await clerk.get("/staff/"))[1]  # not in a clerk's menu
    assert (await clerk.get("/supervisor/live"))[0] == 403
    status, body = await clerk.act(CLOSE)
    assert (status, body["error"]["code"]) == (403, "forbidden_role")
    status, body = await clerk.act(MOVE, {"service": "medical"})
    assert (status, body["error"]["code"]) == (403, "forbidden_role")
    status, body = await clerk.act("/web/api/v1/day/close", {"day": "2026-11-30"})
    assert (status, body["error"]["code"]) == (403, "forbidden_role")

    for staff in ("sup1", admin_account(hub)):
        member = await web(staff)
        status, text, response = await member.get("/supervisor/")
        assert status == 200, staff
        assert response.headers["Cache-Control"] == "no-store"
        assert 'data-live="/supervisor/live"' in text
        assert (await member.get("/supervisor/live"))[0] == 200
        # Window 1 is not open: the action is refused with a reason, nothing changes.
        status, body = await member.act(CLOSE)
        assert (status, body["error"]["code"]) == (409, "not_open"), staff
        status, body = await member.act("/supervisor/windows/99/close")
        assert (status, body["error"]["code"]) == (404, "no_window"), staff
        status, body = await member.act("/web/api/v1/day/close", {"day": "1999-01-01"})
        assert (status, body["error"]["code"]) == (409, "not_today"), staff
        status, body = await member.act(MOVE, {"service": "x", "window": 1})
        assert status == 400, staff
        status, body = await member.act(MOVE, {"window": 1})
        assert (status, body["error"]["code"]) == (404, "no_ticket"), staff

    bearer = await web()
    for role in ("kiosk", "display", "integration", "admin"):
        headers = {"Authorization": f"Bearer {hub.token(role)}"}
        assert (await bearer.get("/supervisor/", headers=headers))[0] == 303, role


async def test_the_supervisors_action_needs_the_csrf_token_and_the_same_origin(
    web: OpenWeb, hub: HubProcess
) -> None:
    supervisor = await web("sup1")
    await supervisor.get("/supervisor/")
    status, body = await supervisor.act(CLOSE, csrf="")
    assert (status, body["error"]["code"]) == (403, "csrf")
    status, body = await supervisor.act(CLOSE, csrf="forged-token")
    assert (status, body["error"]["code"]) == (403, "csrf")
    async with supervisor.http.post(
        hub.url + CLOSE,
        json={},
        headers={"X-CSRF-Token": supervisor.csrf, "Origin": "http://evil.example"},
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "bad_origin"


async def test_the_public_page_is_open_to_all_without_a_cookie(web: OpenWeb) -> None:
    anonymous = await web()
    for lang, heading in (("zh", "信息公开"), ("en", "Information disclosure")):
        status, text, response = await anonymous.get(f"/public/?lang={lang}")
        assert status == 200
        assert heading in text
        assert response.headers["Cache-Control"] == "public, max-age=5"
        assert "Set-Cookie" not in response.headers
        assert "csrf" not in text
    status, text, _ = await anonymous.get("/public/", headers={"Accept-Language": "en-US,en"})
    assert status == 200
    assert "Information disclosure" in text
