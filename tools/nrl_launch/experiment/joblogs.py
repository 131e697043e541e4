"""Where a job's driver logs are (spec section 8), and which log folders are a job's own.

The batch script (``ray.sub``) writes ``<log root>/<job id>-logs/ray-driver.log``
and, when Slurm requeued the job, ``<log root>/<job id>-<restart count>-logs/
ray-driver.log`` for every restart. ``<log root>`` is ``BASE_LOG_DIR`` when the
launch had it set (relative to the snapshot, the job's working directory),
else the experiment's snapshot.

A job id names a log folder only as long as the controller does not hand the
id out again (a reinstalled controller, a reset state, ids wrapping at
MaxJobId): then ``<id>-logs`` may be an earlier job's, and its ``Metric
Checks`` must never become the verdict of a job that never ran. So every run
gets a *token* (:func:`new_token`), passed in its job's environment
(:data:`TOKEN_VARIABLE`) and recorded with the run; ``ray.sub`` writes it into
the log folder (:data:`IDENTITY_FILE`, with the job id, restart count and job
name). A log folder counts for a job only when its token is the run's; a
folder without one (written by the bash launcher's batch script, or an older
``ray.sub``) or a run without one is judged by time: the folder must have been
written after the run was submitted (give or take :data:`TIME_SLACK`).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nrl_launch.slurm.client import job_ids

DRIVER_LOG = "ray-driver.log"
IDENTITY_FILE = "nrl-run-identity"  # ray.sub's "token=…" (and job, restart, job_name, started) lines
TOKEN_VARIABLE = "NRL_RUN_TOKEN"  # the run's token in its job's environment
# Seconds a log folder may seem older than its run's submission (the submission is recorded
# once sbatch answered; clocks of the file server and the submit host differ a little).
TIME_SLACK = 60.0
_ATTEMPT_RE = re.compile(r"(\d+)(?:-(\d+))?-logs")


def new_token() -> str:
    """A new run token: 16 random hex digits (also what continue.sh makes, from bash's $RANDOM)."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class TrackedJob:
    """One submitted job of an experiment and the folder its logs go to; ``token`` and ``since``
    (when its run was submitted, seconds since the epoch) tell its log folders from those of an
    earlier job with the same id ("" and None: unknown, every folder of the id counts)."""

    job_id: str
    log_root: Path
    token: str = ""
    since: float | None = None


@dataclass(frozen=True)
class TrackedExperiment:
    """One experiment's jobs as WATCH follows them: its name and its jobs, in submission order."""

    name: str
    jobs: tuple[TrackedJob, ...]

    @property
    def ids(self) -> list[str]:
        """The job ids, in submission order."""
        return [job.job_id for job in self.jobs]


def log_root(snapshot: Path, base_log_dir: str | None) -> Path:
    """The folder a job of ``snapshot`` writes its ``<id>-logs`` folders to."""
    if not base_log_dir:
        return snapshot
    return snapshot / base_log_dir  # an absolute BASE_LOG_DIR replaces the snapshot


def _attempts(root: Path) -> dict[str, list[tuple[int, str]]]:
    """Job id -> (restart count, folder name) of the ``*-logs`` folders under ``root``."""
    try:
        names = os.listdir(root)
    except OSError:
        return {}
    found: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        match = _ATTEMPT_RE.fullmatch(name)
        if match:
            found.setdefault(match.group(1), []).append((int(match.group(2) or 0), name))
    return found


def folder_token(folder: Path) -> str:
    """The token ray.sub wrote into a log folder ("" when it wrote none, or there is no identity)."""
    try:
        with open(folder / IDENTITY_FILE, "rb") as handle:
            text = handle.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return ""
    return next((line[len("token="):].strip() for line in text.splitlines() if line.startswith("token=")), "")


def belongs(folder: Path, job: TrackedJob) -> bool:
    """True when the log folder ``folder`` (named for ``job``'s id) was written by ``job``: its token
    when both have one, else its time."""
    token = folder_token(folder)
    if token and job.token:
        return token == job.token
    if job.since is None:
        return True
    try:
        written = max(os.stat(folder).st_mtime, os.stat(folder / DRIVER_LOG).st_mtime)
    except OSError:
        return False
    return written >= job.since - TIME_SLACK


def driver_logs(jobs: Iterable[TrackedJob]) -> list[Path]:
    """Every driver log the jobs left, job by job, each job's attempts in order; a folder of
    another job that had the same id (:func:`belongs`) is left out.

    Each log root is listed once, however many jobs write there.
    """
    by_id = {job.job_id: job for job in jobs}
    listings: dict[Path, dict[str, list[tuple[int, str]]]] = {}
    logs = []
    for job_id in job_ids(by_id):
        job = by_id[job_id]
        root = job.log_root
        if root not in listings:
            listings[root] = _attempts(root)
        for _, name in sorted(listings[root].get(job_id, [])):
            log = root / name / DRIVER_LOG
            if log.is_file() and belongs(root / name, job):
                logs.append(log)
    return logs


def expected_log(job: TrackedJob) -> Path:
    """Where the first attempt of ``job`` writes its driver log."""
    return Path(os.path.join(job.log_root, f"{job.job_id}-logs", DRIVER_LOG))  # one Path: status makes thousands


def output_file(snapshot: Path, experiment: str, job_id: str) -> Path | None:
    """The job's Slurm ``--output`` file, if it exists: ``slurm-<stamp>-<job id>-<experiment>-<i>.<N>.out``
    in the snapshot (the job's working directory; spec section 5 names it with ``%j``)."""
    pattern = re.compile(rf"slurm-.+-{re.escape(job_id)}-{re.escape(experiment)}-\d+\.\d+\.out")
    try:
        names = sorted(name for name in os.listdir(snapshot) if pattern.fullmatch(name))
    except OSError:
        return None
    return snapshot / names[-1] if names else None


def is_driver_log(path: Path) -> bool:
    """True for a driver log (not a Slurm ``--output`` file)."""
    return path.name == DRIVER_LOG


def newest_driver_log(job: TrackedJob) -> Path | None:
    """The driver log of the job's latest attempt (a requeued job has several), if any."""
    logs = driver_logs([job])
    return logs[-1] if logs else None
