"""Retries after infrastructure failures (MAX_RETRIES), decided while watching.

A run is *lost to the infrastructure* when its job ended ``NODE_FAIL``,
``BOOT_FAIL`` or ``PREEMPTED``, or when ``ray.sub``'s node check found a node
of the allocation that did not answer: the job then ends ``FAILED`` with exit
code 75 (EX_TEMPFAIL) and its driver log names the silent nodes. Both exit 75
and that log line are needed, so a recipe that happens to exit 75 is not
taken for a node failure. A job that fails by itself (``FAILED``,
``TIMEOUT``, ``OUT_OF_MEMORY``, a metric ``FAIL``) is never retried, nor one
that ``scancel`` or STOP_CHAIN_ON_FAILURE cancelled.

Once nothing of the experiment's chain is still queued, each lost run is
replaced by one more run, submitted as ``continue.sh`` would
(:mod:`nrl_launch.experiment.rerun`), up to MAX_RETRIES per experiment. Waiting for the
chain to drain keeps the order of the runs: the later runs of the chain train
on, and the extra run comes last, as a ``continue.sh`` run would. No run is
added once the experiment's logs hold a ``Metric Checks`` section: the recipe
has reached its end, and the verdict is known.

Which nodes the extra run avoids (``--exclude``): after a node check, the
nodes that did not answer; after ``NODE_FAIL`` or ``BOOT_FAIL``, the failed
job's nodes that ``sinfo`` reports down, drained, failing or not responding
-- and every node of the failed job when Slurm names none of them (it may have
taken the node back already); after ``PREEMPTED``, none (the nodes are fine).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from nrl_launch.errors import SlurmError, SnapshotError
from nrl_launch.experiment.folder import ExperimentDir
from nrl_launch.experiment.joblogs import TrackedExperiment, TrackedJob, newest_driver_log
from nrl_launch.experiment.manifest import VIA_RETRY, Manifest, RetryOrigin, Run
from nrl_launch.experiment.rerun import NextRun, submit
from nrl_launch.follow.verdict import GENERAL_FAIL, judge_jobs
from nrl_launch.slurm.client import JobInfo, SlurmClient

Emit = Callable[[str], None]
INFRA_STATES = frozenset({"NODE_FAIL", "BOOT_FAIL", "PREEMPTED"})
NODE_CHECK_FAILED = "NODE_CHECK_FAILED"  # how a retry line names ray.sub's failed node check
NODE_CHECK_EXIT = 75  # ray.sub's exit status when a node did not answer (EX_TEMPFAIL)
# ray.sub's line: "[ray.sub] node check FAILED after 10.2s (srun exit 1): no answer from node2 node3 (answered: node1)"
_NODE_CHECK_RE = re.compile(r"^\[ray\.sub\] node check FAILED .*?: no answer from (.*?) \(answered:", re.MULTILINE)
_NODE_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_LOG_TAIL_BYTES = 1 << 16  # the node check is at the start of a log that ended at once


@dataclass(frozen=True)
class InfraFailure:
    """A run lost to the infrastructure."""

    job_id: str
    state: str  # Slurm's state, or NODE_CHECK_FAILED
    nodes: str  # the nodes the job ran on, Slurm's host list ("" when it got none)
    silent: tuple[str, ...] = ()  # the nodes ray.sub's node check heard nothing from


def node_check_silent(log: Path) -> tuple[str, ...] | None:
    """The nodes a driver log says did not answer ray.sub's node check; None without such a line."""
    try:
        with open(log, "rb") as handle:
            text = handle.read(_LOG_TAIL_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    match = _NODE_CHECK_RE.search(text)
    if match is None:
        return None
    if match.group(1).startswith("("):  # "(every node answered, but srun failed)", "(unknown: ...)"
        return ()
    return tuple(word for word in match.group(1).split() if _NODE_NAME_RE.fullmatch(word))


def infra_failure(info: JobInfo, log: Path | None) -> InfraFailure | None:
    """How ``info``'s job was lost to the infrastructure, or None when it was not
    (``log`` is its last driver log, read only for an exit status of 75)."""
    if info.state in INFRA_STATES:
        return InfraFailure(info.job_id, info.state, info.nodes)
    if info.state == "FAILED" and info.exit_code.split(":")[0] == str(NODE_CHECK_EXIT) and log is not None:
        silent = node_check_silent(log)
        if silent is not None:
            return InfraFailure(info.job_id, NODE_CHECK_FAILED, info.nodes, silent)
    return None


def exclusion(failure: InfraFailure, unhealthy: Callable[[str], list[str]]) -> str:
    """The ``--exclude`` value of the run replacing ``failure`` ("" for none); ``unhealthy``
    names the nodes of a host list that Slurm reports failed (SlurmError when it cannot say)."""
    if failure.state == "PREEMPTED" or not failure.nodes:
        return ",".join(failure.silent)
    if failure.silent:
        return ",".join(failure.silent)
    try:
        bad = unhealthy(failure.nodes)
    except SlurmError:
        bad = []
    return ",".join(bad) if bad else failure.nodes


class _Made(NamedTuple):
    """The run replacing a lost one: its job, its number in the chain, sbatch's answer (None
    when another watch had already submitted it), which retry of the experiment it is, what it excludes."""

    job_id: str
    number: str
    answer: str | None
    k: int = 0
    exclude: str = ""


@dataclass
class RetryBook:
    """One experiment's retries: its folder, what to submit, what is still to answer."""

    folder: ExperimentDir
    next_run: NextRun | None
    why_not: str = ""  # why there is no next_run
    answered: set[str] = field(default_factory=set)  # failed jobs already retried (or given up on)
    pending: list[InfraFailure] = field(default_factory=list)  # lost runs, answered once the chain drains


def book_of(folder: ExperimentDir) -> RetryBook:
    """The book of an experiment ``nrl-launch watch`` follows: the runs its recorded retries
    replaced are answered (and the retries count, as :func:`retries_made` finds them)."""
    try:
        next_run, why_not = folder.next_run(), ""
    except SnapshotError as e:
        next_run, why_not = None, str(e)
    replaced = {run.retry.retry_of for run in folder.manifest.retries if run.retry and run.retry.retry_of}
    return RetryBook(folder, next_run, why_not, answered=replaced)


class Retrier:
    """Resubmits the runs of watched experiments that the infrastructure lost."""

    def __init__(self, slurm: SlurmClient, max_retries: int, books: Mapping[str, RetryBook], *, out: Emit,
                 err: Emit, clock: Callable[[], str]) -> None:
        self.slurm = slurm
        self.max_retries = max_retries
        self.books = dict(books)
        self.out = out
        self.err = err
        self.clock = clock

    def after_poll(self, experiments: Sequence[TrackedExperiment], ended: Mapping[str, JobInfo],
                   queued: Collection[str]) -> list[list[TrackedJob]]:
        """Note the lost runs among ``ended``; for each experiment with nothing in ``queued``, submit
        one run per lost run. Returns the new jobs of each experiment (in the order given)."""
        added = []
        for exp in experiments:
            book = self.books.get(exp.name)
            jobs: list[TrackedJob] = []
            if book is not None:
                self._note(exp, book, ended)
                if book.pending and not any(job.job_id in queued for job in exp.jobs):
                    jobs = self._answer(exp, book)
            added.append(jobs)
        return added

    def _note(self, exp: TrackedExperiment, book: RetryBook, ended: Mapping[str, JobInfo]) -> None:
        known = book.answered | {failure.job_id for failure in book.pending}
        for job in exp.jobs:
            info = ended.get(job.job_id)
            if info is None or job.job_id in known:
                continue
            failure = infra_failure(info, newest_driver_log(job))
            if failure is not None:
                book.pending.append(failure)

    def _answer(self, exp: TrackedExperiment, book: RetryBook) -> list[TrackedJob]:
        """Submit one run per pending failure (within the limit); the new jobs."""
        pending, book.pending = book.pending, []
        book.answered.update(failure.job_id for failure in pending)
        if judge_jobs(exp.name, exp.jobs).status != GENERAL_FAIL:
            self.err(f"[{self.clock()}] [INFO]: {exp.name}: not retrying job {_ids(pending)}: the logs already "
                     "hold the Metric Checks (the recipe reached its end)")
            return []
        jobs = []
        for failure in pending:
            job = self._retry(exp, book, failure)
            if job is not None:
                jobs.append(job)
        return jobs

    def _retry(self, exp: TrackedExperiment, book: RetryBook, failure: InfraFailure) -> TrackedJob | None:
        name = exp.name
        lost = f"job {failure.job_id} ended {failure.state}"
        if book.next_run is None:
            self.err(f"[{self.clock()}] [WARNING]: {name}: {lost}; cannot retry it: {book.why_not}")
            return None
        run = book.next_run
        try:
            made = self._submit_once(exp, book.folder, run, failure)
        except (SlurmError, SnapshotError) as e:
            self.err(f"[{self.clock()}] [WARNING]: {name}: {lost}; the retry could not be submitted: {e}")
            return None
        if made is None:
            self.err(f"[{self.clock()}] [INFO]: {name}: {lost}; not retried: MAX_RETRIES={self.max_retries} "
                     "reached")
            return None
        if made.answer is None:
            self.err(f"[{self.clock()}] [INFO]: {name}: {lost}; already retried as job {made.job_id} "
                     "(by another watch of this experiment): following that job")
        else:
            self.out(retry_line(self.clock(), name, failure, made.k, self.max_retries, made.job_id))
            avoid = f"excluding {made.exclude}" if made.exclude else "on any node"
            self.err(f"[{self.clock()}] {name}: job {made.job_id} is run {made.number} of the chain, {avoid} "
                     f"({made.answer})")
        return TrackedJob(made.job_id, book.folder.log_root(run.base_log_dir))

    def _submit_once(self, exp: TrackedExperiment, folder: ExperimentDir, run: NextRun,
                     failure: InfraFailure) -> _Made | None:
        """Submit and record the run replacing ``failure``, unless another watch of the experiment
        already did (then: its job, nothing submitted); None when MAX_RETRIES is reached.

        Decided under the experiment's lock from the manifest, so that watches of one experiment
        running at once share one count and never retry one lost run twice.
        """
        # as continue.sh: one writer of the experiment at a time, from numbering the run to recording it
        with folder.lock(self.err):
            recorded = folder.manifest
            earlier = earlier_retry(recorded, failure.job_id)
            if earlier is not None:
                return _Made(earlier.job_id, earlier.run, None)
            made = retries_made(recorded, exp.ids)
            if made >= self.max_retries:
                return None
            exclude = exclusion(failure, self.slurm.unhealthy_nodes)
            number = recorded.next_run_number
            answer = submit(self.slurm, run, number, exclude, known={r.job_id for r in recorded.runs})
            self._record(exp.name, folder, run, RetryOrigin(failure.job_id, failure.state, failure.nodes, exclude),
                         answer.job_id, number, answer.token)
        return _Made(answer.job_id, str(number), answer.text, made + 1, exclude)

    def _record(self, name: str, folder: ExperimentDir, run: NextRun, origin: RetryOrigin, job_id: str,
                number: int, token: str = "") -> None:
        """The retry's manifest entry: a run (``via: retry``) saying which job it replaces and why."""
        try:
            folder.record_run(job_id, str(number), VIA_RETRY, base_log_dir=run.base_log_dir, retry=origin,
                              token=token)
        except SnapshotError as e:
            # the job is queued: losing its entry is not worth stopping the watch
            self.err(f"[{self.clock()}] [WARNING]: {name}: could not record retry job {job_id} in the manifest: {e}")


def retries_made(recorded: Manifest, tracked: Collection[str]) -> int:
    """How many recorded retries replaced a job of ``tracked`` (the jobs a watch follows,
    retries included): MAX_RETRIES counts these."""
    return sum(1 for run in recorded.retries if run.retry and run.retry.retry_of in tracked)


def earlier_retry(recorded: Manifest, job_id: str) -> Run | None:
    """The recorded retry already made for the lost job ``job_id``, if any."""
    return next((run for run in recorded.retries if run.retry and run.retry.retry_of == job_id), None)


def retry_line(ts: str, name: str, failure: InfraFailure, k: int, limit: int, job_id: str) -> str:
    """The stdout line of one retry."""
    return (f"[{ts}] [WATCH]: Retrying {name} after {failure.state} on {failure.nodes or 'no node'} "
            f"({k}/{limit}): job {job_id}")


def _ids(failures: Sequence[InfraFailure]) -> str:
    return " ".join(failure.job_id for failure in failures)


def retrier_for(slurm: SlurmClient, max_retries: int, folders: Sequence[ExperimentDir], *, out: Emit, err: Emit,
                clock: Callable[[], str]) -> Retrier:
    """The retrier of ``nrl-launch watch``: each experiment's book from its folder."""
    return Retrier(slurm, max_retries, {folder.name: book_of(folder) for folder in folders}, out=out, err=err,
                   clock=clock)
