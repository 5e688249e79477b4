"""The monthly staff assessment (统一考核), scored from a month's report.

Each criterion gives a staff member a score from 0 to 100:

- ``served`` (办件量): tickets served (done + back office) as a share of the most any staff
  member served in the month (no data for someone who called no ticket: back office);
- ``satisfaction`` (满意率): the share of their ratings counted as satisfied;
- ``wait_on_target`` (等候达标率): the share of the tickets they called first that waited
  no longer than the service's target;
- ``cases_on_time`` (按期办结率): of the back-office cases they accepted (first-responsible)
  whose promised date fell in the month, the share made ready by then;
- ``inquiries`` (首问登记): first-inquiry log entries as a share of the most anyone logged.

The total is the weighted mean of the scores with the weights of ``[reports.assessment]``
(they add up to 100). A criterion without data for that person (no ratings, no cases made
ready, no calls) is left out and the other weights count in its place, so nobody gains or
loses for what did not happen; the sheet shows which weights counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from qcall.config import AssessmentWeights
from qcall.reports.figures import Figures, Report
from qcall.reports.render import Column, Kind, Section, period, pick


@dataclass(frozen=True, slots=True)
class Criterion:
    """One assessment criterion: names, the raw figure and its unit."""

    key: str
    zh: str
    en: str
    unit_zh: str
    unit_en: str
    raw: Callable[[Figures], float | None]
    relative: bool  # scored against the best in the month


def _served(f: Figures) -> float | None:
    return f.served if f.called else None


def _wait_on_target(f: Figures) -> float | None:
    return None if f.over_target_pct is None else 100.0 - f.over_target_pct


CRITERIA: Final = (
    Criterion("served", "办件量", "Served", "件", "tickets", _served, True),
    Criterion(
        "satisfaction",
        "满意率",
        "Satisfaction",
        "%",
        "%",
        lambda f: f.ratings.satisfaction_pct,
        False,
    ),
    Criterion("wait_on_target", "等候达标率", "Wait on target", "%", "%", _wait_on_target, False),
    Criterion(
        "cases_on_time",
        "按期办结率",
        "Cases on time",
        "%",
        "%",
        lambda f: f.cases_kept_pct,
        False,
    ),
    Criterion("inquiries", "首问登记", "Inquiries", "条", "entries", lambda f: f.inquiries, True),
)


@dataclass(frozen=True, slots=True)
class Score:
    """One criterion for one staff member: the raw figure and its 0–100 score."""

    key: str
    raw: float | None
    score: float | None


@dataclass(frozen=True, slots=True)
class AssessmentRow:
    """One staff member's line of the sheet."""

    rank: int | None
    staff: str
    name: str
    scores: tuple[Score, ...]
    weight_counted: int
    total: float | None


@dataclass(frozen=True, slots=True)
class Assessment:
    """The sheet of a month (or any range) with the weights it was scored with."""

    report: Report
    weights: dict[str, int]
    rows: tuple[AssessmentRow, ...]


def assess(report: Report, weights: AssessmentWeights) -> Assessment:
    """Score every staff member of ``report`` (see the module doc)."""
    weight = weights.model_dump()
    best = {
        c.key: max((c.raw(row.figures) or 0.0 for row in report.staff), default=0.0)
        for c in CRITERIA
        if c.relative
    }
    unranked: list[AssessmentRow] = []
    for row in report.staff:
        scores = []
        for c in CRITERIA:
            raw = c.raw(row.figures)
            if raw is None:
                score = None
            elif c.relative:
                score = 100.0 * raw / best[c.key] if best[c.key] else None
            else:
                score = raw
            scores.append(Score(c.key, raw, score))
        counted = sum(weight[s.key] for s in scores if s.score is not None)
        total = (
            sum(weight[s.key] * s.score for s in scores if s.score is not None) / counted
            if counted
            else None
        )
        unranked.append(AssessmentRow(None, row.id, row.name, tuple(scores), counted, total))
    ordered = sorted(unranked, key=lambda r: (r.total is None, -round(r.total or 0.0, 1), r.staff))
    rows: list[AssessmentRow] = []
    for i, line in enumerate(ordered):
        rank: int | None = None
        if line.total is not None:
            previous = rows[-1] if rows else None
            if (
                previous is not None
                and previous.total is not None
                and round(previous.total, 1) == round(line.total, 1)
            ):
                rank = previous.rank
            else:
                rank = i + 1
        rows.append(
            AssessmentRow(rank, line.staff, line.name, line.scores, line.weight_counted, line.total)
        )
    return Assessment(report, weight, tuple(rows))


def assessment_sections(assessment: Assessment, lang: str = "zh") -> list[Section]:
    """The sheet as sections: about (period and weights) and one row per staff member."""
    report = assessment.report
    about = Section(
        "about",
        "统一考核",
        "Staff assessment",
        (
            Column("from", "起始日期", "From"),
            Column("to", "截止日期", "To"),
            Column("center", "中心", "Center"),
            *(
                Column(f"weight_{c.key}", f"{c.zh}权重%", f"{c.en} weight %", "int")
                for c in CRITERIA
            ),
        ),
        (
            (
                report.first.isoformat(),
                report.last.isoformat(),
                pick(lang, report.center_zh, report.center_en)
                if lang != "both"
                else report.center_zh,
                *(assessment.weights[c.key] for c in CRITERIA),
            ),
        ),
    )
    columns: list[Column] = [
        Column("rank", "名次", "Rank", "int"),
        Column("staff", "工作人员编号", "Staff id"),
        Column("staff_name", "姓名", "Name"),
    ]
    for c in CRITERIA:
        kind: Kind = "pct" if c.unit_en == "%" else "int"
        unit_zh = "%" if c.unit_zh == "%" else f"({c.unit_zh})"
        unit_en = " %" if c.unit_en == "%" else f" ({c.unit_en})"
        columns.append(Column(c.key, f"{c.zh}{unit_zh}", f"{c.en}{unit_en}", kind))
        columns.append(Column(f"{c.key}_score", f"{c.zh}得分", f"{c.en} score", "pct"))
    columns += [
        Column("weight_counted", "计分权重%", "Weight counted %", "int"),
        Column("total", "总分", "Total", "pct"),
    ]
    rows = []
    for row in assessment.rows:
        cells: list[str | int | float | None] = [row.rank, row.staff, row.name]
        for score in row.scores:
            cells += [score.raw, score.score]
        cells += [row.weight_counted, row.total]
        rows.append(tuple(cells))
    sheet = Section("assessment", "考核表", "Assessment", tuple(columns), tuple(rows))
    return [about, sheet]


def _one(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def assessment_json(sheet: Assessment) -> dict[str, Any]:
    """The sheet as JSON-able data (figures and scores to 0.1)."""
    report = sheet.report
    return {
        "from": report.first.isoformat(),
        "to": report.last.isoformat(),
        "period": period(report),
        "weights": sheet.weights,
        "staff": [
            {
                "rank": row.rank,
                "id": row.staff,
                "name": row.name,
                "criteria": {
                    s.key: {"value": _one(s.raw), "score": _one(s.score)} for s in row.scores
                },
                "weight_counted": row.weight_counted,
                "total": _one(row.total),
            }
            for row in sheet.rows
        ],
    }
