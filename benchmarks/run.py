"""Benchmarks of `routines` against its peers and limits, side by side in one run.

    python benchmarks/run.py             # the full run (about 35 minutes)
    python benchmarks/run.py --quick     # everything smaller, in about 2 minutes (CI runs this)
    python benchmarks/run.py --json FILE # also write the results as JSON

Every figure is measured for `routines` and for each peer and limit in the same run, each
repeated (after a warm-up) with the median reported; ratio = routines / other. A missed goal is
reported, never a failure: the exit status is 0 whenever the benchmarks ran.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import fig1_stop
import fig2_idle
import fig3_timing
import fig4_pool
import fig5_start
import fig6_memory
import fig7_enqueue
import fig8_process
import fig9_wakeup
import fig10_recovery
import fig11_schedule
import fig12_listing
import fig13_dashboard
import fig14_scaling
import fig15_limits
from _common import Figure, Settings, settle

FIGURES: list[Callable[[Settings], Figure | list[Figure]]] = [
    fig1_stop.run,
    fig2_idle.run,
    fig3_timing.run,
    fig4_pool.run,
    fig5_start.run,
    fig6_memory.run,
    fig7_enqueue.run,
    fig8_process.run,
    fig9_wakeup.run,
    fig10_recovery.run,
    fig11_schedule.run,
    fig12_listing.run,
    fig13_dashboard.run,
    fig14_scaling.run,
    fig15_limits.run,
]
PACKAGES = (
    "routines",
    "APScheduler",
    "schedule",
    "psutil",
    "psycopg",
    "procrastinate",
    "pgqueuer",
    "asyncpg",
    "huey",
    "rq",
    "redis",
    "Jinja2",
)


def machine() -> dict[str, Any]:
    cpus = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = cpus
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpus": cpus,
        "usable_cpus": usable,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "processor": platform.machine(),
        "versions": versions,
    }


def format_value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "never"
    if unit == "s":
        if value >= 100:
            return f"{value:,.0f} s"
        if value >= 1:
            return f"{value:.2f} s"
        if value >= 1e-3:
            return f"{value * 1e3:.1f} ms"
        return f"{value * 1e6:.0f} us"
    if unit == "jobs/s":
        return f"{value:,.0f}/s"
    if unit == "KiB":
        return f"{value:.1f} KiB"
    return f"{value:.3g} {unit}"


def format_ratio(ratio: float) -> str:
    if math.isnan(ratio):
        return "-"
    if ratio < 0.01:
        return f"{ratio:.1e}x"
    return f"{ratio:.2f}x"


def print_figure(figure: Figure) -> None:
    if figure.skipped:
        print(f"\n{figure.number}. {figure.title}: skipped: {figure.skipped}")
        return
    print(f"\n{figure.number}. {figure.title}: {figure.workload}")
    name_width = max(len(side.name) for side in figure.sides) + 2
    header = f"  {'':<{name_width}}"
    for metric in figure.metrics:
        header += f"{metric:>14}{'ratio' if figure.ratios else '':>10}"
    print(header)
    for index, side in enumerate(figure.sides):
        line = f"  {side.name:<{name_width}}"
        for metric in figure.metrics:
            value = format_value(side.median(metric), figure.unit)
            shown = index > 0 and figure.ratios and not side.name.startswith("routines")
            ratio = format_ratio(figure.ratio(side, metric)) if shown else ""
            line += f"{value:>14}{ratio:>10}"
        if side.note:
            line += f"   ({side.note})"
        print(line)
    if figure.goal is not None:
        verdict = "met" if figure.goal.met else "MISSED"
        print(f"  goal: {figure.goal.text}: {verdict} ({figure.goal.detail})")


def as_json(figure: Figure) -> dict[str, Any]:
    def number(value: float) -> float | None:
        return None if math.isnan(value) else value

    return {
        "number": figure.number,
        "title": figure.title,
        "workload": figure.workload,
        "skipped": figure.skipped,
        "unit": figure.unit,
        "better": figure.better,
        "sides": [
            {
                "name": side.name,
                "note": side.note,
                "median": {metric: number(side.median(metric)) for metric in figure.metrics},
                "samples": side.samples,
                "ratio": None
                if index == 0
                else {metric: number(figure.ratio(side, metric)) for metric in figure.metrics},
            }
            for index, side in enumerate(figure.sides)
        ],
        "goal": None
        if figure.goal is None
        else {"text": figure.goal.text, "met": figure.goal.met, "detail": figure.goal.detail},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, for CI")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    parser.add_argument(
        "--only", metavar="N", type=int, action="append", help="run only figure N (repeatable)"
    )
    args = parser.parse_args(argv)
    settings = Settings.small() if args.quick else Settings.full()

    about = machine()
    print(f"routines benchmarks ({'quick' if settings.quick else 'full'} run)")
    print(
        f"machine: {about['cpus']} CPUs ({about['usable_cpus']} usable), {about['python']}, "
        f"{about['platform']}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in about["versions"].items()))
    print(
        f"figures 1-6: median of {settings.repeats} runs after a warm-up; figures 7-13: median of"
        f" {settings.durable_repeats} runs on fresh databases; ratio = routines / other"
    )

    began = time.monotonic()
    figures = []
    for number, run in enumerate(FIGURES, start=1):
        if args.only and number not in args.only:
            continue
        result = run(settings)
        settle()
        for figure in result if isinstance(result, list) else [result]:
            print_figure(figure)
            figures.append(figure)
        sys.stdout.flush()
    elapsed = time.monotonic() - began

    goals = [figure for figure in figures if figure.goal is not None]
    met = sum(1 for figure in goals if figure.goal is not None and figure.goal.met)
    print(f"\ngoals met: {met} of {len(goals)}; took {elapsed:.1f}s")
    if args.json is not None:
        document = {
            "machine": about,
            "quick": settings.quick,
            "settings": vars(settings),
            "elapsed": elapsed,
            "figures": [as_json(figure) for figure in figures],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
