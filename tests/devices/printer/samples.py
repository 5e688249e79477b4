"""Sample tickets shared by the printer tests, the fixture generator and the benchmark."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from devices.printer.render import TicketPrint

SHANGHAI = ZoneInfo("Asia/Shanghai")
ISSUED_AT = datetime(2026, 11, 26, 9, 31, 5, tzinfo=SHANGHAI)
TRACK_URL = "http://127.0.0.1:8080/t/3fK9xQ2mVb"

# Only GB2312 characters, so the fixtures hold no font-dependent raster images.
SAMPLE = TicketPrint(
    center_zh="浦东新区某某街道社区事务受理服务中心",
    center_en="Mouzhen Community Affairs Acceptance Service Center",
    service_zh="城乡居民基本医疗保险参保登记",
    service_en="Residents' basic medical insurance enrolment",
    number="A012",
    ahead=5,
    estimated_wait_s=840,
    issued_at=ISSUED_AT,
    track_url=TRACK_URL,
    materials=("居民身份证原件", "户口簿（本人页）", "一寸免冠彩色照片两张，近期拍摄，白色背景"),
    window_hint="3号、5号窗口",
    priority=True,
)

# (fixture file, render_ticket keyword arguments)
FIXTURES = {
    "ticket_80_gbk.hex": {"paper": 80, "chinese_mode": True, "repertoire": "gbk"},
    "ticket_58_gb2312.hex": {"paper": 58, "chinese_mode": True, "repertoire": "gb2312"},
}
