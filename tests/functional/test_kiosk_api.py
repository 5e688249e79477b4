"""The hub side of the kiosk: Idempotency-Key on POST /tickets, device reports, morning rule."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from qcall.client import QcallApiError, QcallClient
from tests.functional.conftest import Connect, HubProcess

# One event arrives within milliseconds; the bound only catches a stream that never delivers.
EVENT_TIMEOUT_S = 10.0


async def _post_ticket(
    hub: HubProcess, key: str | None, service: str = "social_card"
) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {hub.token('kiosk')}", "Accept-Language": "en"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{hub.url}/api/v1/tickets", json={"service": service}, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_same_key_same_ticket_even_after_a_restart(hub: HubProcess) -> None:
    key = str(uuid.uuid4())
    status, first = await _post_ticket(hub, key)
    assert status == 201, first
    # Two retries racing each other and the first answer: still one ticket.
    answers = await asyncio.gather(_post_ticket(hub, key), _post_ticket(hub, key))
    assert [(s, a["id"], a["number"]) for s, a in answers] == [
        (201, first["id"], first["number"])
    ] * 2
    other_status, other = await _post_ticket(hub, str(uuid.uuid4()))
    assert other_status == 201
    assert other["number"] != first["number"]
    hub.restart()
    status, again = await _post_ticket(hub, key)
    assert (status, again["id"], again["track_token"]) == (201, first["id"], first["track_token"])
    # The same key for another service is refused and issues nothing.
    status, error = await _post_ticket(hub, key, service="resident_medical_insurance")
    assert status == 409
    assert error["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize("key", ["", "a" * 101, "has space", "中文"])
async def test_bad_idempotency_key_is_refused(
    hub: HubProcess, kiosk: QcallClient, key: str
) -> None:
    before = sum(s["waiting"] for s in (await kiosk.catalog())["services"])
    headers = {
        "Authorization": f"Bearer {hub.token('kiosk')}",
        "Idempotency-Key": key.encode().decode("latin-1"),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{hub.url}/api/v1/tickets", json={"service": "social_card"}, headers=headers
        ) as r,
    ):
        body = await r.json()
    assert r.status == 400, body
    assert body["error"]["code"] == "bad_idempotency_key"
    assert sum(s["waiting"] for s in (await kiosk.catalog())["services"]) == before


async def test_client_sends_the_key(kiosk: QcallClient) -> None:
    key = f"kiosk-test-{uuid.uuid4()}"
    first = await kiosk.issue_ticket("social_card", idempotency_key=key)
    second = await kiosk.issue_ticket("social_card", idempotency_key=key)
    assert second == first


async def test_device_report_becomes_events_and_diagnostics(
    connect: Connect, hub: HubProcess, kiosk: QcallClient
) -> None:
    admin = await connect(hub.token("admin"))
    display = await connect(hub.token("display"))
    stream = display.events()
    first = await anext(stream)
    assert first["type"] == "snapshot"
    await kiosk.report_device("printer", "offline", "paper end / 缺纸")
    await kiosk.report_device("printer", "offline", "paper end / 缺纸")  # unchanged: no event
    await kiosk.report_device("printer", "ready")
    seen = []
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        async for message in stream:
            if message["type"] == "device.state":
                seen.append(message["data"])
                if len(seen) == 2:
                    break
    await stream.aclose()
    name = "kiosk:test kiosk/printer"
    assert seen == [
        {"device": name, "state": "offline", "detail": "paper end / 缺纸"},
        {"device": name, "state": "ready", "detail": ""},
    ]
    diagnostics = await admin.diagnostics()
    assert diagnostics["devices"][name]["state"] == "ready"


async def test_device_report_refuses_bad_input_and_roles(
    connect: Connect, hub: HubProcess, kiosk: QcallClient
) -> None:
    with pytest.raises(QcallApiError) as bad_state:
        await kiosk.report_device("printer", "exploded")  # type: ignore[arg-type]
    assert bad_state.value.status == 400
    with pytest.raises(QcallApiError) as bad_name:
        await kiosk.report_device("../../etc", "ready")
    assert bad_name.value.status in (400, 404)
    clerk = await connect(staff="c2")
    with pytest.raises(QcallApiError) as forbidden:
        await clerk.report_device("printer", "ready")
    assert forbidden.value.status == 403
    integration = await connect(hub.token("integration"))
    with pytest.raises(QcallApiError) as forbidden_too:
        await integration.report_device("printer", "ready")
    assert forbidden_too.value.status == 403


async def test_keys_belong_to_their_caller(connect: Connect, hub: HubProcess) -> None:
    first = await connect(hub.token("kiosk"))
    second = await connect(hub.create_token("kiosk", "second kiosk"))
    key = "shared-key-0001"
    mine = await first.issue_ticket("social_card", idempotency_key=key)
    theirs = await second.issue_ticket("social_card", idempotency_key=key)
    assert theirs["id"] != mine["id"]
    assert (await first.issue_ticket("social_card", idempotency_key=key))["id"] == mine["id"]
