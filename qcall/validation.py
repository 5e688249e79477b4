"""Validation errors in words an operator or integrator reads: Chinese and English, no regexes.

Both the configuration loader and the API's request bodies describe pydantic's errors through
``describe``; validators that need their own wording raise ``bilingual(en, zh)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic_core import PydanticCustomError

# The error type our validators raise; its context carries both languages.
BILINGUAL_TYPE: Final = "qcall_bilingual"

# What a pattern means, for the patterns the configuration and the API use.
PATTERNS: Final[dict[str, tuple[str, str]]] = {
    r"^[a-z][a-z0-9_]{0,39}$": (
        "an identifier: a lowercase letter, then lowercase letters, digits or _, at most 40",
        "标识：以小写字母开头，只含小写字母、数字和下划线，最长 40 个字符",
    ),
    r"^[A-Z]{1,2}$": ("one or two capital letters, like A or BC", "一到两个大写字母，如 A 或 BC"),
    r"^[A-Za-z]{1,2}\d{1,4}$": ("a ticket number like A012", "号码，如 A012"),
    r"^https?://": (
        "an address starting with http:// or https://",
        "以 http:// 或 https:// 开头的地址",
    ),
}

# Error type -> (English, Chinese) templates over the error's context.
_TEMPLATES: Final[dict[str, tuple[str, str]]] = {
    "missing": ("required key is missing", "缺少必填项"),
    "extra_forbidden": ("unknown key (typo?)", "未知的键（拼写错误？）"),
    "string_type": ("should be text", "应为文本"),
    "int_type": ("should be a whole number", "应为整数"),
    "int_parsing": ("should be a whole number", "应为整数"),
    "int_from_float": ("should be a whole number", "应为整数"),
    "float_type": ("should be a number", "应为数字"),
    "float_parsing": ("should be a number", "应为数字"),
    "bool_type": ("should be true or false", "应为 true 或 false"),
    "bool_parsing": ("should be true or false", "应为 true 或 false"),
    "list_type": ("should be a list", "应为列表"),
    "tuple_type": ("should be a list", "应为列表"),
    "set_type": ("should be a list", "应为列表"),
    "dict_type": ("should be a table of keys and values", "应为键值表"),
    "model_type": ("should be a table of keys and values", "应为键值表"),
    "model_attributes_type": ("should be a table of keys and values", "应为键值表"),
    "greater_than": ("should be greater than {gt}", "应大于 {gt}"),
    "greater_than_equal": ("should be at least {ge}", "应不小于 {ge}"),
    "less_than": ("should be less than {lt}", "应小于 {lt}"),
    "less_than_equal": ("should be at most {le}", "应不大于 {le}"),
    "string_too_short": ("needs at least {min_length} character(s)", "至少 {min_length} 个字符"),
    "string_too_long": ("allows at most {max_length} characters", "最多 {max_length} 个字符"),
    "too_short": ("needs at least {min_length} item(s)", "至少要有 {min_length} 项"),
    "too_long": ("allows at most {max_length} items", "最多 {max_length} 项"),
    "literal_error": ("should be one of {expected}", "应为以下之一：{expected}"),
    "enum": ("should be one of {expected}", "应为以下之一：{expected}"),
    "time_type": ("should be a time like 08:30", "应为时间，如 08:30"),
    "time_parsing": ("should be a time like 08:30", "应为时间，如 08:30"),
    "date_type": ("should be a date like 2026-10-01", "应为日期，如 2026-10-01"),
    "date_parsing": ("should be a date like 2026-10-01", "应为日期，如 2026-10-01"),
    "date_from_datetime_parsing": (
        "should be a date like 2026-10-01",
        "应为日期，如 2026-10-01",
    ),
    "date_from_datetime_inexact": ("should be a date without a time", "应为日期，不带时间"),
    "datetime_type": (
        "should be a date and time like 2026-10-01T08:30:00+08:00",
        "应为日期时间，如 2026-10-01T08:30:00+08:00",
    ),
    "datetime_parsing": (
        "should be a date and time like 2026-10-01T08:30:00+08:00",
        "应为日期时间，如 2026-10-01T08:30:00+08:00",
    ),
    "json_invalid": ("is not valid JSON", "不是有效的 JSON"),
    "json_type": ("should be JSON", "应为 JSON"),
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem: where it is and what is wrong, in both languages."""

    where: str
    en: str
    zh: str


def bilingual(en: str, zh: str) -> PydanticCustomError:
    """The error a validator raises so that both languages reach the reader."""
    return PydanticCustomError(BILINGUAL_TYPE, "{en}", {"en": en, "zh": zh})


def format_loc(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as ``windows[2].services[0].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def describe(error: Mapping[str, Any]) -> tuple[str, str]:
    """(English, Chinese) for one pydantic error, with the value it got when that helps."""
    kind = str(error["type"])
    context: dict[str, Any] = dict(error.get("ctx") or {})
    if kind == BILINGUAL_TYPE:
        return str(context["en"]), str(context["zh"])
    if kind == "string_pattern_mismatch":
        en, zh = PATTERNS.get(
            str(context.get("pattern")), ("does not have the expected form", "格式不符合要求")
        )
        en, zh = f"should be {en}", f"应为{zh}"
    elif kind in _TEMPLATES:
        if kind in ("literal_error", "enum"):
            # pydantic quotes the choices as 'a', 'b' or 'c': keep it, it names real values.
            context["expected"] = str(context.get("expected", "")).replace(" or ", ", ")
        en_template, zh_template = _TEMPLATES[kind]
        try:
            en, zh = en_template.format(**context), zh_template.format(**context)
        except (KeyError, IndexError):
            en, zh = str(error["msg"]), "取值无效"
    elif kind == "value_error" and isinstance(context.get("error"), ValueError):
        # A plain ValueError from a library (an IP network, a time zone): its own words.
        en, zh = str(context["error"]), "取值无效"
    else:
        en, zh = str(error["msg"]), "取值无效"
    value = error.get("input")
    if kind not in ("missing", "extra_forbidden") and isinstance(value, (str, int, float, bool)):
        en, zh = f"{en} (got {value!r})", f"{zh}（当前值：{value!r}）"
    return en, zh


def problems_of(errors: list[Any], prefix: tuple[int | str, ...] = ()) -> list[Problem]:
    """Every pydantic error as a Problem (``prefix`` is prepended to each location)."""
    found = []
    for error in errors:
        en, zh = describe(error)
        found.append(Problem(format_loc((*prefix, *error["loc"])), en, zh))
    return found
