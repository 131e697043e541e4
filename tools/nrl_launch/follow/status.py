"""``nrl-launch status``: what became of each snapshotted experiment.

Gathering and formatting. Job states come from the Slurm client handed in
(one query for every job of every row). When Slurm cannot be asked, the
states are ``unknown`` and the report says why (``slurm_error``): the command
then exits non-zero rather than pass off ``unknown`` as an answer.

An experiment named on the command line without a snapshot folder gets a row
whose ``problem`` is ``"no snapshot"``: the table shows every asked-for name,
and the command exits non-zero.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from nrl_launch.errors import SlurmError
from nrl_launch.experiment.folder import ExperimentDir, SnapshotRoot
from nrl_launch.experiment.joblogs import TrackedExperiment, driver_logs
from nrl_launch.experiment.manifest import RetryOrigin, Run, Source
from nrl_launch.follow.verdict import METRIC_FAIL, PASS, judge_jobs
from nrl_launch.slurm.client import SlurmClient

UNKNOWN = "unknown"
NO_SNAPSHOT = "no snapshot"
TABLE_WIDTH = 120
QUEUED = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


@dataclass(frozen=True)
class JobState:
    """One submitted run of an experiment and its Slurm state."""

    job_id: str
    run: str  # e.g. "2/3"
    state: str  # Slurm state, or "unknown"
    reason: str = ""  # why it is pending (Slurm's reason), "" otherwise


@dataclass(frozen=True)
class Retry:
    """A run submitted by WATCH after an infrastructure failure (MAX_RETRIES)."""

    job_id: str  # the retry's job
    retry_of: str  # the job the infrastructure lost
    after: str  # how that job ended: NODE_FAIL, BOOT_FAIL, PREEMPTED or NODE_CHECK_FAILED
    failed_on: str  # the nodes it ran on
    exclude: str  # the nodes the retry was told to avoid ("" for none)


@dataclass(frozen=True)
class Cancellation:
    """One ``nrl-launch cancel`` of the experiment."""

    at: str  # when, as the manifest records it
    jobs: tuple[str, ...]  # the jobs it cancelled


@dataclass(frozen=True)
class StatusRow:
    """The status of one experiment's snapshot."""

    experiment: str
    snapshot: str  # the snapshot folder
    commit: str | None = None  # short commit id of the source tree
    dirty: bool | None = None
    runs: int = 0  # runs submitted (launcher + continue.sh)
    jobs: tuple[JobState, ...] = field(default_factory=tuple)
    steps: int | None = None  # max step in metrics.json
    max_steps: int | None = None  # MAX_STEPS of the CONFIG block, when recorded
    metric_checks: str | None = None  # "PASS", "FAIL" or None (no checks yet)
    log: str | None = None  # the newest driver log of the experiment
    problem: str | None = None  # "no snapshot", or why the manifest is unusable
    retries: tuple[Retry, ...] = ()
    cancellations: tuple[Cancellation, ...] = ()


@dataclass(frozen=True)
class StatusReport:
    """Every row, and why job states are unknown when Slurm could not be asked."""

    rows: tuple[StatusRow, ...]
    slurm_error: str | None = None


_STEP_KEY = re.compile(r"-?[0-9]+")  # a step as metrics.json writes it (ASCII digits only)

def max_step(metrics_file: Path) -> int | None:
    """Highest step key across every metric of a ``metrics.json``
    (``{"train/loss": {"1": 0.69, "2": 0.5}, ...}``); None if absent/unusable."""
    try:
        data = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    steps: list[int] = []
    for series in data.values():
        if isinstance(series, dict):
            steps.extend(int(k) for k in series if _STEP_KEY.fullmatch(str(k)))
    return max(steps) if steps else None


def metric_checks(tracked: TrackedExperiment) -> str | None:
    """"PASS"/"FAIL" as WATCH would judge the experiment from its jobs' driver
    logs (same logs, same rule); None when no log has a Metric Checks line."""
    return {PASS: "PASS", METRIC_FAIL: "FAIL"}.get(judge_jobs(tracked.name, tracked.jobs).status)


def _row(folder: ExperimentDir) -> StatusRow:
    """The row of one snapshot, job states not yet filled in."""
    name = folder.name
    if not folder.path.is_dir():
        return StatusRow(name, str(folder.path), problem=NO_SNAPSHOT)
    problem = folder.manifest_problem()
    if problem is not None:
        return StatusRow(name, str(folder.path), problem=problem)
    recorded = folder.manifest
    source = recorded.source or Source()
    launch = folder.tracked()  # jobs and verdict: the latest launch's (a relaunch reuses the snapshot)
    metrics = folder.metrics_file()
    max_steps = recorded.config_values.get("MAX_STEPS", "")
    logs = driver_logs(launch.jobs)
    return StatusRow(
        experiment=name,
        snapshot=str(folder.path),
        commit=(source.commit or "")[:12] or None,
        dirty=source.dirty,
        runs=len(recorded.runs),
        jobs=tuple(JobState(r.job_id, r.run, UNKNOWN) for r in recorded.latest_launch.runs),
        steps=max_step(metrics) if metrics else None,
        max_steps=int(max_steps) if max_steps.isdigit() else None,
        metric_checks=metric_checks(launch),
        log=str(logs[-1]) if logs else None,
        retries=tuple(_retry(run) for run in recorded.retries),
        cancellations=tuple(Cancellation(c.at, c.jobs) for c in recorded.cancellations),
    )


def _retry(run: Run) -> Retry:
    origin = run.retry or RetryOrigin("", "", "")
    return Retry(run.job_id, origin.retry_of, origin.after, origin.failed_on, origin.exclude)


def collect(snapshots: SnapshotRoot, experiments: Sequence[str] | None, slurm: SlurmClient) -> StatusReport:
    """``nrl-launch status``: one StatusRow per experiment folder of ``snapshots`` (or per name
    in ``experiments``: SnapshotError for one that is no experiment name). Slurm is asked once
    about every job id of every row."""
    folders = [snapshots.experiment(name) for name in experiments] if experiments else snapshots.experiments()
    rows = [_row(folder) for folder in folders]
    ids = sorted({job.job_id for row in rows for job in row.jobs if job.job_id})
    if not ids:
        return StatusReport(tuple(rows))
    try:
        infos = slurm.jobs(ids)
    except SlurmError as e:
        return StatusReport(tuple(rows), slurm_error=str(e))
    filled = []
    for row in rows:
        jobs = tuple(replace(j, state=infos[j.job_id].state, reason=infos[j.job_id].reason)
                     if j.job_id in infos else j for j in row.jobs)
        filled.append(replace(row, jobs=jobs))
    return StatusReport(tuple(filled))


def problem(report: StatusReport) -> str | None:
    """Why ``nrl-launch status`` exits non-zero: Slurm unreachable, or a named experiment without snapshot."""
    if report.slurm_error:
        return f"cannot ask Slurm about the jobs ({report.slurm_error})"
    missing = [row.experiment for row in report.rows if row.problem == NO_SNAPSHOT]
    if missing:
        return f"no snapshot of {', '.join(missing)}"
    return None


def summary(report: StatusReport) -> str:
    """One line: how many experiments passed, failed, are running, have no verdict yet.

    An experiment stopped with ``nrl-launch cancel`` (no verdict, nothing
    queued) is counted as cancelled, not as waiting for a verdict; the count
    appears only when there is one, so the usual line stays as it was.
    """
    rows = report.rows
    waiting = [any(job.state in QUEUED for job in row.jobs) for row in rows]
    queued = sum(waiting)
    passed = sum(1 for row in rows if row.metric_checks == "PASS")
    failed = sum(1 for row in rows if row.metric_checks == "FAIL")
    cancelled = sum(1 for row, busy in zip(rows, waiting, strict=True)
                    if row.cancellations and row.metric_checks not in ("PASS", "FAIL") and not busy)
    jobs = sum(len(row.jobs) for row in rows)
    stopped = f"{cancelled} cancelled, " if cancelled else ""
    return (f"{len(rows)} experiment{'s' * (len(rows) != 1)}, {jobs} job{'s' * (jobs != 1)}: {passed} passed, "
            f"{failed} failed, {stopped}{queued} with jobs queued, "
            f"{len(rows) - passed - failed - cancelled} without a verdict yet")


def _shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters (names keep their ends)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def _cell_jobs(row: StatusRow) -> str:
    """JOBS cell: ``id:STATE`` per job (``(reason)`` for a pending one), comma separated."""
    cells = [f"{j.job_id}:{j.state}" + (f"({j.reason})" if j.reason and j.state == "PENDING" else "")
             for j in row.jobs]
    return ",".join(cells) or "-"


def _cells(row: StatusRow) -> list[str]:
    """The table cells of one row."""
    if row.problem:
        return [row.experiment, "-", "-", "-", "-", "-", "-", "-", row.problem]
    dirty = "-" if row.dirty is None else ("yes" if row.dirty else "no")
    steps = "-" if row.steps is None else str(row.steps)
    if row.max_steps is not None:
        steps = f"{'0' if row.steps is None else row.steps}/{row.max_steps}"
    return [row.experiment, row.commit or "-", dirty, str(row.runs), _cell_jobs(row), steps,
            row.metric_checks or "-", row.log or "-", note(row)]


def note(row: StatusRow) -> str:
    """NOTE cell of a row without problem: its retries and cancellations, e.g.
    ``1 retry after NODE_FAIL; cancelled 3 jobs``."""
    parts = []
    if row.retries:
        count = len(row.retries)
        causes = ", ".join(dict.fromkeys(r.after or "?" for r in row.retries))
        parts.append(f"{count} {'retry' if count == 1 else 'retries'} after {causes}")
    cancelled = sum(len(c.jobs) for c in row.cancellations)
    if cancelled:
        parts.append(f"cancelled {cancelled} job{'s' * (cancelled != 1)}")
    return "; ".join(parts)


TABLE_HEADER = ["EXPERIMENT", "COMMIT", "DIRTY", "RUNS", "JOBS", "STEPS", "CHECKS", "LOG", "NOTE"]
# Columns cut in the middle to fit, in the order they give way, with the width
# each keeps: the log path first, then the job list, the experiment name last.
_SHRINKABLE = ((7, 12), (4, 16), (0, 24))


def _fit(widths: list[int]) -> list[int]:
    """Column widths within TABLE_WIDTH, cutting the shrinkable columns in their order."""
    widths = list(widths)
    for column, floor in _SHRINKABLE:
        excess = sum(widths) + 2 * (len(widths) - 1) - TABLE_WIDTH
        if excess <= 0:
            break
        widths[column] = max(floor, widths[column] - excess)
    return widths


def format_table(report: StatusReport, wide: bool = False) -> str:
    """A text table (header included, no trailing newline), at most 120 columns unless ``wide``."""
    table = [TABLE_HEADER] + [_cells(row) for row in report.rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(TABLE_HEADER))]
    if not wide:
        widths = _fit(widths)
    lines = ["  ".join(_shorten(cell, w).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
             for line in table]
    if report.slurm_error:
        lines.append(f"(job states unknown: {report.slurm_error})")
    return "\n".join(lines)


def format_json(report: StatusReport) -> str:
    """The rows as a JSON list of objects (jobs as a list of {job_id, run, state, reason}; retries
    as {job_id, retry_of, after, failed_on, exclude}; cancellations as {at, jobs})."""
    return json.dumps([asdict(row) for row in report.rows], indent=2)
