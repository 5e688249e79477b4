"""``qcall display`` (the lobby screen) and ``qcall voice build`` (the clip cache)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from display.app import LobbyScreen, Options, default_voice_dir
from display.model import parse_zone
from display.voice import DEFAULT_TEMPLATES, Templates, build_cache

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
TOKEN_ENV: Final = "QCALL_DISPLAY_TOKEN"  # noqa: S105 - the variable's name, not a secret


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 1920x1080")
    size = int(width), int(height)
    if not (320 <= size[0] <= 7680 and 240 <= size[1] <= 7680):
        raise argparse.ArgumentTypeError(f"{text!r}: size out of range")
    return size


def _zone(text: str) -> frozenset[int]:
    try:
        return parse_zone(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}（窗口范围写法：1-4,8）") from err


def display_parser() -> argparse.ArgumentParser:
    """Arguments of ``qcall display``."""
    parser = argparse.ArgumentParser(
        prog="qcall display",
        description="大厅叫号屏与语音播报 / lobby screen and spoken calls",
    )
    parser.add_argument("--hub", required=True, help="叫号服务器地址 / hub URL, http://host:port")
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"显示屏令牌 / display token (or ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--windows", type=_zone, help="只显示这些窗口 / only these windows, e.g. 1-4,8"
    )
    parser.add_argument("--fullscreen", action="store_true", help="全屏 / full screen")
    parser.add_argument(
        "--size", type=_size, default=(1920, 1080), help="窗口大小 / window size WxH"
    )
    parser.add_argument(
        "--screenshot", type=Path, help="每次画面变化存 PNG / PNG after every change (DIR)"
    )
    parser.add_argument("--scene", type=Path, help="画面描述 JSON / scene JSON file")
    parser.add_argument("--record", type=Path, help="每次播报存 WAV / WAV of every announcement")
    parser.add_argument("--no-audio", action="store_true", help="不出声 / no sound output")
    parser.add_argument("--no-voice", action="store_true", help="不播报 / no announcements")
    parser.add_argument(
        "--voice-dir", type=Path, help=f"语音片段目录 / clip cache ({default_voice_dir()})"
    )
    parser.add_argument("--lang", choices=["zh", "en"], default="zh")
    parser.add_argument("--log-level", default="info")
    return parser


def display_main(argv: Sequence[str]) -> int:
    """Entry point of ``qcall display``."""
    args = display_parser().parse_args(list(argv))
    _logging(args.log_level)
    if not args.hub.startswith(("http://", "https://")):
        print(  # noqa: T201
            f"服务器地址应以 http:// 或 https:// 开头 / the hub address must start with "
            f"http:// or https:// (got {args.hub!r})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not args.token:
        print(  # noqa: T201
            f"需要显示屏令牌（--token 或 ${TOKEN_ENV}）/ a display token is required "
            f"(qcall token create --role display --name 大厅屏)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    options = Options(
        hub=args.hub,
        token=args.token,
        zone=args.windows,
        fullscreen=args.fullscreen,
        size=args.size,
        screenshot=args.screenshot,
        scene=args.scene,
        record=args.record,
        audio=not args.no_audio,
        voice=not args.no_voice,
        voice_dir=args.voice_dir,
        lang=args.lang,
    )
    try:
        asyncio.run(_run(options))
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as err:  # noqa: BLE001 - the technician gets one clear line
        logging.getLogger("qcall.display").critical("lobby screen failed: %s", err)
        return EXIT_FAILURE
    return EXIT_OK


async def _run(options: Options) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await LobbyScreen(options).run(stop)


def voice_main(argv: Sequence[str]) -> int:
    """Entry point of ``qcall voice build``."""
    parser = argparse.ArgumentParser(
        prog="qcall voice build",
        description="生成语音片段缓存 / render the announcement clip cache",
    )
    parser.add_argument("--dir", type=Path, default=None, help=f"default {default_voice_dir()}")
    parser.add_argument("--config", type=Path, help="中心配置，取 [lobby] 播报模板 / center config")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(list(argv))
    _logging(args.log_level)
    templates = DEFAULT_TEMPLATES
    if args.config is not None:
        from qcall.config import load_config
        from qcall.errors import ConfigError

        try:
            announce = load_config(args.config).lobby.announce
        except ConfigError as err:
            print(err.message_zh, file=sys.stderr)  # noqa: T201
            return EXIT_USAGE
        templates = Templates(
            announce.template_zh,
            announce.template_en,
            english=announce.english,
            repeat=announce.repeat,
            chime=announce.chime,
        )
    directory = args.dir or default_voice_dir()
    report = build_cache(directory, templates)
    print(  # noqa: T201
        f"{directory}: 新生成 rendered {len(report.rendered)}, 沿用 reused {len(report.reused)}, "
        f"自录 recorded {len(report.recorded)}, 失败 failed {len(report.failed)}"
    )
    for key in report.failed:
        print(f"  失败 / failed: {key}", file=sys.stderr)  # noqa: T201
    return EXIT_FAILURE if report.failed else EXIT_OK


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
