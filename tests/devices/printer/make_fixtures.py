"""Regenerate the annotated ticket fixtures: ``python -m tests.devices.printer.make_fixtures``."""

from __future__ import annotations

from pathlib import Path

from devices.printer import decode as d
from devices.printer.render import render_ticket
from tests.devices.printer.samples import FIXTURES, SAMPLE

FIXTURE_DIR = Path(__file__).parent / "fixtures"


def annotate(data: bytes) -> str:
    """Return ``data`` as hex, one ESC/POS command per line with its decoding as a comment."""
    parser = d.EscPosParser()
    lines = []
    for command, raw in parser.feed_with_bytes(data):
        label = f"text {command.text!r}" if isinstance(command, d.Text) else repr(command)
        lines.append(f"{raw.hex(' ')}  # {label}")
    if parser.pending:
        raise ValueError("job ends inside a command")
    return "\n".join(lines) + "\n"


def load_fixture(name: str) -> bytes:
    """Return the bytes of an annotated hex fixture (text after ``#`` is a comment)."""
    text = (FIXTURE_DIR / name).read_text(encoding="utf-8")
    return bytes.fromhex(" ".join(line.split("#", 1)[0] for line in text.splitlines()))


def main() -> None:
    """Write every fixture of ``FIXTURES``."""
    for name, options in FIXTURES.items():
        data = render_ticket(SAMPLE, **options)  # type: ignore[arg-type]
        header = f"# render_ticket(SAMPLE, {', '.join(f'{k}={v!r}' for k, v in options.items())})\n"
        (FIXTURE_DIR / name).write_text(header + annotate(data), encoding="utf-8")
        print(f"wrote {name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
