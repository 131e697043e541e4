"""Every Slurm client command of the launcher goes through :class:`SlurmClient`.

The client is made once per command with the launcher's environment and a
*runner* (``runner.py``): the function that actually runs a program. Commands
are always argument lists, never shell strings, and every call has a timeout
(``NRL_SLURM_TIMEOUT`` seconds, default in ``settings.py``): a hung controller
becomes an error, not a launcher that waits forever. Every failure goes through
:func:`nrl_launch.slurm.failures.failure`, which classifies it.

A command that does not change anything when repeated (every query,
``sbatch --test-only``, ``scancel``) and fails *transiently* is tried again,
after an exponentially growing delay with jitter, for up to ``NRL_SLURM_RETRY``
seconds; a final failure never is. A submission is tried once here: trying it
again needs to know whether the failed attempt queued its job
(:mod:`nrl_launch.slurm.submit`). A client can be bounded by a deadline
(:meth:`SlurmClient.until`): each call's timeout and the retries then end by
it. When a command has not answered after a few seconds, the client says so
(``notify``, the command's stderr), so that a controller that does not answer
is never a silent wait.
"""

from __future__ import annotations

import copy
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from nrl_launch.errors import SlurmError, SlurmUncertain, SlurmUnreachable
from nrl_launch.settings import SLURM_RETRY, SLURM_TIMEOUT
from nrl_launch.slurm.failures import failure
from nrl_launch.slurm.runner import Completed, run_command
from nrl_launch.slurm.states import (
    HOSTLIST_RE,
    SACCT_FIELDS,
    SINFO_FORMAT,
    SPAN_FIELDS,
    SQUEUE_FORMAT,
    JobInfo,
    JobSpan,
    job_ids,
    parse_sacct,
    parse_scontrol,
    parse_scontrol_all,
    parse_scontrol_span,
    parse_sinfo,
    parse_spans,
    parse_squeue,
    unhealthy_state,
)

if TYPE_CHECKING:
    from nrl_launch.slurm.runner import Runner

# What callers of the client use, from the modules that hold it.
__all__ = ["SBATCH_EXPORT", "Completed", "JobInfo", "JobSpan", "QueuedJob", "Runner", "SbatchAnswer", "SlurmClient",
           "job_ids", "parse_answer", "run_command", "unhealthy_state"]

# sbatch's answer: "Submitted batch job 123" or "... 123 on cluster foo".
_SUBMITTED_RE = re.compile(r"^Submitted batch job (\d+)(?: on cluster \S+)?$", re.MULTILINE)


class SbatchAnswer(NamedTuple):
    """What sbatch said for one accepted submission."""

    job_id: str
    text: str  # sbatch's own line(s), printed verbatim to the user
    token: str = ""  # the run's token, passed in the job's environment (experiment.joblogs)
    adopted: str = ""  # why the job is one a failed sbatch had queued after all ("" for sbatch's answer)


class QueuedJob(NamedTuple):
    """A job as the queue lists it for reconciling a submission: its id and ``--output`` file."""

    job_id: str
    stdout: str  # the --output path (squeue shows %j unexpanded)


def parse_answer(proc: Completed) -> SbatchAnswer:
    """The job id of a successful sbatch, from its stdout or else its stderr
    (some site wrappers print it there).

    The text to print is sbatch's stdout when the id is there, else the one
    ``Submitted batch job`` line: stdout must carry it for the tools that parse
    the launcher's output. SlurmUncertain when neither stream has an id: sbatch
    said it succeeded, so a job may be queued.
    """
    for stream in (proc.stdout, proc.stderr):
        match = _SUBMITTED_RE.search(stream)
        if match is not None:
            text = stream.rstrip("\n") if stream is proc.stdout else match.group(0)
            return SbatchAnswer(job_id=match.group(1), text=text)
    raise SlurmUncertain(f"sbatch answered without a job id (exit status 0; stdout: {proc.stdout.strip()!r}; "
                         f"stderr: {proc.stderr.strip()!r})")


SBATCH_EXPORT = "SBATCH_EXPORT"  # sbatch's --export default from the environment; never passed on
_QUERIES = frozenset({"squeue", "sacct", "sinfo"})
_QUERY_DEFAULTS = ("SQUEUE_", "SACCT_", "SINFO_")  # the environment variables they take defaults from
SLOW_AFTER = 3.0  # seconds without an answer after which the client says that Slurm is slow
_SLOW_REPEAT = 30.0  # ... and not again for this long (a launch runs many commands at once)
FIRST_DELAY, MAX_DELAY = 1.0, 15.0  # the first delay before trying again, and the longest
MIN_CALL = 2.0  # the least time a call is given, however close its deadline
SQUEUE_IDS = 100  # job ids up to which squeue is given them (-j); more: all of the user's jobs are listed
Emit = Callable[[str], None]


def backoff(rng: random.Random, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> Iterator[float]:
    """The delays between tries: doubling from ``first`` up to ``cap``, each drawn at random from
    its upper half (jitter: launches that failed together do not all try again together)."""
    delay = first
    while True:
        yield rng.uniform(delay / 2, delay)
        delay = min(cap, delay * 2)


class _Watchdog:
    """One thread that says that Slurm is slow when a call has not answered in time, for every call
    of a client and its copies (a timer thread per call cost about 1 ms of each sbatch of a
    launch). It ends when no call has been watched for a while; the next call starts another."""

    IDLE = 2.0  # seconds without a call after which the thread ends

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls: dict[int, tuple[float, Callable[[], None]]] = {}  # key -> (when to say, say)
        self._count = 0
        self._running = False
        self._until = float("inf")  # when the thread wakes up next on its own

    def watch(self, after: float, say: Callable[[], None]) -> int:
        """Call ``say`` in ``after`` seconds unless :meth:`done` comes first; the key for it."""
        with self._cond:
            self._count += 1
            key = self._count
            when = time.monotonic() + after
            self._calls[key] = (when, say)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="nrl-slurm-watchdog", daemon=True).start()
            elif when < self._until:
                self._cond.notify()
            return key

    def done(self, key: int) -> None:
        """The call of ``key`` answered: nothing to say about it."""
        with self._cond:
            self._calls.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._calls:
                    self._until = time.monotonic() + self.IDLE
                    self._cond.wait(self.IDLE)
                    if not self._calls:
                        self._running, self._until = False, float("inf")
                        return
                    continue
                key, (when, say) = min(self._calls.items(), key=lambda item: item[1][0])
                now = time.monotonic()
                if when > now:
                    self._until = when
                    self._cond.wait(when - now)
                    continue
                del self._calls[key]
            say()


class _Notices:
    """When the client last said that Slurm is slow, and the watchdog that says it (shared by the
    copies :meth:`SlurmClient.until` makes, and by the threads of a parallel launch)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_slow = float("-inf")
        self.watchdog = _Watchdog()


class SlurmClient:
    """The launcher's one way to talk to Slurm (sbatch, squeue, sacct, scontrol, sinfo, scancel).

    ``environ`` is the environment every command runs with; a submission adds
    its job environment on top of it. ``runner`` runs the commands; ``timeout``
    (seconds) defaults to ``NRL_SLURM_TIMEOUT`` of ``environ``, ``retry_for``
    (seconds during which a transient failure is tried again) to ``NRL_SLURM_RETRY``.
    ``notify`` (None: silent) hears, as stderr lines, that Slurm is slow to answer
    and each retry; ``sleep``, ``now`` and ``rng`` make the waits testable.
    Safe to use from several threads (a parallel launch).
    """

    def __init__(self, environ: Mapping[str, str], runner: Runner = run_command, timeout: float | None = None, *,
                 retry_for: float | None = None, notify: Emit | None = None,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, slow_after: float = SLOW_AFTER) -> None:
        self.environ: dict[str, str] = dict(environ)
        self.runner = runner
        self.timeout = timeout if timeout is not None else SLURM_TIMEOUT.of(self.environ)
        self.retry_for = retry_for if retry_for is not None else SLURM_RETRY.of(self.environ)
        self.notify = notify
        self.sleep = sleep
        self.now = now
        self.rng = rng or random.Random()
        self.slow_after = slow_after
        self.deadline: float | None = None  # a ``now()`` value every call and retry ends by
        self._notices = _Notices()

    def until(self, deadline: float | None) -> SlurmClient:
        """This client with every call, retries included, ending by ``deadline`` (a ``now()``
        value; None: no deadline) -- give or take :data:`MIN_CALL` seconds: a watch that gives
        up after WATCH_GIVE_UP seconds must not wait for a command much longer."""
        bounded = copy.copy(self)
        bounded.deadline = deadline
        return bounded

    # ---- running one command

    def _call_timeout(self) -> float:
        if self.deadline is None:
            return self.timeout
        return min(self.timeout, max(MIN_CALL, self.deadline - self.now()))

    def _executable(self, program: str, env: Mapping[str, str]) -> str | None:
        """Where the launcher finds ``program`` when the command's environment has another PATH
        (EXTRA_ENV may set the job's): the launcher's commands come from the launcher's PATH."""
        if env.get("PATH") == self.environ.get("PATH"):
            return None
        found = shutil.which(program, path=self.environ.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(program)
        return found

    def _say(self, line: str) -> None:
        if self.notify is not None:
            self.notify(line)

    def _slow(self, program: str, timeout: float) -> None:
        """Say that Slurm is slow (at most once every _SLOW_REPEAT seconds)."""
        with self._notices.lock:
            moment = self.now()
            if moment - self._notices.last_slow < _SLOW_REPEAT:
                return
            self._notices.last_slow = moment
        self._say(f"[WARNING]: Slurm has not answered {program} for {self.slow_after:g} s: the controller may be "
                  f"busy or down; waiting (at most {timeout:g} s, {SLURM_TIMEOUT.envvar})")

    def _run(self, argv: Sequence[str], *, cwd: str | None = None, job_env: Mapping[str, str] | None = None,
             environ: Mapping[str, str] | None = None) -> Completed:
        """Run one command; its answer, whatever its exit status (a runner failure: the classified error)."""
        base = self.environ if environ is None else environ
        env = dict(base) if job_env is None else {**base, **job_env}
        if argv[0] == "sbatch" and SBATCH_EXPORT in env:
            # SBATCH_EXPORT=NONE (or a list) would start the job without the environment the
            # contract gives it (COMMAND, MOUNTS, ...): sbatch's default, ALL, is the contract
            env = {name: value for name, value in env.items() if name != SBATCH_EXPORT}
        if argv[0] in _QUERIES:
            # squeue, sacct and sinfo read defaults from SQUEUE_*/SACCT_*/SINFO_* (SQUEUE_STATES=R
            # or SQUEUE_PARTITION=x would hide queued jobs, and WATCH would take them for
            # finished): the answers must be the ones we ask for and parse.
            env = {name: value for name, value in env.items() if not name.startswith(_QUERY_DEFAULTS)}
        timeout = self._call_timeout()
        watched = None
        if self.notify is not None and self.slow_after < timeout:
            watched = self._notices.watchdog.watch(self.slow_after, partial(self._slow, argv[0], timeout))
        try:
            executable = self._executable(argv[0], env)
            extra = {} if executable is None else {"executable": executable}
            return self.runner(list(argv), cwd=cwd, env=env, timeout=timeout, **extra)
        except OSError as e:  # not found, not startable, or killed at the timeout
            raise failure(argv, e, timeout) from e
        finally:
            if watched is not None:
                self._notices.watchdog.done(watched)

    def _succeed(self, argv: Sequence[str], *, cwd: str | None = None, job_env: Mapping[str, str] | None = None,
                 environ: Mapping[str, str] | None = None, retry: bool = True) -> Completed:
        """Run one command that must succeed: its answer, or its failure classified. A transient
        failure is tried again (``retry``: for a command that may be repeated) within the budget."""
        tries = Tries(self, argv[0]) if retry else None
        while True:
            try:
                proc = self._run(argv, cwd=cwd, job_env=job_env, environ=environ)
                if proc.returncode == 0:
                    return proc
                error = failure(argv, proc, self.timeout)
            except SlurmError as e:
                error = e
            if tries is None or not tries.again(error):
                raise error

    def _ask(self, argv: Sequence[str]) -> Completed | None:
        """Run one job query: its answer, or None when it failed for good (the jobs are unknown to
        it); SlurmError when there is no Slurm to ask, or it did not answer in time."""
        try:
            return self._succeed(argv)
        except SlurmError as error:
            if isinstance(error, SlurmUnreachable) or error.transient:
                raise
            return None  # e.g. "Invalid job id specified" for jobs Slurm no longer lists, accounting disabled

    # ---- the commands

    def submit(self, argv: Sequence[str], *, cwd: str, job_env: Mapping[str, str],
               environ: Mapping[str, str] | None = None) -> SbatchAnswer:
        """Queue one job: ``sbatch *argv`` in ``cwd``, ``job_env`` added to the environment
        (``environ`` instead of the client's own, when given: a later run of a chain pins
        what its launch's CONFIG block read). Tried once: a failure may have queued the job
        (:func:`nrl_launch.slurm.submit.submit_run` finds out before trying again)."""
        return parse_answer(self._succeed(["sbatch", *argv], cwd=cwd, job_env=job_env, environ=environ,
                                          retry=False))

    def test_only(self, argv: Sequence[str], *, cwd: str, job_env: Mapping[str, str]) -> None:
        """Ask Slurm whether it would accept this submission (``sbatch --test-only``);
        SlurmRejected when it would not."""
        self._succeed(["sbatch", "--test-only", *argv], cwd=cwd, job_env=job_env)

    def reachable(self) -> bool:
        """True when the Slurm client is installed and ``scontrol ping`` finds a controller."""
        if shutil.which("sbatch", path=self.environ.get("PATH")) is None:
            return False
        try:
            return self._run(["scontrol", "ping"]).returncode == 0
        except SlurmError:
            return False

    def queued(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` still in the queue (pending or running)."""
        return set(self.queue(ids))

    def queue(self, ids: Iterable[str]) -> dict[str, JobInfo]:
        """Those of ``ids`` that ``squeue --me`` still lists, with their state and reason.

        A job has finished when it is no longer listed (spec section 8). One
        squeue call (tried again after a transient failure); SlurmError when it fails
        (never "finished" by mistake).
        """
        wanted = set(job_ids(ids))
        if not wanted:
            return {}
        proc = self._succeed(["squeue", "--me", "-h", "-o", SQUEUE_FORMAT])
        return parse_squeue(proc.stdout, wanted)

    def named(self, job_name: str) -> list[QueuedJob]:
        """Every job of the user named ``job_name`` that the controller still knows (queued, or
        ended within its MinJobAge), with its ``--output`` file: to find out whether a failed
        submission queued its job after all. One squeue call; SlurmError when it fails."""
        if "," in job_name:  # squeue's -n takes a comma-separated list: such a name is matched here
            proc = self._succeed(["squeue", "--me", "-h", "-t", "all", "-O", "JobID:0|,Name:0|,StdOut:0"])
            return parse_named(proc.stdout, job_name)
        proc = self._succeed(["squeue", "--me", "-h", "-t", "all", "-n", job_name, "-O", NAMED_FORMAT])
        return parse_named(proc.stdout, None)

    def cancel(self, ids: Iterable[str]) -> None:
        """``scancel`` these jobs, in one call."""
        wanted = job_ids(ids)
        if wanted:
            self._succeed(["scancel", *wanted])

    def states(self, ids: Iterable[str]) -> dict[str, str]:
        """Slurm state per job id (see :meth:`jobs`)."""
        return {job_id: info.state for job_id, info in self.jobs(ids).items()}

    def jobs(self, ids: Iterable[str]) -> dict[str, JobInfo]:
        """What Slurm knows of each job: one squeue, then one sacct for the rest, then one
        scontrol for what is still unknown (every call covers all the jobs it asks about).

        Ids no source knows are left out (callers show "unknown"). Raises
        SlurmError only when there is no Slurm to ask (or it does not answer).
        """
        wanted = job_ids(ids)
        if not wanted:
            return {}
        # squeue filters a long -j list slowly (0.27 s for 5,000 ids, 0.09 s to list all 5,000 of yours):
        # many ids are looked up in the whole of your queue (another user's are found by scontrol below)
        which = ["--me"] if len(wanted) > SQUEUE_IDS else ["-j", ",".join(wanted)]
        proc = self._ask(["squeue", "-h", "-o", SQUEUE_FORMAT, *which])
        found = parse_squeue(proc.stdout, set(wanted)) if proc else {}
        missing = [i for i in wanted if i not in found]
        if missing:
            proc = self._ask(["sacct", "-n", "-X", "-P", "-o", SACCT_FIELDS, "-j", ",".join(missing)])
            found.update(parse_sacct(proc.stdout, missing) if proc else {})  # no accounting: nothing
        missing = [i for i in wanted if i not in found]
        if len(missing) == 1:
            proc = self._ask(["scontrol", "show", "job", "-o", missing[0]])
            info = parse_scontrol(missing[0], proc.stdout) if proc else None
            found.update({missing[0]: info} if info is not None else {})
        elif missing:  # one call lists every job the controller holds: one per job took 30 s for 5,000
            proc = self._ask(["scontrol", "show", "job", "-o"])
            found.update(parse_scontrol_all(proc.stdout, set(missing)) if proc else {})
        return {i: found[i] for i in wanted if i in found}

    def spans(self, ids: Iterable[str]) -> dict[str, JobSpan]:
        """When each job was submitted, started and ended, its state and nodes (``nrl-launch report``):
        sacct from accounting, then ``sacct -c`` from the job completion records (a cluster with a
        jobcomp plugin but no slurmdbd), then scontrol for the jobs the controller still holds.

        Ids no source knows are left out. Raises SlurmError only when there is no Slurm to ask.
        """
        wanted = job_ids(ids)
        found: dict[str, JobSpan] = {}
        for completion in ([], ["-c"]):
            missing = [i for i in wanted if i not in found]
            if missing:
                proc = self._ask(["sacct", *completion, "-n", "-X", "-P", "-o", SPAN_FIELDS, "-j", ",".join(missing)])
                found.update(parse_spans(proc.stdout, missing) if proc else {})
        for job_id in [i for i in wanted if i not in found]:
            proc = self._ask(["scontrol", "show", "job", "-o", job_id])
            span = parse_scontrol_span(job_id, proc.stdout) if proc else None
            if span is not None:
                found[job_id] = span
        return {i: found[i] for i in wanted if i in found}

    def unhealthy_nodes(self, nodes: str) -> list[str]:
        """The nodes of Slurm's host list ``nodes`` (``node[1-3]``) that ``sinfo`` reports down,
        drained or draining, failing, or not responding; SlurmError when sinfo fails."""
        if not nodes or not HOSTLIST_RE.fullmatch(nodes):
            return []
        proc = self._succeed(["sinfo", "-h", "-N", "-n", nodes, "-o", SINFO_FORMAT])
        return parse_sinfo(proc.stdout)


NAMED_FORMAT = "JobID:0|,StdOut:0"  # squeue -O: the job id, then the --output path (last: it may hold a '|')


def parse_named(stdout: str, job_name: str | None) -> list[QueuedJob]:
    """The jobs of :meth:`SlurmClient.named`'s answer (``NAMED_FORMAT`` lines; with ``job_name``,
    ``JobID|Name|StdOut`` lines of every job, of which those named ``job_name``)."""
    found = []
    for line in stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        if job_name is not None:
            if not rest.startswith(job_name + "|"):
                continue
            rest = rest[len(job_name) + 1:]
        if job_id.isascii() and job_id.isdigit():
            found.append(QueuedJob(job_id, rest))
    return found


class Tries:
    """The tries of one command that may be repeated: after each transient failure, wait the next
    delay of :func:`backoff` and say so, while the client's budget (``retry_for`` seconds from
    the first try) and deadline allow; a final failure ends them at once."""

    def __init__(self, client: SlurmClient, program: str) -> None:
        self.client = client
        self.program = program
        self.started = client.now()
        self.delays = backoff(client.rng)
        self.count = 1

    def end(self) -> float:
        """The ``now()`` value at which trying again stops: the budget's end, or the deadline."""
        client = self.client
        end = self.started + client.retry_for
        return end if client.deadline is None else min(end, client.deadline)

    def left(self) -> float:
        """Seconds left for trying again."""
        return self.end() - self.client.now()

    def again(self, error: SlurmError) -> bool:
        """True after waiting to try again; False when ``error`` is final or time is up (then the
        error says how long it was tried)."""
        if not error.transient:
            return False
        delay, left = next(self.delays), self.left()
        if delay > left:
            if self.count > 1:
                error.message += (f" (tried {self.count} times over {self.client.now() - self.started:.0f} s; "
                                  f"{SLURM_RETRY.envvar}={self.client.retry_for:g})")
            return False
        self.client._say(f"[WARNING]: {self.program} failed, which may not happen again ({error}); trying again in "
                         f"{delay:.1f} s ({left:.0f} s left of {SLURM_RETRY.envvar}={self.client.retry_for:g})")
        self.client.sleep(delay)
        self.count += 1
        return True
