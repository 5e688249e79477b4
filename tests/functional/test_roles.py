"""Who may call what (docs/roles.md, docs/api.md): every route × every role against a real hub.

The expected table below is written from the documented contract, not read from
``ROUTES``, so a change of a route's roles, or a new route without a role decision, fails
here. Readings of the design where it is terse:

- "kiosk+" is every role; "display+" is every role but the kiosk (integrations follow the
  hall too).
- "clerk" on window routes means the staff who work windows: clerks, and supervisors covering
  a window. Admins are technicians and do not call tickets.
- "kiosk, clerk" on ``POST /tickets`` means the kiosk and window/desk staff (the consultation
  desk issues tickets for residents who do not use the kiosk).
- "supervisor" on reports (and on moving a waiting ticket, closing the day) is management:
  supervisors, and admins above them.
- Routes not in the §6 table: ``/logout`` (any token holder revokes its own token), staff
  ``cancel`` and ``/inquiries`` (the desk's first-inquiry log) are window staff;
  ``/track/{token}/cancel`` is public (the tracking link is the credential).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final

import aiohttp
import pytest
from openapi_spec_validator import validate

from qcall.api.routes import ROUTES
from qcall.client import QcallApiError, QcallClient
from tests.functional.conftest import ROLES, SUPERVISOR, Connect, HubProcess

PUBLIC: Final = None
EVERY_ROLE: Final = frozenset(ROLES)
DISPLAY_AND_UP: Final = frozenset({"display", "clerk", "supervisor", "admin", "integration"})
WINDOW_STAFF: Final = frozenset({"clerk", "supervisor"})
TICKET_ISSUERS: Final = frozenset({"kiosk", "clerk", "supervisor"})
MANAGEMENT: Final = frozenset({"supervisor", "admin"})
ADMIN_ONLY: Final = frozenset({"admin"})

EXPECTED: Final[dict[tuple[str, str], frozenset[str] | None]] = {
    ("GET", "/api/v1/health"): PUBLIC,
    ("POST", "/api/v1/login"): PUBLIC,
    ("POST", "/api/v1/logout"): EVERY_ROLE,
    ("GET", "/api/v1/track/{token}"): PUBLIC,
    ("POST", "/api/v1/track/{token}/cancel"): PUBLIC,
    ("GET", "/api/v1/catalog"): EVERY_ROLE,
    ("POST", "/api/v1/tickets"): TICKET_ISSUERS,
    ("GET", "/api/v1/tickets/{id}"): EVERY_ROLE,
    ("POST", "/api/v1/tickets/{id}/reactivate"): WINDOW_STAFF,
    ("POST", "/api/v1/tickets/{id}/cancel"): WINDOW_STAFF,
    ("POST", "/api/v1/tickets/{id}/move"): MANAGEMENT,
    ("POST", "/api/v1/day/close"): MANAGEMENT,
    ("POST", "/api/v1/windows/{n}/open"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/close"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/next"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/call"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/recall"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/start"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/no-show"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/hold"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/pause"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/resume"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/callback"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/transfer"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/finish"): WINDOW_STAFF,
    ("POST", "/api/v1/windows/{n}/rating"): WINDOW_STAFF,
    ("POST", "/api/v1/cases/{id}/ready"): WINDOW_STAFF,
    ("POST", "/api/v1/inquiries"): WINDOW_STAFF,
    ("GET", "/api/v1/state"): DISPLAY_AND_UP,
    ("GET", "/api/v1/lobby"): DISPLAY_AND_UP,
    ("GET", "/api/v1/figures"): DISPLAY_AND_UP,
    ("GET", "/api/v1/events"): DISPLAY_AND_UP,
    ("GET", "/api/v1/reports/daily"): MANAGEMENT,
    ("GET", "/api/v1/reports/monthly"): MANAGEMENT,
    ("GET", "/api/v1/reports/range"): MANAGEMENT,
    ("GET", "/api/v1/reports/assessment"): MANAGEMENT,
    ("GET", "/api/v1/reports/charts/{chart}"): MANAGEMENT,
    ("GET", "/api/v1/diagnostics"): ADMIN_ONLY,
    ("POST", "/api/v1/devices/{name}/state"): frozenset({"kiosk", "display", "admin"}),
    ("POST", "/api/v1/devices/selftest"): ADMIN_ONLY,
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
}
# Served by the app but outside the route table (WebSocket, generated document).
OUTSIDE_ROUTES: Final = {("GET", "/api/v1/events"), ("GET", "/api/v1/openapi.json")}

# A request per route that no caller can turn into a change of the hall: unknown ids, window
# 999, bodies that fail validation. Allowed callers get 200/400/404, never 401/403.
_UNKNOWN_WINDOW: Final = "/api/v1/windows/999"
PROBES: Final[dict[tuple[str, str], tuple[str, Any]]] = {
    ("GET", "/api/v1/health"): ("/api/v1/health", None),
    ("POST", "/api/v1/login"): ("/api/v1/login", {}),
    ("GET", "/api/v1/track/{token}"): ("/api/v1/track/no-such-token", None),
    ("POST", "/api/v1/track/{token}/cancel"): ("/api/v1/track/no-such-token/cancel", None),
    ("GET", "/api/v1/catalog"): ("/api/v1/catalog", None),
    ("POST", "/api/v1/tickets"): ("/api/v1/tickets", {}),
    ("GET", "/api/v1/tickets/{id}"): ("/api/v1/tickets/no-such-ticket", None),
    ("POST", "/api/v1/tickets/{id}/reactivate"): ("/api/v1/tickets/no-such/reactivate", {}),
    ("POST", "/api/v1/tickets/{id}/cancel"): ("/api/v1/tickets/no-such/cancel", None),
    ("POST", "/api/v1/tickets/{id}/move"): ("/api/v1/tickets/no-such/move", {}),
    ("POST", "/api/v1/day/close"): ("/api/v1/day/close", {}),
    **{
        ("POST", f"/api/v1/windows/{{n}}/{action}"): (f"{_UNKNOWN_WINDOW}/{action}", body)
        for action, body in (
            ("open", None),
            ("close", None),
            ("next", None),
            ("call", {}),
            ("recall", None),
            ("start", None),
            ("no-show", None),
            ("hold", None),
            ("pause", {}),
            ("resume", None),
            ("callback", {}),
            ("transfer", {}),
            ("finish", {}),
            ("rating", {}),
        )
    },
    ("POST", "/api/v1/cases/{id}/ready"): ("/api/v1/cases/no-such-case/ready", None),
    ("POST", "/api/v1/inquiries"): ("/api/v1/inquiries", {}),
    ("GET", "/api/v1/state"): ("/api/v1/state", None),
    ("GET", "/api/v1/lobby"): ("/api/v1/lobby", None),
    ("GET", "/api/v1/figures"): ("/api/v1/figures", None),
    ("GET", "/api/v1/reports/daily"): ("/api/v1/reports/daily?date=not-a-date", None),
    ("GET", "/api/v1/reports/monthly"): ("/api/v1/reports/monthly?month=2026-13", None),
    ("GET", "/api/v1/reports/range"): ("/api/v1/reports/range?from=2026-11-02&to=2026-11-01", None),
    ("GET", "/api/v1/reports/assessment"): ("/api/v1/reports/assessment?month=x", None),
    ("GET", "/api/v1/reports/charts/{chart}"): ("/api/v1/reports/charts/no-such-chart", None),
    ("GET", "/api/v1/diagnostics"): ("/api/v1/diagnostics", None),
    ("POST", "/api/v1/devices/{name}/state"): ("/api/v1/devices/printer/state", {}),
    ("POST", "/api/v1/devices/selftest"): ("/api/v1/devices/selftest", None),
    ("GET", "/api/v1/openapi.json"): ("/api/v1/openapi.json", None),
    ("GET", "/metrics"): ("/metrics", None),
}
CALLERS: Final = (*ROLES, "no token", "invalid token")
INVALID_TOKEN: Final = "qc_this-token-was-never-issued"
# The snapshot is the first frame after the upgrade; this bounds a hung stream.
STREAM_TIMEOUT_S: Final = 10.0


def _template(path: str) -> str:
    """``/windows/{n:\\d+}/next`` → ``/windows/{n}/next``."""
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", r"{\1}", path)


def _expect(roles: frozenset[str] | None, caller: str) -> str:
    if roles is None:
        return "allowed"
    if caller in ("no token", "invalid token"):
        return "401"
    return "allowed" if caller in roles else "403"


def _outcome(status: int) -> str:
    return str(status) if status in (401, 403) else "allowed"


@pytest.fixture
def tokens(hub: HubProcess) -> dict[str, str | None]:
    """A token per caller: CLI-made device tokens, logged-in staff, none, and a bogus one."""
    found: dict[str, str | None] = {
        role: hub.token(role) for role in ("kiosk", "display", "integration", "admin")
    }
    found |= {"clerk": hub.session_token("c1"), "supervisor": hub.session_token(SUPERVISOR)}
    found |= {"no token": None, "invalid token": INVALID_TOKEN}
    return found


async def _send(
    session: aiohttp.ClientSession,
    hub: HubProcess,
    method: str,
    path: str,
    token: str | None,
    body: Any,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, hub.url + path, json=body, headers=headers) as response:
        data = await response.json(content_type=None) if "json" in response.content_type else None
        return response.status, data


# --------------------------------------------------------------------------- the table


def test_every_route_has_a_role_decision() -> None:
    served = {(route.method, _template(route.path)) for route in ROUTES}
    missing = served - EXPECTED.keys()
    assert not missing, f"routes without an expected role set in this test: {sorted(missing)}"
    assert EXPECTED.keys() - served == OUTSIDE_ROUTES
    assert served | OUTSIDE_ROUTES == PROBES.keys() | {
        ("POST", "/api/v1/logout"),
        ("GET", "/api/v1/events"),
    }


def test_routes_carry_the_roles_of_the_design() -> None:
    for route in ROUTES:
        expected = EXPECTED[route.method, _template(route.path)]
        actual = None if route.roles is None else frozenset(str(r) for r in route.roles)
        assert actual == expected, f"{route.method} {route.path}"


@pytest.mark.parametrize("key", sorted(PROBES), ids=[f"{m} {p}" for m, p in sorted(PROBES)])
async def test_route_answers_each_role_as_designed(
    key: tuple[str, str], hub: HubProcess, tokens: dict[str, str | None], display: QcallClient
) -> None:
    method, _ = key
    path, body = PROBES[key]
    before = await display.state()
    mismatches = []
    async with aiohttp.ClientSession() as session:
        for caller in CALLERS:
            status, data = await _send(session, hub, method, path, tokens[caller], body)
            expected = _expect(EXPECTED[key], caller)
            if _outcome(status) != expected:
                mismatches.append(f"{caller}: expected {expected}, got {status} {data}")
            elif expected == "401":
                assert data["error"]["code"] == "unauthorized", data
            elif expected == "403":
                assert data["error"]["code"] == "forbidden_role", data
    assert not mismatches, "\n".join(mismatches)
    assert await display.state() == before


async def test_event_stream_answers_each_role_as_designed(
    hub: HubProcess, tokens: dict[str, str | None]
) -> None:
    mismatches = []
    async with aiohttp.ClientSession() as session:
        for caller in CALLERS:
            token = tokens[caller]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            expected = _expect(EXPECTED["GET", "/api/v1/events"], caller)
            try:
                async with session.ws_connect(f"{hub.url}/api/v1/events", headers=headers) as ws:
                    first = await ws.receive_json(timeout=STREAM_TIMEOUT_S)
                    assert first["type"] == "snapshot"
                    outcome = "allowed"
            except aiohttp.WSServerHandshakeError as err:
                outcome = _outcome(err.status)
            if outcome != expected:
                mismatches.append(f"{caller}: expected {expected}, got {outcome}")
    assert not mismatches, "\n".join(mismatches)


async def test_logout_revokes_the_callers_token_for_every_role(
    connect: Connect, hub: HubProcess
) -> None:
    fresh = await asyncio.gather(
        *(
            asyncio.to_thread(hub.create_token, role, f"logout {role}")
            for role in ("kiosk", "display", "integration", "admin")
        )
    )
    clients = [await connect(token) for token in fresh]
    clients += [await connect(staff="c2"), await connect(staff=SUPERVISOR)]
    for client in clients:
        token = client.token
        await client.catalog()  # works, and is now in the hub's token cache
        await client.logout()
        assert client.token is None
        revoked = await connect(token)
        with pytest.raises(QcallApiError) as denied:
            await revoked.catalog()
        assert (denied.value.status, denied.value.code) == (401, "unauthorized")
    # Another token of the same role still works.
    assert (await (await connect(hub.token("kiosk"))).catalog())["services"]
    for token in (None, INVALID_TOKEN):
        with pytest.raises(QcallApiError) as anonymous:
            await (await connect(token)).logout()
        assert anonymous.value.status == 401


# --------------------------------------------------------------------------- where, not just who


async def test_a_clerk_cannot_act_at_a_window_another_clerk_opened(
    connect: Connect, kiosk: QcallClient, display: QcallClient
) -> None:
    owner = await connect(staff="c3")
    intruder = await connect(staff="c4")
    supervisor = await connect(staff=SUPERVISOR)
    await owner.open_window(3)
    waiting = await kiosk.issue_ticket("medical_reimbursement")
    called = await owner.call_next(3)
    assert called is not None
    extra = await kiosk.issue_ticket("ltc_insurance")
    before = await display.state()

    attempts = {
        "open": lambda c: c.open_window(3),
        "close": lambda c: c.close_window(3),
        "next": lambda c: c.call_next(3),
        "call": lambda c: c.call_number(3, extra["number"]),
        "recall": lambda c: c.recall(3),
        "start": lambda c: c.start(3),
        "no-show": lambda c: c.no_show(3),
        "hold": lambda c: c.hold(3),
        "pause": lambda c: c.pause(3, "x"),
        "resume": lambda c: c.resume(3),
        "callback": lambda c: c.callback(3, waiting["number"]),
        "transfer": lambda c: c.transfer(3, service="ltc_insurance"),
        "finish": lambda c: c.finish(3),
        "rating": lambda c: c.rate(3, 5),
    }
    for other in (intruder, supervisor):
        for action, attempt in attempts.items():
            with pytest.raises(QcallApiError) as refused:
                await attempt(other)
            assert refused.value.status == 403, action
            assert refused.value.code in {"not_your_window", "window_taken"}, action
    assert await display.state() == before

    # The owner still can, and the intruder works at a window of their own.
    await owner.finish(3)
    assert (await owner.call_next(3) or {}).get("id") == extra["id"]
    await owner.finish(3)
    await owner.close_window(3)
    assert (await intruder.open_window(3))["staff"] == "c4"
    await intruder.close_window(3)


async def test_a_display_cannot_write(
    connect: Connect, hub: HubProcess, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c5")
    await clerk.open_window(5)
    ticket = await kiosk.issue_ticket("senior_allowance")
    before = await display.state()
    writes = [
        ("/api/v1/tickets", {"service": "senior_allowance"}),
        (f"/api/v1/tickets/{ticket['id']}/cancel", None),
        ("/api/v1/windows/1/open", None),
        ("/api/v1/windows/5/next", None),
        ("/api/v1/windows/5/pause", {"reason": "x"}),
        ("/api/v1/windows/5/close", None),
        ("/api/v1/inquiries", {"topic": "咨询"}),
    ]
    async with aiohttp.ClientSession() as session:
        for path, body in writes:
            status, data = await _send(session, hub, "POST", path, hub.token("display"), body)
            assert (status, data["error"]["code"]) == (403, "forbidden_role"), path
    assert await display.state() == before
    await clerk.call_next(5)
    await clerk.finish(5)
    await clerk.close_window(5)


async def test_a_kiosk_cannot_call(
    connect: Connect, hub: HubProcess, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c6")
    await clerk.open_window(6)
    ticket = await kiosk.issue_ticket("policy_consult")
    before = await display.state()
    for attempt in (
        lambda: kiosk.call_next(6),
        lambda: kiosk.call_number(6, ticket["number"]),
        lambda: kiosk.recall(6),
        lambda: kiosk.open_window(1),
        lambda: kiosk.reactivate(ticket["id"]),
    ):
        with pytest.raises(QcallApiError) as refused:
            await attempt()
        assert (refused.value.status, refused.value.code) == (403, "forbidden_role")
    with pytest.raises(QcallApiError) as hall:
        await kiosk.state()
    assert hall.value.status == 403
    assert await display.state() == before
    called = await clerk.call_next(6)
    assert called is not None
    assert called["id"] == ticket["id"]
    await clerk.finish(6)
    await clerk.close_window(6)


# --------------------------------------------------------------------------- public surface


async def test_openapi_document_is_valid_and_lists_every_route(hub: HubProcess) -> None:
    async with QcallClient(hub.url) as anonymous:
        document = await anonymous.openapi()
    validate(document)
    assert document["openapi"].startswith("3.")
    for route in ROUTES:
        path = _template(route.path)
        assert route.method.lower() in document["paths"].get(path, {}), f"{route.method} {path}"
        operation = document["paths"][path][route.method.lower()]
        roles = EXPECTED[route.method, path]
        if roles is None:
            assert "security" not in operation, path
            assert "x-roles" not in operation, path
        else:
            assert operation["security"] == [{"bearer": []}], path
            assert frozenset(operation["x-roles"]) == roles, path
    events = document["paths"]["/api/v1/events"]["get"]
    assert events["security"] == [{"bearer": []}]
    assert {p["name"] for p in events["parameters"]} == {"after", "token"}


async def test_metrics_are_served_to_loopback(
    connect: Connect, hub: HubProcess, kiosk: QcallClient
) -> None:
    await kiosk.catalog()
    text = await kiosk.metrics()
    assert "# TYPE qcall_events_total counter" in text
    counts = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("qcall_events_total{")
    ]
    assert sum(counts) >= 1  # at least the day.opened of start-up
    assert "qcall_event_seq " in text
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{hub.url}/metrics") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/plain"
