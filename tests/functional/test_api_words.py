"""What the API says: whole messages in each language, timestamps in the center's time zone."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import aiohttp
import pytest

from tests.functional.conftest import PIN, HubProcess

# English words of pydantic's own messages, and pattern syntax: none belongs in Chinese text.
FOREIGN_IN_ZH: Final = re.compile(
    r"\b(should|input|valid|must|expected|string|integer|pattern|field|got)\b|[\^$]|\{\d",
    re.IGNORECASE,
)
ISO_MOMENT: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")
CENTER_OFFSET: Final = "+08:00"  # Asia/Shanghai, the demo center's zone


class Api:
    """A thin JSON caller on the module's hub."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.seen: list[Any] = []  # every JSON answer, to look for timestamps

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        *,
        lang: str = "zh",
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {"Accept-Language": lang}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, f"{self.base}/api/v1{path}", json=body, data=raw, headers=headers
        ) as response:
            data = await response.json() if response.status != 204 else None
        self.seen.append(data)
        return response.status, data


@pytest.fixture
async def api(hub: HubProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, hub.url)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tickets", {"service": 5}),
        ("/tickets", {"service": "social_card", "priority": "yes"}),
        ("/tickets", {"service": "social_card", "colour": "red"}),
        ("/tickets", {}),
        ("/tickets", [1, 2]),
    ],
    ids=["number-for-text", "bad-bool", "unknown-key", "missing", "not-an-object"],
)
async def test_bad_bodies_are_explained_wholly_in_each_language(
    api: Api, hub: HubProcess, path: str, body: Any
) -> None:
    kiosk = hub.token("kiosk")
    status, zh = await api.call("POST", path, kiosk, body)
    assert status == 400
    assert zh["error"]["code"] == "invalid_body"
    message = zh["error"]["message"]
    assert message.startswith("请求内容有误")
    assert not FOREIGN_IN_ZH.search(message), message
    for problem in zh["error"]["details"]["problems"]:
        assert not FOREIGN_IN_ZH.search(problem["problem"]), problem
    status, en = await api.call("POST", path, kiosk, body, lang="en")
    assert status == 400
    assert en["error"]["message"].startswith("invalid ")
    assert not re.search(r"[\u4e00-\u9fff]", en["error"]["message"])


@pytest.mark.parametrize(
    ("path", "body", "zh"),
    [
        ("/windows/3/call", {"number": "A-1"},
         "请求内容有误：number 应为号码，如 A012（当前值：'A-1'）"),
        ("/windows/3/transfer", {"service": "social_card", "window": 2},
         "请求内容有误：service 和 window 必须且只能给出一个"),
    ],
)  # fmt: skip
async def test_window_bodies_are_explained_in_words(
    api: Api, path: str, body: Any, zh: str
) -> None:
    _, login = await api.call("POST", "/login", body={"staff": "c3", "pin": PIN})
    status, answer = await api.call("POST", path, login["token"], body)
    assert status == 400
    assert answer["error"]["message"] == zh
    status, answer = await api.call("POST", path, login["token"], body, lang="en")
    assert not FOREIGN_IN_ZH.search(zh)
    assert "^" not in answer["error"]["message"]


async def test_a_number_given_for_text_says_so(api: Api, hub: HubProcess) -> None:
    _, zh = await api.call("POST", "/tickets", hub.token("kiosk"), {"service": 5})
    assert zh["error"]["message"] == "请求内容有误：service 应为文本（当前值：5）"
    _, en = await api.call("POST", "/tickets", hub.token("kiosk"), {"service": 5}, lang="en")
    assert en["error"]["message"] == "invalid service: should be text (got 5)"


def _moments(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _moments(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _moments(item, f"{where}[{index}]")
    elif isinstance(value, str) and ISO_MOMENT.match(value):
        yield where, value


async def test_every_timestamp_is_in_the_center_time_zone(api: Api, hub: HubProcess) -> None:
    kiosk = hub.token("kiosk")
    status, login = await api.call("POST", "/login", body={"staff": "c1", "pin": PIN})
    assert status == 200, login
    clerk = login["token"]
    assert login["expires_at"].endswith(CENTER_OFFSET)
    await api.call("POST", "/windows/1/open", clerk)
    status, issued = await api.call("POST", "/tickets", kiosk, {"service": "social_card"})
    assert status == 201, issued
    await api.call("POST", "/windows/1/next", clerk)
    await api.call("POST", "/windows/1/start", clerk)
    status, finished = await api.call(
        "POST", "/windows/1/finish", clerk, {"outcome": "back_office"}
    )
    assert status == 200, finished
    await api.call("GET", f"/tickets/{issued['id']}", kiosk)
    await api.call("GET", f"/track/{issued['track_token']}")
    await api.call("GET", "/state", hub.token("display"))
    await api.call("GET", "/catalog", kiosk)
    await api.call("GET", "/diagnostics", hub.token("admin"))
    await api.call("POST", "/windows/1/close", clerk)
    moments = [m for answer in api.seen for m in _moments(answer)]
    assert len(moments) >= 8  # the walk found what it looks for
    assert [m for m in moments if not m[1].endswith(CENTER_OFFSET)] == []


async def test_a_case_not_ready_gives_its_promised_date_in_english_too(
    api: Api, hub: HubProcess
) -> None:
    _, login = await api.call("POST", "/login", body={"staff": "c2", "pin": PIN})
    clerk = login["token"]
    kiosk = hub.token("kiosk")
    await api.call("POST", "/windows/2/open", clerk)
    await api.call("POST", "/tickets", kiosk, {"service": "social_card"})
    await api.call("POST", "/windows/2/next", clerk)
    status, finished = await api.call(
        "POST",
        "/windows/2/finish",
        clerk,
        {"outcome": "back_office", "promised_date": "2099-12-24"},
    )
    assert status == 200, finished
    code = finished["case"]["pickup_code"]
    await api.call("POST", "/windows/2/close", clerk)
    _, reply = await api.call("POST", "/login", body={"staff": "c8", "pin": PIN})
    await api.call("POST", "/windows/8/open", reply["token"])  # the reply window takes pickups
    pickup = {"service": "case_pickup", "case_code": code}
    status, zh = await api.call("POST", "/tickets", kiosk, pickup)
    assert status == 409
    assert zh["error"]["code"] == "case_not_ready"
    assert "2099-12-24" in zh["error"]["message"]
    status, en = await api.call("POST", "/tickets", kiosk, pickup, lang="en")
    assert status == 409
    assert "2099-12-24" in en["error"]["message"]
