"""API v1 report routes (supervisor and admin): figures, the staff assessment, SVG charts.

Every route computes from the event log in the hub's report worker process (rendering
included), so a month's report never delays a call. Periods: ``date=YYYY-MM-DD`` (a day),
``month=YYYY-MM`` or ``from=…&to=…`` (at most ``MAX_RANGE_DAYS`` days); ``service=``,
``window=`` or ``staff=`` narrow the total, days and hours to one of them; ``format`` is
``json`` (default), ``csv`` (UTF-8 with a byte-order mark) or ``xlsx``; ``lang`` (``zh``,
``en``, ``both``) picks the headers of CSV, XLSX and charts (default: Accept-Language).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from qcall.api.routes import API, MANAGERS, Context, json_response, route
from qcall.errors import BadRequest, NotFound
from qcall.reports import CHARTS, LANGS, Scope, month_bounds
from qcall.reports.figures import ReportKind
from qcall.reports.worker import Job, Output, Result

# A year of days is what a director asks for; longer scans belong to an export, not a page.
MAX_RANGE_DAYS: Final = 366
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS: Final = ("json", "csv", "xlsx")


def _param(name: str, kind: str, description: str, enum: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if kind:
        schema["format"] = kind
    if enum:
        schema["enum"] = list(enum)
    return {"name": name, "in": "query", "description": description, "schema": schema}


_FORMAT = _param("format", "", "json (default), csv (UTF-8 with BOM) or xlsx", FORMATS)
_LANG = _param("lang", "", "headers' language (default: Accept-Language)", LANGS)
_SCOPE = (
    _param("service", "", "only this service's total, days and hours"),
    {
        "name": "window",
        "in": "query",
        "description": "only this window's total, days and hours",
        "schema": {"type": "integer"},
    },
    _param("staff", "", "only this staff member's total, days and hours"),
)
_DATE = _param("date", "date", "the service day (default: today)")
_MONTH = _param("month", "", "YYYY-MM (default: this month)")
_FROM = _param("from", "date", "first service day")
_TO = _param("to", "date", "last service day")
# Query parameters of each report route, for the OpenAPI document.
QUERY_PARAMETERS: Final[dict[str, list[dict[str, Any]]]] = {
    f"{API}/reports/daily": [_DATE, _FORMAT, _LANG, *_SCOPE],
    f"{API}/reports/monthly": [_MONTH, _FORMAT, _LANG, *_SCOPE],
    f"{API}/reports/range": [_FROM, _TO, _FORMAT, _LANG, *_SCOPE],
    f"{API}/reports/assessment": [_MONTH, _FROM, _TO, _FORMAT, _LANG],
    f"{API}/reports/charts/{{chart}}": [_DATE, _MONTH, _FROM, _TO, _LANG, *_SCOPE],
}

_FILES: Final = {
    "application/json": {"schema": {"type": "object"}},
    "text/csv": {"schema": {"type": "string"}},
    XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}},
}
# What each report route answers with (by ``format``), for the OpenAPI document.
RESPONSE_CONTENT: Final[dict[str, dict[str, Any]]] = {
    **{f"{API}/reports/{kind}": _FILES for kind in ("daily", "monthly", "range", "assessment")},
    f"{API}/reports/charts/{{chart}}": {"image/svg+xml": {"schema": {"type": "string"}}},
}


@dataclass(frozen=True, slots=True)
class _Period:
    kind: ReportKind
    first: dt.date
    last: dt.date


def _date(raw: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as err:
        where = "" if name == "date" else f"（{name}）"
        raise BadRequest(
            f"{name} must be YYYY-MM-DD", f"日期格式应为 YYYY-MM-DD{where}", code="bad_date"
        ) from err


def _today(ctx: Context) -> dt.date:
    return ctx.hub.engine.local(ctx.hub.now()).date()


def _month(ctx: Context) -> _Period:
    raw = ctx.request.query.get("month") or f"{_today(ctx):%Y-%m}"
    try:
        first, last = month_bounds(raw)
    except ValueError as err:
        raise BadRequest(
            "month must be YYYY-MM", "月份格式应为 YYYY-MM（如 2026-11）", code="bad_month"
        ) from err
    return _Period("monthly", first, last)


def _range(ctx: Context) -> _Period:
    query = ctx.request.query
    if not query.get("from") or not query.get("to"):
        raise BadRequest(
            "a range needs from= and to=", "日期范围需要 from 和 to 两个日期", code="bad_range"
        )
    first, last = _date(query["from"], "from"), _date(query["to"], "to")
    if last < first:
        raise BadRequest(
            "to is before from", "截止日期（to）早于起始日期（from）", code="bad_range"
        )
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise BadRequest(
            f"a range is at most {MAX_RANGE_DAYS} days",
            f"日期范围最多 {MAX_RANGE_DAYS} 天",
            code="bad_range",
        )
    return _Period("range", first, last)


def _day(ctx: Context) -> _Period:
    raw = ctx.request.query.get("date")
    day = _date(raw, "date") if raw else _today(ctx)
    return _Period("daily", day, day)


def _any_period(ctx: Context, default: str) -> _Period:
    query = ctx.request.query
    if "from" in query or "to" in query:
        return _range(ctx)
    if "month" in query:
        return _month(ctx)
    if "date" in query:
        return _day(ctx)
    return _month(ctx) if default == "month" else _day(ctx)


def _scope(ctx: Context) -> Scope:
    query, config = ctx.request.query, ctx.hub.config
    given = [name for name in ("service", "window", "staff") if query.get(name)]
    if len(given) > 1:
        raise BadRequest(
            "give at most one of service, window, staff",
            "service、window、staff 只能选一个",
            code="bad_scope",
        )
    if "service" in given:
        if config.service(query["service"]) is None:
            raise NotFound(
                f"no service {query['service']}",
                f"没有业务 {query['service']}",
                code="no_service",
            )
        return Scope(service=query["service"])
    if "window" in given:
        try:
            number = int(query["window"])
        except ValueError as err:
            raise BadRequest("window must be a number", "窗口号必须是数字") from err
        if config.window(number) is None:
            raise NotFound(f"no window {number}", f"没有 {number} 号窗口", code="no_window")
        return Scope(window=number)
    if "staff" in given:
        return Scope(staff=query["staff"])
    return Scope()


def _format(ctx: Context, allowed: tuple[str, ...] = FORMATS) -> str:
    fmt = ctx.request.query.get("format", "json")
    if fmt not in allowed:
        names = ", ".join(allowed)
        raise BadRequest(f"format must be one of {names}", f"格式只能是 {names}", code="bad_format")
    return fmt


def _lang(ctx: Context) -> str:
    lang = ctx.request.query.get("lang") or ctx.lang
    if lang not in LANGS:
        raise BadRequest(
            "lang must be zh, en or both", "lang 只能是 zh、en 或 both", code="bad_lang"
        )
    return lang


async def _run(
    ctx: Context, output: Output, p: _Period, scope: Scope, fmt: str, lang: str, chart: str = ""
) -> Result:
    job = Job(output, p.kind, p.first, p.last, _today(ctx), fmt, lang, scope, chart)
    return await ctx.hub.reports.run(job)


async def _figures(ctx: Context, p: _Period) -> web.StreamResponse:
    scope, fmt, lang = _scope(ctx), _format(ctx), _lang(ctx)
    data, body = await _run(ctx, "figures", p, scope, fmt, lang)
    return _respond(data, body, fmt, f"qcall-{p.kind}-{period_name(p)}")


def period_name(p: _Period) -> str:
    """A file name part for the period."""
    if p.kind == "daily":
        return p.first.isoformat()
    if p.kind == "monthly":
        return f"{p.first:%Y-%m}"
    return f"{p.first.isoformat()}_{p.last.isoformat()}"


def _respond(data: Any, body: bytes | str | None, fmt: str, name: str) -> web.StreamResponse:
    if fmt == "json":
        return json_response(data)
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
    if fmt == "csv":
        assert isinstance(body, str)
        return web.Response(
            text=body, content_type="text/csv", charset="utf-8", headers=disposition
        )
    assert isinstance(body, bytes)
    return web.Response(body=body, content_type=XLSX_TYPE, headers=disposition)


@route(
    "GET",
    f"{API}/reports/daily",
    MANAGERS,
    "Figures of one service day (JSON, CSV or XLSX)",
    errors=(400, 404, 503),
    tag="reports",
)
async def daily_report(ctx: Context) -> web.StreamResponse:
    """The figures of one service day (default today)."""
    return await _figures(ctx, _day(ctx))


@route(
    "GET",
    f"{API}/reports/monthly",
    MANAGERS,
    "Figures of a month, with each day (JSON, CSV or XLSX)",
    errors=(400, 404, 503),
    tag="reports",
)
async def monthly_report(ctx: Context) -> web.StreamResponse:
    """The figures of a month (default this month)."""
    return await _figures(ctx, _month(ctx))


@route(
    "GET",
    f"{API}/reports/range",
    MANAGERS,
    "Figures of any range of service days (JSON, CSV or XLSX)",
    errors=(400, 404, 503),
    tag="reports",
)
async def range_report(ctx: Context) -> web.StreamResponse:
    """The figures of ``from``–``to``."""
    return await _figures(ctx, _range(ctx))


@route(
    "GET",
    f"{API}/reports/assessment",
    MANAGERS,
    "Monthly staff assessment (统一考核) with the configured weights",
    errors=(400, 503),
    tag="reports",
)
async def assessment(ctx: Context) -> web.StreamResponse:
    """Every staff member's criteria, scores and weighted total."""
    query = ctx.request.query
    p = _range(ctx) if ("from" in query or "to" in query) else _month(ctx)
    fmt, lang = _format(ctx), _lang(ctx)
    data, body = await _run(ctx, "assessment", p, Scope(), fmt, lang)
    return _respond(data, body, fmt, f"qcall-assessment-{period_name(p)}")


@route(
    "GET",
    f"{API}/reports/charts/{{chart}}",
    MANAGERS,
    "A report chart as SVG: hourly, ratings or trend",
    errors=(400, 404, 503),
    tag="reports",
)
async def chart(ctx: Context) -> web.StreamResponse:
    """``hourly`` and ``ratings`` default to today, ``trend`` to this month."""
    name = ctx.request.match_info["chart"].removesuffix(".svg")
    if name not in CHARTS:
        raise NotFound(
            f"no chart {name!r} (hourly, ratings, trend)",
            f"没有图表 {name}（可选 hourly、ratings、trend）",
            code="no_chart",
        )
    p = _any_period(ctx, "month" if name == "trend" else "day")
    scope, lang = _scope(ctx), _lang(ctx)
    _, svg = await _run(ctx, "chart", p, scope, "svg", lang, name)
    assert isinstance(svg, str)
    return web.Response(
        text=svg,
        content_type="image/svg+xml",
        charset="utf-8",
        headers={"Cache-Control": "private, max-age=10"},
    )
