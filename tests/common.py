"""Builders shared by the tests: a small center configuration and a controllable clock."""

from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from qcall.config import CenterConfig, parse_config

SHANGHAI = ZoneInfo("Asia/Shanghai")
ALL_DAY = {"start": "00:00", "end": "24:00"}  # until midnight
OFFICE = {"start": "08:30", "end": "16:30"}


def _notice() -> dict[str, Any]:
    return {
        "policy_basis": "《测试办法》",
        "conditions": "本市户籍",
        "procedure": ["取号", "受理"],
        "materials": ["身份证"],
        "approval_time": "即办",
        "cooperating_departments": ["街道"],
        "place": "一楼",
        "phone": "021-00000000",
    }


def _service(sid: str, prefix: str, kind: str = "intake", **extra: Any) -> dict[str, Any]:
    return {
        "id": sid,
        "department": "rsbz",
        "name_zh": f"业务{sid}",
        "name_en": f"Service {sid}",
        "prefix": prefix,
        "kind": kind,
        "daily_cap": 500,
        "hours": {"weekday": ALL_DAY, "weekend_duty": ALL_DAY},
        "target_wait_min": 30,
        "handle_time_min": 5,
        "approval_days": 3,
        "notice": _notice(),
        **extra,
    }


def small_center(**overrides: Any) -> dict[str, Any]:
    """Return the raw TOML-shaped dict of a 4-window center open around the clock."""
    raw: dict[str, Any] = {
        "center": {"name_zh": "测试街道社区事务受理服务中心", "name_en": "Test Street Center"},
        "calendar": {"day_types": {"weekday": ALL_DAY, "weekend_duty": ALL_DAY}},
        "departments": [
            {"id": "rsbz", "name_zh": "人力资源和社会保障", "name_en": "Human Resources"}
        ],
        "services": [
            _service("social", "A"),
            _service("medical", "B"),
            _service("housing", "C", priority_lane=False),
            _service("pickup", "Q", kind="pickup"),
        ],
        "windows": [
            {"number": 1, "type": "comprehensive"},
            {"number": 2, "type": "comprehensive", "services": [{"id": "medical", "weight": 3}]},
            {"number": 3, "type": "dedicated", "services": [{"id": "housing"}]},
            {"number": 4, "type": "reply"},
        ],
    }
    merged = copy.deepcopy(raw)
    merged.update(overrides)
    return merged


ROOT = Path(__file__).resolve().parents[1]


def standalone_demo_config(folder: Path) -> Path:
    """Write ``config/demo.toml`` without its devices: a hub on its own, touching no bus."""
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "config" / "make_demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = tomllib.loads((ROOT / "config" / "demo.toml").read_text(encoding="utf-8"))
    raw.pop("devices", None)
    for window in raw["windows"]:
        window.pop("devices", None)
    # Event streams opened with the display token are lobby screens to the hub; an offline
    # event 30 s after a test closed one would land in a later test's event sequence.
    # The lobby screen tests set their own short time.
    raw.setdefault("hub", {})["screen_offline_s"] = 3600
    path = folder / "standalone.toml"
    path.write_text(module.dumps(raw), encoding="utf-8")
    return path


def make_config(**overrides: Any) -> CenterConfig:
    """Return a validated small center, with top-level sections replaced by ``overrides``."""
    return parse_config(small_center(**overrides), "<test>")


class Clock:
    """A clock the test advances by hand."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime(2026, 11, 26, 9, 0, tzinfo=SHANGHAI)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        """Move the clock forward and return the new time."""
        self.now += dt.timedelta(**delta)
        return self.now
