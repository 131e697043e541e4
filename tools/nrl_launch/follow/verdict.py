"""An experiment's verdict from its driver logs, and the evidence shown with it.

The rule is the bash launcher's, as spec section 8 states it: the logs are
searched like ``grep -A10000 -H 'Metric Checks' <logs>``; no match at all is a
``[GENERAL FAIL]``; a line containing ``FAIL`` anywhere in what that grep
prints is a ``[METRIC FAIL]``; anything else is a ``[METRIC PASS]``. The
evidence printed under the verdict is exactly what that grep prints, or,
after a general failure, ``ls -lah``-style lines of the logs that exist.

Driver logs can be large: each is memory-mapped and only the lines around
a ``Metric Checks`` line are decoded.
"""

from __future__ import annotations

import grp
import math
import mmap
import os
import pwd
import stat
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from nrl_launch.experiment.joblogs import TrackedJob, driver_logs, expected_log

PASS, METRIC_FAIL, GENERAL_FAIL = "METRIC PASS", "METRIC FAIL", "GENERAL FAIL"
MARK = b"Metric Checks"
CONTEXT_AFTER = 10000  # grep -A10000
FAIL_WORD = "FAIL"
_SIX_MONTHS = 182.5 * 24 * 3600  # ls shows the year instead of the time beyond this

# One grep group: (is a matching line, text) per line, consecutive in one file.
_Group = list[tuple[bool, str]]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one experiment and the lines that show why."""

    experiment: str
    status: str  # PASS, METRIC_FAIL or GENERAL_FAIL
    evidence: tuple[str, ...]  # grep output, or ls -lah lines, or why there is none

    @property
    def failed(self) -> bool:
        """True unless the metric checks passed."""
        return self.status != PASS

    def line(self) -> str:
        """``[METRIC PASS]    <experiment>``: the verdict padded to one column."""
        return f"{'[' + self.status + ']':<16} {self.experiment}"


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")


def _groups(data: mmap.mmap | bytes) -> list[_Group]:
    """The line groups ``grep -A10000 'Metric Checks'`` prints for one file's bytes."""
    groups: list[_Group] = []
    found = data.find(MARK)
    while found >= 0:
        start = data.rfind(b"\n", 0, found) + 1
        group: _Group = []
        budget = 0  # context lines still to print after the last match
        while start < len(data):
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end
            line = data[start:end]
            matched = MARK in line
            if matched:
                budget = CONTEXT_AFTER
            elif budget == 0:
                break
            else:
                budget -= 1
            group.append((matched, _decode(line)))
            start = end + 1
        groups.append(group)
        found = data.find(MARK, start) if start < len(data) else -1
    return groups


def grep_groups(log: Path) -> list[_Group]:
    """:func:`_groups` of a log file; none when it is empty or unreadable."""
    try:
        with open(log, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return []
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _groups(data)
    except (OSError, ValueError):
        return []


def grep_output(logs: Sequence[Path]) -> list[str]:
    """What ``grep -A10000 -H 'Metric Checks' <logs>`` prints: ``path:match``,
    ``path-context``, and ``--`` between groups that are not adjacent."""
    lines: list[str] = []
    for log in logs:
        for group in grep_groups(log):
            if lines:
                lines.append("--")
            lines.extend(f"{log}{':' if matched else '-'}{text}" for matched, text in group)
    return lines


def judge(experiment: str, logs: Sequence[Path], missing: str = "no driver log was written") -> Verdict:
    """The verdict of one experiment from all of its driver logs (in job order).

    ``missing`` is the evidence when no log exists at all.
    """
    groups = [(log, group) for log in logs for group in grep_groups(log)]
    if not groups:
        return Verdict(experiment, GENERAL_FAIL, tuple(ls_lah(logs)) or (missing,))
    failed = any(FAIL_WORD in text for _, group in groups for _, text in group)
    return Verdict(experiment, METRIC_FAIL if failed else PASS, tuple(grep_output(logs)))


def judge_jobs(experiment: str, jobs: Sequence[TrackedJob], logs: Sequence[Path] | None = None) -> Verdict:
    """The verdict of an experiment from every driver log its jobs left (retries and requeued
    attempts included), as WATCH, ``status`` and a relaunch's note give it. ``logs``: the jobs'
    :func:`driver_logs`, when the caller listed them after Slurm said the jobs were done."""
    if not jobs:
        return judge(experiment, [], missing="no runs were submitted")
    logs = driver_logs(jobs) if logs is None else logs
    if logs:
        return judge(experiment, logs)
    # (the places looked at are named only when nothing was found: status judges a thousand)
    where = ", ".join(str(expected_log(job)) for job in jobs)
    return judge(experiment, [], missing=f"no driver log found (looked for {where})")


# The Slurm states of a job that has ended (``squeue -j`` still lists such a job for a while).
# Any other state, including one this list does not know, is a job still in the queue: a verdict
# waits for it rather than judge an experiment one of whose runs may still fail it.
ENDED_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                          "DEADLINE", "OUT_OF_MEMORY", "REVOKED"})


def still_queued(state: str, unknown: str = "unknown") -> bool:
    """True for the Slurm state of a job that is still queued or running (``unknown``: a job
    Slurm no longer knows, which has ended)."""
    return state not in ENDED_STATES and state != unknown


def verdict_once_done(experiment: str, jobs: Sequence[TrackedJob], queued: Collection[str],
                      logs: Sequence[Path] | None = None) -> Verdict | None:
    """The one rule of WATCH, ``nrl-launch watch`` and ``status``: an experiment is judged
    (:func:`judge_jobs`) only when none of its jobs is in ``queued`` (the ids still queued or
    running); None while one is, as a later run could still fail the experiment."""
    if any(job.job_id in queued for job in jobs):
        return None
    return judge_jobs(experiment, jobs, logs)


# ---- ls -lah


def human_size(size: int) -> str:
    """A size as ``ls -h`` prints it: bytes below 1 KiB, then one decimal below
    10 of a unit, rounded up (``1.1K``, ``12K``, ``3.0M``)."""
    if size < 1024:
        return str(size)
    value = float(size)
    for unit in "KMGTPE":
        value /= 1024
        if value < 1024 or unit == "E":
            if value < 10:
                return f"{math.ceil(value * 10) / 10:.1f}{unit}"
            return f"{math.ceil(value)}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _date(mtime: float, now: float) -> str:
    stamp = time.localtime(mtime)
    day = time.strftime("%b", stamp) + f" {stamp.tm_mday:>2}"
    if now - _SIX_MONTHS < mtime <= now + 60:
        return f"{day} {time.strftime('%H:%M', stamp)}"
    return f"{day}  {stamp.tm_year}"


def ls_lah(paths: Sequence[Path], now: float | None = None) -> list[str]:
    """``ls -lah <paths>``-style lines for the paths that exist, sorted by name, columns aligned."""
    now = time.time() if now is None else now
    rows = []
    for path in sorted(paths, key=lambda p: os.fsencode(p)):
        try:
            st = path.lstat()
        except OSError:
            continue
        rows.append((stat.filemode(st.st_mode), str(st.st_nlink), _owner(st.st_uid), _group(st.st_gid),
                     human_size(st.st_size), _date(st.st_mtime, now), str(path)))
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return [f"{mode} {links:>{widths[1]}} {owner:<{widths[2]}} {group:<{widths[3]}} {size:>{widths[4]}} {date} {name}"
            for mode, links, owner, group, size, date, name in rows]
