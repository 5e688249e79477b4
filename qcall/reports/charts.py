"""SVG charts of a report, drawn with pygal, for the supervisor pages to embed.

- ``hourly``: tickets issued and mean wait (minutes, right axis) by clock hour;
- ``ratings``: the ratings 1–5 of each window, stacked;
- ``trend``: tickets issued and served and the mean wait (minutes) for each day of the range.

Charts carry no script and load nothing from elsewhere (``js=[]``): they show the same in
a page, as an ``<img>`` and converted to PNG. Text uses the CJK fonts the hub machine has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import pygal
from pygal.style import Style

from qcall.reports.figures import Report
from qcall.reports.render import CHARTS, check_lang, pick

WIDTH: Final = 960
HEIGHT: Final = 540
FONTS: Final = "'WenQuanYi Micro Hei', 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif"
# Ratings 1 (非常不满意) … 5 (非常满意): red to green, readable on white and for most
# colour-blind eyes because lightness also changes.
RATING_COLOURS: Final = ("#b2182b", "#ef8a62", "#c9b26b", "#67a9cf", "#2166ac")
SERIES_COLOURS: Final = ("#2166ac", "#1b9e77", "#d95f02", "#7570b3")
RATING_NAMES: Final = (
    ("非常不满意", "very dissatisfied"),
    ("不满意", "dissatisfied"),
    ("基本满意", "fair"),
    ("满意", "satisfied"),
    ("非常满意", "very satisfied"),
)


def _style(colours: tuple[str, ...]) -> Style:
    return Style(
        background="white",
        plot_background="white",
        foreground="#222222",
        foreground_strong="#111111",
        foreground_subtle="#777777",
        colors=colours,
        font_family=FONTS,
        title_font_size=20,
        label_font_size=13,
        major_label_font_size=13,
        legend_font_size=14,
        value_font_size=12,
        no_data_font_size=24,
    )


def _short(value: float) -> str:
    """Axis labels: whole numbers as such, others to 0.1 (pygal's own are 2.953846154)."""
    if abs(value - round(value)) < 1e-9:
        return str(round(value))
    return f"{value:.1f}"


def _config(lang: str, title: str, colours: tuple[str, ...]) -> dict[str, object]:
    return {
        "title": title,
        "width": WIDTH,
        "height": HEIGHT,
        "style": _style(colours),
        "js": [],
        "legend_at_bottom": True,
        "legend_at_bottom_columns": 5,
        "truncate_legend": -1,
        "no_data_text": pick(lang, "无数据", "No data"),
        "print_values": False,
        "show_minor_x_labels": True,
        "explicit_size": True,
        "include_x_axis": True,  # counts and waits start at 0 on both axes
        "value_formatter": _short,
    }


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60.0, 1)


def _scope_title(report: Report, lang: str) -> str:
    from qcall.reports.render import period

    return f"{pick(lang, report.center_zh, report.center_en)} {period(report)}"


def _add_wait(chart: pygal.Line, lang: str, minutes: list[float | None]) -> None:
    # The mean wait on the right axis, once some ticket has been called: pygal cannot scale
    # an axis whose every value is unknown (a morning with arrivals and no call yet).
    if any(value is not None for value in minutes):
        chart.add(
            pick(lang, "平均等候(分，右轴)", "Mean wait (min, right axis)"), minutes, secondary=True
        )


def hourly_chart(report: Report, lang: str = "zh") -> str:
    """Arrivals and mean wait by clock hour."""
    title = pick(lang, "分时段取号量与平均等候", "Arrivals and mean wait by hour")
    chart = pygal.Line(
        **_config(lang, f"{title} · {_scope_title(report, lang)}", SERIES_COLOURS),
        fill=False,
        dots_size=4,
        y_title=pick(lang, "取号(张)", "Tickets"),
        min_scale=4,
    )
    chart.x_labels = [f"{row.hour:02d}:00" for row in report.hours]
    if report.hours:
        chart.add(pick(lang, "取号", "Arrivals"), [row.arrivals for row in report.hours])
        _add_wait(chart, lang, [_minutes(row.wait.mean_s) for row in report.hours])
    return str(chart.render(is_unicode=True))


def ratings_chart(report: Report, lang: str = "zh") -> str:
    """The ratings of each window, stacked by score."""
    title = pick(lang, "各窗口评价", "Ratings by window")
    rated = [row for row in report.windows if row.figures.ratings.count]
    chart = pygal.StackedBar(
        **_config(lang, f"{title} · {_scope_title(report, lang)}", RATING_COLOURS),
        y_title=pick(lang, "评价数", "Ratings"),
    )
    chart.x_labels = [pick(lang, row.name_zh, row.name_en) for row in rated]
    if rated:
        for score in range(1, 6):
            zh, en = RATING_NAMES[score - 1]
            chart.add(
                pick(lang, f"{score}分 {zh}", f"{score} {en}"),
                [row.figures.ratings.distribution[score - 1] for row in rated],
            )
    return str(chart.render(is_unicode=True))


def trend_chart(report: Report, lang: str = "zh") -> str:
    """Issued, served and mean wait for each day of the range."""
    title = pick(lang, "每日趋势", "Daily trend")
    chart = pygal.Line(
        **_config(lang, f"{title} · {_scope_title(report, lang)}", SERIES_COLOURS),
        dots_size=3,
        y_title=pick(lang, "件数", "Tickets"),
        x_label_rotation=0 if len(report.days) <= 16 else 45,
        min_scale=4,
    )
    chart.x_labels = [f"{row.day:%m-%d}" for row in report.days]
    if any(row.figures.issued or row.figures.served for row in report.days):
        chart.add(pick(lang, "取号", "Issued"), [row.figures.issued for row in report.days])
        chart.add(pick(lang, "办结", "Served"), [row.figures.served for row in report.days])
        _add_wait(chart, lang, [_minutes(row.figures.wait.mean_s) for row in report.days])
    return str(chart.render(is_unicode=True))


_RENDERERS: Final[dict[str, Callable[[Report, str], str]]] = {
    "hourly": hourly_chart,
    "ratings": ratings_chart,
    "trend": trend_chart,
}


def chart_svg(name: str, report: Report, lang: str = "zh") -> str:
    """The named chart as an SVG document; ValueError for an unknown name or language."""
    check_lang(lang)
    renderer = _RENDERERS.get(name)
    if renderer is None:
        raise ValueError(f"chart must be one of {', '.join(CHARTS)}, not {name!r}")
    return renderer(report, lang)
