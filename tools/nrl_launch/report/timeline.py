"""The timeline of a launch: one row per experiment, each job's pending and running spans.

A Gantt chart, which leather does not draw: this module only places the bars
(pure geometry, from the jobs' Slurm times) and the template draws them as
SVG rectangles, each with a ``<title>`` tooltip. Rows are
:data:`ROW_HEIGHT` units high, so 200 experiments make a 2,400-unit tall
figure that scrolls inside the page with its names beside it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from nrl_launch.report.model import ExperimentResult, Job

ROW_HEIGHT = 12
LABEL_WIDTH = 300
PLOT_WIDTH = 860
AXIS_HEIGHT = 22
# Tick spacings a reader counts in, in seconds: 1, 2, 5, 10, 15, 30 min, 1, 2, 3, 6, 12 h, 1, 2, 7 d.
_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
MAX_TICKS = 10


@dataclass(frozen=True)
class Bar:
    """One span of one job: ``pending`` (submitted, waiting) or ``running`` (started, not ended yet
    or ended in ``state``)."""

    x: float
    width: float
    kind: str
    state: str
    title: str


@dataclass(frozen=True)
class Row:
    """One experiment's row."""

    name: str
    status: str
    y: float
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Tick:
    """A time mark on the axis."""

    x: float
    label: str


@dataclass(frozen=True)
class Timeline:
    """Everything the template draws."""

    width: int
    height: int
    label_width: int
    axis_height: int
    row_height: int
    rows: tuple[Row, ...]
    ticks: tuple[Tick, ...]
    span: str  # e.g. "2026-12-06 01:00 to 05:12"


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _ticks(start: float, end: float) -> tuple[Tick, ...]:
    """Ticks at a round spacing with at most MAX_TICKS of them, labelled in local time."""
    length = end - start
    step = next((s for s in _STEPS if length / s <= MAX_TICKS), _STEPS[-1])
    offset = time.localtime(start).tm_gmtoff  # round to local clock times, not UTC ones
    first = ((start + offset) // step + 1) * step - offset
    shown = "%H:%M" if step < 86400 else "%m-%d"
    marks = []
    when = first
    while when <= end:
        label = time.strftime(shown, time.localtime(when))
        marks.append(Tick(LABEL_WIDTH + (when - start) / length * PLOT_WIDTH, label))
        when += step
    return tuple(marks)


def _bars(job: Job, start: float, length: float, now: float) -> list[Bar]:
    def x(when: float) -> float:
        return LABEL_WIDTH + (when - start) / length * PLOT_WIDTH

    bars = []
    where = f" on {job.nodes}" if job.nodes else ""
    if job.submit is not None:
        waited_until = job.start if job.start is not None else (job.end if job.end is not None else now)
        bars.append(Bar(x(job.submit), max(x(waited_until) - x(job.submit), 0.5), "pending", job.state,
                        f"job {job.job_id} (run {job.run}): pending from {_clock(job.submit)} to "
                        f"{_clock(waited_until)}"))
    if job.start is not None:
        until = job.end if job.end is not None else now
        ended = f"{_clock(until)}, {job.state}" if job.end is not None else f"now, still {job.state}"
        bars.append(Bar(x(job.start), max(x(until) - x(job.start), 0.5), "running", job.state,
                        f"job {job.job_id} (run {job.run}): ran{where} from {_clock(job.start)} to {ended}"))
    return bars


def layout(experiments: Sequence[ExperimentResult], now: float) -> Timeline | None:
    """The timeline of these experiments' jobs; None when no job has a known time."""
    times = [t for exp in experiments for job in exp.jobs for t in (job.submit, job.start, job.end) if t is not None]
    if not times:
        return None
    start = min(times)
    end = max([*times, *(now for exp in experiments for job in exp.jobs if job.start is not None and job.end is None)])
    length = max(end - start, 60.0)
    rows = []
    for index, exp in enumerate(experiments):
        spans = [bar for job in exp.jobs for bar in _bars(job, start, length, now)]
        # a later run of a chain waits while the one before runs: its wait is drawn first, thinner,
        # and the runs on top of it
        bars = [b for b in spans if b.kind == "pending"] + [b for b in spans if b.kind == "running"]
        rows.append(Row(exp.name, exp.status, AXIS_HEIGHT + index * ROW_HEIGHT, tuple(bars)))
    height = AXIS_HEIGHT + len(rows) * ROW_HEIGHT + 4
    return Timeline(LABEL_WIDTH + PLOT_WIDTH + 10, height, LABEL_WIDTH, AXIS_HEIGHT, ROW_HEIGHT, tuple(rows),
                    _ticks(start, start + length), f"{_clock(start)} to {_clock(start + length)}")
