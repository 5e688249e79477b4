"""The staff pages' catalogs, cookie key and templates, in process (no browser)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from cryptography.fernet import Fernet

from qcall.api import build_app
from qcall.errors import ConfigError
from qcall.hub import Hub
from qcall.model import Outcome, Role
from qcall.store import Store
from qcall.web import catalog
from tests.common import ROOT, Clock, make_config, small_center

PO = ROOT / "qcall" / "web" / "locale" / "zh" / "LC_MESSAGES" / "qcall.po"
PIN = "135790"


def _extracted() -> set[str]:
    method_map = [("qcall/web/**.py", "python"), ("qcall/web/templates/**.html", "jinja2")]
    options = {"qcall/web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    found = extract_from_dir(
        str(ROOT),
        method_map,
        options,
        keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
    )
    return {message if isinstance(message, str) else message[0] for _, _, message, *_ in found}


def test_every_page_message_has_a_chinese_translation_and_none_is_stale() -> None:
    with PO.open("rb") as source:
        po = read_po(source)
    translated = {m.id: m.string for m in po if m.id}
    extracted = _extracted()
    assert len(extracted) > 100
    missing = sorted(extracted - set(translated))
    assert missing == [], "run `make messages` and translate these"
    stale = sorted(set(translated) - extracted)
    assert stale == [], "run `make messages` to drop these"
    assert [k for k, v in translated.items() if not v] == []
    assert not any(m.fuzzy for m in po if m.id)


def test_the_compiled_catalog_matches_the_po_file() -> None:
    with PO.open("rb") as source:
        po = read_po(source)
    zh = catalog.translations("zh")
    for message in po:
        if message.id:
            assert zh.gettext(message.id) == message.string, message.id
    assert catalog.translations("en").gettext("Call next") == "Call next"


def test_a_missing_compiled_catalog_names_the_command_that_fixes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(catalog, "LOCALE_DIR", tmp_path)
    catalog.translations.cache_clear()
    try:
        with pytest.raises(ConfigError, match="make catalogs"):
            catalog.translations("zh")
    finally:
        monkeypatch.undo()
        catalog.translations.cache_clear()


def test_the_generated_cookie_key_is_kept_in_the_database(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    store = Store(db)
    store.open_writer()
    first = store.secret("web_session_key")
    assert len(first) == 32
    assert store.secret("web_session_key") == first
    store.close()
    again = Store(db)
    again.open()
    assert again.secret("web_session_key") == first
    assert again.secret("other") != first
    again.close()


@pytest.mark.parametrize(
    "key", ["short", base64.urlsafe_b64encode(b"x" * 31).decode(), "not base64 at all!"]
)
def test_a_bad_configured_key_is_refused_with_its_path(key: str) -> None:
    raw = small_center()
    raw["hub"] = {"web_session_key": key}
    from qcall.config import parse_config

    with pytest.raises(ConfigError) as refused:
        parse_config(raw, "<test>")
    assert [loc for loc, _ in refused.value.problems] == ["hub.web_session_key"]
    assert key not in str(refused.value)  # a secret is never repeated
    assert key not in refused.value.report()
    assert "URL 安全 Base64" in refused.value.report()


@contextlib.asynccontextmanager
async def _served(
    tmp_path: Path, devices: dict[str, Any] | None = None, **hub_settings: Any
) -> AsyncIterator[tuple[Hub, str]]:
    sections: dict[str, Any] = {}
    if hub_settings:
        sections["hub"] = hub_settings
    if devices:
        sections["devices"] = devices
    config = make_config(**sections)
    hub = Hub(config, tmp_path / "p.db", clock=Clock())
    server = TestServer(build_app(hub), host="127.0.0.1")
    await server.start_server()
    try:
        await hub.write(hub.store.add_staff, "c1", "张三", PIN, Role.CLERK)
        yield hub, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def _sign_in(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/login") as response:
        csrf = _csrf(await response.text())
    async with http.post(
        f"{url}/login",
        data={"staff": "c1", "pin": PIN, "csrf_token": csrf},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        for cookie in http.cookie_jar:
            if cookie.key == "qcall_staff":
                return cookie.value
    raise AssertionError("no cookie")


async def test_a_configured_cookie_key_is_used_and_nothing_is_stored(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    encoded = base64.urlsafe_b64encode(key).decode()
    async with _served(tmp_path, web_session_key=encoded) as (hub, url):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            cookie = await _sign_in(http, url)
        session = json.loads(Fernet(encoded.encode()).decrypt(cookie.encode()))["session"]
        assert session["staff"] == "c1"
        assert "pin" not in session
        assert PIN not in json.dumps(session)
        db = hub.db_path
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("SELECT COUNT(*) FROM secrets").fetchone() == (0,)


async def test_pages_render_in_chinese_by_default_and_english_by_the_switch(
    tmp_path: Path,
) -> None:
    async with (
        _served(tmp_path) as (_hub, url),
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        await _sign_in(http, url)
        async with http.get(f"{url}/staff/") as response:
            html = await response.text()
        assert "选择窗口" in html
        assert 'lang="zh-CN"' in html
        async with http.get(f"{url}/staff/?lang=en") as response:
            html = await response.text()
        assert "Choose your window" in html
        assert "选择窗口" not in html
        async with http.get(f"{url}/desk/") as response:  # the choice sticks
            assert "Consultation desk" in await response.text()
        async with http.get(f"{url}/web/static/staff.js") as response:
            assert response.status == 200
            assert "X-CSRF-Token" in await response.text()


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("/desk/", "/desk/"),
        ("/backoffice/?x=1", "/backoffice/?x=1"),
        ("//evil.example/staff/", ""),
        ("https://evil.example/staff/", ""),
        ("/\\evil.example/staff/", ""),
        ("/t/abc", ""),
        ("staff/", ""),
        ("", ""),
    ],
)
def test_after_sign_in_only_our_own_pages_are_targets(wanted: str, expected: str) -> None:
    from qcall.web.security import safe_next
    from qcall.web.staff import PAGES

    assert safe_next(wanted, PAGES, "") == expected


async def test_the_desk_prints_an_issued_ticket_on_its_printer(tmp_path: Path) -> None:
    from devices.emulators.printer import PrinterEmulator

    emulator = PrinterEmulator(tmp_path / "printed", paper=80)
    await emulator.start()
    try:
        devices = {"printers": [{"id": "desk", "url": emulator.url}]}
        async with (
            _served(tmp_path, devices=devices) as (hub, url),
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        ):
            await _sign_in(http, url)
            async with http.get(f"{url}/desk/") as response:
                html = await response.text()
            assert "服务台打印机打印" in html
            headers = {"X-CSRF-Token": _csrf(html)}
            await hub.execute(lambda now: hub.engine.open_window(now, 1, "c1"))
            async with http.post(
                f"{url}/web/api/v1/tickets", json={"service": "social"}, headers=headers
            ) as response:
                assert response.status == 201
                ticket = await response.json()
            async with http.post(
                f"{url}/desk/print", json={"ticket": ticket["id"]}, headers=headers
            ) as response:
                assert response.status == 200, await response.text()
                assert await response.json() == {"printed": ticket["number"]}
            async with asyncio.timeout(10):
                (job,) = await emulator.wait_for_jobs(1)
            assert job.printed
            assert ticket["number"].encode() in job.raw
            async with http.post(
                f"{url}/desk/print", json={"ticket": "nope"}, headers=headers
            ) as response:
                assert response.status == 404
    finally:
        await emulator.stop()


async def test_bad_input_from_a_page_is_refused_in_the_pages_language(tmp_path: Path) -> None:
    async with (
        _served(tmp_path) as (hub, url),
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        await _sign_in(http, url)
        async with http.get(f"{url}/staff/") as response:
            headers = {"X-CSRF-Token": _csrf(await response.text())}
        before = hub.engine.seq
        cases: list[tuple[str, Any, str, str]] = [
            ("windows/1/transfer", {"position": "first"}, "invalid_body", "请求内容有误"),
            ("windows/1/finish", {"outcome": "later"}, "invalid_body", "请求内容有误"),
            ("windows/1/pause", "{not json", "bad_json", "不是有效的 JSON"),
            ("windows/1/recall", {}, "window_closed", "1 号窗口未开启"),
        ]
        for path, body, code, zh in cases:
            data = body if isinstance(body, str) else json.dumps(body)
            async with http.post(f"{url}/web/api/v1/{path}", data=data, headers=headers) as r:
                answer = await r.json()
            assert r.status in (400, 409), path
            assert answer["error"]["code"] == code, path
            assert zh in answer["error"]["message"], path
        async with http.get(f"{url}/staff/?lang=en") as response:
            assert response.status == 200
        async with http.post(
            f"{url}/web/api/v1/windows/1/recall", data="{}", headers=headers
        ) as response:
            assert (await response.json())["error"]["message"] == "window 1 is closed"
        assert hub.engine.seq == before  # nothing changed


@pytest.mark.parametrize("secure", [False, True])
async def test_the_cookie_is_secure_when_configured(tmp_path: Path, secure: bool) -> None:
    async with (
        _served(tmp_path, web_secure_cookie=secure) as (_hub, url),
        aiohttp.ClientSession() as http,
        http.get(f"{url}/login") as response,
    ):
        (cookie,) = response.headers.getall("Set-Cookie")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert ("Secure" in cookie.split("; ")) is secure


async def test_the_back_office_marks_overdue_cases_and_lists_them_first(tmp_path: Path) -> None:
    async with (
        _served(tmp_path) as (hub, url),
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
    ):
        await _sign_in(http, url)
        engine = hub.engine
        await hub.execute(lambda now: engine.open_window(now, 1, "c1"))
        numbers = []
        for days in (20, 3):  # promised in 20 days, then in 3
            ticket = await hub.execute(lambda now: engine.issue(now, "social"))
            numbers.append(ticket.number)
            await hub.execute(lambda now: engine.call_next(now, 1, "c1"))
            await hub.execute(
                lambda now, d=days: engine.finish(
                    now, 1, "c1", Outcome.BACK_OFFICE, engine.local(now).date() + dt.timedelta(d)
                )
            )
        async with http.get(f"{url}/backoffice/") as response:
            html = await response.text()
        assert "已超期" not in html
        assert html.index(numbers[1]) < html.index(numbers[0])  # nearer promise first
        clock = hub.clock
        assert isinstance(clock, Clock)
        clock.advance(days=5)
        async with http.get(f"{url}/backoffice/") as response:
            html = await response.text()
        assert "已超期 2 天" in html
        assert html.count("已超期") == 2  # the row and the heading's count
        assert "1 件已超期" in html
        async with http.get(f"{url}/backoffice/fragment?lang=en") as response:
            assert "Overdue 2 days" in await response.text()
