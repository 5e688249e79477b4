"""The API in-process on real sockets: event streams end with their token, two hubs in one
process keep their streams apart, /metrics is not opened by a reverse proxy, deep JSON is 400,
and the login route applies the per-address limit to the real caller."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from qcall.api import build_app
from qcall.api import ws as ws_module
from qcall.auth import ADDRESS_MAX_FAILURES
from qcall.hub import Hub
from qcall.model import Role
from qcall.store import Store
from tests.common import Clock, make_config

# Bounds on waiting for a stream message; only a broken hub gets near them.
RECEIVE_TIMEOUT_S: Final = 10.0
PIN: Final = "73915284"


class Served:
    """A hub started and served by build_app on a free 127.0.0.1 port."""

    def __init__(self, hub: Hub, server: TestServer) -> None:
        self.hub = hub
        self.server = server
        self.url = str(server.make_url("")).rstrip("/")

    async def token(self, role: Role, *, expires_in_s: float | None = None) -> str:
        expires = (
            None
            if expires_in_s is None
            else dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in_s)
        )
        return await self.hub.write(
            lambda: self.hub.store.create_token(role, f"test {role}", expires_at=expires)
        )


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    servers: list[TestServer] = []

    async def make(name: str = "hub", **overrides: Any) -> Served:
        hub = Hub(make_config(**overrides), tmp_path / f"{name}.db", clock=Clock())
        server = TestServer(build_app(hub), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Served(hub, server)

    yield make
    for server in reversed(servers):
        await server.close()


async def open_stream(
    session: aiohttp.ClientSession, served: Served, token: str, after: int | None = None
) -> aiohttp.ClientWebSocketResponse:
    query = f"?token={token}" + ("" if after is None else f"&after={after}")
    return await session.ws_connect(f"{served.url}/api/v1/events{query}")


async def receive(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    return await asyncio.wait_for(ws.receive(), RECEIVE_TIMEOUT_S)


# ----------------------------------------------------------------------------- event streams


async def test_a_stream_is_closed_when_its_token_is_revoked(serve: Serve) -> None:
    served = await serve()
    hub = served.hub
    await hub.write(hub.store.add_staff, "c1", "张三", PIN, Role.CLERK)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{served.url}/api/v1/login", json={"staff": "c1", "pin": PIN}
        ) as response:
            assert response.status == 200
            token = (await response.json())["token"]
        other = await served.token(Role.DISPLAY)
        ws = await open_stream(session, served, token)
        bystander = await open_stream(session, served, other)
        assert json.loads((await receive(ws)).data)["type"] == "snapshot"
        assert json.loads((await receive(bystander)).data)["type"] == "snapshot"
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(f"{served.url}/api/v1/logout", headers=headers) as response:
            assert response.status == 204
        message = await receive(ws)
        assert message.type is WSMsgType.CLOSE
        assert ws.close_code == ws_module.CLOSE_TOKEN_ENDED
        # The other screen's stream goes on.
        await hub.execute(lambda now: hub.engine.open_window(now, 2, "c2"))
        event = json.loads((await receive(bystander)).data)
        assert event["type"] == "window.opened"
        # And the revoked token cannot open a new one.
        async with session.get(f"{served.url}/api/v1/events?token={token}") as response:
            assert response.status == 401
        await bystander.close()


async def test_a_stream_is_closed_when_its_token_expires(serve: Serve) -> None:
    served = await serve()
    token = await served.token(Role.DISPLAY, expires_in_s=1.0)
    async with aiohttp.ClientSession() as session:
        ws = await open_stream(session, served, token)
        assert json.loads((await receive(ws)).data)["type"] == "snapshot"
        message = await receive(ws)
        assert message.type is WSMsgType.CLOSE
        assert ws.close_code == ws_module.CLOSE_TOKEN_ENDED


async def test_a_revocation_by_another_process_also_closes_the_stream(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_module, "TOKEN_RECHECK_S", 0.2)
    served = await serve()
    token = await served.token(Role.DISPLAY)
    async with aiohttp.ClientSession() as session:
        ws = await open_stream(session, served, token)
        assert json.loads((await receive(ws)).data)["type"] == "snapshot"
        outside = Store(tmp_path / "hub.db")  # what `qcall token revoke` does
        outside.open()
        try:
            outside.revoke_token(token)
        finally:
            outside.close()
        message = await receive(ws)
        assert message.type is WSMsgType.CLOSE
        assert ws.close_code == ws_module.CLOSE_TOKEN_ENDED


async def test_two_hubs_in_one_process_never_cross_streams(serve: Serve) -> None:
    first = await serve("first")
    second = await serve("second")
    for served, window in ((first, 1), (second, 2)):
        hub = served.hub
        await hub.execute(lambda now, h=hub, w=window: h.engine.open_window(now, w, f"c{w}"))
    async with aiohttp.ClientSession() as session:
        for served, window in ((first, 1), (second, 2)):
            ws = await open_stream(session, served, await served.token(Role.DISPLAY), after=1)
            event = json.loads((await receive(ws)).data)
            assert (event["seq"], event["data"]["window"]) == (2, window)
            await ws.close()


# ----------------------------------------------------------------------------- /metrics


@pytest.mark.parametrize(
    ("hub_settings", "headers", "status"),
    [
        ({}, {}, 200),
        # A proxy on this machine relays an outside caller: the allow-list must not see loopback.
        ({}, {"X-Forwarded-For": "203.0.113.9"}, 403),
        ({}, {"Forwarded": "for=203.0.113.9;proto=http"}, 403),
        ({}, {"X-Real-IP": "203.0.113.9"}, 403),
        ({}, {"Via": "1.1 nginx"}, 403),
        # A declared proxy is believed: the outside caller is judged by the allow-list.
        ({"trusted_proxies": ["127.0.0.1/32"]}, {"X-Forwarded-For": "203.0.113.9"}, 403),
        (
            {"trusted_proxies": ["127.0.0.1/32"], "metrics_allow": ["203.0.113.0/24"]},
            {"X-Forwarded-For": "203.0.113.9"},
            200,
        ),
        # A caller cannot slip a permitted address in front of its own through the proxy.
        (
            {"trusted_proxies": ["127.0.0.1/32"]},
            {"X-Forwarded-For": "127.0.0.1, 203.0.113.9"},
            403,
        ),
        # The proxy's own scrape (no forwarding header) is the proxy's address.
        ({"trusted_proxies": ["127.0.0.1/32"]}, {}, 200),
        # An allow-list without loopback refuses the local caller.
        ({"metrics_allow": ["10.0.0.0/8"]}, {}, 403),
    ],
)
async def test_metrics_follow_the_allow_list_about_the_real_caller(
    serve: Serve, hub_settings: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    served = await serve(hub=hub_settings)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{served.url}/metrics", headers=headers) as response,
    ):
        assert response.status == status
        if status == 403:
            body = await response.json()
            assert body["error"]["code"] == "metrics_forbidden"
        else:
            assert "qcall_" in await response.text()


# ----------------------------------------------------------------------------- deep JSON


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"staff": ' + b"[" * 1000 + b"]" * 1000 + b', "pin": "73915284"}',
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
        b"[" * 30000,
        b"[" * 300 + b"]" * 300,
    ],
    ids=["array-1000", "inside-object-1000", "objects-1000", "unclosed-30000", "array-300"],
)
async def test_deeply_nested_json_is_a_400_and_changes_nothing(serve: Serve, body: bytes) -> None:
    served = await serve()
    kiosk = await served.token(Role.KIOSK)
    seq = served.hub.committed_seq
    async with aiohttp.ClientSession() as session:
        for path, headers in (
            ("/api/v1/login", {}),
            ("/api/v1/tickets", {"Authorization": f"Bearer {kiosk}"}),
        ):
            async with session.post(
                f"{served.url}{path}",
                data=body,
                headers={**headers, "Content-Type": "application/json", "Accept-Language": "en"},
            ) as response:
                assert response.status == 400, await response.text()
                error = (await response.json())["error"]
                assert error["code"] in ("bad_json", "invalid_body")
    assert served.hub.committed_seq == seq


# ----------------------------------------------------------------------------- login route


async def test_the_login_route_limits_failures_per_real_caller(serve: Serve) -> None:
    served = await serve(hub={"trusted_proxies": ["127.0.0.1/32"]})
    hub = served.hub
    await hub.write(hub.store.add_staff, "c1", "张三", PIN, Role.CLERK)
    url = f"{served.url}/api/v1/login"
    attacker = {"X-Forwarded-For": "203.0.113.66", "Accept-Language": "en"}
    clerk = {"X-Forwarded-For": "192.0.2.10"}
    async with aiohttp.ClientSession() as session:
        for n in range(ADDRESS_MAX_FAILURES):
            body = {"staff": f"guess{n}", "pin": PIN}
            async with session.post(url, json=body, headers=attacker) as response:
                assert response.status == 401
        async with session.post(
            url, json={"staff": "c1", "pin": PIN}, headers=attacker
        ) as response:
            assert response.status == 429
            error = (await response.json())["error"]
            assert error["code"] == "login_address_throttled"
            assert "10 minutes" in error["message"]
        async with session.post(url, json={"staff": "c1", "pin": PIN}, headers=clerk) as response:
            assert response.status == 200


async def test_audit_events_reach_lobby_screens_and_clerks_without_staff_details(
    serve: Serve,
) -> None:
    from qcall import admin

    served = await serve()
    hub = served.hub
    streams = {role: await served.token(role) for role in (Role.DISPLAY, Role.ADMIN)}
    async with aiohttp.ClientSession() as session:
        opened = {role: await open_stream(session, served, t) for role, t in streams.items()}
        for ws in opened.values():
            assert json.loads((await receive(ws)).data)["type"] == "snapshot"
        await admin.add_staff(hub, "a1", "c7", "李四", "clerk")
        await admin.change_setting(
            hub, "a1", "lobby.notices", [{"zh": "今日下午停电检修", "en": "Power work today"}]
        )
        await hub.execute(lambda now: hub.engine.open_window(now, 2, "c7"))
        seen = {
            role: [json.loads((await receive(ws)).data) for _ in range(3)]
            for role, ws in opened.items()
        }
        for ws in opened.values():
            await ws.close()
    full, lobby = seen[Role.ADMIN], seen[Role.DISPLAY]
    # The same events, gap-free, in both streams.
    assert [e["seq"] for e in lobby] == [e["seq"] for e in full]
    assert [e["type"] for e in lobby] == ["audit.recorded", "settings.changed", "window.opened"]
    # The admin's stream carries who did what; the lobby screen's only what kind of change.
    assert full[0]["data"]["actor"] == "a1"
    assert full[0]["data"]["after"]["name"] == "李四"
    assert lobby[0]["data"] == {"action": "staff.added", "redacted": True}
    assert lobby[1]["data"] == {"key": "lobby.notices", "redacted": True}
    assert "李四" not in json.dumps(lobby, ensure_ascii=False)
    # Everything else is the same, byte for byte.
    assert lobby[2] == full[2]
