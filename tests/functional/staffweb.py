"""Helpers for the staff page tests: an HTTP session like a browser's, and real Chromium.

Chromium is Debian's ``chromium`` package driven by Playwright through ``executable_path``
(no browser download). A missing browser or Playwright fails the run; nothing here skips.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from cryptography.fernet import Fernet

ROOT: Final = Path(__file__).resolve().parents[2]
ARTIFACTS: Final = ROOT / "var" / "artifacts" / "web"
CHROMIUM: Final = shutil.which("chromium") or "/usr/bin/chromium"
# Root in a container: no sandbox; no GPU, no background traffic, no first-run pages.
CHROMIUM_ARGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# Playwright's own waits (a page update after an event, a navigation): generous for a loaded
# 2-core machine; they only bound a hung page.
PAGE_TIMEOUT_MS: Final = 15_000
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_of(html: str) -> str:
    """The CSRF token a page carries."""
    found = _CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


class WebSession:
    """A cookie-keeping HTTP client that signs in through the login form, like a browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Origin": base},
        )
        self.csrf = ""

    async def close(self) -> None:
        """Close the client."""
        await self.http.close()

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        """GET without following redirects; remembers the page's CSRF token."""
        async with self.http.get(self.base + path, allow_redirects=False, **kwargs) as response:
            text = await response.text()
            if 'name="csrf-token"' in text:
                self.csrf = csrf_of(text)
            return response.status, text, response

    async def form(
        self, path: str, fields: dict[str, str], *, csrf: bool = True
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        """POST a form (with the page's CSRF token unless told otherwise)."""
        data = dict(fields)
        if csrf:
            data["csrf_token"] = self.csrf
        async with self.http.post(self.base + path, data=data, allow_redirects=False) as response:
            text = await response.text()
            if 'name="csrf-token"' in text:
                self.csrf = csrf_of(text)
            return response.status, text, response

    async def act(
        self, path: str, body: dict[str, Any] | None = None, *, csrf: str | None = None
    ) -> tuple[int, Any]:
        """A page's fetch: JSON to the bridge with the CSRF header (``csrf=""`` omits it)."""
        headers = {"Accept": "application/json"}
        token = self.csrf if csrf is None else csrf
        if token:
            headers["X-CSRF-Token"] = token
        async with self.http.post(
            self.base + path, json=body or {}, headers=headers, allow_redirects=False
        ) as response:
            raw = await response.text()
            return response.status, json.loads(raw) if raw else None

    async def login(self, staff: str, pin: str) -> tuple[int, str]:
        """Sign in through the form; returns the status and where it sent us."""
        await self.get("/login")
        status, _text, response = await self.form("/login", {"staff": staff, "pin": pin})
        location = response.headers.get("Location", "")
        if status == 303:
            await self.get(location)
        return status, location

    def cookie(self) -> str:
        """The raw session cookie value."""
        for cookie in self.http.cookie_jar:
            if cookie.key == "qcall_staff":
                return cookie.value
        raise AssertionError("no session cookie")


def admin_account(hub: Any) -> str:
    """An admin staff account on this hub (the template has clerks and a supervisor)."""
    from tests.functional.conftest import PIN, _run_cli

    config, db = str(hub.credentials.config), str(hub.db)
    _run_cli(
        *("staff", "add", "--config", config, "--db", db, "--id", "adm9"),
        *("--name", "管理员", "--role", "admin"),
        stdin=PIN + "\n",
    )
    return "adm9"


def session_key(db: Path) -> Fernet:
    """The cookie key the hub generated and kept in its database."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        row = con.execute("SELECT value FROM secrets WHERE name = 'web_session_key'").fetchone()
    assert row is not None, "the hub did not store a session key"
    return Fernet(base64.urlsafe_b64encode(bytes(row[0])))


def read_cookie(db: Path, value: str) -> dict[str, Any]:
    """Decrypt a session cookie (what only the hub can do)."""
    return dict(json.loads(session_key(db).decrypt(value.encode()))["session"])


def forge_cookie(db: Path, value: str, **changes: Any) -> str:
    """Re-encrypt a session cookie with some fields changed (as if time had passed)."""
    whole = json.loads(session_key(db).decrypt(value.encode()))
    whole["session"].update(changes)
    return session_key(db).encrypt(json.dumps(whole).encode()).decode()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Debian's Chromium under Playwright (headless)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("playwright is not installed (pip install -e '.[dev]')")
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"chromium is missing at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            await browser.close()


async def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
