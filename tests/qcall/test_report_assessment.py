"""The staff assessment (统一考核): weights from the config, validated; scores from the month."""

from __future__ import annotations

import pytest

from qcall.config import AssessmentWeights, CenterConfig, parse_config
from qcall.errors import ConfigError
from qcall.reports import Report, assess, assessment_json, assessment_sections, build_report
from qcall.reports.render import sections_csv
from tests.common import small_center
from tests.month import BACK_OFFICE_STAFF, generate_month


@pytest.fixture(scope="module")
def report() -> Report:
    month = generate_month(days=10)
    return build_report(
        month.config, month.events, month.days[0], month.days[-1], kind="monthly",
        staff_names={"s1": "张伟"},
    )  # fmt: skip


def config_with(reports: dict[str, object]) -> CenterConfig:
    return parse_config(small_center(reports=reports), "center.toml")


def test_weights_come_from_the_config() -> None:
    config = config_with({"assessment": {"served": 50, "satisfaction": 50, "wait_on_target": 0,
                                         "cases_on_time": 0, "inquiries": 0}})  # fmt: skip
    assert config.reports.assessment.served == 50
    assert config_with({}).reports.assessment == AssessmentWeights()  # 40/30/10/10/10
    assert config_with({}).reports.satisfied_min_score == 3


@pytest.mark.parametrize(
    ("reports", "where", "says"),
    [
        ({"assessment": {"served": 50}}, "reports.assessment", "add up to 100, not 110"),
        ({"assessment": {"speed": 10}}, "reports.assessment.speed", "unknown key"),
        ({"assessment": {"served": -5}}, "reports.assessment.served", "should be at least 0"),
        ({"satisfied_min_score": 6}, "reports.satisfied_min_score", "should be at most 5"),
    ],
)
def test_bad_weights_are_refused(reports: dict[str, object], where: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_with(reports)
    assert any(loc == where and says in msg for loc, msg in caught.value.problems), (
        caught.value.problems
    )


def test_sum_error_is_bilingual() -> None:
    with pytest.raises(ConfigError) as caught:
        config_with({"assessment": {"served": 50}})
    [problem] = caught.value.items
    assert problem.zh == "考核权重之和应为 100，现为 110"
    assert problem.en == "the assessment weights must add up to 100, not 110"


def test_scores_follow_the_weights(report: Report) -> None:
    weights = AssessmentWeights()
    sheet = assess(report, weights)
    weight = weights.model_dump()
    served_best = max(r.figures.served for r in report.staff if r.figures.called)
    inquiries_best = max(r.figures.inquiries for r in report.staff)
    by_id = {row.staff: row for row in sheet.rows}
    for member in report.staff:
        row = by_id[member.id]
        f = member.figures
        scores = {s.key: s.score for s in row.scores}
        if f.called:
            assert scores["served"] == pytest.approx(100 * f.served / served_best)
        assert scores["inquiries"] == pytest.approx(100 * f.inquiries / inquiries_best)
        assert scores["satisfaction"] == f.ratings.satisfaction_pct
        assert scores["cases_on_time"] == f.cases_kept_pct
        counted = {k: v for k, v in scores.items() if v is not None}
        assert row.weight_counted == sum(weight[k] for k in counted)
        assert row.total == pytest.approx(
            sum(weight[k] * v for k, v in counted.items()) / row.weight_counted
        )
    # the back office calls no one and accepts no case: only its inquiries count
    bo1 = by_id[BACK_OFFICE_STAFF]
    assert {s.key for s in bo1.scores if s.score is None} == {
        "served",
        "satisfaction",
        "wait_on_target",
        "cases_on_time",
    }
    assert bo1.weight_counted == 10
    # ranks follow the totals, best first
    ranked = [row for row in sheet.rows if row.rank is not None]
    assert [row.rank for row in ranked] == sorted(row.rank for row in ranked)
    totals = [row.total for row in ranked]
    assert totals == sorted(totals, reverse=True)
    assert ranked[0].rank == 1


def test_weights_change_the_ranking(report: Report) -> None:
    only_served = AssessmentWeights(
        served=100, satisfaction=0, wait_on_target=0, cases_on_time=0, inquiries=0
    )
    sheet = assess(report, only_served)
    first = sheet.rows[0]
    assert first.total == 100.0
    assert first.staff == max(report.staff, key=lambda r: r.figures.served).id


def test_sheet_renders(report: Report) -> None:
    sheet = assess(report, AssessmentWeights())
    data = assessment_json(sheet)
    assert data["period"] == "2026-11"
    assert data["weights"]["served"] == 40
    s1 = next(m for m in data["staff"] if m["id"] == "s1")
    assert s1["name"] == "张伟"
    text = sections_csv(assessment_sections(sheet, "zh"))
    assert "满意率得分" in text
    assert "总分" in text
