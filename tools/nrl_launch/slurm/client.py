"""Every Slurm client command of the launcher goes through :class:`SlurmClient`.

The client is made once per command with the launcher's environment and a
*runner* (``runner.py``): the function that actually runs a program. Commands
are always argument lists, never shell strings, and every call has a timeout
(``NRL_SLURM_TIMEOUT`` seconds, default in ``settings.py``): a hung controller
becomes an error, not a launcher that waits forever. Every failure goes through
:func:`nrl_launch.slurm.failures.failure`, which classifies it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from nrl_launch.errors import SlurmError, SlurmUncertain, SlurmUnreachable
from nrl_launch.settings import SLURM_TIMEOUT
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
    parse_scontrol_span,
    parse_sinfo,
    parse_spans,
    parse_squeue,
    unhealthy_state,
)

if TYPE_CHECKING:
    from nrl_launch.slurm.runner import Runner

# What callers of the client use, from the modules that hold it.
__all__ = ["SBATCH_EXPORT", "Completed", "JobInfo", "JobSpan", "Runner", "SbatchAnswer", "SlurmClient", "job_ids",
           "parse_answer", "run_command", "unhealthy_state"]

# sbatch's answer: "Submitted batch job 123" or "... 123 on cluster foo".
_SUBMITTED_RE = re.compile(r"^Submitted batch job (\d+)(?: on cluster \S+)?$", re.MULTILINE)


class SbatchAnswer(NamedTuple):
    """What sbatch said for one accepted submission."""

    job_id: str
    text: str  # sbatch's own line(s), printed verbatim to the user


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


class SlurmClient:
    """The launcher's one way to talk to Slurm (sbatch, squeue, sacct, scontrol, sinfo, scancel).

    ``environ`` is the environment every command runs with; a submission adds
    its job environment on top of it. ``runner`` runs the commands; ``timeout``
    (seconds) defaults to ``NRL_SLURM_TIMEOUT`` of ``environ``.
    """

    def __init__(self, environ: Mapping[str, str], runner: Runner = run_command,
                 timeout: float | None = None) -> None:
        self.environ: dict[str, str] = dict(environ)
        self.runner = runner
        self.timeout = timeout if timeout is not None else SLURM_TIMEOUT.of(self.environ)

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
        try:
            return self.runner(list(argv), cwd=cwd, env=env, timeout=self.timeout)
        except OSError as e:  # not found, not startable, or killed at the timeout
            raise failure(argv, e, self.timeout) from e

    def _succeed(self, argv: Sequence[str], *, cwd: str | None = None, job_env: Mapping[str, str] | None = None,
                 environ: Mapping[str, str] | None = None) -> Completed:
        """Run one command that must succeed: its answer, or its failure classified."""
        proc = self._run(argv, cwd=cwd, job_env=job_env, environ=environ)
        if proc.returncode != 0:
            raise failure(argv, proc, self.timeout)
        return proc

    def _ask(self, argv: Sequence[str]) -> Completed | None:
        """Run one job query: its answer, or None when it failed (the jobs are unknown to it);
        SlurmUnreachable when there is no Slurm to ask at all."""
        proc = self._run(argv)
        if proc.returncode == 0:
            return proc
        error = failure(argv, proc, self.timeout)
        if isinstance(error, SlurmUnreachable):
            raise error
        return None  # e.g. "Invalid job id specified" for jobs Slurm no longer lists, accounting disabled

    def submit(self, argv: Sequence[str], *, cwd: str, job_env: Mapping[str, str],
               environ: Mapping[str, str] | None = None) -> SbatchAnswer:
        """Queue one job: ``sbatch *argv`` in ``cwd``, ``job_env`` added to the environment
        (``environ`` instead of the client's own, when given: a later run of a chain pins
        what its launch's CONFIG block read)."""
        return parse_answer(self._succeed(["sbatch", *argv], cwd=cwd, job_env=job_env, environ=environ))

    def test_only(self, argv: Sequence[str], *, cwd: str, job_env: Mapping[str, str]) -> None:
        """Ask Slurm whether it would accept this submission (``sbatch --test-only``);
        SlurmRejected when it would not."""
        self._succeed(["sbatch", "--test-only", *argv], cwd=cwd, job_env=job_env)

    def reachable(self) -> bool:
        """True when the Slurm client is installed and ``scontrol ping`` finds a controller."""
        from shutil import which

        if which("sbatch", path=self.environ.get("PATH")) is None:
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
        squeue call; SlurmError when it fails (never "finished" by mistake).
        """
        wanted = set(job_ids(ids))
        if not wanted:
            return {}
        proc = self._succeed(["squeue", "--me", "-h", "-o", SQUEUE_FORMAT])
        return parse_squeue(proc.stdout, wanted)

    def cancel(self, ids: Iterable[str]) -> None:
        """``scancel`` these jobs, in one call."""
        wanted = job_ids(ids)
        if wanted:
            self._succeed(["scancel", *wanted])

    def states(self, ids: Iterable[str]) -> dict[str, str]:
        """Slurm state per job id (see :meth:`jobs`)."""
        return {job_id: info.state for job_id, info in self.jobs(ids).items()}

    def jobs(self, ids: Iterable[str]) -> dict[str, JobInfo]:
        """What Slurm knows of each job: squeue, then sacct, then scontrol for the rest.

        Ids no source knows are left out (callers show "unknown"). Raises
        SlurmError only when there is no Slurm to ask.
        """
        wanted = job_ids(ids)
        if not wanted:
            return {}
        listed = ",".join(wanted)
        proc = self._ask(["squeue", "-h", "-o", SQUEUE_FORMAT, "-j", listed])
        found = parse_squeue(proc.stdout, set(wanted)) if proc else {}
        missing = [i for i in wanted if i not in found]
        if missing:
            proc = self._ask(["sacct", "-n", "-X", "-P", "-o", SACCT_FIELDS, "-j", ",".join(missing)])
            found.update(parse_sacct(proc.stdout, missing) if proc else {})  # no accounting: nothing
        for job_id in [i for i in wanted if i not in found]:
            proc = self._ask(["scontrol", "show", "job", "-o", job_id])
            info = parse_scontrol(job_id, proc.stdout) if proc else None
            if info is not None:
                found[job_id] = info
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
