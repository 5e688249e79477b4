"""Bad input gets a clear JSON error in the caller's language and changes nothing.

A module-wide scene puts the hall in a known state (a ticket being served at window 1, a
finished ticket awaiting its rating and a ready case at window 2, window 3 paused, one ticket
waiting); then each bad request is sent in Chinese (the default) and in English, and the hall
state, ``seq`` included, must be exactly what it was.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import pytest

from qcall.client import QcallClient
from tests.functional.conftest import PIN, SUPERVISOR, HubProcess

CJK: Final = re.compile(r"[\u4e00-\u9fff]")
MAX_BODY_BYTES: Final = 65536  # hub.max_body_bytes (default, not set in demo.toml)
LOGIN_MAX_FAILURES: Final = 5  # wrong PINs per staff member per 15 minutes


@dataclass(frozen=True)
class Scene:
    """Ids of the module's prepared hall."""

    serving: dict[str, Any]  # at window 1 (c1)
    done: dict[str, Any]  # finished at window 2 (c2)
    back_office: dict[str, Any]  # finished at window 2 (c2), rating pending
    case: dict[str, Any]  # ready
    waiting: dict[str, Any]


async def _prepare(hub: HubProcess) -> Scene:
    async with (
        QcallClient(hub.url, hub.token("kiosk")) as kiosk,
        QcallClient(hub.url, hub.session_token("c1")) as c1,
        QcallClient(hub.url, hub.session_token("c2")) as c2,
        QcallClient(hub.url, hub.session_token("c3")) as c3,
    ):
        await c1.open_window(1)
        await c2.open_window(2)
        await c3.open_window(3)
        serving = await kiosk.issue_ticket("social_card")
        assert (await c1.call_next(1) or {}).get("id") == serving["id"]
        await c1.start(1)
        done = await kiosk.issue_ticket("retirement_review")
        assert (await c2.call_next(2) or {}).get("id") == done["id"]
        await c2.finish(2)
        back_office = await kiosk.issue_ticket("retirement_review")
        assert (await c2.call_next(2) or {}).get("id") == back_office["id"]
        await c2.start(2)
        case = (await c2.finish(2, "back_office"))["case"]
        await c2.case_ready(case["id"])
        await c3.pause(3, "培训")
        waiting = await kiosk.issue_ticket("senior_allowance")
        return Scene(serving, done, back_office, case, waiting)


@pytest.fixture(scope="module")
def scene(hub: HubProcess) -> Scene:
    """The prepared hall (set up once, in its own event loop)."""
    return asyncio.run(_prepare(hub))


@dataclass(frozen=True)
class Bad:
    """One bad request and the error it must get."""

    name: str
    caller: str  # kiosk | display | c1..c8 | supervisor | anonymous
    method: str
    path: str  # may use {serving}, {done}, {case}, {waiting_number}, ... from the scene
    body: Any = None  # dict → JSON; bytes → sent as is; None → no body
    status: int = 400
    code: str = "invalid_body"


_OVERSIZED = b'{"service": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
_PAST = (dt.date.today() - dt.timedelta(days=3)).isoformat()  # any day in the past

CASES: Final = (
    # malformed JSON
    Bad("malformed json", "kiosk", "POST", "/api/v1/tickets", b'{"service": ', code="bad_json"),
    Bad("not utf-8", "kiosk", "POST", "/api/v1/tickets", b"\xff\xfe{}", code="bad_json"),
    Bad("json array", "kiosk", "POST", "/api/v1/tickets", b'["social_card"]'),
    Bad("json string", "c2", "POST", "/api/v1/windows/2/rating", b'"5"'),
    # wrong types (never coerced)
    Bad("score as string", "c2", "POST", "/api/v1/windows/2/rating", {"score": "5"}),
    Bad("score as float", "c2", "POST", "/api/v1/windows/2/rating", {"score": 4.5}),
    Bad("score as bool", "c2", "POST", "/api/v1/windows/2/rating", {"score": True}),
    Bad("score out of range", "c2", "POST", "/api/v1/windows/2/rating", {"score": 6}),
    Bad("score zero", "c2", "POST", "/api/v1/windows/2/rating", {"score": 0}),
    Bad("service as number", "kiosk", "POST", "/api/v1/tickets", {"service": 7}),
    Bad(
        "priority as string",
        "kiosk",
        "POST",
        "/api/v1/tickets",
        {"service": "social_card", "priority": "yes"},
    ),
    Bad("unknown channel", "kiosk", "POST", "/api/v1/tickets", {"service": "x", "channel": "fax"}),
    Bad("window as string", "c1", "POST", "/api/v1/windows/1/transfer", {"window": "4"}),
    Bad("unknown outcome", "c1", "POST", "/api/v1/windows/1/finish", {"outcome": "maybe"}),
    Bad(
        "bad promised date",
        "c1",
        "POST",
        "/api/v1/windows/1/finish",
        {"outcome": "back_office", "promised_date": "tomorrow"},
    ),
    Bad("malformed number", "c2", "POST", "/api/v1/windows/2/call", {"number": "A 1"}),
    Bad("unknown position", "c2", "POST", "/api/v1/tickets/{done}/reactivate", {"position": 1}),
    # unknown fields
    Bad(
        "unknown field on issue",
        "kiosk",
        "POST",
        "/api/v1/tickets",
        {"service": "social_card", "colour": "red"},
    ),
    Bad("unknown field on rating", "c2", "POST", "/api/v1/windows/2/rating", {"score": 5, "c": 1}),
    Bad(
        "unknown field on login",
        "anonymous",
        "POST",
        "/api/v1/login",
        {"staff": "c1", "pin": PIN, "remember": True},
    ),
    Bad("unknown field on pause", "c1", "POST", "/api/v1/windows/1/pause", {"why": "午休"}),
    # missing fields
    Bad("empty issue", "kiosk", "POST", "/api/v1/tickets", {}),
    Bad("no body on issue", "kiosk", "POST", "/api/v1/tickets", None),
    Bad("empty rating", "c2", "POST", "/api/v1/windows/2/rating", {}),
    Bad("login without pin", "anonymous", "POST", "/api/v1/login", {"staff": "c1"}),
    Bad("transfer without target", "c1", "POST", "/api/v1/windows/1/transfer", {}),
    Bad(
        "transfer with two targets",
        "c1",
        "POST",
        "/api/v1/windows/1/transfer",
        {"service": "ltc_insurance", "window": 4},
    ),
    Bad("callback without ticket", "c2", "POST", "/api/v1/windows/2/callback", {}),
    Bad("finish without outcome", "c1", "POST", "/api/v1/windows/1/finish", {}),
    Bad("inquiry without topic", "c2", "POST", "/api/v1/inquiries", {"note": "x"}),
    # impossible values the engine refuses
    Bad(
        "case code on an intake ticket",
        "kiosk",
        "POST",
        "/api/v1/tickets",
        {"service": "social_card", "case_code": "123456"},
        400,
        "bad_request",
    ),
    Bad(
        "promised date in the past",
        "c1",
        "POST",
        "/api/v1/windows/1/finish",
        {"outcome": "back_office", "promised_date": _PAST},
        400,
        "bad_request",
    ),
    Bad(
        "bad report date",
        "supervisor",
        "GET",
        "/api/v1/reports/daily?date=2026-13-01",
        None,
        400,
        "bad_date",
    ),
    Bad(
        "bad report format",
        "supervisor",
        "GET",
        "/api/v1/reports/daily?format=xml",
        None,
        400,
        "bad_format",
    ),
    Bad(
        "wrong pin",
        "anonymous",
        "POST",
        "/api/v1/login",
        {"staff": "nobody", "pin": "000000"},
        401,
        "login_failed",
    ),
    # no or wrong credentials
    Bad(
        "no token",
        "anonymous",
        "POST",
        "/api/v1/tickets",
        {"service": "social_card"},
        401,
        "unauthorized",
    ),
    Bad("wrong role", "display", "POST", "/api/v1/windows/1/next", None, 403, "forbidden_role"),
    Bad(
        "another clerk's window",
        "c4",
        "POST",
        "/api/v1/windows/1/finish",
        {"outcome": "done"},
        403,
        "not_your_window",
    ),
    # unknown ids
    Bad("unknown ticket", "kiosk", "GET", "/api/v1/tickets/20990101-A001", None, 404, "no_ticket"),
    Bad(
        "unknown service",
        "kiosk",
        "POST",
        "/api/v1/tickets",
        {"service": "no_such_service"},
        404,
        "no_service",
    ),
    Bad("unknown window", "c4", "POST", "/api/v1/windows/99/open", None, 404, "no_window"),
    Bad("unknown case", "c2", "POST", "/api/v1/cases/C20990101-0001/ready", None, 404, "no_case"),
    Bad(
        "reactivate unknown",
        "c2",
        "POST",
        "/api/v1/tickets/nope/reactivate",
        {},
        404,
        "no_ticket",
    ),
    Bad("cancel unknown", "c2", "POST", "/api/v1/tickets/nope/cancel", None, 404, "no_ticket"),
    Bad(
        "callback unknown",
        "c2",
        "POST",
        "/api/v1/windows/2/callback",
        {"ticket": "Z999"},
        404,
        "no_ticket",
    ),
    Bad(
        "call unknown", "c2", "POST", "/api/v1/windows/2/call", {"number": "A999"}, 404, "no_ticket"
    ),
    Bad(
        "transfer to unknown service",
        "c1",
        "POST",
        "/api/v1/windows/1/transfer",
        {"service": "no_such"},
        404,
        "no_service",
    ),
    Bad(
        "transfer to unknown window",
        "c1",
        "POST",
        "/api/v1/windows/1/transfer",
        {"window": 99},
        404,
        "no_window",
    ),
    Bad("unknown track token", "anonymous", "GET", "/api/v1/track/nope", None, 404, "no_ticket"),
    Bad("unknown route", "kiosk", "GET", "/api/v1/no-such-route", None, 404, "no_route"),
    Bad("window not a number", "c1", "POST", "/api/v1/windows/one/next", None, 404, "no_route"),
    Bad("wrong method", "kiosk", "DELETE", "/api/v1/tickets", None, 405, "bad_method"),
    # oversized bodies
    Bad("oversized issue", "kiosk", "POST", "/api/v1/tickets", _OVERSIZED, 413, "too_large"),
    Bad("oversized login", "anonymous", "POST", "/api/v1/login", _OVERSIZED, 413, "too_large"),
    # illegal transitions
    Bad(
        "recall while serving",
        "c1",
        "POST",
        "/api/v1/windows/1/recall",
        None,
        409,
        "invalid_transition",
    ),
    Bad(
        "no-show while serving",
        "c1",
        "POST",
        "/api/v1/windows/1/no-show",
        None,
        409,
        "invalid_transition",
    ),
    Bad("start twice", "c1", "POST", "/api/v1/windows/1/start", None, 409, "invalid_transition"),
    Bad("close while busy", "c1", "POST", "/api/v1/windows/1/close", None, 409, "window_busy"),
    Bad("pause while busy", "c1", "POST", "/api/v1/windows/1/pause", {}, 409, "window_busy"),
    Bad("resume unpaused", "c1", "POST", "/api/v1/windows/1/resume", None, 409, "not_paused"),
    Bad(
        "rate nothing",
        "c1",
        "POST",
        "/api/v1/windows/1/rating",
        {"score": 5},
        409,
        "nothing_to_rate",
    ),
    Bad(
        "start with nobody", "c2", "POST", "/api/v1/windows/2/start", None, 409, "no_current_ticket"
    ),
    Bad(
        "finish with nobody",
        "c2",
        "POST",
        "/api/v1/windows/2/finish",
        {"outcome": "done"},
        409,
        "no_current_ticket",
    ),
    Bad("hold with nobody", "c2", "POST", "/api/v1/windows/2/hold", None, 409, "no_current_ticket"),
    Bad("next while paused", "c3", "POST", "/api/v1/windows/3/next", None, 409, "paused"),
    Bad("pause twice", "c3", "POST", "/api/v1/windows/3/pause", {}, 409, "paused"),
    Bad(
        "next at a closed window",
        "c4",
        "POST",
        "/api/v1/windows/4/next",
        None,
        409,
        "window_closed",
    ),
    Bad("open a second window", "c2", "POST", "/api/v1/windows/5/open", None, 409, "staff_busy"),
    Bad(
        "reactivate a done ticket",
        "c2",
        "POST",
        "/api/v1/tickets/{done}/reactivate",
        {},
        409,
        "invalid_transition",
    ),
    Bad(
        "cancel a ticket being served",
        "c2",
        "POST",
        "/api/v1/tickets/{serving}/cancel",
        None,
        409,
        "invalid_transition",
    ),
    Bad(
        "resident cancels a served ticket",
        "anonymous",
        "POST",
        "/api/v1/track/{serving_track}/cancel",
        None,
        409,
        "invalid_transition",
    ),
    Bad("case ready twice", "c2", "POST", "/api/v1/cases/{case}/ready", None, 409, "case_state"),
    Bad(
        "callback a ticket not held",
        "c2",
        "POST",
        "/api/v1/windows/2/callback",
        {"ticket": "{done_number}"},
        409,
        "not_held_here",
    ),
    Bad(
        "call a ticket being served",
        "c2",
        "POST",
        "/api/v1/windows/2/call",
        {"number": "{serving_number}"},
        409,
        "invalid_transition",
    ),
    Bad(
        "transfer to a window that does not serve it",
        "c1",
        "POST",
        "/api/v1/windows/1/transfer",
        {"window": 7},
        409,
        "not_served_here",
    ),
    Bad(
        "transfer intake to pickup",
        "c1",
        "POST",
        "/api/v1/windows/1/transfer",
        {"service": "case_pickup"},
        409,
        "kind_mismatch",
    ),
    Bad(
        "pickup with an unknown code",
        "kiosk",
        "POST",
        "/api/v1/tickets",
        {"service": "case_pickup", "case_code": "000000"},
        404,
        "no_case",
    ),
)


def _fill(value: Any, scene: Scene) -> Any:
    names = {
        "serving": scene.serving["id"],
        "serving_number": scene.serving["number"],
        "serving_track": scene.serving["track_token"],
        "done": scene.done["id"],
        "done_number": scene.done["number"],
        "case": scene.case["id"],
        "pickup_code": scene.case["pickup_code"],
        "waiting_number": scene.waiting["number"],
    }
    if isinstance(value, str):
        return value.format(**names) if "{" in value else value
    if isinstance(value, dict):
        return {k: _fill(v, scene) for k, v in value.items()}
    return value


def _token(hub: HubProcess, caller: str) -> str | None:
    if caller == "anonymous":
        return None
    if caller in ("kiosk", "display"):
        return hub.token(caller)
    return hub.session_token(SUPERVISOR if caller == "supervisor" else caller)


async def _send(
    session: aiohttp.ClientSession, hub: HubProcess, bad: Bad, scene: Scene, lang: str | None
) -> tuple[int, str, dict[str, Any]]:
    headers = {}
    token = _token(hub, bad.caller)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if lang:
        headers["Accept-Language"] = lang
    kwargs: dict[str, Any] = {"headers": headers}
    if isinstance(bad.body, bytes):
        kwargs["data"] = bad.body
        headers["Content-Type"] = "application/json"
    elif bad.body is not None:
        kwargs["json"] = _fill(bad.body, scene)
    url = hub.url + _fill(bad.path, scene)
    async with session.request(bad.method, url, **kwargs) as response:
        return response.status, response.content_type, await response.json(content_type=None)


async def _state(session: aiohttp.ClientSession, hub: HubProcess) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {hub.token('display')}"}
    async with session.get(f"{hub.url}/api/v1/state", headers=headers) as response:
        assert response.status == 200
        state: dict[str, Any] = await response.json()
        return state


@pytest.mark.parametrize("bad", CASES, ids=[bad.name for bad in CASES])
async def test_bad_request_is_refused_clearly_and_changes_nothing(
    bad: Bad, hub: HubProcess, scene: Scene
) -> None:
    async with aiohttp.ClientSession() as session:
        before = await _state(session, hub)
        messages = {}
        for lang in (None, "en"):
            status, content_type, body = await _send(session, hub, bad, scene, lang)
            assert (status, content_type) == (bad.status, "application/json"), body
            assert set(body) == {"error"}, body
            error = body["error"]
            assert error["code"] == bad.code, error
            assert isinstance(error["message"], str)
            assert error["message"].strip()
            messages[lang or "zh"] = error["message"]
        assert CJK.search(messages["zh"]), f"not Chinese by default: {messages['zh']!r}"
        assert not CJK.search(messages["en"]), f"not English: {messages['en']!r}"
        assert await _state(session, hub) == before


async def test_validation_errors_name_the_field(hub: HubProcess, scene: Scene) -> None:
    bad = Bad("score as string", "c2", "POST", "/api/v1/windows/2/rating", {"score": "5"})
    async with aiohttp.ClientSession() as session:
        _status, _type, body = await _send(session, hub, bad, scene, "en")
    problems = body["error"]["details"]["problems"]
    assert [p["field"] for p in problems] == ["score"]
    assert "score" in body["error"]["message"]


async def test_the_hall_still_works_after_the_bad_requests(hub: HubProcess, scene: Scene) -> None:
    async with (
        QcallClient(hub.url, hub.session_token("c1")) as c1,
        QcallClient(hub.url, hub.session_token("c2")) as c2,
        QcallClient(hub.url, hub.token("kiosk")) as kiosk,
    ):
        # The rating that every bad rating request tried to give is still open, once.
        assert (await c2.rate(2, 5))["id"] == scene.back_office["id"]
        assert (await kiosk.ticket(scene.serving["id"]))["state"] == "serving"
        finished = await c1.finish(1)
        assert finished["ticket"]["id"] == scene.serving["id"]
        called = await c1.call_next(1)
        assert called is not None
        assert called["id"] == scene.waiting["id"]
        assert (await kiosk.ticket(scene.waiting["id"]))["state"] == "called"


async def test_repeated_wrong_pins_lock_the_account_with_a_clear_message(hub: HubProcess) -> None:
    url = f"{hub.url}/api/v1/login"
    async with aiohttp.ClientSession() as session:
        for attempt in range(LOGIN_MAX_FAILURES):
            async with session.post(url, json={"staff": "c8", "pin": "999999"}) as response:
                assert response.status == 401, attempt
                assert (await response.json())["error"]["code"] == "login_failed"
        # Now even the right PIN is refused until the window passes, in either language.
        for lang, script in (("zh", CJK), ("en", re.compile(r"15 minutes"))):
            headers = {"Accept-Language": lang}
            async with session.post(
                url, json={"staff": "c8", "pin": PIN}, headers=headers
            ) as response:
                assert response.status == 429
                error = (await response.json())["error"]
                assert error["code"] == "login_throttled"
                assert script.search(error["message"]), error
        # Other staff are not affected.
        async with session.post(url, json={"staff": "c7", "pin": PIN}) as response:
            assert response.status == 200
