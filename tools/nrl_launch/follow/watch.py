"""WATCH (spec section 8): follow submitted jobs, then judge each experiment.

Everything the contract lists goes to stdout through ``out`` in exactly its
form; progress, retries and the reasons behind a failing verdict go to stderr
through ``err``. The :class:`Watcher` takes the Slurm client, the wait and the
clocks as parameters, and verdicts come from log files only
(:mod:`nrl_launch.follow.verdict`), so all of it is testable without a cluster.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from nrl_launch.errors import Interrupted, SlurmError, SlurmUnreachable, SnapshotError, gave_up
from nrl_launch.experiment.folder import ExperimentDir, SnapshotRoot
from nrl_launch.experiment.joblogs import TrackedExperiment, TrackedJob, driver_logs
from nrl_launch.follow.retry import retrier_for
from nrl_launch.follow.verdict import GENERAL_FAIL, Verdict, judge_jobs
from nrl_launch.settings import WatchSettings
from nrl_launch.slurm.client import JobInfo, SlurmClient

Emit = Callable[[str], None]
ALL_PASSED = "[INFO]: All tests passed. Exiting with status 0."
SOME_FAILED = "[INFO]: One or more tests failed. Exiting with status 1."
PROGRESS_JOBS = 8  # jobs named in one progress line; the rest are counted
LOG_TAIL = 10  # driver log lines shown for a failed job


def timestamp() -> str:
    """``YYYY-MM-DD HH:MM:SS`` in local time, as WATCH lines show it."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


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


class RetryHook(Protocol):
    """What a watch asks after each poll when MAX_RETRIES is set (:class:`nrl_launch.follow.retry.Retrier`,
    which the launch and the watch command make)."""

    def after_poll(self, experiments: Sequence[TrackedExperiment], ended: Mapping[str, JobInfo],
                   queued: Collection[str]) -> list[list[TrackedJob]]:
        """The new jobs of each experiment (in the order given), after the jobs in ``ended`` ended."""
        ...


class VerdictRecorder(Protocol):
    """What a watch calls once its verdicts are final (:class:`nrl_launch.report.record.HistoryRecorder`,
    which records them in the results history); it never raises."""

    def record(self, experiments: Sequence[TrackedExperiment], verdicts: Sequence[Verdict]) -> None:
        """Keep the verdicts of ``experiments`` (in the same order)."""
        ...


class Watcher:
    """Follows the jobs of some experiments until none is queued, then judges them.

    ``resume_hint`` is the command that picks up where an interrupted watch
    stops; ``interactive`` says whether Enter polls at once (a terminal).
    ``folders`` (by experiment name) are read again before every poll: a run
    recorded meanwhile in the launch being watched (``continue.sh``, another
    watch's retry) is followed too, so that no verdict is given while a run of
    the experiment is queued.
    """

    def __init__(self, slurm: SlurmClient, settings: WatchSettings, *, out: Emit, err: Emit,
                 wait: Callable[[float], None] = wait_or_enter, clock: Callable[[], str] = timestamp,
                 now: Callable[[], float] = time.monotonic, resume_hint: str = "nrl-launch watch <experiment>…",
                 interactive: bool = False, retrier: RetryHook | None = None,
                 folders: Mapping[str, ExperimentDir] | None = None,
                 recorder: VerdictRecorder | None = None) -> None:
        self.folders = dict(folders or {})
        self.retrier = retrier  # MAX_RETRIES: resubmits runs lost to the infrastructure
        self.recorder = recorder  # the results history of nrl-launch report
        self.slurm = slurm
        self.settings = settings
        self.out = out
        self.err = err
        self.wait = wait
        self.clock = clock
        self.now = now
        self.resume_hint = resume_hint
        self.interactive = interactive

    def watch(self, experiments: Sequence[TrackedExperiment]) -> list[Verdict]:
        """Follow every job to its end, then print the verdicts (stdout) and their reasons (stderr).

        The verdicts read every job of each experiment, retries included."""
        tracked = self.follow(experiments)
        verdicts = [judge_jobs(exp.name, exp.jobs) for exp in tracked]
        report(verdicts, self.out)
        for exp, verdict in zip(tracked, verdicts, strict=True):
            if verdict.failed:
                for line in explain(exp, verdict, self.slurm):
                    self.err(line)
        if self.recorder is not None:
            self.recorder.record(tracked, verdicts)
        return verdicts

    def follow(self, experiments: Sequence[TrackedExperiment]) -> list[TrackedExperiment]:
        """Poll until none of the experiments' jobs is queued, printing the contract's lines;
        the experiments with the jobs that retries added."""
        tracked = list(experiments)
        remaining = [i for exp in tracked for i in exp.ids]
        interval = self.settings.interval
        self.out(f"[{self.clock()}] [WATCH]: Tracking {len(remaining)} jobs: {' '.join(remaining)}")
        self.out(f"[{self.clock()}] [WATCH]: Polling every {interval:g}s. Press Enter to refresh immediately.")
        try:
            self._poll(tracked, remaining)
        except KeyboardInterrupt as e:
            queued = " ".join(remaining)
            cancel = f" (cancel them with 'scancel {queued}')" if remaining else ""
            raise Interrupted(f"stopped watching; still queued or running: {queued or 'none'}{cancel}. "
                              f"Resume with: {self.resume_hint}") from e
        self.out(f"[{self.clock()}] [WATCH]: All tracked jobs have finished.")
        return tracked

    def _poll(self, experiments: list[TrackedExperiment], remaining: list[str]) -> None:
        # ``remaining`` is updated in place so that an interrupt can report it,
        # and ``experiments`` so that the verdicts read the retries' logs.
        failing_since: float | None = None
        unjudged: list[str] = []  # finished jobs whose end Slurm could not tell yet
        while remaining or self._discover(experiments, remaining):
            self.wait(self._next_wait(failing_since))
            self._discover(experiments, remaining)
            started = self.now()
            # Polls have failed since failing_since: this one (the client's retries included) ends
            # when WATCH_GIVE_UP is reached, however long Slurm takes not to answer.
            left = self.settings.give_up - (started - failing_since if failing_since is not None else 0.0)
            try:
                queue = self.slurm.until(self.slurm.now() + left).queue(remaining)
            except SlurmError as e:
                failing_since = started if failing_since is None else failing_since
                self._unreachable(e, self.now() - failing_since)
                continue
            failing_since = None
            finished = [j for j in remaining if j not in queue]
            remaining[:] = [j for j in remaining if j in queue]
            if finished:
                self.out(f"[{self.clock()}] [WATCH]: Finished jobs: {' '.join(finished)}")
            ended = self._ended(unjudged + finished, unjudged) if finished or unjudged else {}
            if self.retrier is not None:
                self._retry(experiments, ended, queue, remaining)
            self.out(f"[{self.clock()}] [WATCH]: Remaining: {len(remaining)}")
            if ended and self.settings.stop_chain_on_failure:
                self._stop_failed_chains(experiments, ended, queue)
            self.err(self._progress(queue, remaining))

    def _next_wait(self, failing_since: float | None) -> float:
        """The interval, or less while polls fail: the give-up comes when WATCH_GIVE_UP says."""
        if failing_since is None:
            return self.settings.interval
        left = self.settings.give_up - (self.now() - failing_since)
        return max(0.0, min(self.settings.interval, left))

    def _discover(self, experiments: list[TrackedExperiment], remaining: list[str]) -> bool:
        """Follow the runs recorded since the watch began in the launch it watches (``continue.sh``,
        another watch's retry); True when one was added. A later launch is not this watch's."""
        added = False
        for index, exp in enumerate(experiments):
            folder = self.folders.get(exp.name)
            if folder is None or not exp.jobs:
                continue
            folder.refresh()
            try:
                launch = next((launch for launch in folder.manifest.launches if exp.ids[0] in launch.job_ids), None)
            except SnapshotError:
                continue  # an unreadable manifest: the jobs this watch knows are followed
            known = set(exp.ids)
            new = [run for run in launch.runs if run.job_id not in known] if launch is not None else []
            if not new:
                continue
            jobs = folder.tracked(new).jobs
            experiments[index] = TrackedExperiment(exp.name, exp.jobs + jobs)
            remaining.extend(job.job_id for job in jobs)
            for run in new:
                self.err(f"[{self.clock()}] [INFO]: {exp.name}: following job {run.job_id} too (run {run.run}, "
                         f"via {run.via or 'unknown'}): it was recorded in the experiment while this watch ran")
            added = True
        return added

    def _ended(self, ids: list[str], unjudged: list[str]) -> dict[str, JobInfo]:
        """How the jobs that left the queue ended, when retries or STOP_CHAIN_ON_FAILURE need it.

        When Slurm cannot tell, ``unjudged`` keeps them for the next poll."""
        if self.retrier is None and not self.settings.stop_chain_on_failure:
            return {}
        try:
            ended = self.slurm.jobs(ids)
        except SlurmError as e:
            self.err(f"[{self.clock()}] [WARNING]: cannot tell how jobs {' '.join(ids)} ended ({e})")
            unjudged[:] = ids
            return {}
        unjudged.clear()
        return ended

    def _retry(self, experiments: list[TrackedExperiment], ended: Mapping[str, JobInfo],
               queue: Mapping[str, JobInfo], remaining: list[str]) -> None:
        """MAX_RETRIES: the retrier's new jobs join their experiments and the tracked set."""
        assert self.retrier is not None
        added = self.retrier.after_poll(experiments, ended, queue)
        for index, jobs in enumerate(added):
            if jobs:
                exp = experiments[index]
                experiments[index] = TrackedExperiment(exp.name, exp.jobs + tuple(jobs))
                remaining.extend(job.job_id for job in jobs)

    def _unreachable(self, error: SlurmError, failing_for: float) -> None:
        """Warn about a failed poll; give up once polls have failed for ``give_up`` seconds."""
        if failing_for >= self.settings.give_up:
            raise gave_up("watching", failing_for, error, self.resume_hint)
        said = str(error) if isinstance(error, SlurmUnreachable) else f"cannot reach Slurm ({error})"
        self.err(f"[{self.clock()}] [WARNING]: {said}; retrying in {self.settings.interval:g}s")

    def _progress(self, queue: Mapping[str, JobInfo], remaining: Sequence[str]) -> str:
        """One stderr line: each queued job's state (and pending reason), and the next poll."""
        shown = []
        for job_id in remaining[:PROGRESS_JOBS]:
            info = queue.get(job_id)
            if info is None:  # a retry submitted after this poll
                shown.append(f"{job_id} submitted")
                continue
            detail = f" ({info.reason})" if info.reason else (f" on {info.nodes}" if info.nodes else "")
            shown.append(f"{job_id} {info.state}{detail}")
        if len(remaining) > PROGRESS_JOBS:
            shown.append(f"and {len(remaining) - PROGRESS_JOBS} more")
        next_poll = time.strftime("%H:%M:%S", time.localtime(time.time() + self.settings.interval))
        enter = " (press Enter to poll now)" if self.interactive else ""
        jobs = ", ".join(shown) if shown else "no job queued"
        return f"[{self.clock()}] {jobs}; next poll at {next_poll}{enter}" if remaining else \
            f"[{self.clock()}] {jobs}"

    def _stop_failed_chains(self, experiments: Sequence[TrackedExperiment], ended: Mapping[str, JobInfo],
                            queue: Mapping[str, JobInfo]) -> None:
        """STOP_CHAIN_ON_FAILURE: cancel the queued later runs of a chain whose run ended FAILED."""
        for exp in experiments:
            failed = next((i for i in exp.ids if i in ended and ended[i].state == "FAILED"), None)
            if failed is None:
                continue
            later = [i for i in exp.ids[exp.ids.index(failed) + 1:] if i in queue]
            if not later:
                continue
            try:
                self.slurm.cancel(later)
            except SlurmError as e:  # the watch goes on: the later runs run (and fail) as without the option
                self.err(f"[{self.clock()}] [WARNING]: STOP_CHAIN_ON_FAILURE: could not cancel {' '.join(later)} "
                         f"of {exp.name} after run {failed} ended FAILED ({e}); they stay queued")
                continue
            self.out(f"[{self.clock()}] [WATCH]: Cancelled {' '.join(later)} of {exp.name}: run {failed} "
                     "ended FAILED (STOP_CHAIN_ON_FAILURE)")


def explain(exp: TrackedExperiment, verdict: Verdict, slurm: SlurmClient) -> list[str]:
    """Why an experiment failed, for stderr: how each job ended, and the end of a failed job's log."""
    if not exp.jobs:
        return [f"[WHY] {exp.name}: no runs were submitted"]
    try:
        infos = slurm.jobs(exp.ids)
    except SlurmError as e:
        infos = {}
        lines = [f"[WHY] {exp.name}: cannot ask Slurm how its jobs ended ({e})"]
    else:
        lines = []
    ended = ", ".join(_ended(job_id, infos.get(job_id)) for job_id in exp.ids)
    lines.append(f"[WHY] {exp.name}: {verdict.status}; jobs: {ended}")
    logs = driver_logs(exp.jobs)
    if verdict.status == GENERAL_FAIL and not logs:
        lines.append(f"[WHY] {exp.name}: no job of this experiment ever started (no driver log)")
    for job in exp.jobs:
        info = infos.get(job.job_id)
        if info is not None and (info.state == "FAILED" or info.exit_code not in ("", "0:0")):
            lines.extend(_log_tail(exp.name, driver_logs([job])[-1:]))
    return lines


def _ended(job_id: str, info: JobInfo | None) -> str:
    if info is None:
        return f"{job_id} unknown to Slurm"
    code = f", exit code {info.exit_code}" if info.exit_code else ""
    return f"{job_id} {info.state}{code}"


def tail_lines(path: Path, count: int, block: int = 1 << 16) -> list[str]:
    """The last ``count`` lines of a file, reading only its end (driver logs can be large)."""
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - block))
        data = handle.read()
    return data.decode("utf-8", errors="replace").splitlines()[-count:]


def _log_tail(name: str, logs: Sequence[Path]) -> list[str]:
    lines = []
    for log in logs:
        try:
            tail = tail_lines(log, LOG_TAIL)
        except OSError:
            continue
        lines.append(f"[WHY] {name}: the last line of {log}:" if len(tail) == 1 else
                     f"[WHY] {name}: last {len(tail)} lines of {log}:")
        lines.extend(f"    {line}" for line in tail)
    return lines


def watch_command(snapshots: SnapshotRoot, watching: WatchSettings, names: Sequence[str]) -> str:
    """The ``nrl-launch watch`` command line that follows ``names`` with these settings."""
    words = ["nrl-launch", "watch", "--project-root", str(snapshots.project_root), "--code-snapshot-dirname",
             snapshots.dirname, "--watch-interval", f"{watching.interval:g}"]
    if watching.give_up != WatchSettings().give_up:
        words += ["--watch-give-up", f"{watching.give_up:g}"]
    if watching.stop_chain_on_failure:
        words += ["--stop-chain-on-failure", "1"]
    if watching.max_retries:
        words += ["--max-retries", str(watching.max_retries)]
    return " ".join(shlex.quote(word) for word in [*words, *names])


def watch_recorded(snapshots: SnapshotRoot, names: Sequence[str], settings: WatchSettings, slurm: SlurmClient, *,
                   out: Emit, err: Emit, interactive: bool, wait: Callable[[float], None] = wait_or_enter,
                   recorder: VerdictRecorder | None = None) -> list[Verdict]:
    """``nrl-launch watch``: follow the jobs of each experiment's latest launch as its manifest
    records them (an earlier launch's logs must not pass this one) until they end, retrying runs
    lost to the infrastructure with MAX_RETRIES; the verdicts. SnapshotError for an unknown
    experiment, before anything is followed."""
    folders = [snapshots.find(name) for name in names]
    tracked = [folder.tracked() for folder in folders]
    retrier = retrier_for(slurm, settings.max_retries, folders, out=out, err=err, clock=timestamp) \
        if settings.max_retries else None
    watcher = Watcher(slurm, settings, out=out, err=err, wait=wait, interactive=interactive,
                      resume_hint=watch_command(snapshots, settings, names), retrier=retrier,
                      folders={folder.name: folder for folder in folders}, recorder=recorder)
    return watcher.watch(tracked)
