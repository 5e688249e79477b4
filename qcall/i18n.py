"""Language choice and the hub's own bilingual messages (Chinese first, English second)."""

from __future__ import annotations

from typing import Final

DEFAULT_LANG: Final = "zh"
SUPPORTED: Final = ("zh", "en")

MESSAGES: Final[dict[str, tuple[str, str]]] = {
    "unauthorized": ("需要登录或有效的访问令牌", "a valid bearer token is required"),
    "forbidden_role": ("您的角色无权执行此操作", "your role may not do this"),
    "bad_json": ("请求内容不是有效的 JSON", "the request body is not valid JSON"),
    "too_deep": ("请求内容嵌套层数过多", "the request body is nested too deeply"),
    "bad_body": ("请求内容有误", "the request body is invalid"),
    "too_large": ("请求内容过大", "the request body is too large"),
    "no_route": ("没有这个接口", "no such endpoint"),
    "bad_method": ("该接口不支持此请求方法", "this endpoint does not allow that method"),
    "bad_param": ("参数有误", "a parameter is invalid"),
    "login_failed": ("工号或密码错误", "wrong staff id or PIN"),
    "login_throttled": (
        "密码错误次数过多，请 15 分钟后再试",
        "too many wrong PINs; try again in 15 minutes",
    ),
    "login_busy": (
        "登录请求过多，请稍后再试",
        "too many logins at once; try again in a moment",
    ),
    "login_address_throttled": (
        "此设备登录失败次数过多，请 10 分钟后再试",
        "too many failed logins from this device; try again in 10 minutes",
    ),
    "metrics_forbidden": ("此地址不能读取监控指标", "metrics are not served to this address"),
    "internal": ("系统内部错误，已记录，请稍后重试", "internal error (logged); please retry"),
}


def pick_language(accept_language: str | None) -> str:
    """Choose ``zh`` or ``en`` from an Accept-Language header (q-values honoured)."""
    if not accept_language:
        return DEFAULT_LANG
    best, best_q = DEFAULT_LANG, -1.0
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        # Earlier entries win ties, as browsers list preferences in order.
        score = quality - index * 1e-6
        if primary in SUPPORTED and quality > 0 and score > best_q:
            best, best_q = primary, score
    return best


def text(key: str, lang: str) -> str:
    """Return a hub message in ``lang``."""
    zh, en = MESSAGES[key]
    return zh if lang == "zh" else en
