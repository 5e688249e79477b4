"""SVG charts of the generated month: what they plot, that they stand alone, how they look.

Each chart is parsed as XML and its plotted values are read back from pygal's per-point
``<desc class="value">``; then real Chromium renders it to a PNG saved under
``var/artifacts/reports/`` (the screenshots a reviewer opens), which must not be blank.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Final

import pytest
from PIL import Image

from qcall.reports import CHARTS, Report, build_report
from qcall.reports.charts import chart_svg
from tests.month import Month, generate_month

ROOT: Final = Path(__file__).resolve().parents[2]
ARTIFACTS: Final = ROOT / "var" / "artifacts" / "reports"
SVG: Final = "{http://www.w3.org/2000/svg}"
# A cold Chromium start with a fresh profile takes a few seconds on a busy 2-core box.
CHROMIUM_TIMEOUT_S: Final = 90.0


@pytest.fixture(scope="module")
def month() -> Month:
    return generate_month()


@pytest.fixture(scope="module")
def report(month: Month) -> Report:
    return build_report(month.config, month.events, month.days[0], month.days[-1], kind="monthly")


def series(svg: str) -> dict[str, list[str]]:
    """Legend title → the values plotted for it, in order."""
    root = ET.fromstring(svg.encode())
    titles = [
        "".join(g.itertext()).strip()
        for g in root.iter(f"{SVG}g")
        if "legend" in (g.get("class") or "").split()
    ]
    values: dict[int, list[str]] = {}
    for g in root.iter(f"{SVG}g"):
        classes = (g.get("class") or "").split()
        if "series" not in classes:
            continue
        index = int(next(c for c in classes if c.startswith("serie-")).removeprefix("serie-"))
        found = [d.text or "" for d in g.iter(f"{SVG}desc") if d.get("class") == "value"]
        values.setdefault(index, []).extend(found)
    assert sorted(values) == list(range(len(titles)))
    return {title: values[i] for i, title in enumerate(titles)}


def test_hourly_chart_plots_the_report(report: Report) -> None:
    svg = chart_svg("hourly", report, "zh")
    plotted = series(svg)
    assert list(plotted) == ["取号", "平均等候(分，右轴)"]
    assert plotted["取号"] == [str(h.arrivals) for h in report.hours]
    waits = [f"{h.wait.mean_s / 60:.1f}" if h.wait.mean_s is not None else "" for h in report.hours]
    assert [float(v) for v in plotted["平均等候(分，右轴)"]] == [float(w) for w in waits]
    assert "测试街道社区事务受理服务中心 2026-11" in svg


def test_ratings_chart_stacks_each_window(report: Report) -> None:
    plotted = series(chart_svg("ratings", report, "en"))
    assert list(plotted) == ["1 very dissatisfied", "2 dissatisfied", "3 fair",
                             "4 satisfied", "5 very satisfied"]  # fmt: skip
    for score, values in enumerate(plotted.values()):
        assert values == [str(w.figures.ratings.distribution[score]) for w in report.windows]


def test_trend_chart_has_every_day(report: Report) -> None:
    plotted = series(chart_svg("trend", report, "zh"))
    assert plotted["取号"] == [str(d.figures.issued) for d in report.days]
    assert plotted["办结"] == [str(d.figures.served) for d in report.days]
    assert len(plotted["取号"]) == 30


@pytest.mark.parametrize("name", CHARTS)
def test_charts_stand_alone(report: Report, name: str) -> None:
    svg = chart_svg(name, report, "both")
    root = ET.fromstring(svg.encode())
    assert root.tag == f"{SVG}svg"
    for script in root.iter(f"{SVG}script"):
        assert script.get("href") is None
        assert script.get("{http://www.w3.org/1999/xlink}href") is None
    assert "kozea.github.io" not in svg  # no tooltip script fetched from elsewhere


def test_empty_report_says_no_data(month: Month) -> None:
    empty = build_report(month.config, [], month.days[0], month.days[0], kind="daily")
    for name in CHARTS:
        assert "无数据" in chart_svg(name, empty, "zh")
        assert "No data" in chart_svg(name, empty, "en")
    with pytest.raises(ValueError, match="chart"):
        chart_svg("pie", empty)


def screenshot(svg_path: Path, png_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed for the chart screenshots (make sysdeps installs it)"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--window-size=960,540",
             "--hide-scrollbars", f"--screenshot={png_path}", svg_path.as_uri()],
            capture_output=True, timeout=CHROMIUM_TIMEOUT_S, check=True,
        )  # fmt: skip


def test_charts_render_in_chromium(report: Report, month: Month) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    day = build_report(month.config, month.events, month.days[1], month.days[1], kind="daily")
    for name, source, lang in [*((n, report, "zh") for n in CHARTS), ("hourly", day, "en")]:
        stem = f"chart-{name}-{lang}-{'day' if source is day else 'month'}"
        svg_path = ARTIFACTS / f"{stem}.svg"
        svg_path.write_text(chart_svg(name, source, lang), encoding="utf-8")
        png_path = ARTIFACTS / f"{stem}.png"
        png_path.unlink(missing_ok=True)
        screenshot(svg_path, png_path)
        with Image.open(png_path) as image:
            assert image.size == (960, 540)
            grey = image.convert("L")
            dark = sum(grey.histogram()[:128])
            # axes, text and lines: a blank or broken render has (almost) no dark pixels
            assert dark > 2000, (stem, dark)


@pytest.mark.parametrize("name", ["hourly", "trend"])
def test_a_morning_with_arrivals_and_nothing_served_yet_draws_its_chart(name: str) -> None:
    # Tickets issued, none called: every mean wait is unknown (None). The chart still draws
    # the arrivals (the supervisor page shows it from the first ticket of the day).
    from qcall.engine import Engine
    from tests.common import Clock, make_config

    config = make_config()
    engine, clock = Engine(config), Clock()
    for _ in range(2):
        engine.issue(clock.advance(minutes=3), "social")
    events = engine.drain()
    day = clock.now.date()
    kind = "monthly" if name == "trend" else "daily"
    report = build_report(config, events, day, day, kind=kind)
    drawn = series(chart_svg(name, report, "en"))
    assert drawn[next(t for t in drawn if t.startswith(("Arrivals", "Issued")))] == ["2"]
    assert not any(title.startswith("Mean wait") for title in drawn)
