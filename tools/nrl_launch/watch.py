"""WATCH (spec section 8): follow submitted jobs, then judge each experiment.

Everything the contract lists goes to stdout through ``out`` in exactly its
form; retries and other diagnostics go to stderr through ``err``. Polling
takes the Slurm query and the wait as parameters, and verdicts come from log
files only (:mod:`nrl_launch.verdict`), so both are testable without a
cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nrl_launch.errors import LauncherError, SlurmError, SnapshotError
from nrl_launch.joblogs import TrackedJob, driver_logs, expected_log, log_root
from nrl_launch.manifest import read_manifest
from nrl_launch.slurm import SlurmClient, job_ids
from nrl_launch.verdict import Verdict, judge

Emit = Callable[[str], None]
ALL_PASSED = "[INFO]: All tests passed. Exiting with status 0."
SOME_FAILED = "[INFO]: One or more tests failed. Exiting with status 1."


def timestamp() -> str:
    """``YYYY-MM-DD HH:MM:SS`` in local time, as WATCH lines show it."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class TrackedExperiment:
    """One experiment WATCH follows: its name and its jobs, in submission order."""

    name: str
    jobs: tuple[TrackedJob, ...]

    def verdict(self) -> Verdict:
        """Judge the experiment from every driver log its jobs left."""
        if not self.jobs:
            return judge(self.name, [], missing="no runs were submitted")
        where = ", ".join(str(expected_log(job)) for job in self.jobs)
        return judge(self.name, driver_logs(self.jobs), missing=f"no driver log found (looked for {where})")


def follow(ids: Sequence[str], *, interval: float, queued: Callable[[Sequence[str]], set[str]],
           wait: Callable[[float], None], out: Emit, err: Emit, clock: Callable[[], str] = timestamp,
           resume_hint: str = "nrl-launch watch <experiment>…") -> None:
    """Poll until none of ``ids`` is queued, printing the contract's WATCH lines.

    The first poll comes one ``interval`` after the ``Polling`` line. A poll
    that fails is retried at the next one (said on stderr) and never counts
    a job as finished. Ctrl-C becomes a LauncherError naming the jobs still
    queued and the command that resumes.
    """
    remaining = list(ids)
    out(f"[{clock()}] [WATCH]: Tracking {len(remaining)} jobs: {' '.join(remaining)}")
    out(f"[{clock()}] [WATCH]: Polling every {interval:g}s. Press Enter to refresh immediately.")
    try:
        _poll(remaining, interval, queued, wait, out, err, clock)
    except KeyboardInterrupt as e:
        raise LauncherError(f"stopped watching; jobs that may still be queued or running: "
                            f"{' '.join(remaining) or 'none'}. Resume with: {resume_hint}") from e
    out(f"[{clock()}] [WATCH]: All tracked jobs have finished.")


def _poll(remaining: list[str], interval: float, queued: Callable[[Sequence[str]], set[str]],
          wait: Callable[[float], None], out: Emit, err: Emit, clock: Callable[[], str]) -> None:
    # ``remaining`` is updated in place so that an interrupt can report it.
    while remaining:
        wait(interval)
        try:
            still = queued(remaining)
        except SlurmError as e:
            err(f"[{clock()}] [WARNING]: cannot reach Slurm ({e}); retrying in {interval:g}s")
            continue
        finished = [j for j in remaining if j not in still]
        remaining[:] = [j for j in remaining if j in still]
        if finished:
            out(f"[{clock()}] [WATCH]: Finished jobs: {' '.join(finished)}")
        out(f"[{clock()}] [WATCH]: Remaining: {len(remaining)}")


def report(verdicts: Sequence[Verdict], out: Emit) -> bool:
    """Print each experiment's check, verdict and evidence, then the summary;
    return True when any experiment failed."""
    for verdict in verdicts:
        out(f"[WATCH]: Checking {verdict.experiment}")
        out(verdict.line())
        for line in verdict.evidence:
            out(line)
    failed = any(v.failed for v in verdicts)
    out(SOME_FAILED if failed else ALL_PASSED)
    return failed


def watch_and_judge(experiments: Sequence[TrackedExperiment], slurm: SlurmClient, *, interval: float,
                    out: Emit, err: Emit, wait: Callable[[float], None], resume_hint: str) -> list[Verdict]:
    """Follow every job of ``experiments`` to its end, then print and return the verdicts."""
    ids = [job.job_id for exp in experiments for job in exp.jobs]
    follow(ids, interval=interval, queued=slurm.queued, wait=wait, out=out, err=err, resume_hint=resume_hint)
    verdicts = [exp.verdict() for exp in experiments]
    report(verdicts, out)
    return verdicts


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


def from_runs(name: str, snapshot: Path, runs: Sequence[Mapping[str, str]]) -> TrackedExperiment:
    """The experiment whose manifest (in ``snapshot``) records ``runs``."""
    roots = {run.get("job_id", ""): log_root(snapshot, run.get("base_log_dir")) for run in runs}
    return TrackedExperiment(name, tuple(TrackedJob(i, roots[i]) for i in job_ids(roots)))  # submission order


def recorded(snapshot_root: Path, name: str) -> TrackedExperiment:
    """The jobs an experiment's manifest records (launcher and continue.sh runs)."""
    folder = snapshot_root / name
    if not folder.is_dir():
        raise SnapshotError(f"no snapshot of experiment {name!r} in {snapshot_root}")
    return from_runs(name, folder, read_manifest(folder)["runs"])


def watch_experiments(snapshot_root: Path, names: Sequence[str], slurm: SlurmClient, *, interval: float,
                      out: Emit, err: Emit, wait: Callable[[float], None] = wait_or_enter) -> list[Verdict]:
    """``nrl-launch watch``: follow already submitted experiments, then judge them."""
    experiments = [recorded(snapshot_root, name) for name in names]
    return watch_and_judge(experiments, slurm, interval=interval, out=out, err=err, wait=wait,
                           resume_hint=f"nrl-launch watch {' '.join(names)}")
