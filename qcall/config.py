"""Load and validate a center's TOML configuration into frozen typed objects."""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from qcall.errors import ConfigError
from qcall.model import DayType, Policy, ServiceKind, WindowType
from qcall.validation import Problem, bilingual, problems_of

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BusAddress = Annotated[int, Field(ge=1, le=0x7F)]
Prefix = Annotated[str, Field(pattern=r"^[A-Z]{1,2}$")]
Ident = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


# "24:00" as an end: until midnight (a service open around the clock has no gap at 23:59).
END_OF_DAY: Final = dt.time.max
_MIDNIGHT_END: Final = frozenset({"24:00", "24:00:00"})


def hhmm(at: dt.time) -> str:
    """``HH:MM``, the end of the day written 24:00."""
    return "24:00" if at == END_OF_DAY else f"{at:%H:%M}"


class Hours(_Frozen):
    """An opening interval within one day, local time (``end`` may be ``"24:00"``)."""

    start: dt.time
    end: dt.time

    @field_validator("end", mode="before")
    @classmethod
    def _midnight(cls, end: Any) -> Any:
        return END_OF_DAY if isinstance(end, str) and end.strip() in _MIDNIGHT_END else end

    @field_serializer("end", when_used="json")
    def _end_text(self, end: dt.time) -> str:
        return "24:00" if end == END_OF_DAY else end.isoformat()

    def label(self) -> str:
        """``09:00–16:30`` (or ``00:00–24:00``)."""
        return f"{hhmm(self.start)}–{hhmm(self.end)}"

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: dt.time, info: Any) -> dt.time:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise bilingual("end must be later than start", "结束时间必须晚于开始时间")
        return end

    def contains(self, at: dt.time) -> bool:
        """Return whether ``at`` lies within ``[start, end)``."""
        return self.start <= at < self.end


class Center(_Frozen):
    """The service center itself."""

    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    address_zh: str = ""
    phone: str = ""
    timezone: str = "Asia/Shanghai"
    public_url: str = "http://127.0.0.1:8080"
    no_window_open: Literal["refuse", "issue"] = Field(
        default="issue",
        description="before any window serving a service opens: issue tickets (morning rule) "
        "or refuse with no_window_open",
    )
    ticket_rules: list[Annotated[str, Field(min_length=1, max_length=120)]] = Field(
        default_factory=lambda: [
            "过号请重新取号 Missed your call? Please take a new ticket",
            "本号当日有效 Valid today only",
        ],
        max_length=6,
        description="short rules printed at the foot of every ticket",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise bilingual(f"unknown time zone {value!r}", f"未知的时区 {value!r}") from err
        return value


class Override(_Frozen):
    """A dated exception to the weekly calendar (holiday, make-up working day)."""

    date: dt.date
    day_type: DayType
    note_zh: str = ""
    note_en: str = ""


class Calendar(_Frozen):
    """The 5+2 calendar: hours per day type, the weekly pattern and dated overrides."""

    day_types: dict[DayType, Hours]
    weekly: dict[str, DayType] = Field(
        default_factory=lambda: {
            **dict.fromkeys(WEEKDAYS[:5], DayType.WEEKDAY),
            "sat": DayType.WEEKEND_DUTY,
            "sun": DayType.WEEKEND_DUTY,
        }
    )
    overrides: list[Override] = Field(default_factory=list)

    @field_validator("day_types")
    @classmethod
    def _no_hours_for_closed(cls, value: dict[DayType, Hours]) -> dict[DayType, Hours]:
        if DayType.CLOSED in value:
            raise bilingual(
                "'closed' days have no hours; remove day_types.closed",
                "休息日（closed）没有办公时间，请删除 day_types.closed",
            )
        return value

    @field_validator("weekly")
    @classmethod
    def _all_weekdays(cls, value: dict[str, DayType]) -> dict[str, DayType]:
        if set(value) != set(WEEKDAYS):
            raise bilingual(
                f"weekly must name exactly {', '.join(WEEKDAYS)}",
                f"weekly 必须恰好列出 {', '.join(WEEKDAYS)} 这七天",
            )
        return value

    def day_type(self, day: dt.date) -> DayType:
        """Return the day type of ``day``, overrides first."""
        for override in self.overrides:
            if override.date == day:
                return override.day_type
        return self.weekly[WEEKDAYS[day.weekday()]]

    def hours(self, day: dt.date) -> Hours | None:
        """Return the center's opening hours on ``day``, or None when closed."""
        return self.day_types.get(self.day_type(day))


class Notice(_Frozen):
    """The notice sheet (告知单) of a service."""

    policy_basis: str = ""
    conditions: str = ""
    procedure: list[str] = Field(default_factory=list)
    materials: list[str] = Field(default_factory=list)
    approval_time: str = ""
    cooperating_departments: list[str] = Field(default_factory=list)
    place: str = ""
    phone: str = ""


class Department(_Frozen):
    """An owning department (部门)."""

    id: Ident
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)


class Service(_Frozen):
    """An item residents apply for (事项)."""

    id: Ident
    department: Ident
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    prefix: Prefix
    kind: ServiceKind = ServiceKind.INTAKE
    daily_cap: int = Field(default=200, ge=1, le=9999)
    hours: dict[DayType, Hours] = Field(
        description="issuing hours per day type; a day type not listed means not offered"
    )
    priority_lane: bool = True
    target_wait_min: int = Field(default=30, ge=1, le=600)
    handle_time_min: float = Field(default=8.0, gt=0, le=240)
    approval_days: int = Field(default=0, ge=0, le=365)
    notice: Notice = Field(default_factory=Notice)


class ServiceRef(_Frozen):
    """A service a window serves, with its weight under the strict policy."""

    id: Ident
    weight: int = Field(default=1, ge=1, le=100)


class WindowDevices(_Frozen):
    """Bus addresses of a window's devices."""

    counter_display: BusAddress | None = None
    keypad: BusAddress | None = None
    rating_pad: BusAddress | None = None


class Window(_Frozen):
    """A service point (窗口)."""

    number: int = Field(ge=1, le=999)
    type: WindowType
    services: list[ServiceRef] = Field(default_factory=list)
    devices: WindowDevices = Field(default_factory=WindowDevices)


class RoutingPolicy(_Frozen):
    """How call-next chooses."""

    mode: Policy = Policy.STRICT
    ratio: int = Field(default=3, ge=1, le=20, description="normal calls per priority call")
    promote_overdue: bool = True


class Bus(_Frozen):
    """The RS-485 QBus line (serial path or socket://host:port)."""

    url: str = Field(min_length=1)
    baud: int = Field(default=9600, ge=1200, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    rs485: bool = False
    reply_timeout_ms: int = Field(default=100, ge=10, le=5000)
    retries: int = Field(default=2, ge=0, le=10)
    poll_interval_ms: int = Field(default=100, ge=10, le=10000)
    group_poll: bool = Field(
        default=True,
        description="ask all keypads and rating pads at once (POLL_ANY); false for devices "
        "without it, which are then polled one by one",
    )


class Printer(_Frozen):
    """An ESC/POS ticket printer."""

    id: Ident = "kiosk"
    url: str = Field(min_length=1, description="tcp://host:9100, socket://, serial path, file")
    paper: Literal[58, 80] = 80
    chinese_mode: bool = True
    repertoire: Literal["gb2312", "gbk", "gb18030"] = "gbk"
    print_materials: bool = True


class Devices(_Frozen):
    """Devices the hub drives."""

    bus: Bus | None = None
    printers: list[Printer] = Field(default_factory=list)


class Webhook(_Frozen):
    """An outside system that receives every event, signed."""

    id: Ident
    url: str = Field(pattern=r"^https?://")
    secret: str = Field(min_length=16)
    events: list[str] = Field(default_factory=lambda: ["*"])


class HubSettings(_Frozen):
    """Server settings."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    screen_offline_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a lobby screen gone this long becomes a device.state offline event",
    )
    metrics_allow: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # Reverse proxies whose X-Forwarded-For / Forwarded headers are believed (none by default).
    trusted_proxies: list[str] = Field(default_factory=list)
    session_hours: float = Field(default=12.0, gt=0, le=72)
    max_body_bytes: int = Field(default=65536, ge=1024, le=10_000_000)
    web_session_key: str | None = Field(
        default=None,
        repr=False,
        description="staff pages' cookie key: 32 random bytes, URL-safe base64 (44 characters); "
        "when absent a key is generated once and kept in the database",
    )
    web_idle_minutes: int = Field(
        default=30, ge=1, le=720, description="staff pages log out after this long unused"
    )
    web_secure_cookie: bool = Field(
        default=False, description="mark the session cookie Secure (set when served over HTTPS)"
    )
    pause_alert_minutes: int = Field(
        default=20, ge=1, le=480, description="the supervisor is alerted to a pause this long"
    )

    @field_validator("web_session_key")
    @classmethod
    def _fernet_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import base64
        import binascii

        # The refusal never repeats the value: it is (meant to be) a secret.
        refusal = bilingual(
            "must be 32 random bytes in URL-safe base64 (44 characters)",
            "应为 32 字节随机数的 URL 安全 Base64 编码（44 个字符）",
        )
        try:
            raw = base64.urlsafe_b64decode(value.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError) as err:
            raise refusal from err
        if len(raw) != 32:
            raise refusal
        return value

    @field_validator("metrics_allow", "trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as err:
                raise bilingual(
                    f"{item!r} is not an IP address or network like 10.0.0.0/8",
                    f"{item!r} 不是 IP 地址或网段（如 10.0.0.0/8）",
                ) from err
        return value


class LobbyNotice(_Frozen):
    """One notice of the lobby screen's scrolling band (Chinese first, English optional)."""

    zh: str = Field(min_length=1, max_length=200)
    en: str = Field(default="", max_length=300)


_TEMPLATE_FIELDS = ("{number}", "{window}")


class Announce(_Frozen):
    """What the announcer says on a call: templates, English, repeats, chime, staleness."""

    template_zh: str = "请 {number} 号 到 {window} 号窗口办理"
    template_en: str = "Number {number}, please go to counter {window}"
    english: bool = True
    repeat: int = Field(default=2, ge=1, le=5)
    chime: bool = True
    max_delay_s: float = Field(
        default=60.0,
        ge=5,
        le=600,
        description="a call waiting longer than this in the announcer's queue is dropped",
    )

    @field_validator("template_zh", "template_en")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        for field_name in _TEMPLATE_FIELDS:
            if value.count(field_name) != 1:
                raise bilingual(
                    f"the template must contain {field_name} exactly once",
                    f"模板中必须恰好出现一次 {field_name}",
                )
        rest = value
        for field_name in _TEMPLATE_FIELDS:
            rest = rest.replace(field_name, "")
        if "{" in rest or "}" in rest:
            raise bilingual(
                "only {number} and {window} may appear in braces",
                "花括号中只能是 {number} 或 {window}",
            )
        if any(ch.isdigit() for ch in rest):
            raise bilingual(
                "write numbers in words: digits are spoken from the call",
                "模板中的数字请写成汉字或英文单词（阿拉伯数字只用于号码和窗口号）",
            )
        return value


class VolumePeriod(_Frozen):
    """The announcement volume (0–1) during a part of the day."""

    start: dt.time
    end: dt.time
    level: float = Field(ge=0, le=1)

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: dt.time, info: Any) -> dt.time:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise bilingual("end must be later than start", "结束时间必须晚于开始时间")
        return end


class Lobby(_Frozen):
    """The lobby screen and its voice; reaches every screen through the API."""

    notices: list[LobbyNotice] = Field(default_factory=list, max_length=50)
    show_figures: bool = True
    hall_depth_m: float = Field(
        default=10.0, ge=2, le=40, description="distance from the screen to the back wall"
    )
    volume: float = Field(default=0.8, ge=0, le=1, description="volume outside volume_schedule")
    volume_schedule: list[VolumePeriod] = Field(default_factory=list)
    quiet_hours: list[Hours] = Field(
        default_factory=list, description="no spoken calls in these hours (the screen still shows)"
    )
    announce: Announce = Field(default_factory=Announce)

    def volume_at(self, at: dt.time) -> float:
        """The announcement volume at local time ``at`` (0 in quiet hours)."""
        if any(period.contains(at) for period in self.quiet_hours):
            return 0.0
        for period in self.volume_schedule:
            if period.start <= at < period.end:
                return period.level
        return self.volume


class AssessmentWeights(_Frozen):
    """Weights in percent of the monthly staff assessment's criteria (统一考核); sum 100."""

    served: int = Field(default=40, ge=0, le=100, description="办件量 tickets served")
    satisfaction: int = Field(default=30, ge=0, le=100, description="满意率 rating share")
    wait_on_target: int = Field(default=10, ge=0, le=100, description="等候达标率")
    cases_on_time: int = Field(default=10, ge=0, le=100, description="流转件按期办结率")
    inquiries: int = Field(default=10, ge=0, le=100, description="首问登记 entries")

    @model_validator(mode="after")
    def _add_up_to_100(self) -> AssessmentWeights:
        total = sum(self.model_dump().values())
        if total != 100:
            raise bilingual(
                f"the assessment weights must add up to 100, not {total}",
                f"考核权重之和应为 100，现为 {total}",
            )
        return self


class ReportSettings(_Frozen):
    """Report settings: what counts as a satisfied rating, the assessment's weights."""

    satisfied_min_score: int = Field(default=3, ge=1, le=5)
    assessment: AssessmentWeights = Field(default_factory=AssessmentWeights)


class CenterConfig(_Frozen):
    """A whole center."""

    center: Center
    hub: HubSettings = Field(default_factory=HubSettings)
    policy: RoutingPolicy = Field(default_factory=RoutingPolicy)
    calendar: Calendar
    departments: list[Department] = Field(min_length=1)
    services: list[Service] = Field(min_length=1)
    windows: list[Window] = Field(min_length=1)
    devices: Devices = Field(default_factory=Devices)
    webhooks: list[Webhook] = Field(default_factory=list)
    lobby: Lobby = Field(default_factory=Lobby)
    reports: ReportSettings = Field(default_factory=ReportSettings)

    def service(self, service_id: str) -> Service | None:
        """Return the service with that id, if any."""
        for service in self.services:
            if service.id == service_id:
                return service
        return None

    def window(self, number: int) -> Window | None:
        """Return the window with that number, if any."""
        for window in self.windows:
            if window.number == number:
                return window
        return None


# What the operating system's reasons mean, for the Chinese message.
_OS_REASONS_ZH: Final = {
    errno.ENOENT: "文件不存在",
    errno.EACCES: "没有读取权限",
    errno.EPERM: "没有读取权限",
    errno.EISDIR: "这是一个目录，不是文件",
}


def load_config(path: str | Path) -> CenterConfig:
    """Read, parse and validate a configuration file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        reason_zh = _OS_REASONS_ZH.get(err.errno or 0, "无法读取文件")
        raise ConfigError(
            str(path), [Problem("(file)", f"cannot read: {err.strerror}", f"无法读取：{reason_zh}")]
        ) from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            str(path),
            [
                Problem(
                    "(file)",
                    f"not UTF-8 text (save the file as UTF-8): {err.reason} at byte {err.start}",
                    f"不是 UTF-8 文本（第 {err.start} 字节），请以 UTF-8 编码保存",
                )
            ],
        ) from err
    except tomllib.TOMLDecodeError as err:
        where = re.search(r"line (\d+), column (\d+)", str(err))
        at_zh = f"（第 {where[1]} 行第 {where[2]} 列）" if where else ""
        raise ConfigError(
            str(path),
            [Problem("(syntax)", f"not valid TOML: {err}", f"不是有效的 TOML 格式{at_zh}")],
        ) from err
    return parse_config(raw, str(path))


def parse_config(raw: dict[str, Any], source: str = "<config>") -> CenterConfig:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    try:
        config = CenterConfig.model_validate(raw)
    except ValidationError as err:
        problems = problems_of(err.errors())
        # Cross-references are checked too, among the parts that did validate, so one run
        # of check-config shows every error.
        problems += [p for p in _cross_check(_Parts.from_raw(raw)) if p not in problems]
        raise ConfigError(source, problems) from None
    problems = _cross_check(_Parts.from_config(config))
    if problems:
        raise ConfigError(source, problems)
    return config


Indexed = list[tuple[int, Any]]


@dataclass(slots=True)
class _Parts:
    """The items a cross-check looks at, each with its index in the file."""

    departments: Indexed
    services: Indexed
    windows: Indexed
    webhooks: Indexed
    printers: Indexed
    overrides: Indexed
    day_types: set[DayType] | None  # None: the calendar itself is invalid
    has_bus: bool | None  # None: [devices] itself is invalid
    # Ids named by items that failed on their own: referring to them is not another error.
    broken_ids: frozenset[str] = frozenset()
    complete: bool = True  # every department, service and window validated

    @classmethod
    def from_config(cls, config: CenterConfig) -> _Parts:
        return cls(
            list(enumerate(config.departments)),
            list(enumerate(config.services)),
            list(enumerate(config.windows)),
            list(enumerate(config.webhooks)),
            list(enumerate(config.devices.printers)),
            list(enumerate(config.calendar.overrides)),
            set(config.calendar.day_types),
            config.devices.bus is not None,
        )

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> _Parts:
        """The parts of an invalid document that validate on their own."""
        calendar = _valid(Calendar, raw.get("calendar"))
        devices = _valid(Devices, raw.get("devices", {}))
        sections: dict[str, tuple[type[BaseModel], list[Any]]] = {
            name: (model, raw[name] if isinstance(raw.get(name), list) else [])
            for name, model in (
                ("departments", Department),
                ("services", Service),
                ("windows", Window),
            )
        }
        valid = {name: _valid_items(model, items) for name, (model, items) in sections.items()}
        broken = frozenset(
            str(item["id"])
            for name, (_model, items) in sections.items()
            for index, item in enumerate(items)
            if isinstance(item, dict) and "id" in item and index not in {i for i, _ in valid[name]}
        )
        return cls(
            valid["departments"],
            valid["services"],
            valid["windows"],
            _valid_items(Webhook, raw.get("webhooks")),
            [] if devices is None else list(enumerate(devices.printers)),
            _valid_items(Override, _get(raw, "calendar", "overrides")),
            None if calendar is None else set(calendar.day_types),
            None if devices is None else devices.bus is not None,
            broken,
            all(
                isinstance(raw.get(name), list) and len(valid[name]) == len(items)
                for name, (_model, items) in sections.items()
            ),
        )


# The keys the cross-checks read, per model. An item whose errors lie elsewhere is checked
# without those keys (their defaults only make the checks see less, never report more).
_CHECKED: Final[dict[type[BaseModel], frozenset[str]]] = {
    Department: frozenset({"id"}),
    Service: frozenset({"id", "department", "prefix", "kind", "hours"}),
    Window: frozenset({"number", "type", "services"}),
    Webhook: frozenset({"id"}),
    Calendar: frozenset({"day_types"}),
}


def _get(raw: Any, *keys: str) -> Any:
    for key in keys:
        raw = raw.get(key) if isinstance(raw, dict) else None
    return raw


def _valid(model: type[BaseModel], value: Any) -> Any:
    """The item validated, or validated without its failing keys when the checks allow."""
    try:
        return model.model_validate(value)
    except ValidationError as err:
        failing = {str(e["loc"][0]) for e in err.errors() if e["loc"]}
        checked = _CHECKED.get(model)
        if checked is None or not isinstance(value, dict) or failing & checked:
            return None
        if not failing <= set(value):  # a missing key, or an error about the item as a whole
            return None
    try:
        return model.model_validate({k: v for k, v in value.items() if k not in failing})
    except ValidationError:
        return None


def _valid_items(model: type[BaseModel], value: Any) -> Indexed:
    if not isinstance(value, list):
        return []
    valid = ((index, _valid(model, item)) for index, item in enumerate(value))
    return [(index, item) for index, item in valid if item is not None]


def _duplicates(items: Indexed, key: str, where: str) -> list[Problem]:
    seen: dict[Any, int] = {}
    problems = []
    for index, item in items:
        value = getattr(item, key)
        shown = value.isoformat() if isinstance(value, dt.date) else value
        if value in seen:
            problems.append(
                Problem(
                    f"{where}[{index}].{key}",
                    f"duplicate {key} {shown!r} (first at [{seen[value]}])",
                    f"{key} {shown!r} 重复（首次出现在 [{seen[value]}]）",
                )
            )
        else:
            seen[value] = index
    return problems


def _cross_check(parts: _Parts) -> list[Problem]:
    problems = _duplicates(parts.departments, "id", "departments")
    problems += _duplicates(parts.services, "id", "services")
    problems += _duplicates(parts.windows, "number", "windows")
    problems += _duplicates(parts.webhooks, "id", "webhooks")
    problems += _duplicates(parts.overrides, "date", "calendar.overrides")
    departments = {d.id for _, d in parts.departments}
    services: dict[str, Service] = {s.id: s for _, s in parts.services}
    prefix_kind: dict[str, tuple[str, int]] = {}
    for index, service in parts.services:
        if service.department not in departments | parts.broken_ids:
            problems.append(
                Problem(
                    f"services[{index}].department",
                    f"unknown department {service.department!r}",
                    f"未知的部门 {service.department!r}",
                )
            )
        for day_type in service.hours:
            if day_type is DayType.CLOSED:
                problems.append(
                    Problem(
                        f"services[{index}].hours.closed",
                        "closed days have no hours",
                        "休息日（closed）没有办公时间",
                    )
                )
            elif parts.day_types is not None and day_type not in parts.day_types:
                problems.append(
                    Problem(
                        f"services[{index}].hours.{day_type}",
                        "day type has no calendar hours",
                        f"日历中没有“{day_type}”这类日子的办公时间（calendar.day_types）",
                    )
                )
        first = prefix_kind.get(service.prefix)
        if first is not None and services[first[0]].kind is not service.kind:
            problems.append(
                Problem(
                    f"services[{index}].prefix",
                    f"prefix {service.prefix!r} is shared with services[{first[1]}] "
                    "of another kind",
                    f"前缀 {service.prefix!r} 已被另一类事项 services[{first[1]}] 使用",
                )
            )
        prefix_kind.setdefault(service.prefix, (service.id, index))
    addresses: dict[int, str] = {}
    for index, window in parts.windows:
        for sindex, ref in enumerate(window.services):
            where = f"windows[{index}].services[{sindex}].id"
            served = services.get(ref.id)
            if served is None and ref.id not in parts.broken_ids:
                problems.append(
                    Problem(where, f"unknown service {ref.id!r}", f"未知的事项 {ref.id!r}")
                )
            elif served is None:
                continue
            elif window.type is WindowType.REPLY and served.kind is not ServiceKind.PICKUP:
                problems.append(
                    Problem(
                        where,
                        "a reply window serves pickup services only",
                        "回复窗口只办理取件（pickup）事项",
                    )
                )
        if window.type is WindowType.DEDICATED and not window.services:
            problems.append(
                Problem(
                    f"windows[{index}].services",
                    "a dedicated window lists its services",
                    "专用窗口须列出它办理的事项",
                )
            )
        for role in ("counter_display", "keypad", "rating_pad"):
            address = getattr(window.devices, role)
            if address is None:
                continue
            where = f"windows[{index}].devices.{role}"
            if address in addresses:
                problems.append(
                    Problem(
                        where,
                        f"bus address {address} already used by {addresses[address]}",
                        f"总线地址 {address} 已被 {addresses[address]} 使用",
                    )
                )
            else:
                addresses[address] = where
            if parts.has_bus is False:
                problems.append(
                    Problem(
                        where, "a bus device needs [devices.bus]", "总线设备需要配置 [devices.bus]"
                    )
                )
    windows = [w for _, w in parts.windows]
    # "No window serves …" is only meaningful when every service and window is known.
    for kind in ServiceKind:
        offered = [s for s in services.values() if s.kind is kind]
        if parts.complete and offered and not any(_serves_kind(services, w, kind) for w in windows):
            problems.append(
                Problem(
                    "windows",
                    f"no window serves {kind} services",
                    f"没有窗口办理 {kind} 类事项",
                )
            )
    problems += _duplicates(parts.printers, "id", "devices.printers")
    return problems


def _serves_kind(services: dict[str, Service], window: Window, kind: ServiceKind) -> bool:
    if window.type is WindowType.COMPREHENSIVE and kind is ServiceKind.INTAKE:
        return True
    if window.type is WindowType.REPLY and kind is ServiceKind.PICKUP:
        return True
    return any(ref.id in services and services[ref.id].kind is kind for ref in window.services)
