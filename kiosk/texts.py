"""Every text the kiosk shows, in Chinese and English (pure)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Final

from kiosk.catalog import KioskCatalog, Lang, ServiceItem, Text

T: Final[dict[str, Text]] = {
    "touch": Text("请触摸屏幕取号", "Touch to start"),
    "touch_sub": Text("Touch to start", "请触摸屏幕取号"),
    "lang_zh": Text("中文", "中文"),
    "lang_en": Text("English", "English"),
    "large_on": Text("大字 ✓", "Large ✓"),
    "large_off": Text("大字模式", "Large text"),
    "choose_department": Text("请选择部门", "Choose a department"),
    "choose_service": Text("请选择办理事项", "Choose what you need"),
    "pickup": Text("领取办结件", "Collect a finished case"),
    "pickup_sub": Text("凭取件码领取", "With your pickup code"),
    "back": Text("返回", "Back"),
    "home": Text("首页", "Start"),
    "prev": Text("上一页", "Previous"),
    "next": Text("下一页", "Next"),
    "take": Text("取号", "Take a ticket"),
    "priority": Text("绿色通道", "Priority lane"),
    "priority_sub": Text("老年人、残疾人、孕妇", "Elderly, disabled, pregnant"),
    "conditions": Text("办理条件", "Conditions"),
    "materials": Text("所需材料", "Materials to bring"),
    "procedure": Text("办理流程", "Procedure"),
    "approval_time": Text("办理时限", "Approval time"),
    "place": Text("办理地点", "Place"),
    "phone": Text("咨询电话", "Phone"),
    "policy_basis": Text("政策依据", "Policy basis"),
    "cooperating": Text("协办部门", "Cooperating departments"),
    "drag_hint": Text("上下拖动查看全文", "Drag up or down to read all"),
    "enter_code": Text("请输入取件码", "Enter your pickup code"),
    "erase": Text("删除", "Delete"),
    "confirm": Text("确认", "OK"),
    "issuing": Text("正在出票，请稍候…", "Issuing your ticket, please wait…"),
    "take_ticket": Text("请取走您的号票", "Please take your ticket"),
    "your_number": Text("您的号码", "Your number"),
    "done": Text("完成", "Done"),
    "photo": Text("请拍下号码和二维码", "Please take a photo of the number and QR code"),
    "not_served": Text(
        "暂无窗口办理，窗口开放后按顺序叫号", "No window open yet; called in order once one opens"
    ),
    "hub_down": Text(
        "暂时无法连接服务系统，正在自动重试，请稍候或到服务台咨询",
        "The service system cannot be reached; retrying. Please wait or ask the desk",
    ),
    "hub_down_short": Text("系统连接中断，暂停取号", "System offline: tickets paused"),
    "issue_failed": Text(
        "暂时无法取号，未出号票。请稍后再试或到服务台咨询",
        "No ticket could be issued. Please try again later or ask the desk",
    ),
    "printer_refuse": Text(
        "打印机暂时无法出票，暂停取号。请到服务台取号",
        "The printer cannot print: tickets paused. Please ask the desk",
    ),
    "printer_show": Text(
        "打印机暂时无法出票，号码将显示在屏幕上",
        "The printer cannot print: your number will be shown on screen",
    ),
    "idle": Text(
        "无操作，{s} 秒后返回首页，触摸屏幕继续", "Returning to start in {s} s: touch to stay"
    ),
    "result_timeout": Text("{s} 秒后返回首页", "Back to start in {s} s"),
    "error_title": Text("无法取号", "No ticket issued"),
    "closed_now": Text("现在不办理取号", "No tickets are issued now"),
    "unavailable": Text("暂不可取号", "Not available now"),
}

REASONS: Final[dict[str, Text]] = {
    "closed_today": Text("今日不办理", "Not offered today"),
    "outside_hours": Text("不在取号时间", "Outside ticket hours"),
    "daily_cap_reached": Text("今日已满", "Full today"),
    "no_window_open": Text("暂无窗口办理", "No window open"),
}

_WEEKDAYS_ZH: Final = "一二三四五六日"


def t(key: str, lang: Lang, **values: object) -> str:
    """Return the text ``key`` in ``lang`` with ``{name}`` fields filled in."""
    text = T[key].get(lang)
    return text.format(**values) if values else text


def minutes(seconds: int) -> int:
    """Round an estimate up to whole minutes (as the printed ticket does)."""
    return max(0, math.ceil(seconds / 60))


def wait_line(service: ServiceItem, lang: Lang) -> str:
    """Return "等候 5 人 · 约 15 分钟" for a service."""
    mins = minutes(service.estimated_wait_s)
    if lang == "zh":
        return f"等候 {service.waiting} 人 · 约 {mins} 分钟"
    return f"{service.waiting} waiting · about {mins} min"


def when_line(opens_at: dt.datetime | None, now: dt.datetime, lang: Lang) -> str:
    """Return when to come back: "明天 08:30 起可取号" / "From 08:30 tomorrow"."""
    if opens_at is None:
        return ""
    local = opens_at.astimezone(now.tzinfo) if now.tzinfo else opens_at
    days = (local.date() - now.date()).days
    clock = local.strftime("%H:%M")
    if lang == "zh":
        if days == 0:
            day = "今天"
        elif days == 1:
            day = "明天"
        else:
            day = f"{local.month}月{local.day}日（周{_WEEKDAYS_ZH[local.weekday()]}）"
        return f"{day} {clock} 起可取号"
    if days == 0:
        day = "today"
    elif days == 1:
        day = "tomorrow"
    else:
        day = local.strftime("%a %d %b").replace(" 0", " ")
    return f"From {clock} {day}"


def reason_line(service: ServiceItem, now: dt.datetime, lang: Lang) -> str:
    """Return why a service is greyed and when to come back."""
    reason = REASONS.get(service.reason or "", T["unavailable"]).get(lang)
    when = when_line(service.opens_at, now, lang)
    return f"{reason} · {when}" if when else reason


def result_line(ahead: int, estimated_wait_s: int | None, lang: Lang) -> str:
    """Return "前面还有 5 人，预计等候 15 分钟"."""
    if lang == "zh":
        text = f"前面还有 {ahead} 人"
        if estimated_wait_s is not None:
            text += f"，预计等候 {minutes(estimated_wait_s)} 分钟"
        return text
    text = f"{ahead} ahead of you"
    if estimated_wait_s is not None:
        text += f", about {minutes(estimated_wait_s)} min"
    return text


def clock_line(now: dt.datetime, lang: Lang) -> str:
    """Return the date and time shown on the welcome screen."""
    if lang == "zh":
        return f"{now.year}年{now.month}月{now.day}日 星期{_WEEKDAYS_ZH[now.weekday()]} {now:%H:%M}"
    return now.strftime("%a %d %b %Y  %H:%M")


def closed_line(catalog: KioskCatalog, now: dt.datetime, lang: Lang) -> str:
    """Return "现在不办理取号 · 明天 08:30 起可取号" when no service issues tickets now, else ""."""
    services = [s for s in catalog.services if s.kind != "pickup"]
    if not services or any(s.available for s in services):
        return ""
    opens = [s.opens_at for s in services if s.opens_at is not None]
    text = t("closed_now", lang)
    when = when_line(min(opens), now, lang) if opens else ""
    return f"{text} · {when}" if when else text
