"""Server-rendered pages: escaping and the states the tracking page shows."""

from __future__ import annotations

import jinja2
import pytest

from qcall.web import render

BASE = {
    "lang": "zh",
    "center_zh": "<b>中心</b>",
    "center_en": "Center & Co",
    "found": True,
    "number": "A001",
    "service_zh": "业务<script>x()</script>",
    "service_en": "Service",
    "ahead": 3,
    "wait_min": 9,
    "window": 4,
    "issued": "09:30",
    "refresh": 15,
    "cancel_path": "/t/abc/cancel",
}


def test_everything_from_data_is_escaped() -> None:
    html = render("track.html", **BASE, state="waiting")
    assert "&lt;b&gt;中心&lt;/b&gt;" in html
    assert "Center &amp; Co" in html
    assert "<script>" not in html
    assert "&lt;script&gt;x()&lt;/script&gt;" in html


@pytest.mark.parametrize(
    ("state", "zh", "en", "refresh"),
    [
        ("waiting", "前面还有", "3 ahead of you", True),
        ("called", "请到", "Please go to window 4 now", True),
        ("serving", "正在 4 号窗口办理", "Being served at window 4", True),
        ("held", "已挂起", "On hold", True),
        ("no_show", "已过号", "please ask at the desk", False),
        ("done", "已办结", "Finished", False),
        ("cancelled", "已取消", "Cancelled", False),
        ("expired", "号码已失效", "no longer valid", False),
    ],
)
def test_each_state_reads_in_both_languages(state: str, zh: str, en: str, refresh: bool) -> None:
    html = render("track.html", **(BASE | {"refresh": 15 if refresh else 0}), state=state)
    assert zh in html
    assert en in html
    assert ('http-equiv="refresh"' in html) is refresh
    assert ("/t/abc/cancel" in html) is (state == "waiting")


def test_a_missing_value_is_an_error_not_a_blank() -> None:
    context = dict(BASE)
    del context["number"]
    with pytest.raises(jinja2.UndefinedError, match="number"):
        render("track.html", **context, state="waiting")
