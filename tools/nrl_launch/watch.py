"""WATCH (spec section 8): follow submitted jobs, then judge each experiment.

Polling takes the Slurm query and the wait as parameters, and verdicts are
computed from log files only, so both are testable without a cluster.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from nrl_launch.errors import SlurmError

PASS, METRIC_FAIL, GENERAL_FAIL = "METRIC PASS", "METRIC FAIL", "GENERAL FAIL"
_SECTION_RE = re.compile(r"^.*\bMetric Checks\b.*$", re.MULTILINE)
_FAIL_RE = re.compile(r"\bFAIL\b")


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
    """The lines of the last ``Metric Checks`` section of a log, or None."""
    matches = list(_SECTION_RE.finditer(log_text))
    if not matches:
        return None
    tail = log_text[matches[-1].end():].splitlines()
    lines = []
    for line in tail:
        if not line.strip():
            if lines:
                break  # a blank line ends the section
            continue
        lines.append(line.strip())
    return tuple(lines)


def judge(experiment: str, logs: Sequence[Path]) -> Verdict:
    """Verdict of one experiment from its driver logs (job-id order)."""
    last_section: tuple[str, ...] | None = None
    for log in logs:
        try:
            section = metric_section(log.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue  # a missing or unreadable log counts as "no section"
        if section is not None:
            last_section = section
    if last_section is None:
        return Verdict(experiment, GENERAL_FAIL, ())
    failed = any(_FAIL_RE.search(line) for line in last_section)
    return Verdict(experiment, METRIC_FAIL if failed else PASS, last_section)


def driver_logs(snapshot_root: Path, job_ids: Iterable[str]) -> list[Path]:
    """``<snapshot root>/*/<job id>-logs/ray-driver.log`` for these jobs, by job id."""
    logs = []
    for job_id in sorted(set(job_ids), key=int):
        logs.extend(sorted(snapshot_root.glob(f"*/{job_id}-logs/ray-driver.log")))
    return logs


def verdicts(snapshot_root: Path, jobs: Mapping[str, Sequence[str]]) -> list[Verdict]:
    """One verdict per experiment (``jobs`` maps experiment → its job ids)."""
    return [judge(name, driver_logs(snapshot_root, ids)) for name, ids in jobs.items()]


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
        from nrl_launch.errors import LauncherError

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
    from nrl_launch.errors import LauncherError
    from nrl_launch.manifest import read_manifest

    jobs = {}
    for name in experiments:
        folder = snapshot_root / name
        if not folder.is_dir():
            raise LauncherError(f"no snapshot of experiment {name!r} in {snapshot_root}")
        jobs[name] = [str(run["job_id"]) for run in read_manifest(folder).get("runs") or []]
    return jobs


def watch_experiments(snapshot_root: Path, experiments: Sequence[str], *, interval: float,
                      report: Callable[[str], None]) -> list[Verdict]:
    """``nrl-launch watch``: follow already submitted experiments, then judge them."""
    from nrl_launch import slurm

    jobs = recorded_jobs(snapshot_root, experiments)
    follow([i for ids in jobs.values() for i in ids], interval=interval, report=report,
           wait=wait_or_enter, queued=lambda remaining: slurm.queued_job_ids(remaining),
           resume_hint=f"nrl-launch watch {' '.join(experiments)}")
    return verdicts(snapshot_root, jobs)
