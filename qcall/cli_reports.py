"""``qcall report daily|monthly|range|assessment|chart``: reports from the database."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from qcall.config import CenterConfig, load_config
from qcall.reports import (
    CHARTS,
    LANGS,
    Scope,
    assess,
    assessment_sections,
    month_bounds,
    report_from_store,
    to_table,
)
from qcall.reports.figures import ReportKind
from qcall.reports.render import Section, cell_text, grid
from qcall.reports.worker import Job, Output, compute
from qcall.store import Store

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2


class _Refused(Exception):
    """A bad argument: the message is printed in both languages, exit 2."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh, self.en = zh, en


def add_report_parsers(sub: Any) -> None:
    """Add ``report`` and its kinds to the ``qcall`` parser."""
    report = sub.add_parser("report", help="统计报表 / reports").add_subparsers(metavar="KIND")
    daily = report.add_parser("daily", help="日报 / daily report")
    daily.add_argument("--date", help="YYYY-MM-DD（默认今天 / default today）")
    monthly = report.add_parser("monthly", help="月报 / monthly report")
    monthly.add_argument("--month", help="YYYY-MM（默认本月 / default this month）")
    ranged = report.add_parser("range", help="任意日期范围 / any range of days")
    ranged.add_argument("--from", dest="first", required=True, help="YYYY-MM-DD")
    ranged.add_argument("--to", dest="last", required=True, help="YYYY-MM-DD")
    sheet = report.add_parser("assessment", help="统一考核表 / monthly staff assessment")
    sheet.add_argument("--month", help="YYYY-MM（默认本月 / default this month）")
    chart = report.add_parser("chart", help="SVG 图表 / SVG chart")
    chart.add_argument("chart", choices=CHARTS)
    chart.add_argument("--date", help="YYYY-MM-DD")
    chart.add_argument("--month", help="YYYY-MM")
    for parser in (daily, monthly, ranged, sheet, chart):
        parser.add_argument("--config", type=Path, required=True, help="配置文件 / TOML")
        parser.add_argument("--db", type=Path, required=True, help="数据库文件 / SQLite")
        parser.add_argument("--lang", default="zh", choices=LANGS)
        parser.add_argument("--output", type=Path, help="写入文件 / write to this file")
        if parser is not chart:
            parser.add_argument(
                "--format", default="table", choices=["table", "csv", "json", "xlsx"]
            )
        if parser is not sheet:
            parser.add_argument("--service", help="只看该业务 / only this service")
            parser.add_argument("--window", type=int, help="只看该窗口 / only this window")
            parser.add_argument("--staff", help="只看该工作人员 / only this staff member")
    daily.set_defaults(handler=_run, kind="daily")
    monthly.set_defaults(handler=_run, kind="monthly")
    ranged.set_defaults(handler=_run, kind="range")
    sheet.set_defaults(handler=_run, kind="assessment")
    chart.set_defaults(handler=_run, kind="chart", format="svg")


def _date(raw: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise _Refused("日期格式应为 YYYY-MM-DD", "date must be YYYY-MM-DD") from None


def _month(raw: str) -> tuple[dt.date, dt.date]:
    try:
        return month_bounds(raw)
    except ValueError:
        raise _Refused("月份格式应为 YYYY-MM", "month must be YYYY-MM") from None


def _period(args: argparse.Namespace, today: dt.date) -> tuple[ReportKind, dt.date, dt.date]:
    kind = args.kind
    if kind == "chart":
        if args.date:
            kind = "daily"
        else:
            kind = "monthly" if args.month or args.chart == "trend" else "daily"
    if kind == "daily":
        day = _date(args.date) if args.date is not None else today
        return "daily", day, day
    if kind in ("monthly", "assessment"):
        first, last = _month(args.month if args.month is not None else f"{today:%Y-%m}")
        return "monthly", first, last
    first, last = _date(args.first), _date(args.last)
    if last < first:
        raise _Refused("截止日期早于起始日期", "--to is before --from")
    return "range", first, last


def _scope(args: argparse.Namespace) -> Scope:
    given = [v for v in (args.service, args.window, args.staff) if v is not None]
    if len(given) > 1:
        raise _Refused(
            "--service、--window、--staff 只能选一个", "give one of --service, --window, --staff"
        )
    return Scope(args.service, args.window, args.staff)


def _run(args: argparse.Namespace) -> int:
    try:
        return _report(args)
    except _Refused as err:
        print(f"{err.zh} / {err.en}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE


def _report(args: argparse.Namespace) -> int:
    if args.format == "xlsx" and args.output is None:
        raise _Refused("xlsx 格式需要 --output 文件名", "the xlsx format needs --output FILE")
    config = load_config(args.config)
    today = dt.datetime.now(ZoneInfo(config.center.timezone)).date()
    kind, first, last = _period(args, today)
    scope = Scope() if args.kind == "assessment" else _scope(args)
    if scope.service is not None and config.service(scope.service) is None:
        raise _Refused(f"没有业务 {scope.service}", f"no service {scope.service}")
    if scope.window is not None and config.window(scope.window) is None:
        raise _Refused(f"没有 {scope.window} 号窗口", f"no window {scope.window}")
    # A report only reads: a mistyped path must not become a new, empty database (all zeros).
    if not args.db.exists():
        raise _Refused(f"找不到数据库 {args.db}", f"no database at {args.db}")
    what: Output = args.kind if args.kind in ("chart", "assessment") else "figures"
    chart = args.chart if args.kind == "chart" else ""
    job = Job(what, kind, first, last, today, args.format, args.lang, scope, chart)
    output = _render(args, config, job)
    if args.output is not None:
        if isinstance(output, str):
            args.output.write_text(output, encoding="utf-8")
        else:
            args.output.write_bytes(output)
    elif isinstance(output, str):
        sys.stdout.write(output)
    return EXIT_OK


def _render(args: argparse.Namespace, config: CenterConfig, job: Job) -> str | bytes:
    """The table is for a terminal; every other format is what the API serves."""
    if job.fmt != "table":
        data, body = compute(config, str(args.db), job)
        if body is not None:
            return body
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    store = Store(args.db)
    store.open_reader()
    try:
        report = report_from_store(
            config, store, job.first, job.last, kind=job.kind, scope=job.scope, today=job.today
        )
    finally:
        store.close()
    if job.output == "assessment":
        sheet = assess(report, config.reports.assessment)
        return _sections_table(assessment_sections(sheet, job.lang), job.lang)
    return to_table(report, job.lang)


def _sections_table(sections: list[Section], lang: str) -> str:
    lines: list[str] = []
    for section in sections:
        header = [c.header(lang) for c in section.columns]
        rows = [
            [cell_text(c, v) or "-" for c, v in zip(section.columns, row, strict=True)]
            for row in section.rows
        ]
        lines += [f"[{section.title(lang)}]", *grid([header], rows, left=3), ""]
    return "\n".join(lines)
