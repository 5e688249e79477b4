"""Reports computed from the event log: figures, renderings, the assessment, charts.

``figures`` computes (pure), ``render`` writes JSON, CSV and terminal tables, ``xlsx``
workbooks, ``assessment`` scores staff (统一考核), ``charts`` draws SVG, ``source`` reads the
store, ``worker`` runs them in the hub's report process. ``charts`` and ``xlsx`` are not
imported here: the hub process never loads pygal or xlsxwriter (the worker does).
"""

from __future__ import annotations

from qcall.reports.assessment import Assessment, assess, assessment_json, assessment_sections
from qcall.reports.figures import (
    DailyReport,
    DayRow,
    DayStatus,
    Durations,
    Figures,
    HourRow,
    Ratings,
    Report,
    Scope,
    ServiceRow,
    StaffRow,
    WindowRow,
    build_report,
    daily_report,
    durations,
    month_bounds,
    nearest_rank_p90,
)
from qcall.reports.render import (
    CHARTS,
    LANGS,
    Section,
    display_width,
    figures_json,
    report_sections,
    sections_csv,
    to_csv,
    to_json,
    to_table,
)
from qcall.reports.source import report_from_store

__all__ = [
    "CHARTS",
    "LANGS",
    "Assessment",
    "DailyReport",
    "DayRow",
    "DayStatus",
    "Durations",
    "Figures",
    "HourRow",
    "Ratings",
    "Report",
    "Scope",
    "Section",
    "ServiceRow",
    "StaffRow",
    "WindowRow",
    "assess",
    "assessment_json",
    "assessment_sections",
    "build_report",
    "daily_report",
    "display_width",
    "durations",
    "figures_json",
    "month_bounds",
    "nearest_rank_p90",
    "report_from_store",
    "report_sections",
    "sections_csv",
    "to_csv",
    "to_json",
    "to_table",
]
