"""A clerk's day against a real hub: open, call, serve, hold, transfer, finish, cases, close.

Every test leaves the hall as it found it (no ticket waiting, its windows closed), so the
tests of this module do not depend on their order.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import aiohttp
import pytest

from qcall.client import QcallApiError, QcallClient
from tests.functional.conftest import SUPERVISOR, Connect, HubProcess, waiting_total, window_of

ISSUED_FIELDS = {"id", "number", "service", "issued_at", "ahead", "estimated_wait_s", "track_token"}


@pytest.fixture(autouse=True)
async def quiet_hall(display: QcallClient) -> None:
    """Each test starts with nobody waiting and every window closed."""
    state = await display.state()
    assert waiting_total(state) == 0, state["waiting"]
    assert {w["state"] for w in state["windows"]} == {"closed"}


def _next_number(number: str) -> str:
    match = re.fullmatch(r"([A-Z]+)(\d+)", number)
    assert match is not None, number
    prefix, digits = match.groups()
    return f"{prefix}{int(digits) + 1:0{len(digits)}d}"


async def test_login_returns_a_staff_session(connect: Connect) -> None:
    clerk = await connect()
    result = await clerk.login("c1", "246810")
    assert result["staff"] == "c1"
    assert result["role"] == "clerk"
    assert result["token"].startswith("qc_")
    assert dt.datetime.fromisoformat(result["expires_at"]) > dt.datetime.now(dt.UTC)
    assert clerk.token == result["token"]


async def test_issue_call_recall_start_finish_rate(
    connect: Connect, hub: HubProcess, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c1")
    catalog = await kiosk.catalog()
    social = next(s for s in catalog["services"] if s["id"] == "social_card")
    # The morning rule (default): tickets before any window opens, marked as not served yet.
    assert social["available"] is True
    assert social["served_now"] is False

    window = await clerk.open_window(1)
    assert (window["number"], window["state"], window["staff"]) == (1, "idle", "c1")
    social = next(s for s in (await kiosk.catalog())["services"] if s["id"] == "social_card")
    assert social["available"] is True
    assert social["served_now"] is True
    assert social["waiting"] == 0

    # The kiosk's answer is 201 with the contract's fields (raw, to see the status).
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{hub.url}/api/v1/tickets",
            json={"service": "social_card"},
            headers={"Authorization": f"Bearer {hub.token('kiosk')}"},
        ) as response,
    ):
        assert response.status == 201
        first = await response.json()
    assert first.keys() >= ISSUED_FIELDS
    assert first["service"] == "social_card"
    assert first["ahead"] == 0
    assert first["estimated_wait_s"] > 0
    assert first["number"].startswith("A")
    second = await kiosk.issue_ticket("social_card")
    assert second["number"] == _next_number(first["number"])
    assert second["ahead"] == 1
    assert second["estimated_wait_s"] > first["estimated_wait_s"]

    # The public tracking link needs no token.
    async with QcallClient(hub.url) as anonymous:
        tracked = await anonymous.track(second["track_token"])
    assert (tracked["number"], tracked["state"]) == (second["number"], "waiting")
    assert tracked["ahead"] == 1
    assert tracked["window"] is None
    state = await display.state()
    assert state["waiting"]["social_card"] == 2
    social = next(s for s in (await kiosk.catalog())["services"] if s["id"] == "social_card")
    assert social["waiting"] == 2

    called = await clerk.call_next(1)
    assert called is not None
    assert (called["id"], called["state"], called["window"]) == (first["id"], "called", 1)
    tracked = await kiosk.track(first["track_token"])
    assert (tracked["state"], tracked["window"]) == ("called", 1)
    assert (await kiosk.track(second["track_token"]))["ahead"] == 0
    state = await display.state()
    assert window_of(state, 1)["state"] == "calling"
    assert window_of(state, 1)["current"]["number"] == first["number"]
    assert state["recent_calls"][0]["number"] == first["number"]
    assert state["waiting"]["social_card"] == 1

    seq_before = state["seq"]
    recalled = await clerk.recall(1)
    assert recalled["state"] == "called"
    state = await display.state()
    assert state["seq"] == seq_before + 1
    assert [c["number"] for c in state["recent_calls"][:2]] == [first["number"]] * 2

    started = await clerk.start(1)
    assert started["state"] == "serving"
    assert window_of(await display.state(), 1)["state"] == "serving"

    finished = await clerk.finish(1, "done")
    assert finished["ticket"]["state"] == "done"
    assert "case" not in finished
    rated = await clerk.rate(1, 5)
    assert rated["rating"] == 5
    assert (await kiosk.ticket(first["id"]))["rating"] == 5
    with pytest.raises(QcallApiError) as again:
        await clerk.rate(1, 4)
    assert (again.value.status, again.value.code) == (409, "nothing_to_rate")

    called = await clerk.call_next(1)
    assert called is not None
    assert called["id"] == second["id"]
    # "next" with a ticket at the window finishes it as done, then finds nobody: 204.
    assert await clerk.call_next(1) is None
    assert (await kiosk.ticket(second["id"]))["state"] == "done"
    closed = await clerk.close_window(1)
    assert closed["state"] == "closed"
    assert closed["staff"] is None


async def test_hold_and_callback_keep_the_held_ticket(
    connect: Connect, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c2")
    await clerk.open_window(2)
    first = await kiosk.issue_ticket("retirement_review")
    second = await kiosk.issue_ticket("retirement_review")

    assert (await clerk.call_next(2) or {}).get("id") == first["id"]
    held = await clerk.hold(2)
    assert held["state"] == "held"
    state = await display.state()
    assert window_of(state, 2)["held"] == [first["number"]]
    assert window_of(state, 2)["state"] == "idle"

    # Next calls the following ticket; the held one stays held.
    assert (await clerk.call_next(2) or {}).get("id") == second["id"]
    assert (await kiosk.ticket(first["id"]))["state"] == "held"
    # Calling the held one back finishes the current ticket first (as next does).
    back = await clerk.callback(2, first["number"])
    assert (back["id"], back["state"], back["window"]) == (first["id"], "called", 2)
    assert (await kiosk.ticket(second["id"]))["state"] == "done"
    assert window_of(await display.state(), 2)["held"] == []
    await clerk.start(2)
    await clerk.finish(2)
    assert await clerk.call_next(2) is None
    await clerk.close_window(2)


async def test_transfer_to_a_service_and_to_a_window(
    connect: Connect, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk3 = await connect(staff="c3")
    clerk4 = await connect(staff="c4")
    await clerk3.open_window(3)
    await clerk4.open_window(4)
    ticket = await kiosk.issue_ticket("medical_reimbursement")
    await clerk3.call_next(3)
    await clerk3.start(3)

    # To another service, first in its line: a new waiting entry, same number and issue time.
    moved = await clerk3.transfer(3, service="ltc_insurance", position="first")
    assert moved["id"] != ticket["id"]
    assert (moved["number"], moved["service"], moved["state"]) == (
        ticket["number"],
        "ltc_insurance",
        "waiting",
    )
    assert moved["issued_at"] == ticket["issued_at"]
    original = await kiosk.ticket(ticket["id"])
    assert (original["state"], original["transferred_to"]) == ("transferred", moved["id"])
    tracked = await kiosk.track(ticket["track_token"])
    assert (tracked["state"], tracked["service"]["id"]) == ("waiting", "ltc_insurance")
    assert (await display.state())["waiting"]["ltc_insurance"] == 1

    # To a window: it is called there before anyone who was already waiting.
    other = await kiosk.issue_ticket("minimum_living")
    again = await clerk3.call_next(3)
    assert again is not None
    assert again["id"] == moved["id"]
    await clerk3.start(3)
    pinned = await clerk3.transfer(3, to_window=4)
    assert (pinned["state"], pinned["number"]) == ("waiting", ticket["number"])
    assert (await kiosk.track(ticket["track_token"]))["state"] == "waiting"
    assert await clerk3.call_next(3) is not None  # window 3 serves minimum_living too
    assert await clerk3.call_next(3) is None  # but not what was pinned to window 4
    assert (await kiosk.ticket(other["id"]))["state"] == "done"

    reissued = await kiosk.issue_ticket("minimum_living")
    at_four = await clerk4.call_next(4)
    assert at_four is not None
    assert at_four["id"] == pinned["id"]
    assert (await kiosk.track(ticket["track_token"]))["window"] == 4
    assert (await clerk4.call_next(4) or {}).get("id") == reissued["id"]
    with pytest.raises(QcallApiError) as same:
        await clerk4.transfer(4, to_window=4)
    assert (same.value.status, same.value.code) == (409, "same_window")
    await clerk4.finish(4)
    await clerk3.close_window(3)
    await clerk4.close_window(4)


async def test_back_office_case_then_pickup_at_the_reply_window(
    connect: Connect, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c5")
    reply = await connect(staff="c8")
    await clerk.open_window(5)
    await reply.open_window(8)
    ticket = await kiosk.issue_ticket("senior_allowance")
    await clerk.call_next(5)
    await clerk.start(5)
    promised = dt.date.fromisoformat((await display.state())["day"] or "") + dt.timedelta(days=7)
    result = await clerk.finish(5, "back_office", promised_date=promised)
    assert result["ticket"]["state"] == "back_office"
    case = result["case"]
    assert result["ticket"]["case_id"] == case["id"]
    assert (case["ticket"], case["number"], case["service"]) == (
        ticket["id"],
        ticket["number"],
        "senior_allowance",
    )
    assert (case["staff"], case["state"], case["promised_date"]) == (
        "c5",
        "open",
        promised.isoformat(),
    )
    assert re.fullmatch(r"\d{6}", case["pickup_code"])
    await clerk.rate(5, 4)

    # Not ready yet: the kiosk says so; a wrong code is unknown; no code is a bad request.
    with pytest.raises(QcallApiError) as early:
        await kiosk.issue_ticket("case_pickup", case_code=case["pickup_code"])
    assert (early.value.status, early.value.code) == (409, "case_not_ready")
    wrong = "000000" if case["pickup_code"] != "000000" else "111111"
    with pytest.raises(QcallApiError) as unknown:
        await kiosk.issue_ticket("case_pickup", case_code=wrong)
    assert (unknown.value.status, unknown.value.code) == (404, "no_case")
    with pytest.raises(QcallApiError) as missing:
        await kiosk.issue_ticket("case_pickup")
    assert (missing.value.status, missing.value.code) == (400, "case_code_required")

    ready = await clerk.case_ready(case["id"])
    assert (ready["id"], ready["state"]) == (case["id"], "ready")
    with pytest.raises(QcallApiError) as twice:
        await clerk.case_ready(case["id"])
    assert twice.value.status == 409

    pickup = await kiosk.issue_ticket("case_pickup", case_code=case["pickup_code"])
    assert pickup["number"].startswith("Q")
    assert pickup["service"] == "case_pickup"
    assert (await display.state())["waiting"]["case_pickup"] == 1
    # An intake window does not call pickup tickets; the reply window does.
    assert await clerk.call_next(5) is None
    called = await reply.call_next(8)
    assert called is not None
    assert (called["id"], called["window"]) == (pickup["id"], 8)
    await reply.start(8)
    done = await reply.finish(8)
    assert done["ticket"]["state"] == "done"
    assert "case" not in done
    assert (await reply.rate(8, 5))["rating"] == 5
    with pytest.raises(QcallApiError) as collected:
        await kiosk.issue_ticket("case_pickup", case_code=case["pickup_code"])
    assert (collected.value.status, collected.value.code) == (409, "case_state")
    assert (await display.state())["waiting"]["case_pickup"] == 0
    await clerk.close_window(5)
    await reply.close_window(8)


async def test_no_show_then_reactivate(
    connect: Connect, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c6")
    await clerk.open_window(6)
    ticket = await kiosk.issue_ticket("policy_consult")
    assert ticket["number"].startswith("Z")
    await clerk.call_next(6)
    gone = await clerk.no_show(6)
    assert gone["state"] == "no_show"
    assert window_of(await display.state(), 6)["state"] == "idle"
    assert await clerk.call_next(6) is None

    back = await clerk.reactivate(ticket["id"], "first")
    assert back["state"] == "waiting"
    assert (await display.state())["waiting"]["policy_consult"] == 1
    with pytest.raises(QcallApiError) as waiting:
        await clerk.reactivate(ticket["id"])
    assert (waiting.value.status, waiting.value.code) == (409, "invalid_transition")
    again = await clerk.call_next(6)
    assert again is not None
    assert again["id"] == ticket["id"]
    await clerk.start(6)
    await clerk.finish(6)
    await clerk.close_window(6)


async def test_cancel_by_staff_and_through_the_tracking_link(
    connect: Connect, hub: HubProcess, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c7")
    await clerk.open_window(7)
    by_staff = await kiosk.issue_ticket("residence_permit")
    by_resident = await kiosk.issue_ticket("residence_registration", priority=True)
    assert (await clerk.cancel(by_staff["id"]))["state"] == "cancelled"
    async with QcallClient(hub.url) as anonymous:
        result = await anonymous.cancel_tracked(by_resident["track_token"])
        assert result == {"number": by_resident["number"], "state": "cancelled"}
        assert (await anonymous.track(by_resident["track_token"]))["state"] == "cancelled"
    assert waiting_total(await display.state()) == 0
    assert await clerk.call_next(7) is None
    await clerk.close_window(7)


async def test_pause_resume_and_close(
    connect: Connect, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c1")
    await clerk.open_window(1)
    paused = await clerk.pause(1, "午休")
    assert (paused["state"], paused["pause_reason"]) == ("paused", "午休")
    assert window_of(await display.state(), 1)["pause_reason"] == "午休"
    ticket = await kiosk.issue_ticket("social_card")
    with pytest.raises(QcallApiError) as refused:
        await clerk.call_next(1)
    assert (refused.value.status, refused.value.code) == (409, "paused")
    resumed = await clerk.resume(1)
    assert (resumed["state"], resumed["pause_reason"]) == ("idle", None)
    await clerk.call_next(1)
    with pytest.raises(QcallApiError) as busy:
        await clerk.close_window(1)
    assert (busy.value.status, busy.value.code) == (409, "window_busy")
    await clerk.finish(1)
    assert (await kiosk.ticket(ticket["id"]))["state"] == "done"
    assert (await clerk.close_window(1))["state"] == "closed"
    with pytest.raises(QcallApiError) as closed:
        await clerk.call_next(1)
    assert (closed.value.status, closed.value.code) == (409, "window_closed")


async def test_inquiry_log(connect: Connect) -> None:
    clerk = await connect(staff="c2")
    before = (await clerk.state())["seq"]
    result = await clerk.log_inquiry(
        "咨询居住证办理材料", service="residence_permit", referred_to="7号窗口"
    )
    assert result["seq"] == before + 1


async def test_daily_report_json_and_csv(
    connect: Connect, hub: HubProcess, kiosk: QcallClient, display: QcallClient
) -> None:
    clerk = await connect(staff="c4")
    await clerk.open_window(4)
    served = await kiosk.issue_ticket("birth_registration")
    absent = await kiosk.issue_ticket("birth_registration", priority=True)
    assert (await clerk.call_next(4) or {}).get("id") == absent["id"]  # priority lane first
    await clerk.no_show(4)
    assert (await clerk.call_next(4) or {}).get("id") == served["id"]
    await clerk.start(4)
    await clerk.finish(4)
    await clerk.rate(4, 4)
    await clerk.close_window(4)
    today = dt.date.fromisoformat((await display.state())["day"] or "")

    supervisor = await connect(staff=SUPERVISOR)
    report = await supervisor.daily_report()
    assert report["day"] == today.isoformat()
    assert report["day"] == (await supervisor.daily_report(today))["day"]
    row = next(s for s in report["services"] if s["id"] == "birth_registration")
    assert (row["issued"], row["priority_issued"], row["called"]) == (2, 1, 2)
    assert (row["served"], row["done"], row["no_show"]) == (1, 1, 1)
    assert row["ratings"]["count"] == 1
    assert row["ratings"]["mean"] == 4
    assert report["total"]["issued"] == sum(s["issued"] for s in report["services"])
    assert report["total"]["issued"] >= 2
    window = next(w for w in report["windows"] if w["number"] == 4)
    assert window["called"] >= 2
    assert any(member["id"] == "c4" for member in report["staff"])

    text = await supervisor.daily_report(today, fmt="csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert any(today.isoformat() in r for r in rows)
    header = next(r for r in rows if "业务编号" in r)
    line = next(r for r in rows if r and r[0] == "birth_registration")
    assert line[header.index("取号")] == "2"
    english = await connect(supervisor.token, lang="en")
    english_rows = list(csv.reader(io.StringIO(await english.daily_report(today, fmt="csv"))))
    english_header = next(r for r in english_rows if "Service id" in r)
    english_line = next(r for r in english_rows if r and r[0] == "birth_registration")
    assert english_line[english_header.index("Issued")] == "2"

    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{hub.url}/api/v1/reports/daily",
            params={"date": today.isoformat(), "format": "csv"},
            headers={"Authorization": f"Bearer {supervisor.token}"},
        ) as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
