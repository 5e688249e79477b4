"""The speech worker process: pyttsx3 on espeak-ng, one JSON job a line on stdin.

Each job ``{"text", "voice", "rate", "path"}`` is answered with one JSON line
``{"ok": true, "engine": ...}`` or ``{"ok": false, "error": "..."}`` on the original stdout.
pyttsx3 prints "Audio saved to ..." on stdout itself, so stdout is pointed at stderr for it.
The parent (``display.voice.SpeechWorker``) kills this process when a job hangs.

pyttsx3 2.99's espeak driver sometimes ends ``runAndWait`` before espeak delivered any
samples (an empty WAV, more often on a busy machine): such a job is run again, and after
PYTTSX3_ATTEMPTS empty results the ``espeak-ng`` command line renders it instead (same voice
and rate, the same speech).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any, Final

PYTTSX3_ATTEMPTS: Final = 3
# The espeak-ng command renders one short phrase in ~25 ms; this only bounds a broken install.
CLI_TIMEOUT_S: Final = 10.0


def _frames(path: Path) -> int:
    try:
        with wave.open(str(path), "rb") as audio:
            return audio.getnframes()
    except (OSError, wave.Error, EOFError):
        return 0


def _cli(text: str, voice: str, rate: int, path: Path) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed")
    subprocess.run(  # noqa: S603 - fixed program, text passed as one argument
        [espeak, "-v", voice, "-s", str(rate), "-w", str(path), text],
        check=True,
        timeout=CLI_TIMEOUT_S,
        capture_output=True,
    )


def main() -> int:
    """Serve jobs until stdin closes."""
    answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    import pyttsx3

    engine = pyttsx3.init("espeak")
    for line in sys.stdin:
        if not line.strip():
            continue
        answer: dict[str, Any]
        try:
            job = json.loads(line)
            text, voice, rate = str(job["text"]), str(job["voice"]), int(job["rate"])
            path = Path(job["path"])
            used = "pyttsx3"
            for _attempt in range(PYTTSX3_ATTEMPTS):
                # setProperty is applied by the next runAndWait: one job is one batch (a bare
                # runAndWait can hang or repeat the last job, stack-checks §3).
                engine.setProperty("voice", voice)
                engine.setProperty("rate", rate)
                engine.save_to_file(text, str(path))
                engine.runAndWait()
                if _frames(path) > 0:
                    break
            else:
                used = "espeak-ng"
                _cli(text, voice, rate, path)
            answer = {"ok": _frames(path) > 0, "engine": used}
            if not answer["ok"]:
                answer["error"] = "no audio came out"
        except Exception as err:  # noqa: BLE001 - reported to the parent, which decides
            answer = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
