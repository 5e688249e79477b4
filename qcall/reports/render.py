"""Reports as JSON, as sections of rows (CSV, XLSX) and as a terminal table.

The CSV and the XLSX workbook are written from the same ``Section`` list, so they hold the
same cells: seconds and percent rounded to 0.1, rating means to 0.01, an empty cell where
there is no sample. The CSV starts with a UTF-8 byte-order mark by default, so that Excel
on a Chinese Windows reads it as UTF-8.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from qcall.model import DayType, WindowType
from qcall.reports.figures import (
    MAX_SCORE,
    DayStatus,
    Durations,
    Figures,
    Report,
    ServiceRow,
    StaffRow,
)

Lang = Literal["zh", "en", "both"]
LANGS: Final = ("zh", "en", "both")
ChartName = Literal["hourly", "ratings", "trend"]
CHARTS: Final[tuple[ChartName, ...]] = ("hourly", "ratings", "trend")
Cell = str | int | float | None
Kind = Literal["int", "s", "pct", "avg", "text"]

# --------------------------------------------------------------------------- JSON


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def durations_json(d: Durations) -> dict[str, Any]:
    """Seconds to 0.1."""
    return {
        "count": d.count,
        "mean_s": _round(d.mean_s, 1),
        "p90_s": _round(d.p90_s, 1),
        "max_s": _round(d.max_s, 1),
    }


def figures_json(f: Figures) -> dict[str, Any]:
    """Return one scope's figures as JSON-able data (seconds and percent to 0.1)."""
    return {
        "issued": f.issued,
        "priority_issued": f.priority_issued,
        "called": f.called,
        "priority_called": f.priority_called,
        "served": f.served,
        "done": f.done,
        "back_office": f.back_office,
        "no_show": f.no_show,
        "transferred": f.transferred,
        "cancelled": f.cancelled,
        "expired": f.expired,
        "in_progress": f.in_progress,
        "recalls": f.recalls,
        "wait": durations_json(f.wait),
        "handle": durations_json(f.handle),
        "over_target": f.over_target,
        "over_target_pct": _round(f.over_target_pct, 1),
        "ratings": {
            "count": f.ratings.count,
            "mean": _round(f.ratings.mean, 2),
            "distribution": {str(i + 1): n for i, n in enumerate(f.ratings.distribution)},
            "satisfied": f.ratings.satisfied,
            "satisfaction_pct": _round(f.ratings.satisfaction_pct, 1),
        },
        "cases_opened": f.cases_opened,
        "cases_ready": f.cases_ready,
        "cases_due": f.cases_due,
        "cases_kept": f.cases_kept,
        "cases_broken": f.cases_broken,
        "cases_kept_pct": _round(f.cases_kept_pct, 1),
        "cases_picked_up": f.cases_picked_up,
        "inquiries": f.inquiries,
        "referrals": f.referrals,
    }


def to_json(report: Report) -> dict[str, Any]:
    """Return the report as JSON-able data (``GET /api/v1/reports/...``)."""
    scope = {
        k: v
        for k, v in (
            ("service", report.scope.service),
            ("window", report.scope.window),
            ("staff", report.scope.staff),
        )
        if v is not None
    }
    daily = report.kind == "daily"
    return {
        "kind": report.kind,
        "from": report.first.isoformat(),
        "to": report.last.isoformat(),
        # day, day_type and status describe a daily report's one day; see "days" otherwise
        "day": report.first.isoformat() if daily else None,
        "day_type": report.day_type if daily else None,
        "status": str(report.status) if daily else None,
        "closed": report.closed,
        "last_seq": report.last_seq,
        "center": {"name_zh": report.center_zh, "name_en": report.center_en},
        "scope": scope,
        "total": figures_json(report.total),
        "days": [
            {
                "day": row.day.isoformat(),
                "day_type": row.day_type,
                "status": str(row.status),
                **figures_json(row.figures),
            }
            for row in report.days
        ],
        "hours": [
            {
                "hour": row.hour,
                "arrivals": row.arrivals,
                "wait": durations_json(row.wait),
                "over_target": row.over_target,
            }
            for row in report.hours
        ],
        "services": [
            {
                "id": row.id,
                "prefix": row.prefix,
                "name_zh": row.name_zh,
                "name_en": row.name_en,
                "target_wait_min": row.target_wait_min,
                **figures_json(row.figures),
            }
            for row in report.services
        ],
        "windows": [
            {
                "number": row.number,
                "type": row.type,
                "name_zh": row.name_zh,
                "name_en": row.name_en,
                **figures_json(row.figures),
            }
            for row in report.windows
        ],
        "staff": [
            {"id": row.id, "name": row.name, **figures_json(row.figures)} for row in report.staff
        ],
    }


# --------------------------------------------------------------------------- columns


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a section: its names and how its cells are written."""

    key: str
    zh: str
    en: str
    kind: Kind = "text"

    def header(self, lang: str) -> str:
        """The header with its unit (seconds as ``(秒)`` / ``(s)``)."""
        zh, en = self.zh, self.en
        if self.kind == "s":
            zh, en = f"{zh}(秒)", f"{en} (s)"
        return pick(lang, zh, en)


@dataclass(frozen=True, slots=True)
class _Col:
    column: Column
    get: Callable[[Figures], int | float | str | None]

    @property
    def key(self) -> str:
        return self.column.key

    @property
    def kind(self) -> Kind:
        return self.column.kind


def _int(name: str) -> Callable[[Figures], int | float | str | None]:
    return lambda f: int(getattr(f, name))


def _c(key: str, zh: str, en: str) -> _Col:
    return _Col(Column(key, zh, en, "int"), _int(key))


def _x(key: str, zh: str, en: str, kind: Kind, get: Callable[[Figures], Any]) -> _Col:
    return _Col(Column(key, zh, en, kind), get)


ISSUED = _c("issued", "取号", "Issued")
PRIORITY_ISSUED = _c("priority_issued", "绿色通道", "Priority")
CALLED = _c("called", "叫号", "Called")
PRIORITY_CALLED = _c("priority_called", "绿色叫号", "Priority called")
SERVED = _c("served", "办结", "Served")
DONE = _c("done", "即办", "Done")
BACK_OFFICE = _c("back_office", "流转", "Back office")
NO_SHOW = _c("no_show", "过号", "No-show")
TRANSFERRED = _c("transferred", "转移", "Transferred")
CANCELLED = _c("cancelled", "取消", "Cancelled")
EXPIRED = _c("expired", "过期", "Expired")
IN_PROGRESS = _c("in_progress", "未结束", "Open")
RECALLS = _c("recalls", "重呼", "Recalls")
WAIT = (
    _x("wait_mean_s", "平均等候", "Wait mean", "s", lambda f: f.wait.mean_s),
    _x("wait_p90_s", "等候P90", "Wait p90", "s", lambda f: f.wait.p90_s),
    _x("wait_max_s", "最长等候", "Wait max", "s", lambda f: f.wait.max_s),
    _c("over_target", "超时数", "Over target"),
    _x("over_target_pct", "超时率%", "Over target %", "pct", lambda f: f.over_target_pct),
)
HANDLE = (
    _x("handle_mean_s", "平均办理", "Handle mean", "s", lambda f: f.handle.mean_s),
    _x("handle_p90_s", "办理P90", "Handle p90", "s", lambda f: f.handle.p90_s),
    _x("handle_max_s", "最长办理", "Handle max", "s", lambda f: f.handle.max_s),
)
RATING_COUNT = _x("ratings", "评价数", "Ratings", "int", lambda f: f.ratings.count)
RATING_MEAN = _x("rating_mean", "平均分", "Rating mean", "avg", lambda f: f.ratings.mean)
SATISFACTION = _x(
    "satisfaction_pct", "满意率%", "Satisfied %", "pct", lambda f: f.ratings.satisfaction_pct
)


def _score(score: int) -> _Col:
    return _x(
        f"rating_{score}",
        f"{score}分",
        f"Rated {score}",
        "int",
        lambda f: f.ratings.distribution[score - 1],
    )


RATING_SCORES = tuple(_score(score) for score in range(1, MAX_SCORE + 1))
RATING_SPREAD = _x(
    "rating_spread",
    "评分1-5",
    "Scores 1-5",
    "text",
    lambda f: "/".join(str(n) for n in f.ratings.distribution),
)
CASES_OPENED = _c("cases_opened", "流转立案", "Cases opened")
CASES_READY = _c("cases_ready", "办结待取", "Cases ready")
CASES_DUE = _c("cases_due", "承诺到期", "Promised due")
CASES_KEPT = _c("cases_kept", "按期办结", "Kept")
CASES_BROKEN = _c("cases_broken", "逾期未结", "Broken")
CASES_KEPT_PCT = _x("cases_kept_pct", "按期率%", "Kept %", "pct", lambda f: f.cases_kept_pct)
CASES_PICKED_UP = _c("cases_picked_up", "已取件", "Picked up")
INQUIRIES = _c("inquiries", "首问登记", "Inquiries")
REFERRALS = _c("referrals", "转介", "Referrals")

_SERVICE_COUNTS: Final = (
    ISSUED,
    PRIORITY_ISSUED,
    CALLED,
    SERVED,
    DONE,
    BACK_OFFICE,
    NO_SHOW,
    TRANSFERRED,
    CANCELLED,
    EXPIRED,
    IN_PROGRESS,
    RECALLS,
)
_DESK_COUNTS: Final = (
    CALLED,
    PRIORITY_CALLED,
    SERVED,
    DONE,
    BACK_OFFICE,
    NO_SHOW,
    TRANSFERRED,
    EXPIRED,
    IN_PROGRESS,
    RECALLS,
)
_TIMES: Final = (*WAIT, *HANDLE)
_RATINGS: Final = (RATING_COUNT, RATING_MEAN, SATISFACTION)
_CASES: Final = (CASES_OPENED, CASES_READY, CASES_DUE, CASES_KEPT, CASES_BROKEN, CASES_KEPT_PCT)
_DAY_OTHER: Final = (*_CASES, CASES_PICKED_UP, INQUIRIES, REFERRALS)
_SERVICE_OTHER: Final = (*_CASES, CASES_PICKED_UP, INQUIRIES)
_WINDOW_OTHER: Final = (CASES_OPENED, CASES_PICKED_UP)
_STAFF_OTHER: Final = _DAY_OTHER

# Column blocks per section; the table prints each block on its own, CSV joins them.
_DAY_BLOCKS: Final = ((*_SERVICE_COUNTS, PRIORITY_CALLED), (*_TIMES, *_RATINGS), _DAY_OTHER)
_SERVICE_BLOCKS: Final = (_SERVICE_COUNTS, (*_TIMES, *_RATINGS), _SERVICE_OTHER)
_WINDOW_BLOCKS: Final = (_DESK_COUNTS, (*_TIMES, *_RATINGS), _WINDOW_OTHER)
_STAFF_BLOCKS: Final = (_DESK_COUNTS, (*_TIMES, *_RATINGS), _STAFF_OTHER)

_WINDOW_TYPE_ZH: Final = {
    WindowType.COMPREHENSIVE: "综合窗口",
    WindowType.DEDICATED: "专用窗口",
    WindowType.REPLY: "回复窗口",
}
_DAY_TYPE_ZH: Final = {
    DayType.WEEKDAY: "工作日",
    DayType.WEEKEND_DUTY: "周末值班",
    DayType.CLOSED: "休息日",
}
STATUS_NAMES: Final = {
    DayStatus.CLOSED: ("已日结", "day closed"),
    DayStatus.OPEN: ("营业中", "in progress"),
    DayStatus.UNCLOSED: ("未日结", "not closed"),
    DayStatus.NO_DATA: ("无数据", "no data"),
    DayStatus.FUTURE: ("未到", "not yet"),
}
KIND_NAMES: Final = {
    "daily": ("日报", "Daily report"),
    "monthly": ("月报", "Monthly report"),
    "range": ("统计报表", "Report"),
}


def pick(lang: str, zh: str, en: str) -> str:
    """The text in ``lang`` (``both``: Chinese, then English)."""
    if lang == "zh":
        return zh
    if lang == "en":
        return en
    return f"{zh} {en}"


def check_lang(lang: str) -> None:
    """ValueError unless ``lang`` is zh, en or both."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, not {lang!r}")


def _window_type(value: str, lang: str) -> str:
    try:
        zh = _WINDOW_TYPE_ZH[WindowType(value)]
    except ValueError:
        zh = value
    return pick(lang, zh, value)


def _day_type(value: str, lang: str) -> str:
    try:
        zh = _DAY_TYPE_ZH[DayType(value)]
    except ValueError:
        zh = value
    return pick(lang, zh, value)


def _status(status: DayStatus, lang: str) -> str:
    return pick(lang, *STATUS_NAMES[status])


def period(report: Report) -> str:
    """``2026-11-26``, ``2026-11`` for a month, ``2026-11-01~2026-11-15`` for a range."""
    if report.kind == "daily":
        return report.first.isoformat()
    if report.kind == "monthly":
        return f"{report.first:%Y-%m}"
    return f"{report.first.isoformat()}~{report.last.isoformat()}"


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class Section:
    """A titled table: the unit of CSV sections, XLSX sheets and test comparisons."""

    key: str
    zh: str
    en: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def title(self, lang: str) -> str:
        """The section title in ``lang``."""
        return pick(lang, self.zh, self.en)


def _figure_columns(blocks: Sequence[Sequence[_Col]]) -> list[_Col]:
    out: list[_Col] = []
    for block in blocks:
        for col in block:
            if col.key not in {c.key for c in out}:
                out += [col, *RATING_SCORES] if col is RATING_MEAN else [col]
    return out


def _figures_section(
    key: str,
    title: tuple[str, str],
    labels: Sequence[Column],
    blocks: Sequence[Sequence[_Col]],
    rows: Sequence[tuple[Sequence[Cell], Figures]],
) -> Section:
    cols = _figure_columns(blocks)
    return Section(
        key,
        title[0],
        title[1],
        (*labels, *(c.column for c in cols)),
        tuple((*names, *(c.get(figures) for c in cols)) for names, figures in rows),
    )


def _service_label(row: ServiceRow) -> tuple[Cell, ...]:
    return (
        row.id,
        row.name_zh,
        row.name_en,
        row.prefix,
        row.target_wait_min,
    )


def _staff_label(row: StaffRow) -> tuple[Cell, ...]:
    return (row.id, row.name)


_SERVICE_LABELS: Final = (
    Column("service", "业务编号", "Service id"),
    Column("name_zh", "业务名称", "Service (zh)"),
    Column("name_en", "英文名称", "Service (en)"),
    Column("prefix", "号头", "Prefix"),
    Column("target_wait_min", "目标等候(分)", "Target wait (min)", "int"),
)
_WINDOW_LABELS: Final = (
    Column("window", "窗口号", "Window", "int"),
    Column("type", "窗口类型", "Type"),
    Column("name_zh", "窗口名称", "Window (zh)"),
    Column("name_en", "英文名称", "Window (en)"),
)
_STAFF_LABELS: Final = (
    Column("staff", "工作人员编号", "Staff id"),
    Column("staff_name", "姓名", "Name"),
)


def report_sections(report: Report, lang: str = "zh") -> list[Section]:
    """The report as sections: about, total, days (ranges), hours, services, windows, staff."""
    check_lang(lang)
    kind_zh, kind_en = KIND_NAMES[report.kind]
    about = Section(
        "about",
        kind_zh,
        kind_en,
        (
            Column("period", "期间", "Period"),
            Column("from", "起始日期", "From"),
            Column("to", "截止日期", "To"),
            Column("center", "中心", "Center"),
            Column("center_en", "中心英文名", "Center (en)"),
            Column("day_type", "日类型", "Day type"),
            Column("status", "状态", "Status"),
            Column("last_seq", "最后事件序号", "Last seq", "int"),
        ),
        (
            (
                period(report),
                report.first.isoformat(),
                report.last.isoformat(),
                report.center_zh,
                report.center_en,
                _day_type(report.day_type, lang) if report.kind == "daily" else "",
                _status(report.status, lang)
                if report.kind == "daily"
                else pick(lang, "已日结", "closed")
                if report.closed
                else "",
                report.last_seq,
            ),
        ),
    )
    sections = [
        about,
        _figures_section(
            "total",
            ("合计", "Total"),
            (Column("period", "期间", "Period"),),
            _DAY_BLOCKS,
            [((period(report),), report.total)],
        ),
    ]
    if report.kind != "daily":
        sections.append(
            _figures_section(
                "days",
                ("按日", "By day"),
                (
                    Column("day", "日期", "Date"),
                    Column("day_type", "日类型", "Day type"),
                    Column("status", "状态", "Status"),
                ),
                _DAY_BLOCKS,
                [
                    (
                        (
                            row.day.isoformat(),
                            _day_type(row.day_type, lang),
                            _status(row.status, lang),
                        ),
                        row.figures,
                    )
                    for row in report.days
                ],
            )
        )
    sections.append(
        Section(
            "hours",
            "按时段",
            "By hour",
            (
                Column("hour", "时段", "Hour"),
                Column("arrivals", "取号", "Arrivals", "int"),
                Column("waits", "等候样本", "Wait samples", "int"),
                Column("wait_mean_s", "平均等候", "Wait mean", "s"),
                Column("wait_p90_s", "等候P90", "Wait p90", "s"),
                Column("wait_max_s", "最长等候", "Wait max", "s"),
                Column("over_target", "超时数", "Over target", "int"),
            ),
            tuple(
                (
                    f"{row.hour:02d}:00-{row.hour + 1:02d}:00",
                    row.arrivals,
                    row.wait.count,
                    row.wait.mean_s,
                    row.wait.p90_s,
                    row.wait.max_s,
                    row.over_target,
                )
                for row in report.hours
            ),
        )
    )
    sections.append(
        _figures_section(
            "services",
            ("按业务", "By service"),
            _SERVICE_LABELS,
            _SERVICE_BLOCKS,
            [(_service_label(row), row.figures) for row in report.services],
        )
    )
    sections.append(
        _figures_section(
            "windows",
            ("按窗口", "By window"),
            _WINDOW_LABELS,
            _WINDOW_BLOCKS,
            [
                ((row.number, _window_type(row.type, lang), row.name_zh, row.name_en), row.figures)
                for row in report.windows
            ],
        )
    )
    sections.append(
        _figures_section(
            "staff",
            ("按工作人员", "By staff member"),
            _STAFF_LABELS,
            _STAFF_BLOCKS,
            [(_staff_label(row), row.figures) for row in report.staff],
        )
    )
    return sections


def cell_value(column: Column, value: Cell) -> Cell:
    """The cell as written: seconds and percent to 0.1, means to 0.01, None stays None."""
    if value is None:
        return None
    if column.kind in ("s", "pct"):
        return round(float(value), 1)
    if column.kind == "avg":
        return round(float(value), 2)
    return value


def cell_text(column: Column, value: Cell) -> str:
    """The cell as CSV text (empty: no sample)."""
    written = cell_value(column, value)
    if written is None:
        return ""
    if column.kind in ("s", "pct"):
        return f"{float(written):.1f}"
    if column.kind == "avg":
        return f"{float(written):.2f}"
    return str(written)


def sections_csv(sections: Sequence[Section], lang: str = "zh", *, bom: bool = True) -> str:
    """Sections as CSV: a title row, a header row and data rows, an empty row between."""
    check_lang(lang)
    buffer = io.StringIO()
    if bom:
        buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    for section in sections:
        writer.writerow([section.title(lang)])
        writer.writerow([c.header(lang) for c in section.columns])
        for row in section.rows:
            writer.writerow(
                [cell_text(col, value) for col, value in zip(section.columns, row, strict=True)]
            )
        writer.writerow([])
    return buffer.getvalue()


def to_csv(report: Report, lang: str = "zh", *, bom: bool = True) -> str:
    """The report as CSV (see ``report_sections``); ``lang`` picks the headers."""
    return sections_csv(report_sections(report, lang), lang, bom=bom)


# --------------------------------------------------------------------------- table


def display_width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide / fullwidth characters take two."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _pad(text: str, width: int, *, right: bool) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def _table_header(col: _Col, lang: str) -> str:
    zh, en = col.column.zh, col.column.en
    if col.kind == "s":
        zh, en = f"{zh}(分)", f"{en} (min)"
    return pick(lang, zh, en)


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def _table_value(col: _Col, figures: Figures) -> str:
    value = col.get(figures)
    if value is None:
        return "-"
    if col.kind == "s":
        return f"{float(value) / 60:.1f}"
    if col.kind == "pct":
        return f"{float(value):.1f}"
    if col.kind == "avg":
        return f"{float(value):.2f}"
    return str(value)


def grid(headers: list[list[str]], rows: list[list[str]], left: int, gap: str = "  ") -> list[str]:
    """Align cells by display width; the first ``left`` columns left-, the rest right-aligned."""
    count = len(headers[0])
    widths = [max(display_width(line[i]) for line in [*headers, *rows]) for i in range(count)]
    out = []
    for line in [*headers, *rows]:
        cells = [_pad(cell, widths[i], right=i >= left) for i, cell in enumerate(line)]
        out.append(gap.join(cells).rstrip())
    return out


def to_table(report: Report, lang: str = "zh") -> str:
    """Render the report as aligned plain text for a terminal (CJK counts two columns).

    Durations are shown in minutes to 0.1 (the header says so), "-" means no sample. With
    ``lang="both"`` every table has a Chinese and an English header line.
    """
    check_lang(lang)
    header_langs = ["zh", "en"] if lang == "both" else [lang]
    name_lang = "en" if lang == "en" else "zh"
    center = report.center_en if lang == "en" else report.center_zh
    title = pick(lang, *(name.lower() if i else name for i, name in
                         enumerate(KIND_NAMES[report.kind])))  # fmt: skip
    head = [center, title, period(report)]
    if report.kind == "daily":
        head += [_day_type(report.day_type, lang), _status(report.status, lang)]
    lines = ["  ".join(head)]
    if lang == "both":
        lines.append(report.center_en)

    def block(
        title: tuple[str, str],
        labels: list[tuple[str, str]],
        cols: Sequence[_Col],
        rows: list[tuple[list[str], Figures]],
    ) -> None:
        headers = [
            [pick(h, *label) for label in labels] + [_table_header(c, h) for c in cols]
            for h in header_langs
        ]
        body = [names + [_table_value(c, figures) for c in cols] for names, figures in rows]
        lines.append("")
        lines.append(f"[{pick(lang, *title)}]")
        lines.extend(grid(headers, body, left=len(labels)))

    def service_name(row: ServiceRow) -> str:
        return row.name_en if name_lang == "en" else row.name_zh

    total_label = pick(name_lang, "合计", "Total")
    service_rows = [([service_name(r)], r.figures) for r in report.services]
    service_rows.append(([total_label], report.total))
    window_rows = [
        (
            [r.name_en if name_lang == "en" else r.name_zh, _window_type(r.type, name_lang)],
            r.figures,
        )
        for r in report.windows
    ]
    staff_rows = [([r.id, r.name or "-"], r.figures) for r in report.staff]
    service_labels = [("业务", "Service")]
    window_labels = [("窗口", "Window"), ("类型", "Type")]
    staff_labels = [("工作人员", "Staff"), ("姓名", "Name")]
    times = (*_TIMES, RATING_COUNT, RATING_MEAN, SATISFACTION, RATING_SPREAD)
    if report.kind != "daily":
        day_labels = [("日期", "Date"), ("状态", "Status")]
        day_rows = [
            ([row.day.isoformat(), _status(row.status, name_lang)], row.figures)
            for row in report.days
        ]
        day_rows.append(([total_label, ""], report.total))
        block(("按日 · 件数", "By day · counts"), day_labels, _SERVICE_COUNTS, day_rows)
        block(("按日 · 时长与评价", "By day · times and ratings"), day_labels, times, day_rows)
    if report.hours:
        lines.append("")
        lines.append(f"[{pick(lang, '按时段', 'By hour')}]")
        headers = [
            [pick(h, "时段", "Hour"), pick(h, "取号", "Arrivals"),
             pick(h, "平均等候(分)", "Wait mean (min)"), pick(h, "最长等候(分)", "Wait max (min)"),
             pick(h, "超时数", "Over target")]
            for h in header_langs
        ]  # fmt: skip
        body = [
            [f"{row.hour:02d}:00", str(row.arrivals), _minutes(row.wait.mean_s),
             _minutes(row.wait.max_s), str(row.over_target)]
            for row in report.hours
        ]  # fmt: skip
        lines.extend(grid(headers, body, left=1))
    block(("按业务 · 件数", "By service · counts"), service_labels, _SERVICE_COUNTS, service_rows)
    block(
        ("按业务 · 时长与评价", "By service · times and ratings"),
        service_labels,
        times,
        service_rows,
    )
    block(
        ("按业务 · 流转与咨询", "By service · cases and inquiries"),
        service_labels,
        _DAY_OTHER,
        service_rows,
    )
    block(
        ("按窗口 · 件数", "By window · counts"),
        window_labels,
        (*_DESK_COUNTS, *_WINDOW_OTHER),
        window_rows,
    )
    block(
        ("按窗口 · 时长与评价", "By window · times and ratings"), window_labels, times, window_rows
    )
    if staff_rows:
        block(
            ("按工作人员 · 件数", "By staff · counts"),
            staff_labels,
            (*_DESK_COUNTS, *_STAFF_OTHER),
            staff_rows,
        )
        block(
            ("按工作人员 · 时长与评价", "By staff · times and ratings"),
            staff_labels,
            times,
            staff_rows,
        )
    return "\n".join(lines) + "\n"
