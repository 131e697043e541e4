"""Gathering a report from what is on disk and what Slurm remembers.

Each experiment's row comes from its folder (:class:`ExperimentDir`): the
manifest's latest launch (its jobs, runs, retries, cancellations, the
GPU-hours planned and the CONFIG values), the verdict of its driver logs (the
one rule, :func:`nrl_launch.follow.verdict.judge_jobs`) and the checks they
print, and the recipe's metrics file. Slurm is asked once, for every job of
every row, when each job was submitted, started and ended
(:meth:`SlurmClient.spans`); when it cannot be asked, states are ``unknown``
and the report says why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from nrl_launch.errors import SlurmError, SnapshotError
from nrl_launch.experiment.folder import ExperimentDir, SnapshotRoot
from nrl_launch.experiment.joblogs import driver_logs
from nrl_launch.experiment.manifest import VIA_RETRY, Manifest, Run, epoch
from nrl_launch.follow.status import UNKNOWN, max_step
from nrl_launch.follow.verdict import GENERAL_FAIL, METRIC_FAIL, PASS, Verdict, judge_jobs
from nrl_launch.report.checks import read_checks
from nrl_launch.report.model import (
    CANCELLED,
    MISSING,
    RUNNING,
    Check,
    ExperimentResult,
    Job,
    Report,
    Series,
    summarize,
)
from nrl_launch.slurm.client import JobSpan, SlurmClient
from nrl_launch.slurm.states import NOT_ENDED

DEFAULT_GPUS_PER_NODE = 8  # spec section 3: GPUS_PER_NODE is optional, default 8


def read_series(path: Path | None) -> tuple[Series, ...]:
    """The numeric series of a metrics file (``{"train/loss": {"1": 0.69, ...}, ...}``), each sorted
    by step; none when the file is absent or unusable (a curve is never made up)."""
    if path is None:
        return ()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    if not isinstance(data, dict):
        return ()
    found = []
    for name, values in data.items():
        if not isinstance(values, dict):
            continue
        points = []
        for step, value in values.items():
            text = str(step)
            if text.lstrip("-").isascii() and text.lstrip("-").isdigit() and isinstance(value, (int, float)) \
                    and not isinstance(value, bool) and math.isfinite(value):
                points.append((int(text), float(value)))
        if points:
            found.append(Series(str(name), tuple(sorted(points))))
    return tuple(found)


def _whole(text: str | None) -> int | None:
    return int(text) if text and text.isascii() and text.isdigit() else None


def _job(run: Run, span: JobSpan | None) -> Job:
    if span is None:
        return Job(run.job_id, run.run, run.via, UNKNOWN)
    return Job(run.job_id, run.run, run.via, span.state, span.exit_code, span.nodes, span.submit, span.start, span.end)


def _gpus_per_job(manifest: Manifest) -> int | None:
    """GPUs a job of the experiment holds: NUM_NODES x GPUS_PER_NODE of its CONFIG block (what it asked for)."""
    values = manifest.config_values
    nodes, per_node = _whole(values.get("NUM_NODES")), _whole(values.get("GPUS_PER_NODE"))
    return None if nodes is None else nodes * (DEFAULT_GPUS_PER_NODE if per_node is None else per_node)


def gpu_hours_used(jobs: Sequence[Job], spans: Mapping[str, JobSpan], per_job: int | None, now: float) -> float | None:
    """GPU-hours the jobs held: (end, or now while running, - start) x GPUs, the GPUs Slurm allocated
    when it says (AllocTRES) else the CONFIG's; None when no job has a known start (nothing to count
    from) or the GPUs are unknown."""
    total, known = 0.0, False
    for job in jobs:
        if job.start is None:
            continue
        span = spans.get(job.job_id)
        gpus = span.gpus if span is not None and span.gpus is not None else per_job
        if gpus is None:
            return None
        total += max(0.0, (job.end if job.end is not None else now) - job.start) / 3600 * gpus
        known = True
    return round(total, 3) if known else None


def _wall(jobs: Sequence[Job], now: float) -> float | None:
    starts = [j.start for j in jobs if j.start is not None]
    if not starts:
        return None
    ends = [j.end if j.end is not None else now for j in jobs if j.start is not None]
    return max(ends) - min(starts)


def _states(jobs: Sequence[Job]) -> str:
    """``101 COMPLETED (exit 0:0), 102 FAILED (exit 1:0)``: how each job ended, or where it is."""
    shown = []
    for job in jobs:
        detail = f" (exit {job.exit_code})" if job.exit_code and job.state not in NOT_ENDED else ""
        shown.append(f"{job.job_id} {job.state}{detail}")
    return ", ".join(shown) or "none"


def reason(status: str, checks: Sequence[Check], jobs: Sequence[Job], has_logs: bool, cancelled_at: str = "") -> str:
    """Why the experiment has its status, in one line: the failing checks, whether any job ever
    left a driver log, and each job's final Slurm state and exit code (what WATCH's [WHY] says)."""
    states = f"jobs: {_states(jobs)}"
    if status == RUNNING:
        queued = [j for j in jobs if j.state in NOT_ENDED]
        return f"{len(queued)} of {len(jobs)} jobs still queued; {states}"
    if status == CANCELLED:
        return f"cancelled with nrl-launch cancel at {cancelled_at or '?'}; {states}"
    if status == PASS:
        counted = f"all {len(checks)} metric checks passed" if checks else "Metric Checks passed"
        return f"{counted}; {states}"
    if status == METRIC_FAIL:
        failing = [c.text() for c in checks if not c.passed]
        what = f"failing check{'s' * (len(failing) != 1)}: {'; '.join(failing)}" if failing else \
            "a line with FAIL after Metric Checks"
        return f"{what}; {states}"
    if not jobs:
        return "no runs were submitted"
    if not has_logs:
        return f"no job of this experiment ever started (no driver log); {states}"
    return f"no Metric Checks in its driver logs; {states}"


def _cancelled_at(manifest: Manifest, ids: Sequence[str]) -> str | None:
    """When ``nrl-launch cancel`` cancelled a job of ``ids`` (the latest such), None if it never did."""
    hits = [c.at for c in manifest.cancellations if set(c.jobs) & set(ids)]
    return hits[-1] if hits else None


def experiment_result(folder: ExperimentDir, spans: Mapping[str, JobSpan], *, now: float,
                      verdict: Verdict | None = None) -> ExperimentResult:
    """The row of one experiment's latest launch. ``verdict``: the one WATCH just printed (the
    same rule over the same logs; given, the report cannot differ from what WATCH said)."""
    if not folder.path.is_dir():
        return ExperimentResult(folder.name, MISSING, f"no snapshot in {folder.root.path}", snapshot=str(folder.path))
    problem = folder.manifest_problem()
    if problem is not None:
        return ExperimentResult(folder.name, GENERAL_FAIL, problem, snapshot=str(folder.path))
    manifest = folder.manifest
    runs = manifest.latest_launch.runs
    tracked = folder.tracked(runs)
    jobs = tuple(_job(run, spans.get(run.job_id)) for run in runs)
    logs = driver_logs(tracked.jobs)
    judged = verdict if verdict is not None else judge_jobs(folder.name, tracked.jobs)
    checks = read_checks(judged.evidence) if judged.status != GENERAL_FAIL else ()
    cancelled_at = _cancelled_at(manifest, tracked.ids)
    if any(job.state in NOT_ENDED for job in jobs) and verdict is None:
        status = RUNNING
    elif judged.status != PASS and cancelled_at is not None:
        status = CANCELLED
    else:
        status = judged.status
    metrics = folder.metrics_file()
    first = runs[0] if runs else None
    return ExperimentResult(
        name=folder.name, status=status, reason=reason(status, checks, jobs, bool(logs), cancelled_at or ""),
        snapshot=str(folder.path), commit=(manifest.source.commit if manifest.source else None) or None,
        launch=f"{first.job_id}@{first.submitted_at}" if first else "",
        launched_at=epoch(first.submitted_at) if first else None,
        runs=len(runs), retries=sum(run.via == VIA_RETRY for run in runs),
        steps=max_step(metrics) if metrics else None, max_steps=_whole(manifest.config_values.get("MAX_STEPS")),
        wall_seconds=_wall(jobs, now), gpu_hours_planned=manifest.gpu_hours,
        gpu_hours_used=gpu_hours_used(jobs, spans, _gpus_per_job(manifest), now),
        logs=tuple(str(log) for log in logs), jobs=jobs, checks=checks, series=read_series(metrics))


def ask_spans(slurm: SlurmClient, folders: Sequence[ExperimentDir]) -> tuple[dict[str, JobSpan], str | None]:
    """Slurm's spans of every job of the folders' latest launches (one query), and why they are
    unknown when Slurm could not be asked."""
    ids = []
    for folder in folders:
        if folder.path.is_dir() and folder.manifest_problem() is None:
            ids += folder.manifest.latest_launch.job_ids
    if not ids:
        return {}, None
    try:
        return slurm.spans(ids), None
    except SlurmError as e:
        return {}, str(e)


def collect(snapshots: SnapshotRoot, names: Sequence[str] | None, slurm: SlurmClient, *, now: float,
            suite: str | None = None, budget: int | None = None) -> Report:
    """The report of the experiments ``names`` (every experiment of ``snapshots`` when None): one
    row each, in the order given. SnapshotError for a name that is no experiment name."""
    folders = [snapshots.experiment(name) for name in names] if names is not None else snapshots.experiments()
    spans, slurm_error = ask_spans(slurm, folders)
    results = []
    for folder in folders:
        try:
            results.append(experiment_result(folder, spans, now=now))
        except SnapshotError as e:  # e.g. the manifest vanished in between: a row saying so
            results.append(ExperimentResult(folder.name, GENERAL_FAIL, str(e), snapshot=str(folder.path)))
    return Report(now, str(snapshots.project_root), str(snapshots.path), suite, summarize(results, budget),
                  tuple(results), slurm_error)
