"""Security of the staff pages against a real hub: roles, CSRF, windows, lockout, idle, secrets."""

from __future__ import annotations

import re
import time

import aiohttp
import pytest

from qcall.client import QcallApiError, QcallClient
from qcall.web.bridge import bridged_routes
from tests.functional.conftest import PIN, Connect, HubProcess, OpenWeb
from tests.functional.staffweb import (
    admin_account,
    forge_cookie,
    read_cookie,
    session_key,
)

PAGES = ("/staff/", "/desk/", "/backoffice/")
FRAGMENTS = ("/staff/panel", "/desk/fragment", "/backoffice/fragment")


def _concrete(path: str) -> str:
    """A route's path with sample values for its parameters (window 6, an unknown id …)."""
    samples = {"n": "6", "id": "T-none"}
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: samples.get(m.group(1), "x"), path)


async def test_without_a_session_pages_send_to_sign_in_and_fetches_are_refused(
    web: OpenWeb,
) -> None:
    anonymous = await web()
    for page in PAGES:
        status, _, response = await anonymous.get(page)
        assert status == 303, page
        assert response.headers["Location"].startswith("/login?next="), page
    for fragment in FRAGMENTS:
        status, _, _ = await anonymous.get(fragment)
        assert status == 401, fragment
    await anonymous.get("/login")  # an anonymous session has a CSRF token: use it
    for entry in bridged_routes():
        if entry.method == "GET":
            status, _, _ = await anonymous.get("/web" + _concrete(entry.path))
            assert status == 401, entry.path
            continue
        status, body = await anonymous.act("/web" + _concrete(entry.path), {})
        assert status == 401, entry.path
        assert body["error"]["code"] == "unauthorized"


async def test_a_bearer_token_does_not_open_the_pages(web: OpenWeb, hub: HubProcess) -> None:
    anonymous = await web()
    for role in ("kiosk", "display", "integration", "admin"):
        headers = {"Authorization": f"Bearer {hub.token(role)}"}
        for page in PAGES:
            status, _, _ = await anonymous.get(page, headers=headers)
            assert status == 303, (role, page)
        await anonymous.get("/login")
        for entry in bridged_routes():
            async with anonymous.http.request(
                entry.method,
                f"{hub.url}/web{_concrete(entry.path)}",
                json={},
                headers=headers | {"X-CSRF-Token": anonymous.csrf},
            ) as response:
                assert response.status == 401, (role, entry.path)


async def test_each_staff_role_on_every_page_and_action(web: OpenWeb, hub: HubProcess) -> None:
    admin = await web(admin_account(hub))
    supervisor = await web("sup1")
    clerk = await web("c6")
    for page in PAGES:
        assert (await clerk.get(page))[0] == 200, page
        assert (await supervisor.get(page))[0] == 200, page
        status, text, _ = await admin.get(page)
        assert status == 403, page
        assert "您的角色" in text
    for entry in bridged_routes():
        if entry.method == "GET":
            status, _, _ = await admin.get("/web" + _concrete(entry.path))
            assert entry.roles is not None
            assert (status == 403) == ("admin" not in entry.roles), entry.path
            status, _, _ = await clerk.get("/web" + _concrete(entry.path))
            assert (status == 403) == ("clerk" not in entry.roles), entry.path
            continue
        status, body = await admin.act("/web" + _concrete(entry.path), {})
        assert entry.roles is not None
        if "admin" in entry.roles:
            assert status != 403 or body["error"]["code"] != "forbidden_role", entry.path
        else:
            assert (status, body["error"]["code"]) == (403, "forbidden_role"), entry.path
        # A clerk passes the role check everywhere a clerk may act (the engine may still say no).
        status, body = await clerk.act("/web" + _concrete(entry.path), {})
        if "clerk" not in entry.roles:
            assert (status, body["error"]["code"]) == (403, "forbidden_role"), entry.path
        elif status >= 400:
            assert body["error"]["code"] not in ("forbidden_role", "unauthorized", "csrf")


async def test_state_changes_without_the_csrf_token_are_refused(
    web: OpenWeb, connect: Connect
) -> None:
    clerk = await web("c6")
    good = clerk.csrf
    for token in ("", "forged-token"):
        status, body = await clerk.act("/web/api/v1/windows/6/open", csrf=token)
        assert (status, body["error"]["code"]) == (403, "csrf")
    other = await web("c5")  # another session's token is not this session's
    status, body = await clerk.act("/web/api/v1/windows/6/open", csrf=other.csrf)
    assert (status, body["error"]["code"]) == (403, "csrf")
    watcher = await connect(staff="sup1")
    window = next(w for w in (await watcher.state())["windows"] if w["number"] == 6)
    assert window["state"] == "closed"  # nothing happened
    # Forms: sign-out, look-up and search without the token.
    for path in ("/logout", "/desk/", "/backoffice/"):
        status, text, _ = await clerk.form(path, {"query": "A001"}, csrf=False)
        assert status == 403, path
        assert "表单已过期" in text
    assert (await clerk.get("/staff/"))[0] == 200  # still signed in
    # Another site's page cannot post even with a token it somehow got.
    status, body = await clerk.act("/web/api/v1/windows/6/open", csrf=good)
    assert status == 200
    async with clerk.http.post(
        f"{clerk.base}/web/api/v1/windows/6/close",
        json={},
        headers={"X-CSRF-Token": good, "Origin": "http://evil.example"},
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "bad_origin"
    # The sign-in form needs its token too.
    fresh = await web()
    await fresh.get("/login")
    status, _, _ = await fresh.form("/login", {"staff": "c4", "pin": PIN}, csrf=False)
    assert status == 403
    status, body = await clerk.act("/web/api/v1/windows/6/close")
    assert status == 200, body


async def test_a_clerk_cannot_act_at_another_clerks_window_from_the_page(
    web: OpenWeb, kiosk: QcallClient
) -> None:
    owner = await web("c3")
    intruder = await web("c2")
    assert (await owner.act("/web/api/v1/windows/3/open"))[0] == 200
    await kiosk.issue_ticket("medical_reimbursement")
    for action, body in (
        ("next", {}),
        ("pause", {"reason": "x"}),
        ("close", {}),
        ("open", {}),
    ):
        status, answer = await intruder.act(f"/web/api/v1/windows/3/{action}", body)
        assert status == 403, action
        assert answer["error"]["code"] in ("not_your_window", "window_taken"), answer
    status, answer = await owner.act("/web/api/v1/windows/3/next")
    assert status == 200, answer
    assert (await owner.act("/web/api/v1/windows/3/finish", {"outcome": "done"}))[0] == 200
    assert (await owner.act("/web/api/v1/windows/3/close"))[0] == 200


async def test_five_wrong_pins_lock_the_account_on_the_page_and_the_api(
    web: OpenWeb, hub: HubProcess
) -> None:
    page = await web()
    await page.get("/login")
    for _ in range(5):
        status, text, _ = await page.form("/login", {"staff": "c7", "pin": "000000"})
        assert status == 401
        assert "工号或密码错误" in text
    status, text, _ = await page.form("/login", {"staff": "c7", "pin": PIN})
    assert status == 429
    assert "15 分钟" in text
    async with QcallClient(hub.url) as api:
        with pytest.raises(QcallApiError) as refused:
            await api.login("c7", PIN)
        assert refused.value.status == 429


async def test_idle_sessions_end_and_their_token_is_revoked(web: OpenWeb, hub: HubProcess) -> None:
    clerk = await web("c4")
    token = read_cookie(hub.db, clerk.cookie())["token"]
    async with QcallClient(hub.url, token) as api:
        await api.state()  # the session's token works for now
        stale = forge_cookie(hub.db, clerk.cookie(), seen=time.time() - 31 * 60)
        async with aiohttp.ClientSession() as raw:
            async with raw.get(
                f"{hub.url}/staff/",
                cookies={"qcall_staff": stale},
                allow_redirects=False,
            ) as response:
                assert response.status == 303
                assert "expired=1" in response.headers["Location"]
            async with raw.get(
                f"{hub.url}/login?expired=1", cookies={"qcall_staff": stale}
            ) as response:
                assert "因长时间未操作" in await response.text()
        with pytest.raises(QcallApiError) as refused:
            await api.state()
        assert refused.value.status == 401


async def test_sign_out_revokes_the_session(web: OpenWeb, hub: HubProcess) -> None:
    clerk = await web("c4")
    token = read_cookie(hub.db, clerk.cookie())["token"]
    status, _, response = await clerk.form("/logout", {})
    assert (status, response.headers["Location"]) == (303, "/login?bye=1")
    assert (await clerk.get("/staff/"))[0] == 303
    async with QcallClient(hub.url, token) as api:
        with pytest.raises(QcallApiError) as refused:
            await api.state()
        assert refused.value.status == 401


async def test_cookie_is_encrypted_httponly_strict_and_no_secret_reaches_a_page_or_log(
    web: OpenWeb, hub: HubProcess
) -> None:
    clerk = await web()
    await clerk.get("/login")
    async with clerk.http.post(
        f"{hub.url}/login",
        data={"staff": "c1", "pin": PIN, "csrf_token": clerk.csrf},
        allow_redirects=False,
    ) as response:
        set_cookie = response.headers.getall("Set-Cookie")
    assert any("HttpOnly" in c and "SameSite=Strict" in c for c in set_cookie), set_cookie
    token = read_cookie(hub.db, clerk.cookie())["token"]
    assert token.startswith("qc_")
    assert token not in clerk.cookie()
    key = session_key(hub.db)
    raw_key = key._signing_key + key._encryption_key
    secrets = [token, PIN, raw_key.hex()]
    pages = [*PAGES, *FRAGMENTS, "/login"]
    for page in pages:
        _, text, _ = await clerk.get(page)
        for secret in secrets:
            assert secret not in text, page
    log = hub.log.read_text(encoding="utf-8")
    for secret in secrets:
        assert secret not in log


async def test_the_pages_event_stream_needs_the_session_and_the_same_origin(
    web: OpenWeb, hub: HubProcess
) -> None:
    anonymous = await web()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await anonymous.http.ws_connect(f"{hub.url}/web/events")
    assert refused.value.status == 401
    clerk = await web("c1")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await clerk.http.ws_connect(
            f"{hub.url}/web/events", headers={"Origin": "http://evil.example"}
        )
    assert refused.value.status == 403
    async with clerk.http.ws_connect(f"{hub.url}/web/events") as ws:
        first = await ws.receive_json(timeout=10)
    assert first["type"] == "snapshot"
