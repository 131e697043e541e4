"""What a report holds, as frozen dataclasses, and the JSON form of it (``--format json``).

The JSON is the report: the HTML page is rendered from exactly this data
(:mod:`nrl_launch.report.render`), ``--compare`` reads another report's JSON
back with :func:`report_from_data`, and the history database stores pieces
of it. Times are seconds since the epoch (``null`` when unknown).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from nrl_launch.errors import LauncherError
from nrl_launch.follow.verdict import GENERAL_FAIL, METRIC_FAIL, PASS

FORMAT = "nrl-launch-report"
FORMAT_VERSION = 1
RUNNING = "RUNNING"  # some job of the experiment is still queued: no verdict yet
CANCELLED = "CANCELLED"  # stopped with nrl-launch cancel before it had a verdict
MISSING = "NO SNAPSHOT"  # a suite entry that was never launched here
STATUSES = (PASS, METRIC_FAIL, GENERAL_FAIL, RUNNING, CANCELLED, MISSING)
FAILED = frozenset({METRIC_FAIL, GENERAL_FAIL, MISSING})
JUDGED = frozenset({PASS, METRIC_FAIL, GENERAL_FAIL, CANCELLED})  # what the history records

Point = tuple[int, float]  # (step, value)


class ReportError(LauncherError):
    """A report that cannot be made or read (a bad --compare file, an unusable history database)."""


@dataclass(frozen=True)
class Job:
    """One job of the experiment's latest launch, as the manifest and Slurm know it."""

    job_id: str
    run: str  # "1/3", or the chain number of a continue.sh run or a retry
    via: str  # launcher, continue.sh or retry
    state: str  # Slurm's, "unknown" when Slurm could not tell
    exit_code: str = ""
    nodes: str = ""
    submit: float | None = None
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Check:
    """One line of a Metric Checks section, e.g. ``[FAIL] train/accuracy@6 = 0.87 > 2``."""

    metric: str
    step: int
    value: float | None  # None: the metric was missing at that step
    op: str  # "<" (a max) or ">" (a min)
    bound: float
    passed: bool

    def text(self) -> str:
        """The check as the recipe printed it, without its mark."""
        shown = "missing" if self.value is None else f"{self.value:g}"
        return f"{self.metric}@{self.step} = {shown} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class Series:
    """One ``metrics.json`` series of an experiment (every run's steps: the recipe resumes)."""

    name: str
    points: tuple[Point, ...]  # sorted by step

    @property
    def last(self) -> Point | None:
        """The last step and its value."""
        return self.points[-1] if self.points else None


@dataclass(frozen=True)
class ExperimentResult:
    """One experiment's row: its latest launch, verdict and why, cost, curves."""

    name: str
    status: str  # one of STATUSES
    reason: str
    snapshot: str = ""
    commit: str | None = None
    launch: str = ""  # the latest launch: "<first job id>@<submitted at>"
    launched_at: float | None = None
    runs: int = 0  # runs of the latest launch (continue.sh runs and retries included)
    retries: int = 0
    steps: int | None = None
    max_steps: int | None = None
    wall_seconds: float | None = None  # first start to last end (to now while running)
    gpu_hours_planned: int | None = None  # the launch's own figure (the manifest's)
    gpu_hours_used: float | None = None  # from Slurm's start and end times
    logs: tuple[str, ...] = ()  # every driver log of the launch, absolute
    jobs: tuple[Job, ...] = ()
    checks: tuple[Check, ...] = ()
    series: tuple[Series, ...] = ()

    @property
    def failed(self) -> bool:
        """True for a failing verdict (or a suite entry never launched)."""
        return self.status in FAILED

    def final_metrics(self) -> dict[str, float]:
        """Each series' value at its last step."""
        return {s.name: s.points[-1][1] for s in self.series if s.points}


@dataclass(frozen=True)
class Summary:
    """The counts and GPU-hours of the whole report."""

    experiments: int
    passed: int
    failed: int
    running: int
    cancelled: int
    gpu_hours_planned: int
    gpu_hours_used: float
    without_times: int  # experiments whose GPU-hours used are unknown (Slurm had no times)
    budget: int | None = None  # the suite's GPU-hour budget in the lint configuration


@dataclass(frozen=True)
class VerdictChange:
    """An experiment whose verdict differs from the compared report's."""

    name: str
    before: str
    after: str


@dataclass(frozen=True)
class Delta:
    """A metric of an experiment at the last step both reports have."""

    experiment: str
    metric: str
    step: int
    before: float
    after: float

    @property
    def change(self) -> float:
        """after - before."""
        return self.after - self.before

    @property
    def relative(self) -> float | None:
        """The change relative to ``before`` (None when before is 0)."""
        return None if self.before == 0 else self.change / abs(self.before)


@dataclass(frozen=True)
class Comparison:
    """This report against another (``--compare``)."""

    other: str  # what was compared with: a JSON file or a snapshot root
    newly_failing: tuple[VerdictChange, ...]
    newly_passing: tuple[VerdictChange, ...]
    changed: tuple[VerdictChange, ...]  # every verdict change (the two above included)
    only_here: tuple[str, ...]
    only_there: tuple[str, ...]
    deltas: tuple[Delta, ...]  # sorted by size, largest first


@dataclass(frozen=True)
class Night:
    """One recorded launch of an experiment in the history database."""

    launch: str
    launched_at: float | None
    verdict: str
    reason: str
    commit: str | None
    gpu_hours_used: float | None
    metrics: tuple[tuple[str, float], ...]  # final value of each series


@dataclass(frozen=True)
class RecipeHistory:
    """An experiment's nights in the history database, oldest first."""

    experiment: str
    nights: tuple[Night, ...]


@dataclass(frozen=True)
class History:
    """What ``--since`` read from the history database."""

    database: str
    since: float  # seconds since the epoch
    recipes: tuple[RecipeHistory, ...]


@dataclass(frozen=True)
class Report:
    """One report: every experiment, the summary, and optionally a comparison and the history."""

    generated_at: float
    project_root: str
    snapshot_root: str
    suite: str | None
    summary: Summary
    experiments: tuple[ExperimentResult, ...]
    slurm_error: str | None = None  # why job states and times are unknown
    comparison: Comparison | None = None
    history: History | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def summarize(results: Sequence[ExperimentResult], budget: int | None) -> Summary:
    """The summary of these rows."""
    used = [r.gpu_hours_used for r in results if r.gpu_hours_used is not None]
    return Summary(
        experiments=len(results),
        passed=sum(r.status == PASS for r in results),
        failed=sum(r.failed for r in results),
        running=sum(r.status == RUNNING for r in results),
        cancelled=sum(r.status == CANCELLED for r in results),
        gpu_hours_planned=sum(r.gpu_hours_planned or 0 for r in results),
        gpu_hours_used=round(sum(used), 3),
        without_times=sum(1 for r in results if r.gpu_hours_used is None and r.status != MISSING),
        budget=budget,
    )


# ---------------------------------------------------------------- JSON


def _data(value: Any) -> Any:
    """JSON data of a value of the report: dataclasses as objects of their fields, tuples as
    lists; a series' points are kept as they are (pairs), which ``json`` writes as lists.
    (``dataclasses.asdict`` copies every point: most of a 200-experiment report's time.)"""
    if isinstance(value, Series):
        return {"name": value.name, "points": value.points}
    if is_dataclass(value):
        return {f.name: _data(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (tuple, list)):
        return [_data(item) for item in value]
    return value


def report_to_data(report: Report) -> dict[str, Any]:
    """The report as JSON data (``--format json``; what the page is rendered from)."""
    data: dict[str, Any] = _data(report)
    return {"format": FORMAT, "version": FORMAT_VERSION, **data}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _series(data: Mapping[str, Any]) -> Series:
    return Series(str(data["name"]), tuple((int(step), float(value)) for step, value in data["points"]))


def _result(data: Mapping[str, Any]) -> ExperimentResult:
    """The row of a report's JSON, as far as a comparison needs it."""
    return ExperimentResult(
        name=str(data["name"]), status=str(data["status"]), reason=str(data.get("reason", "")),
        snapshot=str(data.get("snapshot", "")), commit=data.get("commit"), launch=str(data.get("launch", "")),
        launched_at=_float(data.get("launched_at")), series=tuple(_series(s) for s in data.get("series", ())))


def report_from_data(data: Any, where: str) -> list[ExperimentResult]:
    """The rows of another report's JSON (``--compare``); ReportError naming ``where`` when it is none."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReportError(f"{where}: not a report of nrl-launch report --format json")
    if not isinstance(data.get("version"), int) or data["version"] > FORMAT_VERSION:
        raise ReportError(f"{where}: report format version {data.get('version')!r}; this nrl-launch reads "
                          f"version {FORMAT_VERSION} and older: upgrade it to compare with this file")
    try:
        return [_result(row) for row in data["experiments"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ReportError(f"{where}: a malformed experiment entry ({type(e).__name__}: {e})") from e
