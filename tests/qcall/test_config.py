"""The example configurations load and are complete; bad files name every problem's path."""

from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import re
import tomllib
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from qcall.config import END_OF_DAY, CenterConfig, Hours, load_config
from qcall.errors import ConfigError
from qcall.model import DayType, ServiceKind, WindowType
from tests.common import make_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
EXAMPLE = CONFIG_DIR / "center.example.toml"
DEMO = CONFIG_DIR / "demo.toml"
NOTICE_FIELDS = (
    "policy_basis",
    "conditions",
    "procedure",
    "materials",
    "approval_time",
    "cooperating_departments",
    "place",
    "phone",
)


def _import_make_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_demo", CONFIG_DIR / "make_demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_demo = _import_make_demo()


@pytest.fixture(scope="module")
def example() -> CenterConfig:
    return load_config(EXAMPLE)


@pytest.fixture(scope="module")
def demo() -> CenterConfig:
    return load_config(DEMO)


def _read_raw(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        return tomllib.load(file)


# --- the example files -------------------------------------------------------------------


@pytest.mark.parametrize("path", [EXAMPLE, DEMO], ids=["example", "demo"])
def test_example_files_have_the_required_topology(path: Path) -> None:
    config = load_config(path)
    assert config.center.timezone == "Asia/Shanghai"
    assert len(config.departments) >= 8
    assert len(config.services) >= 20
    types = Counter(window.type for window in config.windows)
    assert types == {WindowType.COMPREHENSIVE: 6, WindowType.DEDICATED: 1, WindowType.REPLY: 1}
    assert [w.number for w in config.windows if w.type is WindowType.COMPREHENSIVE] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert config.policy.mode == "strict"
    assert config.policy.ratio == 3
    assert config.policy.promote_overdue is True
    assert (config.hub.host, config.hub.port) == ("127.0.0.1", 8080)


@pytest.mark.parametrize("path", [EXAMPLE, DEMO], ids=["example", "demo"])
def test_every_service_has_a_complete_notice_sheet(path: Path) -> None:
    config = load_config(path)
    for service in config.services:
        assert service.name_zh
        assert service.name_en
        for field in NOTICE_FIELDS:
            value = getattr(service.notice, field)
            assert value, f"{service.id}: notice.{field} is empty"
            if isinstance(value, list):
                assert all(item.strip() for item in value), f"{service.id}: blank {field} item"


def test_example_catalog_is_coherent(example: CenterConfig) -> None:
    used = {service.department for service in example.services}
    assert used == {department.id for department in example.departments}
    kinds_by_prefix: dict[str, set[ServiceKind]] = {}
    for service in example.services:
        kinds_by_prefix.setdefault(service.prefix, set()).add(service.kind)
    assert all(len(kinds) == 1 for kinds in kinds_by_prefix.values())
    kinds = Counter(service.kind for service in example.services)
    assert kinds[ServiceKind.PICKUP] >= 1
    assert kinds[ServiceKind.CONSULT] >= 1
    assert kinds[ServiceKind.INTAKE] >= 20
    # Both immediate items (即办件) and transfer items (流转件) are represented.
    assert any(s.approval_days == 0 for s in example.services if s.kind is ServiceKind.INTAKE)
    assert any(s.approval_days > 0 for s in example.services if s.kind is ServiceKind.INTAKE)
    # A weekend-duty subset: some services are offered on duty days, not all.
    on_duty = [s for s in example.services if DayType.WEEKEND_DUTY in s.hours]
    assert 0 < len(on_duty) < len(example.services)


def test_example_windows_serve_every_kind(example: CenterConfig) -> None:
    reply = [w for w in example.windows if w.type is WindowType.REPLY]
    assert [ref.id for ref in reply[0].services] == ["case_pickup"]
    dedicated = [w for w in example.windows if w.type is WindowType.DEDICATED]
    assert dedicated[0].number == 7
    assert {example.service(ref.id).department for ref in dedicated[0].services} == {"population"}
    listed = {ref.id for window in example.windows for ref in window.services}
    for service in example.services:
        if service.kind is ServiceKind.CONSULT:
            assert service.id in listed


def test_example_devices_are_wired(example: CenterConfig) -> None:
    addresses = []
    for window in example.windows:
        roles = (window.devices.counter_display, window.devices.keypad, window.devices.rating_pad)
        assert None not in roles, f"window {window.number} lacks a device"
        addresses += roles
    assert len(addresses) == len(set(addresses))
    assert all(1 <= address <= 127 for address in addresses)
    assert example.devices.bus is not None
    assert (example.devices.bus.url, example.devices.bus.baud) == ("/dev/ttyUSB0", 9600)
    [printer] = example.devices.printers
    assert (printer.id, printer.url, printer.paper) == ("kiosk", "tcp://192.0.2.10:9100", 80)


def test_example_calendar_follows_5_plus_2(example: CenterConfig) -> None:
    calendar = example.calendar
    weekday = calendar.day_types[DayType.WEEKDAY]
    duty = calendar.day_types[DayType.WEEKEND_DUTY]
    assert (weekday.start, weekday.end) == (dt.time(8, 30), dt.time(16, 30))
    assert (duty.start, duty.end) == (dt.time(8, 30), dt.time(11, 30))
    assert calendar.day_type(dt.date(2027, 1, 6)) is DayType.WEEKDAY  # a Wednesday
    assert calendar.day_type(dt.date(2027, 1, 9)) is DayType.WEEKEND_DUTY  # a Saturday
    closed = [o for o in calendar.overrides if o.day_type is DayType.CLOSED]
    assert closed
    assert calendar.hours(dt.date(2027, 1, 1)) is None  # 元旦
    make_up = [
        o for o in calendar.overrides if o.day_type is DayType.WEEKDAY and o.date.weekday() >= 5
    ]
    assert make_up
    assert calendar.hours(make_up[0].date) == weekday
    for override in calendar.overrides:
        assert override.note_zh
        assert override.note_en
    assert len({o.date for o in calendar.overrides}) == len(calendar.overrides)


def test_example_service_hours_lie_within_the_center_hours(example: CenterConfig) -> None:
    for service in example.services:
        assert DayType.WEEKDAY in service.hours
        for day_type, hours in service.hours.items():
            center = example.calendar.day_types[day_type]
            assert center.start <= hours.start
            assert hours.end <= center.end, f"{service.id} issues after closing on {day_type}"


def test_demo_is_open_at_3am_on_every_date(demo: CenterConfig) -> None:
    assert not [o for o in demo.calendar.overrides if o.day_type is DayType.CLOSED]
    at = dt.time(3, 0)
    day = dt.date(2026, 1, 1)
    while day < dt.date(2028, 1, 1):
        day_type = demo.calendar.day_type(day)
        hours = demo.calendar.hours(day)
        assert hours is not None
        assert hours.contains(at), day
        for service in demo.services:
            assert service.hours[day_type].contains(at), (service.id, day)
        day += dt.timedelta(days=1)


def test_demo_is_wired_to_the_emulators(demo: CenterConfig) -> None:
    assert demo.devices.bus is not None
    assert demo.devices.bus.url == "socket://127.0.0.1:7101"
    assert [p.url for p in demo.devices.printers] == ["tcp://127.0.0.1:9101"]
    assert demo.hub.port == 8080


def test_demo_has_the_example_topology(example: CenterConfig, demo: CenterConfig) -> None:
    assert demo.departments == example.departments
    assert demo.windows == example.windows
    assert demo.policy == example.policy
    assert [s.model_dump(exclude={"hours"}) for s in demo.services] == [
        s.model_dump(exclude={"hours"}) for s in example.services
    ]


def test_demo_toml_is_the_generator_output() -> None:
    assert DEMO.read_text(encoding="utf-8") == make_demo.render(EXAMPLE), (
        "config/demo.toml is stale: run .venv/bin/python config/make_demo.py"
    )


def test_generator_check_mode(tmp_path: Path) -> None:
    output = tmp_path / "demo.toml"
    assert make_demo.main(["--output", str(output), "--check"]) == 1
    assert make_demo.main(["--output", str(output)]) == 0
    assert make_demo.main(["--output", str(output), "--check"]) == 0


def test_writer_round_trips_toml() -> None:
    raw = _read_raw(EXAMPLE)
    assert tomllib.loads(make_demo.dumps(raw)) == raw
    tricky = {
        "a": {
            "quote": 'say "hi" \\ back\nslash\t\x01\x7f',
            "odd key": [1.5, -2, True, dt.date(2027, 1, 1), dt.time(8, 30)],
            "empty": [],
            "nested": {"deep": {"x": 1}},
            "tables": [{"k": "v"}, {"k": "w", "sub": {"n": 2}}],
        }
    }
    assert tomllib.loads(make_demo.dumps(tricky)) == tricky


def test_commented_webhook_example_is_valid(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    block = re.search(r"^# \[\[webhooks\]\]\n(?:# \w+ = .*\n)+", text, re.MULTILINE)
    assert block is not None
    enabled = text + re.sub(r"^# ", "", block.group(0), flags=re.MULTILINE)
    path = tmp_path / "with-webhook.toml"
    path.write_text(enabled, encoding="utf-8")
    [webhook] = load_config(path).webhooks
    assert len(webhook.secret) >= 16


# --- bad configurations ------------------------------------------------------------------

MINIMAL = """
[center]
name_zh = "测试街道社区事务受理服务中心"
name_en = "Test Center"

[calendar.day_types]
weekday = { start = "08:30", end = "16:30" }

[[departments]]
id = "hrss"
name_zh = "人保"
name_en = "HRSS"

[[services]]
id = "social_card"
department = "hrss"
name_zh = "社会保障卡"
name_en = "Social security card"
prefix = "A"
hours = { weekday = { start = "08:30", end = "16:00" } }

[[services]]
id = "residence_permit"
department = "hrss"
name_zh = "居住证"
name_en = "Residence permit"
prefix = "J"
hours = { weekday = { start = "08:30", end = "16:00" } }

[[services]]
id = "case_pickup"
department = "hrss"
name_zh = "结果领取"
name_en = "Collect a finished case"
prefix = "Q"
kind = "pickup"
hours = { weekday = { start = "08:30", end = "16:15" } }

[[windows]]
number = 1
type = "comprehensive"
devices = { counter_display = 11, keypad = 12, rating_pad = 13 }

[[windows]]
number = 2
type = "reply"
devices = { counter_display = 21, keypad = 22, rating_pad = 23 }

[[windows]]
number = 3
type = "dedicated"
services = [{ id = "residence_permit", weight = 2 }]
devices = { counter_display = 31, keypad = 32, rating_pad = 33 }

[devices.bus]
url = "/dev/ttyUSB0"
"""


@pytest.fixture
def raw() -> dict[str, Any]:
    return copy.deepcopy(_MINIMAL_RAW)


_MINIMAL_RAW = tomllib.loads(MINIMAL)


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "center.toml"
    path.write_text(make_demo.dumps(raw), encoding="utf-8")
    return path


def _problems(tmp_path: Path, raw: dict[str, Any]) -> list[tuple[str, str]]:
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert info.value.problems
    return info.value.problems


def _one(problems: list[tuple[str, str]], path: str) -> str:
    messages = [message for where, message in problems if where == path]
    assert len(messages) == 1, f"expected one problem at {path}, got {problems}"
    return messages[0]


def test_minimal_config_loads(tmp_path: Path, raw: dict[str, Any]) -> None:
    config = load_config(_write(tmp_path, raw))
    assert config.window(3).services[0].weight == 2
    # The morning rule is on unless the center turns it off; tickets carry default rules.
    assert config.center.no_window_open == "issue"
    assert any("过号" in rule for rule in config.center.ticket_rules)


def test_unknown_service_names_the_exact_path(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["windows"][2]["services"] = [{"id": "no_such_service"}]
    problems = _problems(tmp_path, raw)
    assert [where for where, _ in problems] == ["windows[2].services[0].id"]
    assert "unknown service 'no_such_service'" in problems[0][1]


@pytest.mark.parametrize(
    ("keys", "value", "where", "expected"),
    [
        (("services", 0, "daily_cap"), "many", "services[0].daily_cap", "got 'many'"),
        (("windows", 1, "number"), 2.5, "windows[1].number", "got 2.5"),
        (("services", 1, "prefix"), "a1", "services[1].prefix", "got 'a1'"),
        (("services", 2, "kind"), "pick-up", "services[2].kind", "got 'pick-up'"),
        (("devices", "bus", "baud"), 300, "devices.bus.baud", "got 300"),
        (("center", "no_window_open"), "maybe", "center.no_window_open", "got 'maybe'"),
        (("center", "ticket_rules"), ["x" * 121], "center.ticket_rules[0]", "120"),
        (
            ("calendar", "day_types", "weekday", "end"),
            "08:00",
            "calendar.day_types.weekday.end",
            "later than start",
        ),
    ],
)
def test_wrong_value_names_path_and_what_it_got(
    tmp_path: Path,
    raw: dict[str, Any],
    keys: tuple[str | int, ...],
    value: object,
    where: str,
    expected: str,
) -> None:
    target: Any = raw
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    problems = _problems(tmp_path, raw)
    assert len(problems) == 1
    assert expected in _one(problems, where)


def test_wrong_type_of_table(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["windows"][0]["devices"] = "all of them"
    message = _one(_problems(tmp_path, raw), "windows[0].devices")
    assert "got 'all of them'" in message


@pytest.mark.parametrize(
    ("keys", "where"),
    [
        (("services", 0, "prefx"), "services[0].prefx"),
        (("windos",), "windos"),
        (("windows", 1, "devices", "keypadd"), "windows[1].devices.keypadd"),
    ],
)
def test_unknown_key_is_reported(
    tmp_path: Path, raw: dict[str, Any], keys: tuple[str | int, ...], where: str
) -> None:
    target: Any = raw
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = 5
    assert "unknown key" in _one(_problems(tmp_path, raw), where)


def test_missing_required_key(tmp_path: Path, raw: dict[str, Any]) -> None:
    del raw["center"]["name_en"]
    del raw["windows"]
    problems = _problems(tmp_path, raw)
    assert _one(problems, "center.name_en") == "required key is missing"
    assert _one(problems, "windows") == "required key is missing"


def test_several_field_errors_are_reported_at_once(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["services"][0]["daily_cap"] = "many"
    raw["windows"][0]["type"] = "counter"
    raw["services"][1]["prefx"] = "J"
    del raw["center"]["name_zh"]
    problems = _problems(tmp_path, raw)
    assert len(problems) >= 3
    assert {where for where, _ in problems} >= {
        "services[0].daily_cap",
        "windows[0].type",
        "services[1].prefx",
        "center.name_zh",
    }


def test_several_cross_reference_errors_are_reported_at_once(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    raw["services"][0]["department"] = "no_such_department"
    raw["windows"][2]["services"].append({"id": "no_such_service"})
    raw["windows"][1]["number"] = 1
    raw["windows"][1]["services"] = [{"id": "social_card"}]
    problems = _problems(tmp_path, raw)
    assert len(problems) >= 3
    assert "unknown department" in _one(problems, "services[0].department")
    assert "unknown service" in _one(problems, "windows[2].services[1].id")
    assert "duplicate number 1" in _one(problems, "windows[1].number")
    assert "pickup services only" in _one(problems, "windows[1].services[0].id")


def test_prefix_shared_across_kinds_is_rejected(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["services"][2]["prefix"] = "A"  # the pickup service takes the intake prefix
    message = _one(_problems(tmp_path, raw), "services[2].prefix")
    assert "'A'" in message
    assert "services[0]" in message
    assert "another kind" in message


def test_prefix_shared_within_a_kind_is_allowed(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["services"][1]["prefix"] = "A"
    config = load_config(_write(tmp_path, raw))
    assert {s.prefix for s in config.services if s.kind is ServiceKind.INTAKE} == {"A"}


def test_duplicate_bus_address_is_rejected(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["windows"][1]["devices"]["rating_pad"] = 12
    message = _one(_problems(tmp_path, raw), "windows[1].devices.rating_pad")
    assert "bus address 12" in message
    assert "windows[0].devices.keypad" in message


def test_bus_address_out_of_range(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["windows"][0]["devices"]["keypad"] = 128
    assert "got 128" in _one(_problems(tmp_path, raw), "windows[0].devices.keypad")


def test_bus_devices_need_a_bus(tmp_path: Path, raw: dict[str, Any]) -> None:
    del raw["devices"]
    problems = _problems(tmp_path, raw)
    assert len(problems) == 9
    assert "needs [devices.bus]" in _one(problems, "windows[0].devices.counter_display")


def test_service_hours_need_a_calendar_day_type(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["services"][0]["hours"]["weekend_duty"] = {"start": "08:30", "end": "11:00"}
    message = _one(_problems(tmp_path, raw), "services[0].hours.weekend_duty")
    assert "no calendar hours" in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [(where, message)] = info.value.problems
    assert where == "(file)"
    assert message.startswith("cannot read")
    assert str(path) in str(info.value)


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.problems[0][0] == "(file)"


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[center\nname_zh = "缺少右括号"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [(where, message)] = info.value.problems
    assert where == "(syntax)"
    assert "not valid TOML" in message
    assert "line 1" in message


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "gbk.toml"
    path.write_bytes('[center]\nname_zh = "梧桐街道"\n'.encode("gbk"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [(where, message)] = info.value.problems
    assert where == "(file)"
    assert "UTF-8" in message


def test_duplicate_override_dates_are_refused(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["calendar"]["overrides"] = [
        {"date": "2027-01-01", "day_type": "closed"},
        {"date": "2027-01-01", "day_type": "weekday"},
    ]
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, raw))
    assert any(where == "calendar.overrides[1].date" for where, _ in info.value.problems)


def test_config_error_message_lists_file_and_paths(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["windows"][2]["services"] = [{"id": "no_such_service"}]
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert f"{path}: windows[2].services[0].id: unknown service" in error.message("en")
    assert "1 处错误" in error.message("zh")
    assert error.code == "invalid_config"


def test_schema_and_reference_errors_are_reported_in_one_run(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    raw["windows"][1]["number"] = "two"  # a schema error
    raw["windows"][2]["services"] = [{"id": "no_such_service"}]  # a reference error
    raw["services"][0]["department"] = "no_such_department"  # another reference error
    problems = dict(_problems(tmp_path, raw))
    assert "windows[1].number" in problems
    assert problems["windows[2].services[0].id"] == "unknown service 'no_such_service'"
    assert problems["services[0].department"] == "unknown department 'no_such_department'"


def test_references_to_an_item_that_failed_are_not_reported_again(
    tmp_path: Path, raw: dict[str, Any]
) -> None:
    served = raw["windows"][2]["services"][0]["id"]
    broken = next(s for s in raw["services"] if s["id"] == served)
    broken["prefix"] = "a1"  # the service itself is invalid …
    problems = _problems(tmp_path, raw)
    # … so its own error is reported, not an "unknown service" where a window names it.
    assert [where for where, _ in problems if where.endswith("prefix")]
    assert not [msg for _, msg in problems if msg.startswith("unknown service")]


def test_24_00_ends_a_day_at_midnight_without_a_gap() -> None:
    hours = Hours.model_validate({"start": "00:00", "end": "24:00"})
    assert hours.end == END_OF_DAY
    assert hours.contains(dt.time(23, 59, 30))
    assert hours.contains(dt.time(0, 0))
    assert hours.label() == "00:00–24:00"
    # Written back as it was written (the admin's export, the API).
    assert hours.model_dump(mode="json") == {"start": "00:00:00", "end": "24:00"}
    assert Hours.model_validate(hours.model_dump(mode="json")) == hours
    assert Hours.model_validate({"start": "09:00", "end": "16:30"}).label() == "09:00–16:30"
    for bad in ({"start": "24:00", "end": "24:00"}, {"start": "00:00", "end": "24:30"}):
        with pytest.raises(ValidationError):
            Hours.model_validate(bad)


def test_a_center_open_until_midnight_issues_in_its_last_minute() -> None:
    from qcall.engine import Engine

    engine = Engine(make_config())  # the test center: 00:00–24:00 every day
    late = dt.datetime(2026, 11, 26, 23, 59, 40, tzinfo=ZoneInfo("Asia/Shanghai"))
    engine.open_window(late, 1, "s1")
    ticket = engine.issue(late, "social")
    assert ticket.number == "A001"
