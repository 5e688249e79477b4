"""Report routes against a real hub: formats, periods, scopes, the assessment, charts, errors."""

from __future__ import annotations

import csv
import datetime as dt
import io
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
import openpyxl
import pytest

from qcall.client import QcallClient
from tests.functional.conftest import SUPERVISOR, Connect, HubProcess

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
async def today(connect: Connect, kiosk: QcallClient, display: QcallClient) -> dt.date:
    """A little of today at window 3: two tickets served and rated, one back-office case."""
    clerk = await connect(staff="c3")
    await clerk.open_window(3)
    for _ in range(2):
        await kiosk.issue_ticket("social_card")
    assert await clerk.call_next(3) is not None
    await clerk.finish(3)
    await clerk.rate(3, 5)
    assert await clerk.call_next(3) is not None
    await clerk.finish(3, "back_office")
    await clerk.rate(3, 2)
    await clerk.close_window(3)
    return dt.date.fromisoformat((await display.state())["day"] or "")


async def get(
    hub: HubProcess, path: str, params: dict[str, str] | None = None, *, staff: str = SUPERVISOR,
    lang: str = "zh",
) -> tuple[int, str, bytes, aiohttp.typedefs.LooseHeaders]:  # fmt: skip
    headers = {"Authorization": f"Bearer {hub.session_token(staff)}", "Accept-Language": lang}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{hub.url}/api/v1/reports/{path}", params=params, headers=headers) as r,
    ):
        return r.status, r.content_type, await r.read(), r.headers


async def get_json(hub: HubProcess, path: str, **params: str) -> Any:
    import json

    status, kind, body, _ = await get(hub, path, params)
    assert (status, kind) == (200, "application/json"), body
    return json.loads(body)


async def test_day_month_and_range_agree(hub: HubProcess, today: dt.date) -> None:
    daily = await get_json(hub, "daily")
    assert (daily["kind"], daily["day"], daily["status"]) == ("daily", today.isoformat(), "open")
    card = next(s for s in daily["services"] if s["id"] == "social_card")
    assert (card["issued"], card["served"], card["back_office"]) == (2, 2, 1)
    assert card["ratings"]["satisfaction_pct"] == 50.0
    c3 = next(m for m in daily["staff"] if m["id"] == "c3")
    assert c3["name"] == "测试c3"  # staff names beside ids
    monthly = await get_json(hub, "monthly", month=f"{today:%Y-%m}")
    assert monthly["from"] == today.replace(day=1).isoformat()
    [row] = [d for d in monthly["days"] if d["day"] == today.isoformat()]
    assert row["issued"] == daily["total"]["issued"]
    ranged = await get_json(hub, "range", **{"from": today.isoformat(), "to": today.isoformat()})
    assert ranged["total"] == daily["total"]
    narrowed = await get_json(hub, "daily", window="3")
    assert narrowed["scope"] == {"window": 3}
    assert narrowed["total"]["served"] == 2
    assert sum(h["arrivals"] for h in daily["hours"]) == daily["total"]["issued"]


async def test_csv_and_xlsx_downloads(hub: HubProcess, today: dt.date) -> None:
    status, kind, body, headers = await get(hub, "monthly", {"format": "csv"})
    assert (status, kind) == (200, "text/csv")
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM for Excel
    assert f"qcall-monthly-{today:%Y-%m}.csv" in headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["月报"]
    status, kind, body, headers = await get(hub, "monthly", {"format": "xlsx", "lang": "en"})
    assert (status, kind) == (200, XLSX)
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    assert book.sheetnames[:3] == ["Monthly report", "Total", "By day"]
    header = [c.value for c in next(book["By service"].iter_rows(min_row=2, max_row=2))]
    assert header[:2] == ["Service id", "Service (zh)"]
    book.close()


async def test_assessment(hub: HubProcess, today: dt.date) -> None:
    sheet = await get_json(hub, "assessment")
    assert sheet["weights"] == {"served": 40, "satisfaction": 30, "wait_on_target": 10,
                                "cases_on_time": 10, "inquiries": 10}  # fmt: skip
    c3 = next(m for m in sheet["staff"] if m["id"] == "c3")
    assert c3["criteria"]["satisfaction"] == {"value": 50.0, "score": 50.0}
    assert c3["name"] == "测试c3"
    status, kind, body, _ = await get(hub, "assessment", {"format": "xlsx"})
    assert (status, kind) == (200, XLSX)
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    assert book.sheetnames == ["统一考核", "考核表"]
    book.close()


@pytest.mark.parametrize("chart", ["hourly", "ratings", "trend"])
async def test_charts_are_svg(hub: HubProcess, today: dt.date, chart: str) -> None:
    status, kind, body, headers = await get(hub, f"charts/{chart}")
    assert (status, kind) == (200, "image/svg+xml")
    assert ET.fromstring(body).tag == "{http://www.w3.org/2000/svg}svg"
    assert "private" in headers["Cache-Control"]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("monthly", {"month": "2026-13"}, 400, "bad_month"),
        ("range", {"from": "2026-11-02"}, 400, "bad_range"),
        ("range", {"from": "2026-11-02", "to": "2026-11-01"}, 400, "bad_range"),
        ("range", {"from": "2024-01-01", "to": "2026-01-01"}, 400, "bad_range"),
        ("daily", {"format": "pdf"}, 400, "bad_format"),
        ("daily", {"lang": "fr"}, 400, "bad_lang"),
        ("daily", {"service": "no_such"}, 404, "no_service"),
        ("daily", {"window": "99"}, 404, "no_window"),
        ("daily", {"window": "3", "staff": "c3"}, 400, "bad_scope"),
        ("charts/pie", {}, 404, "no_chart"),
    ],
)
async def test_bad_requests_are_refused_in_both_languages(
    hub: HubProcess, path: str, params: dict[str, str], status: int, code: str
) -> None:
    import json

    for lang in ("zh", "en"):
        got, _, body, _ = await get(hub, path, params, lang=lang)
        error = json.loads(body)["error"]
        assert (got, error["code"]) == (status, code)
        has_chinese = any("\u4e00" <= ch <= "\u9fff" for ch in error["message"])
        assert has_chinese == (lang == "zh"), error["message"]


async def test_a_clerk_sees_no_reports(hub: HubProcess) -> None:
    for path in ("daily", "monthly", "assessment", "charts/trend"):
        status, _, _, _ = await get(hub, path, staff="c1")
        assert status == 403


async def test_the_typed_client_reads_reports(connect: Connect, today: dt.date) -> None:
    supervisor = await connect(staff=SUPERVISOR)
    month = await supervisor.report("monthly", month=f"{today:%Y-%m}")
    ranged = await supervisor.report("range", first=today, last=today, window=3)
    assert ranged["scope"] == {"window": 3}
    assert ranged["total"]["served"] <= month["total"]["served"]
    book = openpyxl.load_workbook(
        io.BytesIO(await supervisor.report_export("daily", "xlsx", day=today)), read_only=True
    )
    assert book.sheetnames[0] == "日报"
    book.close()
    text = (await supervisor.report_export("daily", "csv", lang="en")).decode("utf-8-sig")
    assert text.startswith("Daily report")
    sheet = await supervisor.assessment(f"{today:%Y-%m}")
    assert any(member["id"] == "c3" for member in sheet["staff"])
    svg = await supervisor.report_chart("ratings", day=today, lang="en")
    assert "Ratings by window" in svg
