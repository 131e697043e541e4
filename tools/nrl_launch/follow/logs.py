"""``nrl-launch logs``: an experiment's current run log, printed or followed.

Only files are read for the logs (no ``srun``), so it works from a login node
that sees the shared filesystem; Slurm is asked only which jobs are still
queued (``squeue --me``).

* The jobs are the runs the experiment's manifest records, in submission
  order (launcher, ``continue.sh`` and retry runs alike).
* A job has *started* once it left a log. The current run is the newest
  started job.
* A job's log is the driver log of its latest attempt
  (``<log root>/<id>[-<restarts>]-logs/ray-driver.log``, :mod:`nrl_launch.experiment.joblogs`)
  or, before that exists, its Slurm ``--output`` file in the snapshot (which
  also holds what Slurm itself says, e.g. a node failure). A batch script
  that writes no driver log is thus followed through its ``--output`` file.
* ``--follow`` prints as the log grows, moves on when the chain advances (a
  later job leaves a log, or Slurm requeued the job and a newer attempt
  writes its own driver log), and ends once no job of the experiment is
  queued and the last log is printed to its end. Whenever Slurm is asked, the
  manifest is read again if it changed, so runs added meanwhile (a retry,
  ``continue.sh``) are followed too. Which file is printed is said on stderr
  (``==> <path> (job <id>) <==``); stdout carries the log's bytes unchanged.
  When Slurm does not answer for WATCH_GIVE_UP seconds, following gives up as
  a watch does (exit 128, with the command that resumes).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nrl_launch.errors import Interrupted, LauncherError, SlurmError, SnapshotError, gave_up
from nrl_launch.experiment.folder import ExperimentDir, SnapshotRoot
from nrl_launch.experiment.joblogs import TrackedJob, expected_log, is_driver_log, newest_driver_log
from nrl_launch.settings import WATCH_GIVE_UP
from nrl_launch.slurm.client import SlurmClient

Emit = Callable[[str], None]
Write = Callable[[bytes], None]
CHUNK = 1 << 20  # bytes read at a time
DEFAULT_INTERVAL = 2.0  # seconds between looks at a followed log (``--interval``)
# Slurm is asked at most this often (seconds) while a log does not grow, however
# short --interval is: a follower must not hammer the controller from a login node.
ASK_SLURM_EVERY = 5.0


def recorded_jobs(folder: ExperimentDir, only: str | None = None) -> list[TrackedJob]:
    """The experiment's jobs, in submission order (just ``only`` when given); SnapshotError
    when the snapshot has no manifest, or ``only`` is not one of its jobs."""
    jobs = list(folder.tracked(folder.manifest.runs).jobs)
    if only is None:
        return jobs
    chosen = [job for job in jobs if job.job_id == only]
    if not chosen:
        recorded = " ".join(job.job_id for job in jobs) or "none"
        raise SnapshotError(f"job {only} is not a run of {folder.name} (its jobs: {recorded})")
    return chosen


def run_log(job: TrackedJob, folder: ExperimentDir, *, output: bool = True) -> Path | None:
    """The log of ``job``: its latest driver log, else (with ``output``) its Slurm --output file."""
    log = newest_driver_log(job)
    if log is None and output:
        log = folder.output_file(job.job_id)
    return log


def current_run(jobs: Sequence[TrackedJob], folder: ExperimentDir) -> int | None:
    """The index of the newest started job (the last one with a log), None when none started."""
    started = [i for i, job in enumerate(jobs) if run_log(job, folder) is not None]
    return started[-1] if started else None


def header(path: Path, job: TrackedJob) -> str:
    """The stderr line naming the file whose bytes follow on stdout."""
    return f"==> {path} (job {job.job_id}) <=="


def _recorded(snapshots: SnapshotRoot, experiment: str, only: str | None) -> tuple[ExperimentDir, list[TrackedJob]]:
    """The experiment's folder and its recorded jobs (just ``only`` when given); LauncherError
    when there is none."""
    folder = snapshots.find(experiment)
    jobs = recorded_jobs(folder, only)
    if not jobs:
        raise LauncherError(f"no run of {experiment} is recorded in its manifest: nothing has a log")
    return folder, jobs


def show(snapshots: SnapshotRoot, experiment: str, only: str | None, *, write: Write, err: Emit) -> None:
    """``nrl-launch logs``: print the current run's whole log (job ``only``'s when given); before
    any job started, the error says how to wait for it (``--follow``)."""
    folder, jobs = _recorded(snapshots, experiment, only)
    try:
        print_current(folder, jobs, write=write, err=err)
    except NotStarted as e:
        follow = follow_command(snapshots, experiment, only, DEFAULT_INTERVAL, WATCH_GIVE_UP.default)
        raise NotStarted(f"{e}; to wait for it and follow it: {follow}") from e


def follow(snapshots: SnapshotRoot, experiment: str, only: str | None, slurm: SlurmClient, *, write: Write,
           err: Emit, interval: float, give_up: float = WATCH_GIVE_UP.default,
           wait: Callable[[float], None] = time.sleep) -> None:
    """``nrl-launch logs --follow``: print the experiment's logs as they grow until no job of it is
    queued (job ``only``'s when given); Ctrl-C is :class:`Interrupted`, Slurm silent for
    ``give_up`` seconds :func:`~nrl_launch.errors.gave_up` (exit 128)."""
    folder, _ = _recorded(snapshots, experiment, only)
    resume = follow_command(snapshots, experiment, only, interval, give_up)
    try:
        Follower(folder, slurm, only=only, write=write, err=err, wait=wait, interval=interval, give_up=give_up,
                 resume_hint=resume).run()
    except KeyboardInterrupt as e:
        raise Interrupted(f"stopped following the logs of {experiment}. Resume with: {resume}") from e


def follow_command(snapshots: SnapshotRoot, experiment: str, only: str | None, interval: float,
                   give_up: float) -> str:
    """The ``nrl-launch logs --follow`` command line that follows the same logs again."""
    words = ["nrl-launch", "logs", "--follow", "--project-root", str(snapshots.project_root),
             "--code-snapshot-dirname", snapshots.dirname]
    if interval != DEFAULT_INTERVAL:
        words += ["--interval", f"{interval:g}"]
    if give_up != WATCH_GIVE_UP.default:
        words += ["--watch-give-up", f"{give_up:g}"]
    if only is not None:
        words += ["--job", only]
    return " ".join(shlex.quote(word) for word in [*words, experiment])


class NotStarted(LauncherError):
    """No job of the experiment has left a log yet."""


def print_current(folder: ExperimentDir, jobs: Sequence[TrackedJob], *, write: Write, err: Emit) -> None:
    """Print the current run's whole log; NotStarted when no job has left a log yet."""
    index = current_run(jobs, folder)
    if index is None:
        where = ", ".join(str(expected_log(job)) for job in jobs[:1])
        which = "its job has not" if len(jobs) == 1 else f"none of its {len(jobs)} jobs has"
        raise NotStarted(f"no log of {folder.name} yet: {which} started yet "
                         f"(looked for {where or 'a recorded job'} and the jobs' --output files in {folder.path})")
    job = jobs[index]
    path = run_log(job, folder)
    assert path is not None  # current_run found it
    err(header(path, job))
    copy_from(path, 0, write)


def copy_from(path: Path, offset: int, write: Write) -> int:
    """Write the bytes of ``path`` from ``offset`` to its end; the new offset (0 when the file shrank)."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size < offset:
                offset = 0  # truncated or replaced: start again
            handle.seek(offset)
            while chunk := handle.read(CHUNK):
                write(chunk)
                offset += len(chunk)
    except OSError:
        return offset  # gone for now (e.g. an NFS hiccup): try again next round
    return offset


class Follower:
    """``--follow``: one experiment's chain of logs, printed as they grow."""

    def __init__(self, folder: ExperimentDir, slurm: SlurmClient, *, only: str | None = None, write: Write,
                 err: Emit, wait: Callable[[float], None], interval: float, now: Callable[[], float] = time.monotonic,
                 ask_every: float = ASK_SLURM_EVERY, give_up: float = WATCH_GIVE_UP.default,
                 resume_hint: str = "nrl-launch logs --follow <experiment>") -> None:
        self.folder = folder
        self.only = only  # just this job
        self.slurm = slurm
        self.write = write
        self.err = err
        self.wait = wait
        self.interval = interval
        self.index = 0  # the job being printed
        self.path: Path | None = None  # its log being printed
        self.offset = 0
        self.output_only: set[str] = set()  # jobs seen with an --output file and no driver log yet
        self.printed = False
        self.now = now
        self.ask_every = ask_every
        self.next_ask: float | None = None  # until then, the last answer (queued, or no answer) stands
        self.give_up = give_up
        self.resume_hint = resume_hint
        self.failing_since: float | None = None  # when Slurm stopped answering

    def jobs_of(self) -> list[TrackedJob]:
        """The jobs followed, as the manifest records them now (asked again whenever Slurm is:
        a retry or continue.sh may have added a run)."""
        self.folder.refresh()
        return recorded_jobs(self.folder, self.only)

    def run(self) -> None:
        """Follow from the current run until the chain has no job left."""
        jobs = self.jobs_of()
        self.index = current_run(jobs, self.folder) or 0
        while True:
            grew = self._pump(jobs, final=False)
            if self._advance(jobs):
                continue
            if not grew:
                jobs = self.jobs_of()
                if not self._queued(jobs):
                    again = self.jobs_of()  # a run recorded while Slurm was asked (continue.sh, a retry)
                    if len(again) != len(jobs):
                        jobs = again
                        continue
                    self._pump(jobs, final=True)  # what was written before the last job left the queue
                    if not self._advance(jobs):
                        break
                    continue
            self.wait(self.interval)
        if not self.printed:
            self.err(f"[INFO]: {self.folder.name}: no job left in the queue, and none of its jobs wrote a log")

    def _pump(self, jobs: Sequence[TrackedJob], *, final: bool) -> bool:
        """Print what the current log gained (choosing the log first); True when it grew."""
        if self.index >= len(jobs):
            return False
        job = jobs[self.index]
        if self.path is None:
            self.path = self._choose(job, final)
            if self.path is None:
                return False
            self.offset = 0
            self.err(header(self.path, job))
        before = self.offset
        self.offset = copy_from(self.path, self.offset, self._emit)
        return self.offset != before

    def _choose(self, job: TrackedJob, final: bool) -> Path | None:
        """The job's log to follow. An --output file without a driver log is taken from the second
        round on (or at the end): a batch script writes its driver log right after Slurm makes
        the --output file, and following the driver log prints no line twice."""
        log = newest_driver_log(job)
        if log is not None:
            return log
        output = self.folder.output_file(job.job_id)
        if output is not None and (final or job.job_id in self.output_only):
            return output
        if output is not None:
            self.output_only.add(job.job_id)
        return None

    def _advance(self, jobs: Sequence[TrackedJob]) -> bool:
        """Move on to a newer attempt of the job or to a later job that started, after printing
        the rest of the current log; True when it moved."""
        if self.index < len(jobs) and self.path is not None and is_driver_log(self.path):
            newer = newest_driver_log(jobs[self.index])
            if newer is not None and newer != self.path:
                self._drain()
                self.path, self.offset = newer, 0
                self.err(header(newer, jobs[self.index]))
                return True
        later = next((i for i in range(self.index + 1, len(jobs))
                      if run_log(jobs[i], self.folder) is not None), None)
        if later is None:
            return False
        self._drain()
        self.index, self.path, self.offset = later, None, 0
        return True

    def _drain(self) -> None:
        if self.path is not None:
            self.offset = copy_from(self.path, self.offset, self._emit)

    def _queued(self, jobs: Sequence[TrackedJob]) -> bool:
        """True while any job of the experiment is queued (or Slurm cannot say, until it has not
        answered for ``give_up`` seconds: :func:`~nrl_launch.errors.gave_up`, as a watch); a
        "queued" answer stands for ``ask_every`` seconds."""
        moment = self.now()
        if self.next_ask is not None and moment < self.next_ask:
            return True
        # The client's own retries end when the give-up comes, however long Slurm takes not to answer.
        left = self.give_up - (moment - self.failing_since if self.failing_since is not None else 0.0)
        try:
            queued = bool(self.slurm.until(self.slurm.now() + left).queued(job.job_id for job in jobs))
        except SlurmError as e:
            self.failing_since = moment if self.failing_since is None else self.failing_since
            failing_for = moment - self.failing_since
            if failing_for >= self.give_up:
                raise gave_up(f"following the logs of {self.folder.name}", failing_for, e, self.resume_hint) from e
            self.err(f"[WARNING]: cannot ask Slurm which jobs are queued ({e}); following on")
            self.next_ask = moment + min(self.ask_every, self.give_up - failing_for)
            return True
        self.failing_since = None
        self.next_ask = moment + self.ask_every if queued else None
        return queued

    def _emit(self, data: bytes) -> None:
        self.printed = True
        self.write(data)
