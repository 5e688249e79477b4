"""The shipped systemd units and udev rules: ``systemd-analyze verify`` and what they promise."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from display.cli import TOKEN_ENV as DISPLAY_TOKEN_ENV

ROOT: Final = Path(__file__).resolve().parents[2]
UNITS: Final = ROOT / "systemd"
INSTALLED_QCALL: Final = "/opt/qcall/.venv/bin/qcall"
TOOL_TIMEOUT_S: Final = 60.0


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> every value (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def _qcall_script() -> str:
    """This checkout's ``qcall`` console script (systemd checks that ExecStart exists)."""
    beside = Path(sys.executable).with_name("qcall")
    found = str(beside) if beside.exists() else shutil.which("qcall")
    assert found, "the qcall console script is not installed (make venv)"
    return found


def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd (Makefile APT_PACKAGES)"
    names = sorted(p.name for p in UNITS.iterdir() if p.suffix in {".service", ".timer"})
    assert {"qcall-hub.service", "qcall-display.service", "qcall-kiosk.service"} <= set(names)
    assert {"qcall-backup.service", "qcall-backup.timer"} <= set(names)
    # The units name the installed path; here it is this checkout's script, same arguments.
    script = _qcall_script()
    for name in names:
        text = (UNITS / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace(INSTALLED_QCALL, script), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
        cwd=tmp_path,
    )
    # verify exits 0 on unknown keys and bad values too: any word from it is a finding.
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a bad value are reported."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd (Makefile APT_PACKAGES)"
    text = (UNITS / "qcall-hub.service").read_text(encoding="utf-8")
    text = text.replace(INSTALLED_QCALL, _qcall_script()).replace("Type=notify", "Type=notifyy")
    text = text.replace("WatchdogSec=", "WatchdogSecs=")
    (tmp_path / "qcall-hub.service").write_text(text, encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "qcall-hub.service")],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
        cwd=tmp_path,
    )
    assert "notifyy" in result.stderr
    assert "WatchdogSecs" in result.stderr


def test_hub_unit_is_notify_with_watchdog_state_directory_and_hardening() -> None:
    unit = _unit("qcall-hub.service")
    service = unit["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][0]) > 0
    assert service["StateDirectory"] == ["qcall"]
    assert "--db ${STATE_DIRECTORY}/qcall.db" in service["ExecStart"][0]
    assert service["Restart"] == ["on-failure"]
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "CapabilityBoundingSet": "",
        "User": "qcall",
    }.items():
        assert service[key] == [value], key
    assert "AF_INET" in service["RestrictAddressFamilies"][0]
    assert "char-ttyUSB rw" in service["DeviceAllow"]


@pytest.mark.parametrize(
    ("name", "env_file", "token_variable"),
    [
        ("qcall-display.service", "display.env.example", DISPLAY_TOKEN_ENV),
        ("qcall-kiosk.service", "kiosk.env.example", "QCALL_KIOSK_TOKEN"),
    ],
)
def test_client_units_take_hub_and_token_from_their_env_file_and_always_restart(
    name: str, env_file: str, token_variable: str
) -> None:
    unit = _unit(name)
    service = unit["Service"]
    assert service["Restart"] == ["always"]
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]
    assert service["EnvironmentFile"] == [f"/etc/qcall/{env_file.removesuffix('.example')}"]
    command = service["ExecStart"][0]
    assert "--hub ${QCALL_HUB}" in command
    # Every variable the command uses, and the token the program reads, is in the example.
    example = (UNITS / env_file).read_text(encoding="utf-8")
    defined = set(re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE))
    used = set(re.findall(r"\$\{([A-Z_]+)\}", command)) - {"STATE_DIRECTORY"}
    assert used | {token_variable} <= defined
    # The token stays out of the command line (ps would show it).
    assert "--token" not in command


def test_kiosk_reads_its_token_from_the_variable_the_unit_sets() -> None:
    source = (ROOT / "kiosk" / "app.py").read_text(encoding="utf-8")
    assert 'os.environ.get("QCALL_KIOSK_TOKEN")' in source


def test_backup_timer_runs_nightly_the_command_the_cli_accepts(tmp_path: Path) -> None:
    timer = _unit("qcall-backup.timer")["Timer"]
    assert timer["Unit"] == ["qcall-backup.service"]
    assert timer["Persistent"] == ["true"]
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd (Makefile APT_PACKAGES)"
    calendar = subprocess.run(
        [analyze, "calendar", "--iterations=2", timer["OnCalendar"][0]],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=True,
    )
    assert calendar.stdout.count("02:30:00") >= 2  # every night, same hour
    service = _unit("qcall-backup.service")["Service"]
    keep = next(v for v in service["Environment"] if v.startswith("QCALL_BACKUP_KEEP="))
    # The unit's own command line, run as systemd would expand it, against a real database.
    state = tmp_path / "state"
    subprocess.run(
        [
            *(sys.executable, "-m", "qcall", "token", "create", "--role", "kiosk", "--name", "k"),
            *("--config", str(ROOT / "config" / "demo.toml"), "--db", str(state / "qcall.db")),
        ],
        capture_output=True,
        timeout=TOOL_TIMEOUT_S,
        check=True,
    )
    for line in (service["ExecStart"][0], service["ExecStartPost"][0]):
        words = (
            line.replace("${STATE_DIRECTORY}", str(state))
            .replace("${QCALL_BACKUP_KEEP}", keep.split("=")[1])
            .split()
        )
        assert words[0] == INSTALLED_QCALL
        done = subprocess.run(
            [sys.executable, "-m", "qcall", *words[1:]],
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
    assert len(list((state / "backups").glob("qcall-*.db"))) == 1


_RULE_KEY: Final = re.compile(
    r'^(?P<key>[A-Z_]+)(\{(?P<attr>[A-Za-z_.]+)\})?(?P<op>==|!=|\+=|:=|=)"(?P<value>[^"]*)"$'
)
_MATCH_KEYS: Final = {"SUBSYSTEM", "KERNEL", "ATTRS", "ATTR", "ENV", "DRIVERS", "ACTION"}
_ASSIGN_KEYS: Final = {"SYMLINK", "GROUP", "MODE", "OWNER", "ENV", "TAG"}


def test_udev_rules_give_stable_names_and_the_services_groups() -> None:
    rules = (UNITS / "70-qcall.rules").read_text(encoding="utf-8")
    symlinks: set[str] = set()
    lines = [line for line in rules.splitlines() if line.strip() and not line.startswith("#")]
    assert lines
    for line in lines:
        pairs = [part.strip() for part in line.split(", ")]
        matched = assigned = False
        for pair in pairs:
            found = _RULE_KEY.match(pair)
            assert found, f"not a udev key: {pair!r} in {line!r}"
            key, op, value = found["key"], found["op"], found["value"]
            if op in {"==", "!="}:
                assert key in _MATCH_KEYS, pair
                matched = True
            else:
                assert key in _ASSIGN_KEYS, pair
                assigned = True
            if key == "SYMLINK":
                symlinks.add(value)
            if key == "GROUP":
                assert value in {"dialout", "lp"}, pair
            if key == "MODE":
                assert value == "0660", pair  # the group, never everyone
        assert matched, line
        assert assigned, line
    assert symlinks == {"qcall-bus", "qcall-printer"}
    # The names the rules make are the ones the kiosk example and the hub unit talk about.
    assert "/dev/qcall-printer" in (UNITS / "kiosk.env.example").read_text(encoding="utf-8")
    assert "/dev/qcall-bus" in (UNITS / "qcall-hub.service").read_text(encoding="utf-8")
