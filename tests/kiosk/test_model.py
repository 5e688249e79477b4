"""The kiosk model without pygame, a hub or a printer: presses, answers and time."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest

from kiosk.catalog import KioskCatalog, Text
from kiosk.model import (
    IDLE_TIMEOUT_S,
    IDLE_WARNING_S,
    PICKUP_CODE_MAX,
    RESULT_HOLD_S,
    Act,
    Action,
    IssueRequest,
    IssueResult,
    KioskModel,
    PrinterView,
    Screen,
)


def _service(sid: str, **extra: object) -> dict[str, object]:
    return {
        "id": sid,
        "department": "hr",
        "name_zh": f"业务{sid}",
        "name_en": f"Service {sid}",
        "prefix": "A",
        "kind": "intake",
        "priority_lane": True,
        "waiting": 3,
        "estimated_wait_s": 600,
        "available": True,
        "served_now": True,
        "notice": {"materials": ["身份证"], "conditions": "本市户籍"},
        **extra,
    }


CATALOG = KioskCatalog.from_api(
    {  # type: ignore[typeddict-item]
        "center": {"name_zh": "测试中心", "name_en": "Test Center", "ticket_rules": ["过号重取"]},
        "day": {"date": "2026-11-30", "day_type": "weekday", "opens": None, "closes": None},
        "departments": [
            {"id": "hr", "name_zh": "人保", "name_en": "HR"},
            {"id": "empty", "name_zh": "无业务部门", "name_en": "No services"},
        ],
        "services": [
            _service("a"),
            _service(
                "full",
                available=False,
                served_now=False,
                unavailable_reason="daily_cap_reached",
                message={"zh": "今日已满", "en": "Full today"},
                opens_at="2026-12-01T08:30:00+08:00",
            ),
            _service("pick", kind="pickup", department="center"),
        ],
    }
)


def _model() -> KioskModel:
    keys = itertools.count(1)
    model = KioskModel(key_factory=lambda: f"key-{next(keys)}")
    model.catalog_loaded(CATALOG)
    return model


def _to_notice(model: KioskModel, now: float = 0.0, service: str = "a") -> None:
    for action in (Action(Act.START), Action(Act.DEPARTMENT, "hr"), Action(Act.SERVICE, service)):
        assert model.press(action, now) is None
    assert model.screen is Screen.NOTICE


def test_catalog_values() -> None:
    assert [d.id for d in CATALOG.departments] == ["hr"]  # departments without intake hidden
    assert CATALOG.pickup_service() is not None
    assert CATALOG.rules == ("过号重取",)
    full = CATALOG.service("full")
    assert full is not None
    assert full.opens_at == dt.datetime(
        2026, 12, 1, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=8))
    )
    assert full.notice.materials == ("身份证",)


def test_one_press_one_request_and_a_second_press_gives_nothing() -> None:
    model = _model()
    _to_notice(model)
    request = model.press(Action(Act.TAKE), 1.0)
    assert request == IssueRequest("key-1", "a", False, None)
    assert model.screen is Screen.ISSUING
    # A double tap and any other press while issuing are ignored.
    assert model.press(Action(Act.TAKE), 1.1) is None
    assert model.press(Action(Act.PRIORITY), 1.2) is None
    assert model.press(Action(Act.HOME), 1.3) is None
    assert model.screen is Screen.ISSUING
    result = IssueResult("A001", Text("业务a", "Service a"), 3, 600, "http://x/t/1", True)
    model.issued(result, 2.0)
    assert (model.screen, model.result, model.pending) == (Screen.RESULT, result, None)
    # A new press is a new key.
    model.press(Action(Act.DONE), 3.0)
    _to_notice(model, 3.0)
    again = model.press(Action(Act.PRIORITY), 3.5)
    assert again == IssueRequest("key-2", "a", True, None)


def test_greyed_service_cannot_be_taken_and_says_why() -> None:
    model = _model()
    _to_notice(model, service="full")
    assert model.press(Action(Act.TAKE), 1.0) is None
    assert model.screen is Screen.MESSAGE
    assert model.message == Text("今日已满", "Full today")
    model.press(Action(Act.BACK), 2.0)
    assert model.screen is Screen.NOTICE


def test_hub_down_refuses_before_anything_is_sent() -> None:
    model = _model()
    _to_notice(model)
    model.hub_lost()
    assert model.press(Action(Act.TAKE), 1.0) is None
    assert model.screen is Screen.MESSAGE
    assert model.message is not None
    assert "无法连接" in model.message.zh
    model.catalog_loaded(CATALOG)
    assert model.hub_online


@pytest.mark.parametrize(("fallback", "allowed"), [("show", True), ("refuse", False)])
def test_printer_down_follows_the_fallback(fallback: str, allowed: bool) -> None:
    model = _model()
    model.fallback = fallback  # type: ignore[assignment]
    _to_notice(model)
    model.printer_changed(PrinterView(False, Text("缺纸", "Paper end")))
    request = model.press(Action(Act.TAKE), 1.0)
    assert (request is not None) is allowed
    assert model.screen is (Screen.ISSUING if allowed else Screen.MESSAGE)


def test_idle_warning_touch_extends_then_session_ends() -> None:
    model = _model()
    _to_notice(model, now=100.0)
    model.lang = "en"
    model.large = True
    assert model.idle_left(100.0 + IDLE_TIMEOUT_S - IDLE_WARNING_S - 1) is None
    assert model.idle_left(100.0 + IDLE_TIMEOUT_S - 10) == 10
    model.touch(100.0 + IDLE_TIMEOUT_S - 5)  # one touch extends
    model.tick(100.0 + IDLE_TIMEOUT_S + 1)
    assert model.screen is Screen.NOTICE
    model.tick(100.0 + 2 * IDLE_TIMEOUT_S)
    assert (model.screen, model.lang, model.large, model.service) == (
        Screen.WELCOME,
        "zh",
        False,
        None,
    )


def test_no_timeout_while_issuing_and_result_leaves_after_its_time() -> None:
    model = _model()
    _to_notice(model)
    model.press(Action(Act.TAKE), 0.0)
    model.tick(10 * IDLE_TIMEOUT_S)
    assert model.screen is Screen.ISSUING
    result = IssueResult("A001", Text("a", "a"), 0, None, "", False, Text("缺纸", "Paper end"))
    model.issued(result, 1000.0)
    assert model.result_left(1000.0) == RESULT_HOLD_S
    model.tick(1000.0 + RESULT_HOLD_S - 1)
    assert model.screen is Screen.RESULT
    model.tick(1000.0 + RESULT_HOLD_S)
    assert model.screen is Screen.WELCOME


def test_pickup_pad_and_wrong_code() -> None:
    model = _model()
    model.press(Action(Act.START), 0.0)
    model.press(Action(Act.PICKUP), 0.0)
    assert model.screen is Screen.PICKUP
    assert model.press(Action(Act.SUBMIT), 0.0) is None  # nothing entered yet
    for digit in "1234567890":
        model.press(Action(Act.DIGIT, digit), 0.0)
    assert model.pickup_code == "1234567890"[:PICKUP_CODE_MAX]
    model.press(Action(Act.ERASE), 0.0)
    model.press(Action(Act.DIGIT, "x"), 0.0)
    assert model.pickup_code == "1234567"
    request = model.press(Action(Act.SUBMIT), 0.0)
    assert request == IssueRequest("key-1", "pick", False, "1234567")
    model.issue_refused(Text("取件码无效", "Unknown pickup code"), 1.0, retry_code=True)
    assert (model.screen, model.error, model.pickup_code) == (
        Screen.PICKUP,
        Text("取件码无效", "Unknown pickup code"),
        "",
    )
    model.press(Action(Act.DIGIT, "9"), 2.0)
    assert model.error is None


def test_every_change_bumps_the_version() -> None:
    model = _model()
    seen = model.version
    model.press(Action(Act.LANG, "en"), 0.0)
    assert model.version > seen
    seen = model.version
    model.printer_changed(PrinterView())
    model.catalog_loaded(CATALOG)
    assert model.version == seen  # nothing changed
    model.scroll_by(50, 0)
    assert model.version == seen  # nothing to scroll


def test_the_kiosk_uses_only_the_public_client_and_shared_types() -> None:
    """kiosk/ talks to the hub through qcall.client; the engine, store and API stay the hub's."""
    import ast
    from pathlib import Path

    import kiosk

    allowed_qcall = {"qcall.client", "qcall.errors"}
    for path in Path(kiosk.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "qcall":
                    assert name in allowed_qcall, f"{path.name} imports {name}"
                assert name.split(".")[0] != "display", f"{path.name} imports {name}"


def test_settings_never_show_the_token() -> None:
    from kiosk.app import KioskSettings

    settings = KioskSettings("http://hub", "qc_secret-token", "tcp://127.0.0.1:9100")
    assert "qc_secret-token" not in repr(settings)
    assert settings.token == "qc_secret-token"


def test_texts_for_waits_reasons_and_when_to_come_back() -> None:
    from kiosk import texts

    tz = dt.timezone(dt.timedelta(hours=8))
    now = dt.datetime(2026, 11, 30, 17, 0, tzinfo=tz)  # a Monday
    tomorrow = dt.datetime(2026, 12, 1, 8, 30, tzinfo=tz)
    later = dt.datetime(2026, 12, 5, 8, 30, tzinfo=tz)
    assert texts.when_line(now.replace(hour=18), now, "zh") == "今天 18:00 起可取号"
    assert texts.when_line(tomorrow, now, "zh") == "明天 08:30 起可取号"
    assert texts.when_line(later, now, "zh") == "12月5日（周六） 08:30 起可取号"
    assert texts.when_line(tomorrow, now, "en") == "From 08:30 tomorrow"
    assert texts.when_line(later, now, "en") == "From 08:30 Sat 5 Dec"
    assert texts.when_line(None, now, "en") == ""
    full = CATALOG.service("full")
    assert full is not None
    assert texts.reason_line(full, now, "zh") == "今日已满 · 明天 08:30 起可取号"
    assert texts.reason_line(full, now, "en") == "Full today · From 08:30 tomorrow"
    assert texts.result_line(5, 900, "zh") == "前面还有 5 人，预计等候 15 分钟"
    assert texts.result_line(0, None, "en") == "0 ahead of you"
    a = CATALOG.service("a")
    assert a is not None
    assert texts.wait_line(a, "zh") == "等候 3 人 · 约 10 分钟"
    assert texts.closed_line(CATALOG, now, "zh") == ""  # one service is available
    assert texts.clock_line(now, "zh") == "2026年11月30日 星期一 17:00"


def test_the_clock_shows_the_centers_time_not_the_pcs() -> None:
    from kiosk.app import Kiosk, KioskSettings

    utc_noon = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
    kiosk = Kiosk(
        KioskSettings("http://hub", "t", "tcp://127.0.0.1:9"), wall_clock=lambda: utc_noon
    )
    assert kiosk._center_time() == utc_noon  # no catalog yet: the PC's clock
    kiosk.model.catalog_loaded(dataclasses.replace(CATALOG, timezone="Asia/Shanghai"))
    shown = kiosk._center_time()
    assert (shown.hour, shown.utcoffset()) == (20, dt.timedelta(hours=8))
    kiosk.model.catalog_loaded(dataclasses.replace(CATALOG, timezone="Mars/Olympus"))
    assert kiosk._center_time() == utc_noon  # an unknown zone is no reason to stop
