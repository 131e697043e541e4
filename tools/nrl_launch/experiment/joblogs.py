"""Where a job's driver logs are (spec section 8): the one home of that layout.

The batch script (``ray.sub``) writes ``<log root>/<job id>-logs/ray-driver.log``
and, when Slurm requeued the job, ``<log root>/<job id>-<restart count>-logs/
ray-driver.log`` for every restart. ``<log root>`` is ``BASE_LOG_DIR`` when the
launch had it set (relative to the snapshot, the job's working directory),
else the experiment's snapshot.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nrl_launch.slurm.client import job_ids

DRIVER_LOG = "ray-driver.log"
_ATTEMPT_RE = re.compile(r"(\d+)(?:-(\d+))?-logs")


@dataclass(frozen=True)
class TrackedJob:
    """One submitted job of an experiment and the folder its logs go to."""

    job_id: str
    log_root: Path


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


def driver_logs(jobs: Iterable[TrackedJob]) -> list[Path]:
    """Every driver log the jobs left, job by job, each job's attempts in order.

    Each log root is listed once, however many jobs write there.
    """
    by_id = {job.job_id: job for job in jobs}
    listings: dict[Path, dict[str, list[tuple[int, str]]]] = {}
    logs = []
    for job_id in job_ids(by_id):
        root = by_id[job_id].log_root
        if root not in listings:
            listings[root] = _attempts(root)
        for _, name in sorted(listings[root].get(job_id, [])):
            log = root / name / DRIVER_LOG
            if log.is_file():
                logs.append(log)
    return logs


def expected_log(job: TrackedJob) -> Path:
    """Where the first attempt of ``job`` writes its driver log."""
    return job.log_root / f"{job.job_id}-logs" / DRIVER_LOG


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
