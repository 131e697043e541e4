"""WATCH (spec section 8): follow submitted jobs, then judge each experiment.

Polling takes the Slurm query and the wait as parameters, and verdicts are
computed from log files only, so both are testable without a cluster.
"""

from __future__ import annotations

import mmap
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nrl_launch.errors import LauncherError, SlurmError, SnapshotError
from nrl_launch.manifest import read_manifest
from nrl_launch.slurm import SlurmClient, job_ids

PASS, METRIC_FAIL, GENERAL_FAIL = "METRIC PASS", "METRIC FAIL", "GENERAL FAIL"
_SECTION_RE = re.compile(r"^.*\bMetric Checks\b.*$", re.MULTILINE)
_FAIL_RE = re.compile(r"\bFAIL\b")
_CHECK_RE = re.compile(r"\b(?:PASS|FAIL)\b")
SECTION_MAX_LINES = 400  # a longer Metric Checks table is cut
SECTION_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Verdict:
    """The outcome of one experiment, from its jobs' driver logs."""

    experiment: str
    status: str  # PASS, METRIC_FAIL or GENERAL_FAIL
    metric_lines: tuple[str, ...]

    @property
    def failed(self) -> bool:
        """True unless every metric check passed."""
        return self.status != PASS

    def render(self) -> str:
        """``[METRIC PASS]    <experiment>`` then the metric lines."""
        head = f"{'[' + self.status + ']':<16} {self.experiment}"
        return "\n".join([head, *(f"    {line}" for line in self.metric_lines)])


def metric_section(log_text: str) -> tuple[str, ...] | None:
    """The check lines of the last ``Metric Checks`` section of a log, or None.

    The section runs from the heading to the first blank line after it; its
    check lines are those saying PASS or FAIL (table borders and headers of
    a rendered table are left out).
    """
    matches = list(_SECTION_RE.finditer(log_text))
    if not matches:
        return None
    lines: list[str] = []
    started = False
    for line in log_text[matches[-1].end():].splitlines()[:SECTION_MAX_LINES]:
        if not line.strip():
            if started:
                break
            continue
        started = True
        if _CHECK_RE.search(line):
            lines.append(line.strip())
    return tuple(lines)


def log_metric_section(log: Path) -> tuple[str, ...] | None:
    """:func:`metric_section` of a log file; None when unreadable or absent.

    Driver logs can be large: the file is memory-mapped and only the text
    from the last heading on is decoded.
    """
    try:
        with open(log, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return None
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                start = data.rfind(b"Metric Checks")
                if start < 0:
                    return None
                line_start = data.rfind(b"\n", 0, start) + 1
                tail = data[line_start:line_start + SECTION_MAX_BYTES]
    except (OSError, ValueError):
        return None
    return metric_section(tail.decode("utf-8", errors="replace"))


def section_failed(lines: Sequence[str]) -> bool:
    """True when any line of a Metric Checks section says FAIL."""
    return any(_FAIL_RE.search(line) for line in lines)


def judge(experiment: str, logs: Sequence[Path]) -> Verdict:
    """Verdict of one experiment from its driver logs (job-id order)."""
    last_section: tuple[str, ...] | None = None
    for log in logs:
        section = log_metric_section(log)  # missing or unreadable: no section
        if section is not None:
            last_section = section
    if last_section is None:
        return Verdict(experiment, GENERAL_FAIL, ())
    return Verdict(experiment, METRIC_FAIL if section_failed(last_section) else PASS, last_section)


def driver_logs(snapshot: Path, ids: Iterable[str]) -> list[Path]:
    """``<snapshot>/<job id>-logs/ray-driver.log`` of these jobs that exist, by job id.

    Jobs run with the snapshot as working directory, so each experiment's
    logs sit in its own snapshot folder (``<snapshot root>/*/<job id>-logs``).
    """
    logs = (snapshot / f"{job_id}-logs" / "ray-driver.log" for job_id in job_ids(ids))
    return [log for log in logs if log.is_file()]


def verdicts(snapshot_root: Path, jobs: Mapping[str, Sequence[str]]) -> list[Verdict]:
    """One verdict per experiment (``jobs`` maps experiment → its job ids)."""
    return [judge(name, driver_logs(snapshot_root / name, ids)) for name, ids in jobs.items()]


def follow(
    job_ids: Sequence[str],
    *,
    interval: float,
    queued: Callable[[Sequence[str]], set[str]],
    wait: Callable[[float], None] = time.sleep,
    report: Callable[[str], None],
    clock: Callable[[], str] = lambda: time.strftime("%Y-%m-%d %H:%M:%S"),
    resume_hint: str = "nrl-launch watch <experiment>…",
) -> None:
    """Poll until none of ``job_ids`` is queued; report progress lines.

    A failing Slurm query is retried at the next poll with a warning: a
    controller restart must not end a night-long watch with a traceback.
    Ctrl-C becomes a LauncherError naming the jobs still queued.
    """
    remaining = list(job_ids)
    try:
        _poll(remaining, interval, queued, wait, report, clock)
    except KeyboardInterrupt as e:
        raise LauncherError(f"stopped watching; jobs that may still be queued or running: "
                            f"{' '.join(remaining) or 'none'}. Resume with: {resume_hint}") from e


def _poll(remaining: list[str], interval: float, queued: Callable[[Sequence[str]], set[str]],
          wait: Callable[[float], None], report: Callable[[str], None], clock: Callable[[], str]) -> None:
    # ``remaining`` is updated in place so an interrupt can report it.
    while remaining:
        try:
            still = queued(remaining)
        except SlurmError as e:
            report(f"[{clock()}] [WARNING]: cannot reach Slurm ({e}); retrying in {interval:g}s")
            wait(interval)
            continue
        finished = [j for j in remaining if j not in still]
        remaining[:] = [j for j in remaining if j in still]
        if finished:
            report(f"[{clock()}] Finished jobs: {' '.join(finished)}")
        report(f"[{clock()}] Remaining: {len(remaining)}")
        if remaining:
            wait(interval)


def wait_or_enter(seconds: float) -> None:
    """Sleep ``seconds``, returning early when Enter is pressed on a terminal."""
    import select
    import sys

    if not sys.stdin or not sys.stdin.isatty():
        time.sleep(seconds)
        return
    ready, _, _ = select.select([sys.stdin], [], [], seconds)
    if ready:
        sys.stdin.readline()  # consume the Enter so the next wait blocks again


def recorded_jobs(snapshot_root: Path, experiments: Sequence[str]) -> dict[str, list[str]]:
    """Job ids each experiment's manifest records (launcher and continue.sh runs)."""
    jobs = {}
    for name in experiments:
        folder = snapshot_root / name
        if not folder.is_dir():
            raise SnapshotError(f"no snapshot of experiment {name!r} in {snapshot_root}")
        jobs[name] = job_ids(run["job_id"] for run in read_manifest(folder).get("runs") or [])
    return jobs


def watch_experiments(snapshot_root: Path, experiments: Sequence[str], slurm: SlurmClient, *, interval: float,
                      report: Callable[[str], None], wait: Callable[[float], None] = wait_or_enter) -> list[Verdict]:
    """``nrl-launch watch``: follow already submitted experiments, then judge them."""
    jobs = recorded_jobs(snapshot_root, experiments)
    follow([i for ids in jobs.values() for i in ids], interval=interval, report=report, wait=wait,
           queued=slurm.queued, resume_hint=f"nrl-launch watch {' '.join(experiments)}")
    return verdicts(snapshot_root, jobs)
