"""``qcall simulate``: a simulated day, its report and a staffing comparison."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from qcall.config import load_config
from qcall.errors import ConfigError
from qcall.reports import LANGS, to_table
from qcall.reports.render import grid, pick
from qcall.simulate import (
    DayRun,
    Staffing,
    compare_staffing,
    comprehensive_count,
    simulate_days,
    staffing_counts,
)

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
MAX_WINDOWS: Final = 60
MAX_DAYS: Final = 31
MIN_SPEED: Final = 1.0
MAX_SPEED: Final = 1_000_000.0


def add_simulate_parser(sub: Any) -> None:
    """Add ``simulate`` to the ``qcall`` parser."""
    sim = sub.add_parser(
        "simulate", help="模拟一天的业务与排班对比 / simulate a day and compare staffing"
    )
    sim.add_argument("--config", type=Path, required=True, help="配置文件 / TOML")
    sim.add_argument("--day", required=True, help="YYYY-MM-DD")
    sim.add_argument(
        "--days", type=int, default=1, help="连续模拟天数 / consecutive days (default 1)"
    )
    sim.add_argument(
        "--windows",
        type=int,
        help="综合窗口数（默认按配置）/ comprehensive windows (default: config)",
    )
    sim.add_argument("--seed", type=int, default=1, help="随机种子 / random seed")
    sim.add_argument(
        "--speed",
        type=float,
        help="倍速（默认尽快）/ times real time (default: as fast as possible)",
    )
    sim.add_argument("--faults", action="store_true", help="注入故障 / inject faults")
    sim.add_argument(
        "--out", type=Path, help="输出目录 / output folder (default simulate-YYYY-MM-DD)"
    )
    sim.add_argument("--lang", default="zh", choices=LANGS)
    sim.add_argument(
        "--no-compare", action="store_true", help="不做排班对比 / skip the staffing comparison"
    )
    sim.set_defaults(handler=run)


class _Refused(Exception):
    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh, self.en = zh, en


def run(args: argparse.Namespace) -> int:
    """Run the simulation; bad arguments are refused in both languages (exit 2)."""
    try:
        return _simulate(args)
    except _Refused as err:
        print(f"{err.zh} / {err.en}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE


def _simulate(args: argparse.Namespace) -> int:
    try:
        day = dt.date.fromisoformat(args.day)
    except ValueError:
        raise _Refused("日期格式应为 YYYY-MM-DD", "--day must be YYYY-MM-DD") from None
    if not 1 <= args.days <= MAX_DAYS:
        raise _Refused(f"--days 须为 1 至 {MAX_DAYS}", f"--days must be 1 to {MAX_DAYS}")
    if args.windows is not None and not 1 <= args.windows <= MAX_WINDOWS:
        raise _Refused(
            f"--windows 须为 1 至 {MAX_WINDOWS}", f"--windows must be 1 to {MAX_WINDOWS}"
        )
    if args.speed is not None and not MIN_SPEED <= args.speed <= MAX_SPEED:
        raise _Refused(
            f"--speed 须为 {MIN_SPEED:g} 至 {MAX_SPEED:g}",
            f"--speed must be {MIN_SPEED:g} to {MAX_SPEED:g}",
        )
    try:
        config = load_config(args.config)
    except ConfigError as err:
        raise _Refused(f"配置文件有误：{err}", f"bad configuration: {err}") from None
    windows = args.windows or comprehensive_count(config)
    out: Path = args.out or Path(f"simulate-{day:%Y-%m-%d}")
    out.mkdir(parents=True, exist_ok=True)
    db = out / "qcall.db"
    if any(out.glob("qcall.db*")):
        raise _Refused(
            f"{out} 已有模拟数据库，请换一个 --out 目录",
            f"{out} already holds a database: pick another --out",
        )
    days = [day + dt.timedelta(days=i) for i in range(args.days)]
    runs = asyncio.run(
        simulate_days(
            config,
            db,
            days,
            windows=windows,
            seed=args.seed,
            faults=args.faults,
            speed=args.speed,
        )
    )
    lang = args.lang
    for one in runs:
        assert one.report is not None
        sys.stdout.write(to_table(one.report, lang))
        sys.stdout.write("\n" + run_summary(one, lang) + "\n")
        if one.device_faults:
            sys.stdout.write(fault_summary(one, lang) + "\n")
        sys.stdout.write("\n")
    if not args.no_compare:
        counts = staffing_counts(windows)
        rows = asyncio.run(compare_staffing(config, out, day, counts, seed=args.seed))
        sys.stdout.write(staffing_table(rows, lang) + "\n")
        chart = out / "staffing.svg"
        chart.write_text(staffing_chart(rows, lang), encoding="utf-8")
        sys.stdout.write(pick(lang, f"排班对比图：{chart}", f"Staffing chart: {chart}") + "\n")
    sys.stdout.write(pick(lang, f"数据库：{db}", f"Database: {db}") + "\n")
    return EXIT_OK


def run_summary(one: DayRun, lang: str) -> str:
    """One line about the simulated day: what happened and how fast it ran."""
    return pick(
        lang,
        f"模拟 {one.day}：取号 {len(one.issued)}，拒绝 {one.refused}，过号 {one.no_shows}，"
        f"转移 {one.transfers}，转后台 {one.back_office}，取件 {one.pickups}，评价 {one.ratings}，"
        f"重启 {one.restarts} 次，强杀 {one.kills} 次；"
        f"模拟 {one.simulated_s / 3600:.1f} 小时用时 {one.wall_s:.1f} 秒"
        f"（{one.speedup:.0f} 倍速）",
        f"Simulated {one.day}: {len(one.issued)} issued, {one.refused} refused, "
        f"{one.no_shows} no-shows, {one.transfers} transfers, {one.back_office} back-office, "
        f"{one.pickups} pickups, {one.ratings} ratings, {one.restarts} hub restarts, "
        f"{one.kills} hub kills; "
        f"{one.simulated_s / 3600:.1f} h in {one.wall_s:.1f} s ({one.speedup:.0f}x real time)",
    )


# The injected device faults, as people call them.
_FAULT_NAMES: dict[str, tuple[str, str]] = {
    "paper_end": ("打印机缺纸", "printer paper end"),
    "disconnect": ("大厅屏断网", "lobby screen disconnected"),
    "no_reply": ("设备无应答", "silent device"),
    "noise": ("总线干扰", "bus noise"),
    "unplug": ("设备拔线", "device unplugged"),
}


def fault_summary(one: DayRun, lang: str) -> str:
    """One line per injected device fault: noticed (offline) and recovered, or not."""
    lines = []
    for fault in one.device_faults:
        zh, en = _FAULT_NAMES.get(fault.fault, (fault.fault, fault.fault))
        offline = fault.went_offline
        back = fault.came_back
        detail = f" ({fault.detail})" if fault.detail else ""
        if fault.gap_free is not None:
            detail = pick(
                lang,
                f"（自 seq {fault.after_seq} 起补收 {fault.replayed} 条事件至 seq "
                f"{fault.last_seq}，{'无缺漏' if fault.gap_free else '有缺漏！'}）",
                f" (after seq {fault.after_seq}: {fault.replayed} events replayed up to seq "
                f"{fault.last_seq}, {'gap-free' if fault.gap_free else 'NOT gap-free!'})",
            )
        lines.append(
            pick(
                lang,
                f"  {zh} {fault.device}：{'判为离线' if offline else '未离线'}，"
                f"{'已恢复' if back else '未恢复！'}{detail}",
                f"  {en} {fault.device}: {'went offline' if offline else 'stayed online'}, "
                f"{'back' if back else 'NOT back!'}{detail}",
            )
        )
    if one.devices_ready is not None:
        ready = one.devices_ready
        lines.append(
            pick(
                lang,
                "  设备全部就绪" if ready else "  有设备未就绪！",
                "  every device ready" if ready else "  a device is NOT ready!",
            )
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def staffing_table(rows: Sequence[Staffing], lang: str) -> str:
    """The comparison as a terminal table, then one sentence per staffing choice."""
    header = [
        pick(lang, "综合窗口", "Windows"),
        pick(lang, "取号", "Issued"),
        pick(lang, "办理", "Served"),
        pick(lang, "平均等候(分)", "Mean wait (min)"),
        pick(lang, "P90等候(分)", "P90 wait (min)"),
        pick(lang, "最长等候(分)", "Max wait (min)"),
        pick(lang, "最后办结", "Last finish"),
    ]
    body = [
        [
            str(r.windows),
            str(r.issued),
            str(r.served),
            _num(r.mean_wait_min),
            _num(r.p90_wait_min),
            _num(r.max_wait_min),
            r.last_finish,
        ]
        for r in rows
    ]
    title = pick(lang, "[排班对比（同一天同一批群众）]", "[Staffing comparison (same residents)]")
    sentence = "; ".join(
        pick(
            lang,
            f"{r.windows} 个窗口：平均等候 {_num(r.mean_wait_min)} 分，"
            f"P90 {_num(r.p90_wait_min)} 分",
            f"{r.windows} windows: mean wait {_num(r.mean_wait_min)} min, "
            f"p90 {_num(r.p90_wait_min)}",
        )
        for r in rows
    )
    return "\n".join([title, *grid([header], body, left=1), sentence])


def staffing_chart(rows: Sequence[Staffing], lang: str) -> str:
    """Mean and p90 wait (minutes) per number of windows, as an SVG bar chart."""
    import pygal

    from qcall.reports.charts import SERIES_COLOURS, _config

    title = pick(lang, "排班对比：等候时间", "Staffing comparison: waiting time")
    chart = pygal.Bar(
        **_config(lang, title, SERIES_COLOURS),
        y_title=pick(lang, "等候(分)", "Wait (min)"),
    )
    chart.x_labels = [pick(lang, f"{r.windows} 个综合窗口", f"{r.windows} windows") for r in rows]
    chart.add(pick(lang, "平均等候", "Mean wait"), [r.mean_wait_min for r in rows])
    chart.add(pick(lang, "P90 等候", "P90 wait"), [r.p90_wait_min for r in rows])
    return str(chart.render(is_unicode=True))
