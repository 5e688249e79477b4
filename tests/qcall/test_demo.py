"""``qcall demo``: what it prints works, whatever happened to its database since."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import pytest

from qcall import demo
from qcall.config import CenterConfig, load_config
from qcall.model import Role
from qcall.store import Store

ROOT: Final = Path(__file__).resolve().parents[2]
DEMO: Final = ROOT / "config" / "demo.toml"


@pytest.fixture(scope="module")
def config() -> CenterConfig:
    return load_config(DEMO)


def _all_work(db: Path, credentials: dict[str, Any]) -> None:
    store = Store(db)
    store.open()
    try:
        for member in credentials["staff"]:
            found = store.check_pin(member["id"], member["pin"])
            assert found is not None, member["id"]
            assert found.role is Role(member["role"])
        for role, token in credentials["tokens"].items():
            principal = store.principal(token)
            assert principal is not None, role
            assert principal.role is Role(role)
    finally:
        store.close()


def test_a_fresh_demo_makes_credentials_that_work(tmp_path: Path, config: CenterConfig) -> None:
    credentials, redone, made = demo.prepare(tmp_path, config)
    assert made
    assert sorted(credentials["tokens"]) == ["display", "integration", "kiosk"]
    assert len(credentials["staff"]) == len(config.windows) + 2
    for member in credentials["staff"]:
        assert re.fullmatch(r"\d{6}", member["pin"])
        assert member["pin"] not in ("123456", "000000", "654321")
    _all_work(tmp_path / "qcall.db", credentials)
    assert len(redone) == len(credentials["staff"]) + 3  # all written to the new database
    kept = json.loads((tmp_path / "credentials.json").read_text(encoding="utf-8"))
    assert kept == credentials
    assert (tmp_path / "credentials.json").stat().st_mode & 0o077 == 0


def test_a_deleted_database_gets_back_what_the_demo_prints(
    tmp_path: Path, config: CenterConfig
) -> None:
    first, _, _ = demo.prepare(tmp_path, config)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'qcall.db'}{suffix}").unlink(missing_ok=True)
    again, redone, made = demo.prepare(tmp_path, config)
    assert not made
    assert again == first  # the same PINs and tokens as printed before
    assert len(redone) == len(first["staff"]) + len(first["tokens"])
    _all_work(tmp_path / "qcall.db", again)


def test_revoked_disabled_or_changed_credentials_are_restored(
    tmp_path: Path, config: CenterConfig
) -> None:
    credentials, _, _ = demo.prepare(tmp_path, config)
    store = Store(tmp_path / "qcall.db")
    store.open()
    try:
        store.revoke_token(credentials["tokens"]["kiosk"])
        store.set_pin("w01", "918273")
        store.set_staff_active("sup1", active=False)
    finally:
        store.close()
    again, redone, made = demo.prepare(tmp_path, config)
    assert not made
    assert sorted(redone) == ["kiosk token", "sup1", "w01"]
    _all_work(tmp_path / "qcall.db", again)


@pytest.mark.parametrize("content", ["{not json", '{"staff": [], "tokens": {}}', "[]"])
def test_an_unusable_credentials_file_starts_clean(
    tmp_path: Path, config: CenterConfig, content: str
) -> None:
    (tmp_path / "credentials.json").write_text(content, encoding="utf-8")
    credentials, _, made = demo.prepare(tmp_path, config)
    assert made
    _all_work(tmp_path / "qcall.db", credentials)


def test_the_banner_shows_every_token_and_addresses_as_host_port(
    tmp_path: Path, config: CenterConfig
) -> None:
    moved = demo.with_ports(config, demo.Ports(hub=18080, bus=17101, printer=19101))
    credentials, _, _ = demo.prepare(tmp_path, moved)
    text = demo.banner(moved, tmp_path, credentials, [])
    for token in credentials["tokens"].values():
        assert token in text
    for member in credentials["staff"]:
        assert f"{member['id']:<6} PIN {member['pin']}" in text
    assert "hub: 127.0.0.1:18080" in text
    assert "http://127.0.0.1:18080/staff/" in text
    assert "('" not in text


def test_ports_can_be_moved_for_a_second_demo(config: CenterConfig) -> None:
    moved = demo.with_ports(config, demo.Ports(hub=18080, bus=17101, printer=19101))
    assert moved.hub.port == 18080
    assert moved.center.public_url == "http://127.0.0.1:18080"
    assert moved.devices.bus is not None
    assert moved.devices.bus.url == "socket://127.0.0.1:17101"
    assert moved.devices.printers[0].url == "tcp://127.0.0.1:19101"
    same = demo.with_ports(config, demo.Ports())
    assert same == config


def test_fresh_removes_the_last_run_and_keeps_other_files(
    tmp_path: Path, config: CenterConfig
) -> None:
    demo.prepare(tmp_path, config)
    for folder in ("lobby", "printer-kiosk", "announcements"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "0001.png").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    removed = demo.clean(tmp_path)
    assert {"qcall.db", "credentials.json", "lobby", "printer-kiosk", "announcements"} <= set(
        removed
    )
    # The lock file stays (a hub takes it again); the user's own files stay too.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "qcall.db.lock"]
    _credentials, _redone, made = demo.prepare(tmp_path, config)
    assert made


def test_every_staff_page_comes_with_a_login_that_may_open_it(
    tmp_path: Path, config: CenterConfig
) -> None:
    from qcall.web.staff import PAGES

    credentials, _, _ = demo.prepare(tmp_path, config)
    logins = demo.page_logins(credentials)
    assert set(logins) == set(PAGES)
    roles = {m["id"]: Role(m["role"]) for m in credentials["staff"]}
    pins = {m["id"]: m["pin"] for m in credentials["staff"]}
    for path, (staff_id, pin) in logins.items():
        assert roles[staff_id] in PAGES[path]
        assert pins[staff_id] == pin
    text = demo.banner(config, tmp_path, credentials, [])
    for path, (staff_id, pin) in logins.items():
        assert re.search(rf"{re.escape(path)}\s+{staff_id}\s+PIN {pin}", text)


def test_simulated_clerks_leave_the_first_windows_free(config: CenterConfig) -> None:
    from qcall.hall_sim import plan_for

    windows = demo.simulated_windows(config)
    assert windows == sorted(w.number for w in config.windows)[demo.KEPT_FOR_YOU :]
    credentials = demo.new_credentials(config)
    plan = plan_for(
        config, "http://127.0.0.1:1", "t", credentials["staff"], windows=windows, control=None
    )
    assert [c.window for c in plan.clerks] == windows
    assert all(c.keypad is None for c in plan.clerks)  # no key control: all on the API
    keyed = plan_for(
        config, "http://x", "t", credentials["staff"], windows=windows, control=("h", 1)
    )
    assert any(c.keypad for c in keyed.clerks)
    assert any(c.keypad is None for c in keyed.clerks)


def test_fresh_removes_nothing_while_a_hub_serves_the_folder(
    tmp_path: Path, config: CenterConfig
) -> None:
    from qcall.dblock import DatabaseLock
    from qcall.errors import DatabaseInUse

    demo.prepare(tmp_path, config)
    serving = DatabaseLock(tmp_path / "qcall.db")
    serving.acquire()
    try:
        with pytest.raises(DatabaseInUse):
            demo.clean(tmp_path)
    finally:
        serving.release()
    assert (tmp_path / "qcall.db").exists()
    assert (tmp_path / "credentials.json").exists()
