"""Sections as an XLSX workbook (xlsxwriter): one sheet per section, the CSV's cells."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Final

import xlsxwriter

from qcall.reports.render import Section, cell_value, check_lang

# Excel refuses sheet names longer than 31 characters or with any of []:*?/\ in them.
_SHEET_NAME_MAX: Final = 31
_SHEET_FORBIDDEN: Final = re.compile(r"[\[\]:*?/\\]")
_MIN_WIDTH: Final = 6
_MAX_WIDTH: Final = 40


def _sheet_name(title: str, taken: set[str]) -> str:
    base = _SHEET_FORBIDDEN.sub(" ", title)[:_SHEET_NAME_MAX] or "Sheet"
    name, n = base, 2
    while name.lower() in taken:
        suffix = f" {n}"
        name, n = base[: _SHEET_NAME_MAX - len(suffix)] + suffix, n + 1
    taken.add(name.lower())
    return name


def _width(text: str) -> int:
    return sum(2 if ord(c) > 0x2E80 else 1 for c in text)


def sections_xlsx(sections: Sequence[Section], lang: str = "zh") -> bytes:
    """Write the sections as a workbook; numbers stay numbers, no sample stays empty."""
    check_lang(lang)
    out = io.BytesIO()
    workbook = xlsxwriter.Workbook(out, {"in_memory": True})
    try:
        bold = workbook.add_format({"bold": True, "bg_color": "#E8EEF7", "border": 1})
        title_format = workbook.add_format({"bold": True, "font_size": 13})
        tenth = workbook.add_format({"num_format": "0.0"})
        hundredth = workbook.add_format({"num_format": "0.00"})
        taken: set[str] = set()
        for section in sections:
            sheet = workbook.add_worksheet(_sheet_name(section.title(lang), taken))
            sheet.write_string(0, 0, section.title(lang), title_format)
            widths = []
            for col, column in enumerate(section.columns):
                header = column.header(lang)
                sheet.write_string(1, col, header, bold)
                widths.append(_width(header))
            for r, row in enumerate(section.rows, start=2):
                for col, (column, raw) in enumerate(zip(section.columns, row, strict=True)):
                    value = cell_value(column, raw)
                    if value is None:
                        continue
                    if isinstance(value, str):
                        sheet.write_string(r, col, value)
                        widths[col] = max(widths[col], _width(value))
                    elif column.kind in ("s", "pct"):
                        sheet.write_number(r, col, float(value), tenth)
                    elif column.kind == "avg":
                        sheet.write_number(r, col, float(value), hundredth)
                    else:
                        sheet.write_number(r, col, value)
            for col, width in enumerate(widths):
                sheet.set_column(col, col, min(max(width + 2, _MIN_WIDTH), _MAX_WIDTH))
            sheet.freeze_panes(2, 1)
    finally:
        workbook.close()
    return out.getvalue()
