"""Benchmark ``nrl-launch report`` on a generated nightly of 200 experiments.

    python benchmarks/bench_report.py [--experiments 200] [--steps 100] [--runs 5] [--libraries]

Generates a snapshot root as a big nightly leaves it (``tests/reportkit.make_suite``:
3 chained runs per experiment, driver logs with Metric Checks, a metrics file of 2
series x ``--steps`` steps, one in ten failing a check, one in 25 crashed) and a Slurm
that answers sacct for its 600 jobs at once (in process: the Slurm query's own time is
the cluster's, not ours). Then prints the median wall time of writing the report
(collecting every row, the curves, the timeline, the page) over ``--runs`` runs, and of
a fresh interpreter importing what the page needs (Jinja2, leather). The target:
200 experiments in under 2 s.

``--libraries`` also times drawing one experiment's curves (4 series of ``--steps``
points, thresholds) with matplotlib (SVG backend), pygal and leather, when installed:
why the report draws with leather (README).
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests")]

from reportkit import make_suite, slurm_with_times  # noqa: E402

from nrl_launch.report.command import run_report  # noqa: E402


def time_report(experiments: int, steps: int, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU times of writing the page of a generated nightly (the CPU time is this process's:
    on a shared machine it varies less than the wall time)."""
    times, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        snapshots, lines = make_suite(Path(tmp) / "repo", experiments, steps)
        slurm = slurm_with_times(lines).client({"NRL_REPORT_DB": ""})
        out = Path(tmp) / "report.html"
        for _ in range(runs):
            started, used = time.perf_counter(), time.process_time()
            run_report(snapshots, (), slurm, output=str(out), fmt="html", compare_with=None, since=None, db=None,
                       err=lambda line: None)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - used)
        print(f"page: {out.stat().st_size / 1e6:.1f} MB for {experiments} experiments")
    return times, cpu


def import_time(runs: int) -> float:
    """Median wall time of a fresh interpreter importing the page's modules."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import nrl_launch.report.render, nrl_launch.report.command"],
                       check=True, env={"PYTHONPATH": str(ROOT / "tools")})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _series(steps: int) -> dict[str, list[tuple[int, float]]]:
    return {f"train/{name}": [(s, math.exp(-s / 30) + 0.01 * i) for s in range(1, steps + 1)]
            for i, name in enumerate(("loss", "accuracy", "grad_norm", "lr"))}


def _matplotlib(series: dict[str, list[tuple[int, float]]]) -> str:
    import matplotlib

    matplotlib.use("svg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 2.2))
    for axes, (name, points) in zip(figure.subplots(1, len(series)), series.items(), strict=True):
        axes.plot([p[0] for p in points], [p[1] for p in points])
        axes.axhline(0.5, linestyle="--", color="red")
        axes.set_title(name, fontsize=8)
    out = io.StringIO()
    figure.savefig(out, format="svg")
    return out.getvalue()


def _pygal(series: dict[str, list[tuple[int, float]]]) -> str:
    import pygal

    texts = []
    for name, points in series.items():
        chart = pygal.XY(width=300, height=170, show_legend=False, js=[], disable_xml_declaration=True, title=name)
        chart.add(name, points)
        chart.add("max", [(points[0][0], 0.5), (points[-1][0], 0.5)])
        texts.append(chart.render(is_unicode=True))
    return "".join(texts)


def _leather(series: dict[str, list[tuple[int, float]]]) -> str:
    from nrl_launch.report.charts import curve_svg
    from nrl_launch.report.model import Check, Series

    return "".join(curve_svg(Series(name, tuple(points)), [Check(name, points[-1][0], 0.1, "<", 0.5, True)])
                   for name, points in series.items())


def time_libraries(steps: int, count: int = 20) -> None:
    """Per-experiment time of drawing 4 curves with each plotting library that is installed."""
    series = _series(steps)
    for name, draw in (("matplotlib", _matplotlib), ("pygal", _pygal), ("leather", _leather)):
        try:
            draw(series)  # imports, caches
        except ImportError:
            print(f"{name:>10}: not installed")
            continue
        started = time.perf_counter()
        for _ in range(count):
            draw(series)
        each = (time.perf_counter() - started) / count
        print(f"{name:>10}: {each * 1000:7.1f} ms per experiment (4 curves of {steps} points): "
              f"{each * 200:5.1f} s for 200 experiments")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--libraries", action="store_true", help="also time matplotlib, pygal and leather")
    args = parser.parse_args()
    times, cpu = time_report(args.experiments, args.steps, args.runs)
    print(f"report of {args.experiments} experiments ({args.steps} steps each), over {len(times)} runs: "
          f"wall median {statistics.median(times):.2f} s (min {min(times):.2f} s), "
          f"CPU median {statistics.median(cpu):.2f} s (target < 2 s)")
    print(f"fresh interpreter importing the page's modules: {import_time(args.runs):.2f} s")
    if args.libraries:
        time_libraries(args.steps)


if __name__ == "__main__":
    main()
