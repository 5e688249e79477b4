"""The public tracking page a ticket's QR code opens, served by a real hub."""

from __future__ import annotations

from html.parser import HTMLParser

import aiohttp

from qcall.client import QcallClient
from tests.functional.conftest import Connect, HubProcess


class _Text(HTMLParser):
    """Visible text of a page, whitespace folded, plus its forms' actions."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.forms: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "title"):
            self._skip += 1
        if tag == "form":
            self.forms.append(dict(attrs).get("action") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(" ".join(data.split()))

    @property
    def text(self) -> str:
        return " ".join(self.parts)


async def _page(session: aiohttp.ClientSession, url: str) -> tuple[int, _Text, str]:
    async with session.get(url) as response:
        body = await response.text()
        parsed = _Text()
        parsed.feed(body)
        return response.status, parsed, response.headers.get("Content-Type", "")


async def test_the_page_follows_the_ticket_from_waiting_to_called_to_done(
    connect: Connect, hub: HubProcess, kiosk: QcallClient
) -> None:
    clerk = await connect(staff="c5")
    await clerk.open_window(5)
    ahead_of_it = await kiosk.issue_ticket("social_card")
    issued = await kiosk.issue_ticket("social_card")
    url = f"{hub.url}/t/{issued['track_token']}"
    async with aiohttp.ClientSession() as session:
        status, page, content_type = await _page(session, url)
        assert (status, content_type) == (200, "text/html; charset=utf-8")
        assert issued["number"] in page.text
        assert f"前面还有 {issued['ahead']} 人等候" in page.text
        assert f"{issued['ahead']} ahead of you" in page.text
        assert page.forms == [f"/t/{issued['track_token']}/cancel"]

        await clerk.call_next(5)  # the ticket ahead of it
        await clerk.call_next(5)
        _, page, _ = await _page(session, url)
        assert "请到 5 号窗口办理" in page.text
        assert "Please go to window 5 now" in page.text
        assert page.forms == []
        await clerk.finish(5, "done")
        _, page, _ = await _page(session, url)
        assert "已办结" in page.text
    assert ahead_of_it["number"] != issued["number"]


async def test_a_resident_can_cancel_from_the_page(
    connect: Connect, hub: HubProcess, kiosk: QcallClient
) -> None:
    clerk = await connect(staff="c6")
    await clerk.open_window(6)
    issued = await kiosk.issue_ticket("social_card")
    token = issued["track_token"]
    async with aiohttp.ClientSession() as session:
        # The button on the page only asks; nothing changes yet.
        status, question, _ = await _page(session, f"{hub.url}/t/{token}/cancel")
        assert status == 200
        assert "确定不再排队了吗？" in question.text
        assert "Cancel your ticket?" in question.text
        assert question.forms == [f"/t/{token}/cancel"]
        assert (await kiosk.ticket(issued["id"]))["state"] == "waiting"
        # A POST without the confirmation is sent back to the question.
        async with session.post(f"{hub.url}/t/{token}/cancel", allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == f"/t/{token}/cancel"
        assert (await kiosk.ticket(issued["id"]))["state"] == "waiting"
        async with session.post(
            f"{hub.url}/t/{token}/cancel", data={"confirm": "yes"}, allow_redirects=False
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == f"/t/{token}"
        _, page, _ = await _page(session, f"{hub.url}/t/{token}")
    assert "已取消" in page.text
    assert (await kiosk.ticket(issued["id"]))["state"] == "cancelled"


async def test_a_ticket_sent_to_the_back_office_shows_its_case(
    connect: Connect, hub: HubProcess, kiosk: QcallClient
) -> None:
    clerk = await connect(staff="c4")
    await clerk.open_window(4)
    issued = await kiosk.issue_ticket("social_card")
    await clerk.call_next(4)
    finished = await clerk.finish(4, "back_office")
    case = finished["case"]
    assert case is not None
    async with aiohttp.ClientSession() as session:
        _, page, _ = await _page(session, f"{hub.url}/t/{issued['track_token']}")
    assert "已办结" not in page.text
    assert "Finished" not in page.text
    assert "已受理，正在办理中" in page.text
    assert f"承诺办结日期：{case['promised_date']}" in page.text
    assert f"Promised by {case['promised_date']}" in page.text
    assert f"取件码：{case['pickup_code']}" in page.text
    assert "在取号机选择“取件”" in page.text
    assert page.forms == []


async def test_an_unknown_link_is_a_bilingual_404_page(hub: HubProcess) -> None:
    async with aiohttp.ClientSession() as session:
        status, page, content_type = await _page(session, f"{hub.url}/t/not-a-token")
        async with session.post(f"{hub.url}/t/not-a-token/cancel", allow_redirects=False) as r:
            assert r.status == 303
    assert (status, content_type) == (404, "text/html; charset=utf-8")
    assert "查询链接无效或已过期" in page.text
    assert "unknown or has expired" in page.text
