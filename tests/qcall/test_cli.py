"""The ``qcall`` command line (qcall/__main__.py) run as a real subprocess from the repo root."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import pytest

from qcall.config import load_config
from qcall.hub import Hub
from qcall.model import Outcome, Role
from qcall.store import Store
from tests.common import Clock, standalone_demo_config

ROOT: Final = Path(__file__).resolve().parents[2]
DEMO: Final = ROOT / "config" / "demo.toml"
DAY: Final = "2026-11-26"  # the Clock's default day
# One CLI call takes well under a second; the bound only catches a hung command.
CLI_TIMEOUT_S: Final = 60.0


def qcall(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcall", "--log-level", "warning", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def broken(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """The demo configuration with some text replaced (each edit must apply)."""
    text = DEMO.read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    return path


FIRST_WINDOW_SERVICES: Final = 'services = [{ id = "social_card", weight = 2 }]\n'


# ----------------------------------------------------------------------------- check-config


def test_check_config_accepts_the_demo() -> None:
    result = qcall("check-config", str(DEMO))
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout
    assert "配置有效" in result.stdout
    assert "8 windows" in result.stdout


def test_check_config_lists_every_schema_error_with_its_path(tmp_path: Path) -> None:
    path = broken(
        tmp_path,
        ("port = 8080", "port = 99999"),
        (FIRST_WINDOW_SERVICES, 'services = [{ id = "Social-Card", weight = 2 }]\n'),
        ("ratio = 3", 'ratio = 3\nmood = "calm"'),
    )
    result = qcall("check-config", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    err = result.stderr
    assert f"{path}: 配置文件有 3 处错误" in err
    assert f"{path}: 3 error(s) in configuration" in err
    assert f"{path}: hub.port: " in err
    assert "99999" in err
    assert f"{path}: windows[0].services[0].id: " in err
    assert "Social-Card" in err
    assert f"{path}: policy.mood: unknown key" in err
    assert "Traceback" not in err


def test_check_config_lists_every_cross_reference_error(tmp_path: Path) -> None:
    path = broken(
        tmp_path,
        (FIRST_WINDOW_SERVICES, 'services = [{ id = "no_such_service", weight = 2 }]\n'),
        ('department = "hrss"', 'department = "nowhere"'),
    )
    result = qcall("check-config", str(path))
    assert result.returncode == 2
    err = result.stderr
    assert "配置文件有 2 处错误" in err
    assert "2 error(s) in configuration" in err
    assert f"{path}: windows[0].services[0].id: unknown service 'no_such_service'" in err
    assert f"{path}: services[0].department: unknown department 'nowhere'" in err


@pytest.mark.parametrize(
    ("content", "where"),
    [("[center\nname_zh = 1", "(syntax)"), (None, "(file)")],
    ids=["bad-toml", "missing-file"],
)
def test_check_config_on_an_unreadable_file(
    tmp_path: Path, content: str | None, where: str
) -> None:
    path = tmp_path / "center.toml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = qcall("check-config", str(path))
    assert result.returncode == 2
    assert f"{path}: {where}: " in result.stderr
    assert "配置文件有 1 处错误" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_invalid_config_with_the_same_report(tmp_path: Path) -> None:
    path = broken(tmp_path, ("port = 8080", "port = 99999"))
    db = tmp_path / "q.db"
    check = qcall("check-config", str(path))
    serve = qcall("serve", "--config", str(path), "--db", str(db), "--port", "0")
    assert serve.returncode == 2
    assert serve.stderr == check.stderr
    assert "hub.port" in serve.stderr
    assert not db.exists()  # refused before touching storage


# ----------------------------------------------------------------------------- staff, tokens


def test_staff_add_then_token_create(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    base = ("--config", str(DEMO), "--db", str(db))
    added = qcall("staff", "add", *base, "--id", "c1", "--name", "张三", "--role", "clerk",
                  stdin="246810\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "c1" in added.stdout
    assert "246810" not in added.stdout

    made = qcall("token", "create", *base, "--role", "kiosk", "--name", "lobby kiosk")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("qc_")
    assert token.strip() == token
    assert " " not in token
    assert len(token) > 40

    store = Store(db)
    store.open()
    try:
        member = store.check_pin("c1", "246810")
        assert member is not None
        assert member.name == "张三"
        assert member.role is Role.CLERK
        assert store.check_pin("c1", "000000") is None
        found = store.principal(token)
        assert found is not None
        assert found.role is Role.KIOSK
        assert found.name == "lobby kiosk"
        assert store.principal(token + "x") is None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("pin", "why"), [("12", "6 至 8 位"), ("123456", "过于简单"), ("100234", "过于简单")]
)
def test_staff_add_refuses_a_short_or_obvious_pin(tmp_path: Path, pin: str, why: str) -> None:
    db = tmp_path / "q.db"
    result = qcall("staff", "add", "--config", str(DEMO), "--db", str(db), "--id", "100234",
                   "--name", "张三", "--role", "clerk", stdin=pin + "\n")  # fmt: skip
    assert result.returncode == 2
    assert "PIN" in result.stderr
    assert why in result.stderr
    assert not db.exists()


def test_token_create_refuses_a_staff_role(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    result = qcall("token", "create", "--config", str(DEMO), "--db", str(db), "--role", "clerk",
                   "--name", "x")  # fmt: skip
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert not db.exists()


# ----------------------------------------------------------------------------- report daily


async def _fill(db: Path) -> int:
    clock = Clock()
    hub = Hub(load_config(standalone_demo_config(db.parent)), db, clock=clock)
    await hub.start()
    e = hub.engine
    try:
        await hub.execute(lambda now: e.open_window(now, 1, "c1"))
        for priority in (False, True, False, False):
            await hub.execute(lambda now, p=priority: e.issue(now, "social_card", priority=p))
            clock.advance(minutes=2)
        await hub.execute(lambda now: e.call_next(now, 1, "c1"))
        clock.advance(minutes=5)
        await hub.execute(lambda now: e.finish(now, 1, "c1", Outcome.DONE))
        await hub.execute(lambda now: e.rate(now, 1, "c1", 4))
        await hub.execute(lambda now: e.call_next(now, 1, "c1"))
        clock.advance(minutes=5)
        await hub.execute(lambda now: e.finish(now, 1, "c1", Outcome.BACK_OFFICE))
        await hub.execute(lambda now: e.call_next(now, 1, "c1"))
        await hub.execute(lambda now: e.no_show(now, 1, "c1"))
        return e.seq
    finally:
        await hub.stop()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A database with one morning at the demo center, written through a real Hub."""
    db = tmp_path_factory.mktemp("report") / "q.db"
    last_seq = asyncio.run(_fill(db))
    return db, last_seq


def report(db: Path, *extra: str, date: str = DAY) -> subprocess.CompletedProcess[str]:
    return qcall("report", "daily", "--config", str(DEMO), "--db", str(db), "--date", date, *extra)


def test_report_daily_json(filled: tuple[Path, int]) -> None:
    db, last_seq = filled
    result = report(db, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["day"] == DAY
    assert data["closed"] is False
    assert data["last_seq"] == last_seq
    total = data["total"]
    assert (total["issued"], total["priority_issued"], total["called"]) == (4, 1, 3)
    assert (total["done"], total["back_office"], total["no_show"]) == (1, 1, 1)
    assert total["ratings"]["count"] == 1
    assert total["ratings"]["distribution"]["4"] == 1
    assert total["cases_opened"] == 1
    [card] = [s for s in data["services"] if s["id"] == "social_card"]
    assert card["issued"] == 4
    assert card["handle"]["count"] == 2
    assert card["handle"]["mean_s"] == 300.0


def test_report_daily_csv(filled: tuple[Path, int]) -> None:
    db, _ = filled
    result = report(db, "--format", "csv", "--lang", "en")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("\ufeff")  # Excel on a Chinese Windows reads it as UTF-8
    rows = list(csv.reader(io.StringIO(result.stdout.removeprefix("\ufeff"))))
    assert rows[0] == ["Daily report"]
    [card] = [row for row in rows if row and row[0] == "social_card"]
    header = next(row for row in rows if row and row[0] == "Service id")
    by_name = dict(zip(header, card, strict=True))
    assert by_name["Issued"] == "4"
    assert by_name["No-show"] == "1"
    assert by_name["Back office"] == "1"
    zh = report(db, "--format", "csv")
    assert zh.returncode == 0, zh.stderr
    assert "社会保障卡" in zh.stdout


def test_report_daily_table(filled: tuple[Path, int]) -> None:
    db, _ = filled
    result = report(db)  # table, Chinese by default
    assert result.returncode == 0, result.stderr
    assert DAY in result.stdout
    assert "梧桐街道社区事务受理服务中心" in result.stdout
    # The first table (counts by service): issued, priority, called, served, done.
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("社会保障卡"))
    assert line.split()[1:6] == ["4", "1", "3", "2", "1"]
    en = report(db, "--lang", "en")
    assert en.returncode == 0, en.stderr
    assert "daily report" in en.stdout


def test_report_daily_on_a_day_without_events(filled: tuple[Path, int]) -> None:
    db, _ = filled
    result = report(db, "--format", "json", date="2026-11-25")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["total"]["issued"] == 0
    assert data["status"] == "no_data"
    table = report(db, date="2026-11-25")
    assert "无数据" in table.stdout.splitlines()[0]
    assert "营业中" not in table.stdout  # a past day without data is not "open"


def test_report_a_past_day_that_never_closed(filled: tuple[Path, int]) -> None:
    db, _ = filled
    table = report(db)  # the hub stopped that morning: the day never closed
    first = table.stdout.splitlines()[0]
    assert "未日结" in first
    assert "营业中" not in first


def shanghai_today() -> str:
    return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()


def test_report_daily_defaults_to_today(filled: tuple[Path, int]) -> None:
    db, _ = filled
    before = shanghai_today()
    result = qcall("report", "daily", "--config", str(DEMO), "--db", str(db), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["day"] in {before, shanghai_today()}


def test_report_monthly_range_and_assessment(filled: tuple[Path, int], tmp_path: Path) -> None:
    db, _ = filled
    base = ("--config", str(DEMO), "--db", str(db))
    monthly = qcall("report", "monthly", *base, "--month", "2026-11", "--format", "json")
    assert monthly.returncode == 0, monthly.stderr
    month = json.loads(monthly.stdout)
    assert (month["kind"], month["from"], month["to"]) == ("monthly", "2026-11-01", "2026-11-30")
    assert len(month["days"]) == 30
    assert month["total"]["issued"] == 4
    assert [d["day"] for d in month["days"] if d["issued"]] == [DAY]
    ranged = qcall(
        "report", "range", *base, "--from", "2026-11-20", "--to", DAY, "--format", "json"
    )
    assert json.loads(ranged.stdout)["total"] == month["total"]
    sheet = qcall("report", "assessment", *base, "--month", "2026-11", "--format", "json")
    assert sheet.returncode == 0, sheet.stderr
    [c1] = json.loads(sheet.stdout)["staff"]
    assert (c1["id"], c1["rank"]) == ("c1", 1)
    assert c1["criteria"]["served"] == {"value": 2, "score": 100.0}
    xlsx = tmp_path / "month.xlsx"
    written = qcall("report", "monthly", *base, "--month", "2026-11", "--format", "xlsx",
                    "--output", str(xlsx))  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert xlsx.read_bytes()[:2] == b"PK"  # a zip: the XLSX container
    no_file = qcall("report", "monthly", *base, "--format", "xlsx")
    assert no_file.returncode == 2
    assert "--output" in no_file.stderr
    svg = qcall("report", "chart", "trend", *base, "--month", "2026-11")
    assert svg.returncode == 0, svg.stderr
    assert "<svg" in svg.stdout
    bad = qcall("report", "monthly", *base, "--month", "2026-13")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert "month must be YYYY-MM" in bad.stderr


@pytest.mark.parametrize("date", ["2026-02-30", "26/11/2026", "yesterday", ""])
def test_report_daily_refuses_a_bad_date(filled: tuple[Path, int], date: str) -> None:
    db, _ = filled
    result = report(db, date=date)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "date must be YYYY-MM-DD" in result.stderr
    assert "日期格式应为 YYYY-MM-DD" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_daily_does_not_create_a_database(tmp_path: Path) -> None:
    db = tmp_path / "typo.db"
    result = report(db)
    assert result.returncode == 2
    assert str(db) in result.stderr
    assert "no database" in result.stderr
    assert not db.exists()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--service", "no_such"), "no service no_such"),
        (("--window", "99"), "no window 99"),
        (("--window", "1", "--staff", "c1"), "give one of --service, --window, --staff"),
    ],
)
def test_report_scope_is_checked(
    filled: tuple[Path, int], extra: tuple[str, ...], says: str
) -> None:
    db, _ = filled
    result = report(db, *extra)
    assert (result.returncode, result.stdout) == (2, "")
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_report_narrowed_to_a_window(filled: tuple[Path, int]) -> None:
    db, _ = filled
    whole = json.loads(report(db, "--format", "json").stdout)
    window = json.loads(report(db, "--format", "json", "--window", "1").stdout)
    assert window["scope"] == {"window": 1}
    assert window["total"]["called"] == whole["total"]["called"]  # only window 1 called
    assert window["total"]["issued"] == 0  # windows issue nothing
