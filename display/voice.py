"""Spoken calls from a clip cache: phrase pieces rendered once, announcements spliced from them.

The cache directory holds one WAV per piece — carrier phrases of the templates, letters,
digits, window numbers 1–99 and the chime — as ``<key>.wav`` (e.g. ``zh/digit_0.wav``,
``letter_A.wav``, ``zh/phrase_请.wav``), plus ``manifest.json`` naming what qcall rendered.
A file that is not in the manifest (or whose content changed) is a center's own recording:
it is never overwritten, and it wins. Every clip is trimmed, loudness-matched and converted
to one format (16-bit mono 22050 Hz) when loaded, so an announcement is a concatenation.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import selectors
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

_LOGGER = logging.getLogger(__name__)

SAMPLE_RATE: Final = 22050
SAMPLE_WIDTH: Final = 2
# Pauses between pieces of one sentence, between the Chinese and English sentence, and
# between repeats (devices.md §3.4: 80–150 ms gaps; ui.md rule 7: ≥ 800 ms between repeats).
PIECE_GAP_S: Final = 0.1
SENTENCE_GAP_S: Final = 0.45
REPEAT_GAP_S: Final = 0.8
AFTER_CHIME_S: Final = 0.25
# Loudness target (RMS, fraction of full scale) and the peak ceiling after the gain.
TARGET_RMS: Final = 0.12
PEAK_CEILING: Final = 0.95
# Leading and trailing samples quieter than this (fraction of full scale) are trimmed.
SILENCE_THRESHOLD: Final = 0.01
TRIM_MARGIN_S: Final = 0.01
# Clip edges are faded over this long (a hard cut is an audible click between pieces).
FADE_S: Final = 0.005
# One espeak phrase takes ~20 ms (stack-checks §3); pyttsx3 can hang forever in runAndWait,
# so a job that has not answered in this long is a hung worker: killed and replaced.
SYNTH_TIMEOUT_S: Final = 10.0
# Starting Python, pyttsx3 and espeak-ng in the worker.
WORKER_START_TIMEOUT_S: Final = 20.0
MANIFEST: Final = "manifest.json"
# Clips failing one after the other mean no speech at all here (espeak-ng missing): stop
# trying after this many rather than start a worker for every clip.
GIVE_UP_AFTER: Final = 5
ZH_VOICE: Final = "cmn-latn-pinyin"  # `cmn` misreads hanzi on espeak-ng 1.51 (devices.md §3.2)
EN_VOICE: Final = "en-us"
ZH_RATE: Final = 165
EN_RATE: Final = 160
ZH_DIGITS: Final = "零一二三四五六七八九"
EN_DIGITS: Final = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CHIME_KEY: Final = "chime"
LARGEST_QUANTITY: Final = 99

NUMBER: Final = "{number}"
WINDOW: Final = "{window}"


class VoiceError(Exception):
    """The clip cache or a speech worker failed."""


class SpeechTimeout(VoiceError, TimeoutError):
    """A speech worker did not answer in time (it was killed)."""


class MissingClip(VoiceError, KeyError):
    """An announcement needs a clip the cache does not have."""


# --------------------------------------------------------------------------- words


def zh_quantity(number: int) -> str:
    """A window number as a Chinese quantity: 3 → 三, 13 → 十三, 20 → 二十, 45 → 四十五."""
    if not 1 <= number <= LARGEST_QUANTITY:
        raise ValueError(f"{number} is outside 1–{LARGEST_QUANTITY}")
    tens, ones = divmod(number, 10)
    if tens == 0:
        return ZH_DIGITS[ones]
    head = "" if tens == 1 else ZH_DIGITS[tens]
    return f"{head}十{ZH_DIGITS[ones] if ones else ''}"


def phrase_key(lang: str, text: str) -> str:
    """The cache key of a carrier phrase (its own words, so a technician finds the file)."""
    safe = re.sub(r"[^\w]+", "_", text, flags=re.UNICODE).strip("_")
    return f"{lang}/phrase_{safe}"


def template_pieces(template: str) -> list[str]:
    """Split a template into literal phrases and the ``{number}``/``{window}`` slots."""
    pieces: list[str] = []
    for part in re.split(r"(\{number\}|\{window\})", template):
        if part in (NUMBER, WINDOW):
            pieces.append(part)
            continue
        words = part.strip(" \t,.;:!?，。；：！？、")
        if words:
            pieces.append(words)
    return pieces


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """One piece of the cache: how qcall renders it when no recording is present."""

    key: str
    text: str
    voice: str  # "" for the generated chime


@dataclass(frozen=True, slots=True)
class Templates:
    """The announcement templates in force (from the lobby settings)."""

    zh: str
    en: str
    english: bool = True
    repeat: int = 2
    chime: bool = True


DEFAULT_TEMPLATES: Final = Templates(
    "请 {number} 号 到 {window} 号窗口办理", "Number {number}, please go to counter {window}"
)


def required_clips(templates: Templates) -> list[ClipSpec]:
    """Every clip announcements can need under these templates."""
    specs = [ClipSpec(CHIME_KEY, "", "")]
    specs += [ClipSpec(f"letter_{ch}", ch, EN_VOICE) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    specs += [ClipSpec(f"zh/digit_{d}", ZH_DIGITS[d], ZH_VOICE) for d in range(10)]
    specs += [ClipSpec(f"en/digit_{d}", EN_DIGITS[d], EN_VOICE) for d in range(10)]
    specs += [
        ClipSpec(f"zh/number_{n}", zh_quantity(n), ZH_VOICE) for n in range(1, LARGEST_QUANTITY + 1)
    ]
    specs += [ClipSpec(f"en/number_{n}", str(n), EN_VOICE) for n in range(1, LARGEST_QUANTITY + 1)]
    for lang, template, voice in (("zh", templates.zh, ZH_VOICE), ("en", templates.en, EN_VOICE)):
        for piece in template_pieces(template):
            if piece not in (NUMBER, WINDOW):
                specs.append(ClipSpec(phrase_key(lang, piece), piece, voice))
    return specs


Segment = str | float  # a clip key, or a pause in seconds


def sentence(lang: str, template: str, number: str, window: int) -> list[Segment]:
    """One sentence as clip keys and pauses: ticket characters one by one, window a quantity."""
    out: list[Segment] = []
    for piece in template_pieces(template):
        if out:
            out.append(PIECE_GAP_S)
        if piece == NUMBER:
            for index, ch in enumerate(number.upper()):
                if index:
                    out.append(PIECE_GAP_S / 2)
                if ch.isdigit():
                    out.append(f"{lang}/digit_{ch}")
                elif "A" <= ch <= "Z":
                    out.append(f"letter_{ch}")
        elif piece == WINDOW:
            if 1 <= window <= LARGEST_QUANTITY:
                out.append(f"{lang}/number_{window}")
            else:
                for index, ch in enumerate(str(window)):
                    if index:
                        out.append(PIECE_GAP_S / 2)
                    out.append(f"{lang}/digit_{ch}")
        else:
            out.append(phrase_key(lang, piece))
    return out


def announcement(templates: Templates, number: str, window: int) -> list[Segment]:
    """The whole announcement: chime, the Chinese sentence ``repeat`` times, English once."""
    out: list[Segment] = []
    if templates.chime:
        out += [CHIME_KEY, AFTER_CHIME_S]
    for index in range(templates.repeat):
        if index:
            out.append(REPEAT_GAP_S)
        out += sentence("zh", templates.zh, number, window)
    if templates.english:
        out.append(SENTENCE_GAP_S)
        out += sentence("en", templates.en, number, window)
    return out


# --------------------------------------------------------------------------- samples


if TYPE_CHECKING:
    Samples = array.array[int]  # "h": 16-bit signed mono at SAMPLE_RATE
else:
    Samples = array.array


def silence(seconds: float) -> Samples:
    """That many seconds of silence."""
    return array.array("h", bytes(SAMPLE_WIDTH * round(seconds * SAMPLE_RATE)))


def chime() -> Samples:
    """A soft two-tone chime (ding-dong), generated rather than synthesised."""
    out = array.array("h")
    for freq, length in ((880.0, 0.42), (660.0, 0.6)):
        tone = array.array("h")
        count = round(length * SAMPLE_RATE)
        for i in range(count):
            t = i / SAMPLE_RATE
            envelope = math.exp(-4.0 * t)
            value = math.sin(2 * math.pi * freq * t) + 0.3 * math.sin(4 * math.pi * freq * t)
            tone.append(int(0.45 * 32767 * envelope * value / 1.3))
        out.extend(fade(tone, 0.03))
    return out


def read_wav(path: Path) -> Samples:
    """Read a PCM WAV as 16-bit mono at SAMPLE_RATE (mixing channels, resampling)."""
    try:
        with wave.open(str(path), "rb") as source:
            width = source.getsampwidth()
            channels = source.getnchannels()
            rate = source.getframerate()
            raw = source.readframes(source.getnframes())
    except (wave.Error, EOFError) as err:
        raise VoiceError(f"{path}: not a PCM WAV file ({err})") from err
    if width != SAMPLE_WIDTH:
        raise VoiceError(f"{path}: {8 * width}-bit audio; record clips as 16-bit PCM")
    samples = array.array("h", raw)
    if sys.byteorder == "big":
        samples.byteswap()
    if channels > 1:
        samples = array.array(
            "h",
            (
                sum(samples[i : i + channels]) // channels
                for i in range(0, len(samples) - channels + 1, channels)
            ),
        )
    if rate != SAMPLE_RATE:
        samples = _resample(samples, rate)
    return samples


def _resample(samples: Samples, rate: int) -> Samples:
    """Linear-interpolation resampling to SAMPLE_RATE (recordings only; rendering is native)."""
    if not samples:
        return samples
    count = max(1, round(len(samples) * SAMPLE_RATE / rate))
    step = (len(samples) - 1) / max(count - 1, 1)
    out = array.array("h")
    for i in range(count):
        pos = i * step
        low = int(pos)
        high = min(low + 1, len(samples) - 1)
        frac = pos - low
        out.append(round(samples[low] * (1 - frac) + samples[high] * frac))
    return out


def write_wav(path: Path, samples: Samples) -> None:
    """Write 16-bit mono SAMPLE_RATE PCM (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = samples
    if sys.byteorder == "big":
        data = array.array("h", samples)
        data.byteswap()
    partial = path.with_name(path.name + ".part")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(data.tobytes())
    partial.replace(path)


def trim(samples: Samples) -> Samples:
    """Drop leading and trailing near-silence (keeping a short margin)."""
    limit = SILENCE_THRESHOLD * 32767
    first = next((i for i, v in enumerate(samples) if abs(v) > limit), None)
    if first is None:
        return array.array("h")
    last = next(i for i in range(len(samples) - 1, -1, -1) if abs(samples[i]) > limit)
    margin = round(TRIM_MARGIN_S * SAMPLE_RATE)
    return fade(samples[max(0, first - margin) : min(len(samples), last + margin + 1)])


def fade(samples: Samples, seconds: float = FADE_S) -> Samples:
    """Ramp the first and last ``seconds`` in and out, so a cut edge does not click."""
    out = array.array("h", samples)
    count = min(round(seconds * SAMPLE_RATE), len(out) // 2)
    for i in range(count):
        gain = i / count
        out[i] = round(out[i] * gain)
        out[-1 - i] = round(out[-1 - i] * gain)
    return out


def rms(samples: Samples) -> float:
    """Root mean square as a fraction of full scale (0 for empty audio)."""
    if not samples:
        return 0.0
    return math.sqrt(sum(v * v for v in samples) / len(samples)) / 32767


def normalize(samples: Samples) -> Samples:
    """Scale to the common loudness, without letting peaks pass the ceiling."""
    level = rms(samples)
    if level == 0.0:
        return samples
    peak = max(abs(v) for v in samples) / 32767
    gain = min(TARGET_RMS / level, PEAK_CEILING / peak)
    return array.array("h", (max(-32767, min(32767, round(v * gain))) for v in samples))


# --------------------------------------------------------------------------- worker


class SpeechWorker:
    """pyttsx3 on espeak-ng in a child process, one job at a time.

    pyttsx3 must stay on one thread and can hang forever in ``runAndWait``; a child process
    isolates both. A job without an answer within ``timeout`` kills the child; the next job
    starts a fresh one.
    """

    def __init__(
        self, command: Sequence[str] | None = None, *, timeout: float = SYNTH_TIMEOUT_S
    ) -> None:
        self.command = list(command or [sys.executable, "-m", "display.tts_worker"])
        self.timeout = timeout
        self.started = 0
        self.killed = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def synthesize(self, text: str, voice: str, rate: int, path: Path) -> None:
        """Render ``text`` into a WAV at ``path``; raise SpeechTimeout or VoiceError."""
        proc = self._ensure()
        assert proc.stdin is not None
        job = {"text": text, "voice": voice, "rate": rate, "path": str(path)}
        try:
            proc.stdin.write(json.dumps(job, ensure_ascii=False).encode() + b"\n")
            proc.stdin.flush()
        except OSError as err:
            self._kill()
            raise VoiceError(f"speech worker is gone: {err}") from err
        line = self._readline(proc, self.timeout)
        if line is None:
            self._kill()
            raise SpeechTimeout(f"speech worker hung on {text!r}; killed")
        try:
            answer = json.loads(line)
        except ValueError as err:
            self._kill()
            raise VoiceError(f"speech worker answered nonsense: {line[:80]!r}") from err
        if not answer.get("ok"):
            raise VoiceError(f"speech failed for {text!r}: {answer.get('error')}")

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        env = dict(os.environ)
        env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.started += 1
        return self._proc

    @staticmethod
    def _readline(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    return None
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    return None
                buffer += chunk
        return buffer.split(b"\n", 1)[0].decode("utf-8", "replace")

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
                self.killed += 1
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(WORKER_START_TIMEOUT_S)
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            self._proc = None

    def close(self) -> None:
        """Stop the worker."""
        self._kill()


# --------------------------------------------------------------------------- cache


@dataclass(slots=True)
class BuildReport:
    """What ``build_cache`` did."""

    rendered: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)  # a center's own files, left alone
    failed: list[str] = field(default_factory=list)


def clip_path(directory: Path, key: str) -> Path:
    """Where a clip lives in the cache."""
    return directory / f"{key}.wav"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_cache(
    directory: Path,
    templates: Templates = DEFAULT_TEMPLATES,
    *,
    worker: SpeechWorker | None = None,
    progress: Callable[[str], None] | None = None,
) -> BuildReport:
    """Render every missing clip once (a hung job is retried on a fresh worker)."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    clips: dict[str, dict[str, str]] = manifest.setdefault("clips", {})
    report = BuildReport()
    failures_in_a_row = 0
    own_worker = worker is None
    speech = worker or SpeechWorker()
    try:
        for spec in required_clips(templates):
            path = clip_path(directory, spec.key)
            known = clips.get(spec.key)
            if path.exists():
                digest = _digest(path)
                if known is None or known.get("sha256") != digest:
                    report.recorded.append(spec.key)
                    continue
                if known.get("text") == spec.text and known.get("voice") == spec.voice:
                    report.reused.append(spec.key)
                    continue
            if failures_in_a_row >= GIVE_UP_AFTER:
                report.failed.append(spec.key)
                continue
            try:
                _render(spec, path, speech)
            except VoiceError as err:
                _LOGGER.warning("clip %s not rendered: %s", spec.key, err)
                report.failed.append(spec.key)
                failures_in_a_row += 1
                if failures_in_a_row == GIVE_UP_AFTER:
                    _LOGGER.error("speech synthesis keeps failing; is espeak-ng installed?")  # noqa: TRY400
                continue
            failures_in_a_row = 0
            clips[spec.key] = {"text": spec.text, "voice": spec.voice, "sha256": _digest(path)}
            report.rendered.append(spec.key)
            if progress is not None:
                progress(spec.key)
    finally:
        if own_worker:
            speech.close()
        manifest_path.write_text(
            json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8"
        )
    return report


def _render(spec: ClipSpec, path: Path, worker: SpeechWorker) -> None:
    if spec.key == CHIME_KEY:
        write_wav(path, chime())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_name(path.name + ".raw.wav")
    rate = ZH_RATE if spec.voice == ZH_VOICE else EN_RATE
    try:
        try:
            worker.synthesize(spec.text, spec.voice, rate, raw)
        except SpeechTimeout:
            _LOGGER.warning("speech worker hung on clip %s; retrying on a new worker", spec.key)
            worker.synthesize(spec.text, spec.voice, rate, raw)
        samples = normalize(trim(read_wav(raw)))
        if not samples:
            raise VoiceError(f"clip {spec.key} came out silent")
        write_wav(path, samples)
    finally:
        raw.unlink(missing_ok=True)


class ClipLibrary:
    """The clips of a cache directory in memory, ready to splice."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.clips: dict[str, Samples] = {}

    def load(self, keys: Iterable[str] | None = None) -> list[str]:
        """Load (and normalise) clips; return the keys that could not be read."""
        wanted = (
            list(keys)
            if keys is not None
            else [
                p.relative_to(self.directory).with_suffix("").as_posix()
                for p in sorted(self.directory.rglob("*.wav"))
                if not p.name.endswith((".part", ".raw.wav"))
            ]
        )
        bad: list[str] = []
        for key in wanted:
            path = clip_path(self.directory, key)
            try:
                samples = read_wav(path)
            except (OSError, VoiceError) as err:
                _LOGGER.warning("clip %s unusable: %s", key, err)
                bad.append(key)
                continue
            # A center's recording may be any level and have silence around it.
            self.clips[key] = normalize(trim(samples)) if key != CHIME_KEY else samples
        return bad

    def missing(self, segments: Iterable[Segment]) -> list[str]:
        """Clip keys of ``segments`` not loaded."""
        return [s for s in segments if isinstance(s, str) and s not in self.clips]

    def assemble(self, segments: Iterable[Segment]) -> Samples:
        """Concatenate clips and pauses into one buffer."""
        out = array.array("h")
        for segment in segments:
            if isinstance(segment, str):
                clip = self.clips.get(segment)
                if clip is None:
                    raise MissingClip(segment)
                out.extend(clip)
            else:
                out.extend(silence(segment))
        return out
