"""Every Slurm client command of the launcher goes through :class:`SlurmClient`.

The client is made once per command with the launcher's environment and a
*runner*: the function that actually runs a program (default
:func:`run_command`, i.e. :func:`subprocess.run`). Tests hand in a recording
fake runner instead (``tests/testkit.py``'s ``FakeSlurm``), the way pypa/build
stores one typed subprocess runner and httpx has one transport seam.

Commands are always argument lists, never shell strings, and every call has a
timeout (``NRL_SLURM_TIMEOUT`` seconds, default 120): a hung controller
becomes an error, not a launcher that waits forever.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from nrl_launch.errors import SlurmError, SlurmRejected, SlurmUncertain, SlurmUnreachable, UsageProblem

DEFAULT_TIMEOUT = 120.0
TIMEOUT_VARIABLE = "NRL_SLURM_TIMEOUT"

# sbatch's answer: "Submitted batch job 123" or "... 123 on cluster foo".
_SUBMITTED_RE = re.compile(r"^Submitted batch job (\d+)(?: on cluster \S+)?$", re.MULTILINE)

# How the Slurm client says that there is no Slurm to talk to, and the short
# reason the launcher gives for each. Without a slurm.conf (and no DNS SRV
# record) every command ends with "fatal: Could not establish a configuration
# source" after some "resolve_ctls_from_dns_srv" lines; with a controller that
# is down, "Unable to contact slurm controller (connect failure)".
_UNREACHABLE = (
    (re.compile(r"Could not establish a configuration source|resolve_ctls_from_dns_srv"),
     "no Slurm configuration found (Could not establish a configuration source)"),
    (re.compile(r"Unable to contact slurm controller(?: \([^)\n]*\))?", re.IGNORECASE), None),
    # SLURM_CONF naming a file that is not there (or not readable): after a minute of retries
    (re.compile(r"Unable to process configuration file"),
     "the Slurm configuration cannot be read (Unable to process configuration file)"),
)
LOCAL_CLUSTER_HINT = 'eval "$(tools/local-slurm up | tail -n 1)"'


class Completed(NamedTuple):
    """What a finished command said: exit status and decoded output."""

    returncode: int
    stdout: str
    stderr: str


if TYPE_CHECKING:  # only the type checker needs the protocol class
    from typing import Protocol

    class Runner(Protocol):
        """Runs one command to completion.

        Raises ``FileNotFoundError`` when the program does not exist, another
        ``OSError`` when it cannot be started, and ``TimeoutError`` when it did
        not finish within ``timeout`` seconds (the runner kills it).
        """

        def __call__(self, argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str],
                     timeout: float) -> Completed: ...


def run_command(argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str], timeout: float) -> Completed:
    """The default runner: :func:`subprocess.run`, output captured and decoded.

    Output is decoded leniently: a stray non-UTF-8 byte in Slurm's answer must
    not cost the job id in the same answer.
    """
    import subprocess  # not on the DRYRUN=1 path, which never runs a command

    try:
        proc = subprocess.run(list(argv), cwd=cwd, env=dict(env), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise TimeoutError(f"{argv[0]} did not finish within {timeout:g} s") from e
    return Completed(proc.returncode, _decode(proc.stdout), _decode(proc.stderr))


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


class JobInfo(NamedTuple):
    """What Slurm says about one job."""

    job_id: str
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, NODE_FAIL, ...
    reason: str = ""  # why it is pending or why it ended ("" for none)
    exit_code: str = ""  # "<status>:<signal>" once it ended ("" when unknown)
    nodes: str = ""  # the nodes it ran (or runs) on, Slurm's host list


class SbatchAnswer(NamedTuple):
    """What sbatch said for one accepted submission."""

    job_id: str
    text: str  # sbatch's own line(s), printed verbatim to the user


def parse_timeout(raw: str | None) -> float:
    """``NRL_SLURM_TIMEOUT``: seconds, default 120; anything but a positive
    finite number is a usage problem."""
    if raw is None or not raw.strip():
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError as e:
        raise UsageProblem(f"{TIMEOUT_VARIABLE} must be a number of seconds (got {raw!r})") from e
    if not 0 < value < float("inf"):
        raise UsageProblem(f"{TIMEOUT_VARIABLE} must be a positive number of seconds (got {raw!r})")
    return value


def job_ids(ids: Iterable[object]) -> list[str]:
    """Distinct job ids in the order given; anything that is not one is left out.

    The one filter every Slurm query and every log lookup goes through: a
    manifest edited by hand must not put arbitrary words on a command line.
    """
    return list(dict.fromkeys(text for text in map(str, ids) if text.isascii() and text.isdigit()))


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


def unreachable_reason(proc: Completed) -> str | None:
    """The short reason when a failed command says there is no Slurm to talk to, else None."""
    text = f"{proc.stderr}\n{proc.stdout}"
    for pattern, reason in _UNREACHABLE:
        match = pattern.search(text)
        if match is not None:
            return reason or match.group(0)
    return None


def unreachable_message(reason: str) -> str:
    """The one line the launcher says when it cannot reach Slurm."""
    return f"cannot reach Slurm: {reason}; is SLURM_CONF set? for the local cluster: {LOCAL_CLUSTER_HINT}"


def _reason(proc: Completed) -> str:
    text = proc.stderr.strip() or proc.stdout.strip()
    return text or f"exit status {proc.returncode}"


def _failure(proc: Completed, prefix: str = "", error: type[SlurmError] = SlurmError) -> SlurmError:
    """The error for a failed command: SlurmUnreachable when Slurm is not there
    at all, else ``error`` with Slurm's reason after ``prefix``."""
    reason = unreachable_reason(proc)
    if reason is not None:
        return SlurmUnreachable(unreachable_message(reason))
    return error(prefix + _reason(proc))


SBATCH_EXPORT = "SBATCH_EXPORT"  # sbatch's --export default from the environment; never passed on
_QUERIES = frozenset({"squeue", "sacct", "sinfo"})
_QUERY_DEFAULTS = ("SQUEUE_", "SACCT_", "SINFO_")  # the environment variables they take defaults from


class SlurmClient:
    """The launcher's one way to talk to Slurm (sbatch, squeue, sacct, scontrol).

    ``environ`` is the environment every command runs with; a submission adds
    its job environment on top of it. ``runner`` runs the commands.
    """

    def __init__(self, environ: Mapping[str, str], runner: Runner = run_command,
                 timeout: float | None = None) -> None:
        self.environ: dict[str, str] = dict(environ)
        self.runner = runner
        self.timeout = timeout if timeout is not None else parse_timeout(self.environ.get(TIMEOUT_VARIABLE))

    def _run(self, argv: Sequence[str], *, cwd: str | None = None, job_env: Mapping[str, str] | None = None,
             environ: Mapping[str, str] | None = None) -> Completed:
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
        except FileNotFoundError as e:
            raise SlurmUnreachable(f"{argv[0]} not found on PATH: is the Slurm client installed "
                                   "(or SLURM_CONF set)?") from e
        except TimeoutError as e:
            # Killed at the timeout: whether it acted (queued a job) is unknown.
            raise SlurmUncertain(f"{argv[0]} did not answer within {self.timeout:g} s "
                                 f"(set {TIMEOUT_VARIABLE} to wait longer)") from e
        except OSError as e:
            raise SlurmError(f"could not run {argv[0]}: {e}") from e

    def submit(self, argv: Sequence[str], *, cwd: str, job_env: Mapping[str, str],
               environ: Mapping[str, str] | None = None) -> SbatchAnswer:
        """Queue one job: ``sbatch *argv`` in ``cwd``, ``job_env`` added to the environment
        (``environ`` instead of the client's own, when given: a later run of a chain pins
        what its launch's CONFIG block read)."""
        proc = self._run(["sbatch", *argv], cwd=cwd, job_env=job_env, environ=environ)
        if proc.returncode != 0:
            raise _failure(proc, "sbatch failed: ")
        return parse_answer(proc)

    def test_only(self, argv: Sequence[str], *, cwd: str, job_env: Mapping[str, str]) -> None:
        """Ask Slurm whether it would accept this submission (``sbatch --test-only``)."""
        proc = self._run(["sbatch", "--test-only", *argv], cwd=cwd, job_env=job_env)
        if proc.returncode != 0:
            raise _failure(proc, error=SlurmRejected)

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
        proc = self._run(["squeue", "--me", "-h", "-o", _SQUEUE_FORMAT])
        if proc.returncode != 0:
            raise SlurmError(f"squeue failed: {_reason(proc)}")
        return _squeue_lines(proc.stdout, wanted)

    def cancel(self, ids: Iterable[str]) -> None:
        """``scancel`` these jobs, in one call."""
        wanted = job_ids(ids)
        if not wanted:
            return
        proc = self._run(["scancel", *wanted])
        if proc.returncode != 0:
            raise SlurmError(f"scancel failed: {_reason(proc)}")

    def states(self, ids: Iterable[str]) -> dict[str, str]:
        """Slurm state per job id (see :meth:`jobs`)."""
        return {job_id: info.state for job_id, info in self.jobs(ids).items()}

    def jobs(self, ids: Iterable[str]) -> dict[str, JobInfo]:
        """What Slurm knows of each job: squeue, then sacct, then scontrol for the rest.

        Ids no source knows are left out (callers show "unknown"). Raises
        SlurmError only when the Slurm client cannot be run at all.
        """
        wanted = job_ids(ids)
        if not wanted:
            return {}
        found = self._squeue_jobs(wanted)
        missing = [i for i in wanted if i not in found]
        if missing:
            found.update(self._sacct_jobs(missing))
        for job_id in [i for i in wanted if i not in found]:
            info = self._scontrol_job(job_id)
            if info is not None:
                found[job_id] = info
        return {i: found[i] for i in wanted if i in found}

    def _squeue_jobs(self, ids: list[str]) -> dict[str, JobInfo]:
        proc = self._run(["squeue", "-h", "-o", _SQUEUE_FORMAT, "-j", ",".join(ids)])
        reason = unreachable_reason(proc) if proc.returncode != 0 else None
        if reason is not None:
            raise SlurmUnreachable(unreachable_message(reason))
        if proc.returncode != 0:  # e.g. "Invalid job id specified" for jobs Slurm no longer lists
            return {}
        return _squeue_lines(proc.stdout, set(ids))

    def _sacct_jobs(self, ids: list[str]) -> dict[str, JobInfo]:
        proc = self._run(["sacct", "-n", "-X", "-P", "-o", "JobID,State,ExitCode,NodeList,Reason",
                          "-j", ",".join(ids)])
        if proc.returncode != 0:
            return {}  # accounting disabled or slurmdbd down
        found = {}
        for line in proc.stdout.splitlines():
            fields = line.split("|")
            if len(fields) == 5 and fields[0] in ids and fields[1]:
                # "CANCELLED by 0" -> "CANCELLED"
                found[fields[0]] = JobInfo(fields[0], fields[1].split()[0], _reason_field(fields[4]), fields[2],
                                           _node_field(fields[3]))
        return found

    def _scontrol_job(self, job_id: str) -> JobInfo | None:
        proc = self._run(["scontrol", "show", "job", "-o", job_id])
        if proc.returncode != 0:
            return None
        fields = dict(_SCONTROL_FIELD_RE.findall(proc.stdout))
        if "JobState" not in fields:
            return None
        return JobInfo(job_id, fields["JobState"], _reason_field(fields.get("Reason", "")),
                       fields.get("ExitCode", ""), _node_field(fields.get("NodeList", "")))

    def unhealthy_nodes(self, nodes: str) -> list[str]:
        """The nodes of Slurm's host list ``nodes`` (``node[1-3]``) that ``sinfo`` reports down,
        drained or draining, failing, or not responding; SlurmError when sinfo fails."""
        if not nodes or not HOSTLIST_RE.fullmatch(nodes):
            return []
        proc = self._run(["sinfo", "-h", "-N", "-n", nodes, "-o", "%N|%T"])
        if proc.returncode != 0:
            raise SlurmError(f"sinfo failed: {_reason(proc)}")
        bad: list[str] = []
        for line in proc.stdout.splitlines():
            name, _, state = line.strip().partition("|")
            if name and unhealthy_state(state) and name not in bad:  # one line per node and partition
                bad.append(name)
        return bad


# A Slurm host list: names, ranges in brackets, commas (what %N and NodeList print).
HOSTLIST_RE = re.compile(r"[A-Za-z0-9_.\-\[\],]+")
# sinfo's long node states (%T) in which a node must not get the job again.
_UNHEALTHY_STATES = frozenset({"down", "drain", "drained", "draining", "fail", "failing", "inval", "unknown",
                               "not_responding"})


def unhealthy_state(state: str) -> bool:
    """True for an ``sinfo -o %T`` state of a failed or failing node; a trailing ``*`` means not responding."""
    text = state.strip().lower()
    return text.endswith("*") or text.rstrip("~#%$@^-!").split("+")[0] in _UNHEALTHY_STATES


_SQUEUE_FORMAT = "%i|%T|%r|%N"  # job id, state, reason, nodes


def _squeue_lines(stdout: str, wanted: set[str]) -> dict[str, JobInfo]:
    """The jobs of ``wanted`` in squeue's answer (``_SQUEUE_FORMAT`` lines)."""
    found = {}
    for line in stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 4 and fields[0] in wanted:
            found[fields[0]] = JobInfo(fields[0], fields[1], _reason_field(fields[2]), "", fields[3])
    return found


_SCONTROL_FIELD_RE = re.compile(r"\b(JobState|Reason|ExitCode|NodeList)=(\S*)")


def _reason_field(text: str) -> str:
    return "" if text in ("None", "(null)") else text


def _node_field(text: str) -> str:
    return "" if text in ("None assigned", "(null)", "None") else text
