"""The clip cache and the announcer on real espeak-ng output (rendered once per session)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import pytest

from display import voice
from display.announcer import Announcer, MixerPlayer, volume_at
from display.model import Call
from display.voice import (
    DEFAULT_TEMPLATES,
    SAMPLE_RATE,
    ClipLibrary,
    SpeechTimeout,
    SpeechWorker,
    Templates,
    build_cache,
    required_clips,
)

# Announcements are seconds long and play in real time on the dummy audio driver.
SPOKEN_TIMEOUT_S: Final = 60.0
POLL_S: Final = 0.02
SHORT = Templates(DEFAULT_TEMPLATES.zh, DEFAULT_TEMPLATES.en, english=False, repeat=1, chime=False)


# "请 A012 号 到 13 号窗口办理" as clips and pauses (s): letters and digits one by one, the
# window as a number.
ZH_A012_W13: Final[list[str | float]] = [
    "zh/phrase_请",
    0.1,
    "letter_A",
    0.05,
    "zh/digit_0",
    0.05,
    "zh/digit_1",
    0.05,
    "zh/digit_2",
    0.1,
    "zh/phrase_号_到",
    0.1,
    "zh/number_13",
    0.1,
    "zh/phrase_号窗口办理",
]


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SPOKEN_TIMEOUT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(POLL_S)


def wav_names(folder: Path) -> list[str]:
    """The WAV files recorded in a folder, in name order."""
    return sorted(p.name for p in folder.glob("*.wav"))


def sox_stat(path: Path) -> dict[str, float]:
    """``sox F -n stat`` as numbers (sox prints them on stderr)."""
    out = subprocess.run(
        ["sox", str(path), "-n", "stat"], capture_output=True, text=True, check=True
    ).stderr
    stats = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        try:
            stats[key.strip()] = float(value.strip())
        except ValueError:
            continue
    return stats


def sox_rate(path: Path) -> int:
    return int(
        subprocess.run(
            ["sox", "--i", "-r", str(path)], capture_output=True, text=True, check=True
        ).stdout
    )


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Announcer], None]]:
    tasks: list[asyncio.Task[None]] = []

    def start(announcer: Announcer) -> None:
        tasks.append(asyncio.create_task(announcer.run()))

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_words() -> None:
    assert [voice.zh_quantity(n) for n in (3, 10, 13, 20, 45, 99)] == [
        "三",
        "十",
        "十三",
        "二十",
        "四十五",
        "九十九",
    ]
    assert voice.template_pieces("Number {number}, please go to counter {window}") == [
        "Number",
        "{number}",
        "please go to counter",
        "{window}",
    ]
    assert voice.sentence("zh", "请 {number} 号 到 {window} 号窗口办理", "A012", 13) == ZH_A012_W13
    # A window beyond 99 is read digit by digit.
    assert voice.sentence("en", "{window}", "A1", 105) == [
        "en/digit_1",
        0.05,
        "en/digit_0",
        0.05,
        "en/digit_5",
    ]


def test_clip_cache_is_built_in_one_format(voice_dir: Path) -> None:
    manifest = json.loads((voice_dir / "manifest.json").read_text(encoding="utf-8"))["clips"]
    for spec in required_clips(DEFAULT_TEMPLATES):
        path = voice_dir / f"{spec.key}.wav"
        with wave.open(str(path), "rb") as clip:
            assert (clip.getframerate(), clip.getnchannels(), clip.getsampwidth()) == (
                SAMPLE_RATE,
                1,
                2,
            ), spec.key
            assert clip.getnframes() > SAMPLE_RATE // 20, spec.key  # > 50 ms of sound
        assert manifest[spec.key]["text"] == spec.text
    assert manifest["zh/number_13"] == manifest["zh/number_13"] | {
        "text": "十三",
        "voice": "cmn-latn-pinyin",
    }
    assert manifest["en/phrase_please_go_to_counter"]["voice"] == "en-us"


async def test_announcement_wav_holds_the_pieces_in_order(
    voice_dir: Path, tmp_path: Path, running: Callable[[Announcer], None]
) -> None:
    library = ClipLibrary(voice_dir)
    assert library.load() == []
    announcer = Announcer(library, DEFAULT_TEMPLATES, player=None, record_dir=tmp_path)
    running(announcer)
    announcer.submit(Call("A012", 13, 41))
    await until(lambda: len(announcer.history) == 1, "the announcement")
    path = tmp_path / "000001-A012-w13.wav"
    assert announcer.history[0].path == path
    zh = ZH_A012_W13
    en = [
        "en/phrase_Number",
        0.1,
        "letter_A",
        0.05,
        "en/digit_0",
        0.05,
        "en/digit_1",
        0.05,
        "en/digit_2",
        0.1,
        "en/phrase_please_go_to_counter",
        0.1,
        "en/number_13",
    ]
    expected = library.assemble(["chime", 0.25, *zh, 0.8, *zh, 0.45, *en])
    with wave.open(str(path), "rb") as recorded:
        assert recorded.getframerate() == SAMPLE_RATE
        frames = recorded.readframes(recorded.getnframes())
    assert frames == expected.tobytes()
    assert sox_rate(path) == SAMPLE_RATE
    stat = sox_stat(path)
    assert stat["RMS     amplitude"] > 0.03  # speech, not silence
    assert stat["Maximum amplitude"] <= 0.96  # loudness-matched below clipping
    assert 10.0 < stat["Length (seconds)"] < 30.0


async def test_two_calls_at_once_are_spoken_one_after_the_other(
    voice_dir: Path, tmp_path: Path, running: Callable[[Announcer], None]
) -> None:
    library = ClipLibrary(voice_dir)
    library.load()
    player = MixerPlayer()
    assert player.available  # SDL's dummy audio driver plays in real time
    announcer = Announcer(library, SHORT, player=player, record_dir=tmp_path)
    running(announcer)
    announcer.submit(Call("A001", 1, 7))
    announcer.submit(Call("B002", 2, 8))
    await until(lambda: len(announcer.playback) == 2, "both announcements played")
    (first_seq, _s1, first_end), (second_seq, second_start, _e2) = announcer.playback
    assert (first_seq, second_seq) == (7, 8)
    assert second_start >= first_end  # never overlapping
    assert wav_names(tmp_path) == [
        "000001-A001-w1.wav",
        "000002-B002-w2.wav",
    ]
    # Each played about as long as its audio: the second waited for the first.
    seconds = announcer.history[0].seconds
    assert first_end - announcer.playback[0][1] >= seconds * 0.9


async def test_a_call_waiting_too_long_is_dropped_with_a_log_line(
    voice_dir: Path,
    tmp_path: Path,
    running: Callable[[Announcer], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    library = ClipLibrary(voice_dir)
    library.load()
    announcer = Announcer(library, SHORT, player=None, record_dir=tmp_path, max_delay_s=5)
    running(announcer)
    with caplog.at_level(logging.WARNING, logger="display.announcer"):
        announcer.submit(Call("A001", 1, 1, lag_s=12.0))  # replayed after an outage
        announcer.submit(Call("A002", 1, 2))
        await until(lambda: len(announcer.history) == 2, "both handled")
    assert [(s.call.number, s.dropped) for s in announcer.history] == [
        ("A001", True),
        ("A002", False),
    ]
    assert "A001" in caplog.text
    assert "dropped" in caplog.text
    assert wav_names(tmp_path) == ["000001-A002-w1.wav"]


HANGING_WORKER = """
import os, sys, time
flag = sys.argv[1]
if not os.path.exists(flag):
    open(flag, "w").close()
    sys.stdin.readline()
    time.sleep(3600)  # a pyttsx3 runAndWait that never returns
os.execv(sys.executable, [sys.executable, "-m", "display.tts_worker"])
"""


def test_a_hanging_speech_worker_is_killed_and_replaced(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(HANGING_WORKER, encoding="utf-8")
    worker = SpeechWorker([sys.executable, str(script), str(tmp_path / "hung")], timeout=3.0)
    try:
        with pytest.raises(SpeechTimeout):
            worker.synthesize("请", "cmn-latn-pinyin", 165, tmp_path / "a.wav")
        assert worker.killed == 1
        worker.synthesize("请", "cmn-latn-pinyin", 165, tmp_path / "b.wav")
        assert worker.started == 2
        assert voice.rms(voice.read_wav(tmp_path / "b.wav")) > 0.01
    finally:
        worker.close()


def test_a_recorded_clip_wins_over_rendering(voice_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(voice_dir, cache)
    recording = cache / "zh" / "digit_0.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "44100",
            "-c",
            "2",
            "-b",
            "16",
            str(recording),
            "synth",
            "0.5",
            "sine",
            "440",
        ],
        check=True,
    )
    digest = hashlib.sha256(recording.read_bytes()).hexdigest()
    report = build_cache(cache, DEFAULT_TEMPLATES)
    assert report.recorded == ["zh/digit_0"]
    assert report.rendered == []
    assert report.failed == []
    assert hashlib.sha256(recording.read_bytes()).hexdigest() == digest
    library = ClipLibrary(cache)
    library.load(["zh/digit_0"])
    assert abs(len(library.clips["zh/digit_0"]) - SAMPLE_RATE // 2) < SAMPLE_RATE // 20


def test_volume_by_time_of_day_and_quiet_hours() -> None:
    import datetime as dt

    lobby = {
        "volume": 0.8,
        "volume_schedule": [{"start": "08:30", "end": "09:30", "level": 0.9}],
        "quiet_hours": [{"start": "12:00", "end": "13:00"}],
    }
    assert volume_at(lobby, dt.time(8, 45)) == 0.9
    assert volume_at(lobby, dt.time(10, 0)) == 0.8
    assert volume_at(lobby, dt.time(12, 30)) == 0.0


def test_voice_build_command_reuses_the_cache(voice_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(voice_dir, cache)
    (cache / "en" / "digit_7.wav").unlink()  # one clip lost: only it is rendered again
    result = subprocess.run(
        [sys.executable, "-m", "qcall", "voice", "build", "--dir", str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "rendered 1," in result.stdout
    assert f"reused {len(required_clips(DEFAULT_TEMPLATES)) - 1}," in result.stdout
    assert voice.rms(voice.read_wav(cache / "en" / "digit_7.wav")) > 0.01


def test_without_working_speech_the_build_gives_up_quickly(tmp_path: Path) -> None:
    broken = SpeechWorker([sys.executable, "-c", "import sys; sys.exit(3)"], timeout=5.0)
    report = build_cache(tmp_path / "cache", DEFAULT_TEMPLATES, worker=broken)
    assert report.rendered == ["chime"]  # generated, not spoken
    assert len(report.failed) == len(required_clips(DEFAULT_TEMPLATES)) - 1
    assert broken.started <= 2 * voice.GIVE_UP_AFTER


@pytest.mark.parametrize("key", ["zh/phrase_请", "zh/number_13", "zh/phrase_号窗口办理"])
def test_chinese_clips_are_read_as_mandarin_not_as_english_pinyin(
    voice_dir: Path, key: str
) -> None:
    # espeak-ng 1.51's `cmn` voice reads many hanzi as pinyin with an English tone digit
    # ("(en)...fo@"); `cmn-latn-pinyin` does not (reference: devices.md §3.2).
    spec = json.loads((voice_dir / "manifest.json").read_text(encoding="utf-8"))["clips"][key]
    phonemes = subprocess.run(
        ["espeak-ng", "-q", "-x", "-v", spec["voice"], spec["text"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert spec["voice"] == "cmn-latn-pinyin"
    assert phonemes.strip()
    assert "(en)" not in phonemes


NO_SPEAKERS = """
import asyncio, logging, sys
from pathlib import Path
from display.announcer import Announcer, MixerPlayer
from display.model import Call
from display.voice import DEFAULT_TEMPLATES, ClipLibrary

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

async def main():
    library = ClipLibrary(Path(sys.argv[1]))
    library.load()
    player = MixerPlayer()
    announcer = Announcer(library, DEFAULT_TEMPLATES, player=player, record_dir=Path(sys.argv[2]))
    task = asyncio.create_task(announcer.run())
    for seq in (1, 2):
        announcer.submit(Call(f"A00{seq}", 3, seq))
    while len(announcer.history) < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    print("available", player.available)

asyncio.run(main())
"""


def test_missing_audio_output_is_logged_once_and_announcements_go_on(
    voice_dir: Path, tmp_path: Path
) -> None:
    env = dict(os.environ, SDL_AUDIODRIVER="no-such-audio-driver")
    result = subprocess.run(
        [sys.executable, "-c", NO_SPEAKERS, str(voice_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "available False" in result.stdout
    assert result.stderr.count("no audio output") == 1
    assert wav_names(tmp_path) == ["000001-A001-w3.wav", "000002-A002-w3.wav"]
