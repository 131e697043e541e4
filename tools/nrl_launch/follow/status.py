"""``nrl-launch status``: what became of each snapshotted experiment.

Gathering and formatting. Job states come from the Slurm client handed in
(one query for every job of every row). The verdict is WATCH's, by the same
rule (:func:`nrl_launch.follow.verdict.verdict_once_done`): given only when
none of the latest launch's jobs is queued. When Slurm cannot be asked, the
states are ``unknown``, no verdict is given, and the report says why
(``slurm_error``): the command then exits non-zero rather than pass off
``unknown`` as an answer.

An experiment named on the command line without a snapshot folder gets a row
whose ``problem`` is ``"no snapshot"``: the table shows every asked-for name,
and the command exits non-zero.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from nrl_launch.errors import SlurmError
from nrl_launch.experiment.folder import ExperimentDir, SnapshotRoot
from nrl_launch.experiment.joblogs import TrackedExperiment, driver_logs
from nrl_launch.experiment.manifest import Manifest, RetryOrigin, Run, Source
from nrl_launch.follow.verdict import GENERAL_FAIL, METRIC_FAIL, PASS, still_queued, verdict_once_done
from nrl_launch.slurm.client import SlurmClient

UNKNOWN = "unknown"
NO_SNAPSHOT = "no snapshot"
TABLE_WIDTH = 120  # the width when neither COLUMNS nor a terminal says one
# Why an experiment has no verdict (the row's ``waiting``).
QUEUED, STATES_UNKNOWN, NO_RUNS = "jobs queued", "job states unknown", "no runs"
_CHECKS = {PASS: "PASS", METRIC_FAIL: "FAIL", GENERAL_FAIL: "GENERAL FAIL"}  # the JSON's metric_checks


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
    verdict: str | None = None  # WATCH's: "METRIC PASS", "METRIC FAIL", "GENERAL FAIL"; None: see waiting
    metric_checks: str | None = None  # the verdict as "PASS", "FAIL" or "GENERAL FAIL" (older readers' field)
    waiting: str | None = None  # why there is no verdict: "jobs queued", "job states unknown", "no runs"
    log: str | None = None  # the newest driver log of the experiment
    problem: str | None = None  # "no snapshot", or why the manifest is unusable
    retries: tuple[Retry, ...] = ()
    cancellations: tuple[Cancellation, ...] = ()

    @property
    def stopped(self) -> bool:
        """True when ``nrl-launch cancel`` cancelled a job of the latest launch."""
        ids = {job.job_id for job in self.jobs}
        return any(ids.intersection(c.jobs) for c in self.cancellations)


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


def _row(folder: ExperimentDir) -> tuple[StatusRow, TrackedExperiment | None]:
    """The row of one snapshot, job states and verdict not yet filled in, and the jobs it is judged on."""
    name = folder.name
    if not folder.path.is_dir():
        return StatusRow(name, str(folder.path), problem=NO_SNAPSHOT), None
    problem = folder.manifest_problem()
    if problem is not None:
        return StatusRow(name, str(folder.path), problem=problem), None
    recorded = folder.manifest
    source = recorded.source or Source()
    launch = folder.tracked()  # jobs and verdict: the latest launch's (a relaunch reuses the snapshot)
    metrics = folder.metrics_file()
    max_steps = recorded.config_values.get("MAX_STEPS", "")
    row = StatusRow(
        experiment=name,
        snapshot=str(folder.path),
        commit=(source.commit or "")[:12] or None,
        dirty=source.dirty,
        runs=len(recorded.runs),
        jobs=tuple(JobState(r.job_id, r.run, UNKNOWN) for r in recorded.latest_launch.runs),
        steps=max_step(metrics) if metrics else None,
        max_steps=int(max_steps) if max_steps.isdigit() else None,
        retries=tuple(_retry(run) for run in recorded.retries),
        cancellations=_cancellations(recorded),
    )
    return row, launch


def _retry(run: Run) -> Retry:
    origin = run.retry or RetryOrigin("", "", "")
    return Retry(run.job_id, origin.retry_of, origin.after, origin.failed_on, origin.exclude)


def _cancellations(recorded: Manifest) -> tuple[Cancellation, ...]:
    return tuple(Cancellation(entry.at, entry.jobs) for entry in recorded.cancellations)


def _judged(row: StatusRow, launch: TrackedExperiment | None, jobs: tuple[JobState, ...],
            states_known: bool) -> StatusRow:
    """``row`` with its jobs' states, its newest driver log and WATCH's verdict, or why there is
    none (the one rule: nothing of it queued)."""
    if launch is None:  # no snapshot, or no usable manifest: the problem says why
        return row
    # The logs are listed here, after Slurm said which jobs are done, once for the log column and the
    # verdict: listed before, a run that started and ended meanwhile would be judged on its
    # predecessors' logs alone.
    logs = driver_logs(launch.jobs)
    log = str(logs[-1]) if logs else None
    if not launch.jobs:
        return replace(row, jobs=jobs, log=log, waiting=NO_RUNS)
    if not states_known:
        return replace(row, jobs=jobs, log=log, waiting=STATES_UNKNOWN)
    queued = {j.job_id for j in jobs if still_queued(j.state)}
    verdict = verdict_once_done(launch.name, launch.jobs, queued, logs)
    if verdict is None:
        return replace(row, jobs=jobs, log=log, waiting=QUEUED)
    return replace(row, jobs=jobs, log=log, verdict=verdict.status, metric_checks=_CHECKS[verdict.status])


def collect(snapshots: SnapshotRoot, experiments: Sequence[str] | None, slurm: SlurmClient) -> StatusReport:
    """``nrl-launch status``: one StatusRow per experiment folder of ``snapshots`` (or per name
    in ``experiments``: SnapshotError for one that is no experiment name). Slurm is asked once
    about every job id of every row."""
    folders = [snapshots.experiment(name) for name in experiments] if experiments else snapshots.experiments()
    found = [_row(folder) for folder in folders]
    ids = sorted({job.job_id for row, _ in found for job in row.jobs if job.job_id})
    infos = {}
    slurm_error = None
    if ids:
        try:
            infos = slurm.jobs(ids)
        except SlurmError as e:
            slurm_error = str(e)
    rows = []
    for row, launch in found:
        jobs = tuple(JobState(j.job_id, j.run, infos[j.job_id].state, infos[j.job_id].reason)
                     if j.job_id in infos else j for j in row.jobs)
        rows.append(_judged(row, launch, jobs, states_known=slurm_error is None))
    return StatusReport(tuple(rows), slurm_error)


def problem(report: StatusReport) -> str | None:
    """Why ``nrl-launch status`` exits non-zero: Slurm unreachable, or a named experiment without snapshot."""
    if report.slurm_error:
        return f"cannot ask Slurm about the jobs ({report.slurm_error})"
    missing = [row.experiment for row in report.rows if row.problem == NO_SNAPSHOT]
    if missing:
        return f"no snapshot of {', '.join(missing)}"
    return None


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 job``, ``2 jobs`` (``many``: the plural when it is not ``noun + "s"``)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def summary(report: StatusReport) -> str:
    """One line: how many experiments passed, failed, were cancelled, have jobs queued, have no
    verdict yet -- each experiment counted once, so the counts add up to the experiments.

    An experiment whose latest launch ``nrl-launch cancel`` stopped, judged without a passing
    check, is counted as cancelled rather than failed; that count appears only when there is
    one, so the usual line stays as it was.
    """
    rows = report.rows
    passed = sum(row.verdict == PASS for row in rows)
    cancelled = sum(row.verdict is not None and row.verdict != PASS and row.stopped for row in rows)
    failed = sum(row.verdict is not None and row.verdict != PASS for row in rows) - cancelled
    queued = sum(row.waiting == QUEUED for row in rows)
    waiting = len(rows) - passed - failed - cancelled - queued
    jobs = sum(len(row.jobs) for row in rows)
    stopped = f"{cancelled} cancelled, " if cancelled else ""
    return (f"{plural(len(rows), 'experiment')}, {plural(jobs, 'job')}: {passed} passed, {failed} failed, "
            f"{stopped}{queued} with jobs queued, {waiting} without a verdict yet")


# ---------------------------------------------------------------- the table


def note(row: StatusRow) -> str:
    """NOTE cell of a row without problem: its retries and cancellations, e.g.
    ``1 retry after NODE_FAIL; cancelled 3 jobs``."""
    parts = []
    if row.retries:
        count = len(row.retries)
        causes = ", ".join(dict.fromkeys(r.after or "?" for r in row.retries))
        parts.append(f"{plural(count, 'retry', 'retries')} after {causes}")
    cancelled = sum(len(c.jobs) for c in row.cancellations)
    if cancelled:
        parts.append(f"cancelled {plural(cancelled, 'job')}")
    return "; ".join(parts)


def _cell_jobs(row: StatusRow, wide: bool) -> str:
    """JOBS cell: how many jobs are in each state (``2 COMPLETED, 1 RUNNING, 6 PENDING (Dependency)``);
    with ``wide``, each job (``1001 COMPLETED, 1002 PENDING (Dependency)``)."""
    def label(job: JobState) -> str:
        return job.state + (f" ({job.reason})" if job.reason and job.state == "PENDING" else "")

    if wide:
        return ", ".join(f"{job.job_id} {label(job)}" for job in row.jobs) or "-"
    counts: dict[str, int] = {}
    for job in row.jobs:
        counts[label(job)] = counts.get(label(job), 0) + 1
    return ", ".join(f"{count} {state}" for state, count in counts.items()) or "-"


def _cell_verdict(row: StatusRow) -> str:
    if row.verdict is not None:
        return row.verdict
    return {QUEUED: "queued", STATES_UNKNOWN: "?"}.get(row.waiting or "", "-")


def _cells(row: StatusRow, wide: bool) -> list[str]:
    """The table cells of one row."""
    if row.problem:
        return [row.experiment, "-", "-", "-", "-", "-", "-", "-", row.problem]
    dirty = "-" if row.dirty is None else ("yes" if row.dirty else "no")
    steps = "-" if row.steps is None else str(row.steps)
    if row.max_steps is not None:
        steps = f"{'0' if row.steps is None else row.steps}/{row.max_steps}"
    return [row.experiment, row.commit or "-", dirty, str(row.runs), _cell_jobs(row, wide), steps,
            _cell_verdict(row), row.log or "-", note(row)]


TABLE_HEADER = ["EXPERIMENT", "COMMIT", "DIRTY", "RUNS", "JOBS", "STEPS", "VERDICT", "LOG", "NOTE"]
_GAP = 2  # blanks between two columns
# How the other columns give way to fit, in order: (column, width it keeps, how it is cut). The
# log path keeps its end (the job's folder), the note and the job states their start, the commit
# 7 hex digits (git's short id); width 0: the column is left out (``nrl-launch logs`` finds the
# log; ``--wide`` and the JSON have the note). The experiment name is never cut (a cut name
# cannot be pasted into ``watch``): when the rest cannot give way enough, each name goes on a
# line of its own above its row.
_GIVE_WAY = ((7, 24, "left"), (8, 12, "right"), (4, 14, "right"), (7, 0, ""), (1, 7, "prefix"), (8, 0, ""))
_CUT = {column: how for column, _, how in _GIVE_WAY if how}


def _cut(text: str, width: int, how: str) -> str:
    """``text`` within ``width`` characters: cut at its ``how`` end ("left", "right": marked "…";
    "prefix": its first characters)."""
    if len(text) <= width:
        return text
    if how == "prefix":
        return text[:width]
    if how == "left":
        return "…" + text[len(text) - width + 1:]
    return text[:width - 1] + "…"


def _fit(table: list[list[str]], columns: Sequence[int], width: int) -> tuple[dict[int, int], bool]:
    """The columns of ``table`` kept and their widths, within ``width`` when they can give way
    enough (as _GIVE_WAY says), and whether they fit."""
    natural = {i: max(len(line[i]) for line in table) for i in columns}
    widths = dict(natural)

    def excess() -> int:
        return sum(widths.values()) + _GAP * (len(widths) - 1) - width

    for column, floor, _ in _GIVE_WAY:
        if excess() <= 0:
            break
        if floor == 0:
            del widths[column]
        else:
            widths[column] = max(min(floor, widths[column]), widths[column] - excess())
    for column in widths:  # what a later step freed goes back to the columns cut before it
        widths[column] = min(natural[column], widths[column] + max(0, -excess()))
    return widths, excess() <= 0


def _line(cells: Sequence[str], widths: dict[int, int]) -> str:
    return (" " * _GAP).join(_cut(cells[i], w, _CUT.get(i, "right")).ljust(w) for i, w in widths.items()).rstrip()


def format_table(report: StatusReport, wide: bool = False, width: int = TABLE_WIDTH) -> str:
    """A text table (header included, no trailing newline) within ``width`` columns unless ``wide``.

    Other columns give way first (:data:`_GIVE_WAY`); when the names still do not fit beside the
    rest, each name is on a line of its own (whole, however long), its cells indented below it.
    """
    table = [TABLE_HEADER] + [_cells(row, wide) for row in report.rows]
    everything = range(len(TABLE_HEADER))
    if wide:
        widths, fits = {i: max(len(line[i]) for line in table) for i in everything}, True
    else:
        widths, fits = _fit(table, everything, width)
    if fits:
        lines = [_line(line, widths) for line in table]
    else:  # names on their own lines
        widths, _ = _fit(table, everything[1:], max(width - _GAP, 1))
        lines = []
        for line in table:
            lines += [line[0], " " * _GAP + _line(line, widths)]
    if report.slurm_error:
        lines.append(f"(job states unknown: {report.slurm_error})")
    return "\n".join(lines)


def terminal_width() -> int:
    """The columns of the table: COLUMNS, else the terminal's (stdout), else 120 (a pipe, a file)."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isascii() and columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        if sys.stdout.isatty():
            return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):  # no descriptor, or not a terminal after all
        pass
    return TABLE_WIDTH


def format_json(report: StatusReport) -> str:
    """The rows as a JSON list of objects (jobs as a list of {job_id, run, state, reason}; retries
    as {job_id, retry_of, after, failed_on, exclude}; cancellations as {at, jobs})."""
    return json.dumps([asdict(row) for row in report.rows], indent=2)
