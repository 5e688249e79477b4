"""check-config: every error in one run, each one whole in Chinese and in English."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import pytest

from qcall.config import load_config
from qcall.errors import ConfigError
from qcall.validation import Problem

ROOT: Final = Path(__file__).resolve().parents[2]
DEMO: Final = ROOT / "config" / "demo.toml"
# English words of pydantic's messages and regex syntax: none belongs in a Chinese message.
FOREIGN_IN_ZH: Final = re.compile(
    r"\b(should|input|valid|must|expected|unknown|duplicate|string|pattern|got|already)\b"
    r"|[\^$]|\{\d|\[a-z",
    re.IGNORECASE,
)
CJK: Final = re.compile(r"[\u4e00-\u9fff]")

# Ten independent mistakes of every kind: schema, value, pattern, reference, duplicate, and
# ones inside items that also fail on their own.
EDITS: Final = (
    ("keypad = 12,", "keypad = 200,"),
    ('services = [{ id = "social_card", weight = 2 }]\n',
     'services = [{ id = "social_kard", weight = 2 }]\n'),
    ("number = 3\n", "number = 2\n"),
    ('department = "hrss"', 'department = "hrs"'),
    ("port = 8080", "port = 99999"),
    ("ratio = 3", "ratio = 0"),
    ('timezone = "Asia/Shanghai"', 'timezone = "Asia/Shanghay"'),
    ('weekday = { start = "00:00", end = "24:00" }',
     'weekday = { start = "09:00", end = "08:00" }'),
    ("date = 2027-02-20", "date = 2027-01-31"),
    ('[[windows]]\nnumber = 1\ntype = "comprehensive"',
     '[[windows]]\nnumber = 1\ntype = "comprehensive"\ncolour = "red"'),
)  # fmt: skip


def _config(tmp_path: Path, edits: tuple[tuple[str, str], ...]) -> Path:
    text = DEMO.read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "center.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.items


def test_one_run_lists_every_error(tmp_path: Path) -> None:
    everything = {(p.where, p.en) for p in _problems(_config(tmp_path, EDITS))}
    assert len(everything) >= len(EDITS)
    # Fixing the others never reveals an error the first run did not list.
    for edit in EDITS:
        alone = {(p.where, p.en) for p in _problems(_config(tmp_path, (edit,)))}
        assert alone, edit
        assert alone <= everything, (edit, alone - everything)


def test_every_message_is_whole_in_chinese_and_in_english(tmp_path: Path) -> None:
    problems = _problems(_config(tmp_path, EDITS))
    for problem in problems:
        assert CJK.search(problem.zh), problem
        assert not FOREIGN_IN_ZH.search(problem.zh), problem
        assert not CJK.search(problem.en), problem
        assert "^" not in problem.en, problem  # no raw regex in English either


def test_a_pattern_is_described_in_words(tmp_path: Path) -> None:
    path = _config(tmp_path, (('id = "hrss"', 'id = "HR-SS"'),))
    [problem] = [p for p in _problems(path) if p.where == "departments[0].id"]
    assert problem.zh == (
        "应为标识：以小写字母开头，只含小写字母、数字和下划线，最长 40 个字符（当前值：'HR-SS'）"
    )
    assert problem.en.startswith("should be an identifier: a lowercase letter")


def test_check_config_prints_both_languages_whole(tmp_path: Path) -> None:
    from tests.qcall.test_cli import qcall

    path = _config(tmp_path, EDITS)
    result = qcall("check-config", str(path))
    assert result.returncode == 2
    zh, en = result.stderr.split("\n\n")
    count = len(_problems(path))
    assert zh.startswith(f"{path}: 配置文件有 {count} 处错误")
    assert en.startswith(f"{path}: {count} error(s) in configuration")
    assert len(zh.splitlines()) == len(en.strip().splitlines()) == count + 1
    assert f"{path}: hub.port: 应不大于 65535（当前值：99999）" in zh
    assert f"{path}: hub.port: should be at most 65535 (got 99999)" in en


def test_unreadable_files_are_explained_in_chinese(tmp_path: Path) -> None:
    [missing] = _problems(tmp_path / "nowhere.toml")
    assert missing.zh == "无法读取：文件不存在"
    broken = tmp_path / "broken.toml"
    broken.write_text('[center]\nname_zh = "缺少引号\n', encoding="utf-8")
    [syntax] = _problems(broken)
    assert syntax.zh == "不是有效的 TOML 格式（第 2 行第 16 列）"
    assert "line 2" in syntax.en
