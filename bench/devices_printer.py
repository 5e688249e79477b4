"""Ticket render latency, TicketPrint to job bytes: ``python bench/devices_printer.py [N]``."""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from devices.printer.render import TicketPrint, render_ticket

TARGET_P99_MS = 20.0

TICKET = TicketPrint(
    center_zh="浦东新区某某街道社区事务受理服务中心",
    center_en="Mouzhen Community Affairs Acceptance Service Center",
    service_zh="城乡居民基本医疗保险参保登记",
    service_en="Residents' basic medical insurance enrolment",
    number="A012",
    ahead=5,
    estimated_wait_s=840,
    issued_at=datetime(2026, 11, 26, 9, 31, 5, tzinfo=ZoneInfo("Asia/Shanghai")),
    track_url="http://127.0.0.1:8080/t/3fK9xQ2mVb",
    materials=("居民身份证原件", "户口簿（本人页）", "一寸免冠彩色照片两张，近期拍摄，白色背景"),
    window_hint="3号、5号窗口",
    priority=True,
)
# A name outside GBK forces one raster-image line (Pillow + CJK font), the slow path.
IMAGE_TICKET = dataclasses.replace(TICKET, service_zh="社会保险𠀀登记")


def measure(ticket: TicketPrint, count: int = 500, **options: object) -> tuple[float, float]:
    """Render ``ticket`` ``count`` times; return (p50, p99) in milliseconds."""
    render_ticket(ticket, **options)  # type: ignore[arg-type]  # warm caches (font, codecs)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        render_ticket(ticket, **options)  # type: ignore[arg-type]
        samples.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49], cuts[98]


def main(argv: list[str]) -> int:
    """Print p50/p99 for the text-only and the image-line ticket; non-zero above target."""
    count = int(argv[0]) if argv else 500
    worst = 0.0
    for label, ticket, options in (
        ("80 mm, text only", TICKET, {"paper": 80}),
        ("58 mm, gb2312", TICKET, {"paper": 58, "repertoire": "gb2312"}),
        ("80 mm, one image line", IMAGE_TICKET, {"paper": 80}),
    ):
        p50, p99 = measure(ticket, count, **options)
        worst = max(worst, p99)
        print(f"render {label:<24} n={count}  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms")
    verdict = "OK" if worst <= TARGET_P99_MS else "OVER TARGET"
    print(f"worst p99 {worst:.3f} ms (target {TARGET_P99_MS:.0f} ms): {verdict}")
    return 0 if worst <= TARGET_P99_MS else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
