"""Every Slurm client subprocess of the launcher lives here.

Commands are always argument lists (never ``shell=True``), and every function
takes the ``runner`` as a parameter (default :func:`subprocess.run`) so tests
can hand in a fake, the way pypa/build does.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from nrl_launch.errors import SlurmError

Runner = Callable[..., "subprocess.CompletedProcess[str]"]

# sbatch's answer: "Submitted batch job 123" or "... 123 on cluster foo".
_SUBMITTED_RE = re.compile(r"^Submitted batch job (\d+)(?: on cluster \S+)?$", re.MULTILINE)


@dataclass(frozen=True)
class SbatchAnswer:
    """What sbatch said for one accepted submission."""

    job_id: str
    stdout: str  # sbatch's own line(s), printed verbatim to the user


def _run(runner: Runner | None, argv: Sequence[str], *, cwd: str | None = None,
         env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    runner = runner or subprocess.run
    try:
        return runner(list(argv), cwd=cwd, env=None if env is None else dict(env), capture_output=True, text=True,
                      check=False)
    except FileNotFoundError as e:
        raise SlurmError(f"{argv[0]} not found on PATH: is the Slurm client installed (or SLURM_CONF set)?") from e
    except OSError as e:
        raise SlurmError(f"could not run {argv[0]}: {e}") from e


def parse_job_id(stdout: str) -> str:
    """Extract the job id from sbatch's answer; SlurmError when there is none."""
    match = _SUBMITTED_RE.search(stdout)
    if match is None:
        raise SlurmError(f"sbatch answered without a job id: {stdout.strip()!r}")
    return match.group(1)


def _reason(proc: subprocess.CompletedProcess[str]) -> str:
    text = (proc.stderr or "").strip() or (proc.stdout or "").strip()
    return text or f"exit status {proc.returncode}"


def sbatch(argv: Sequence[str], *, cwd: str, env: Mapping[str, str], runner: Runner | None = None) -> SbatchAnswer:
    """Submit one job: ``sbatch *argv`` in ``cwd`` with environment ``env``."""
    proc = _run(runner, ["sbatch", *argv], cwd=cwd, env=env)
    if proc.returncode != 0:
        raise SlurmError(f"sbatch failed: {_reason(proc)}")
    return SbatchAnswer(job_id=parse_job_id(proc.stdout or ""), stdout=(proc.stdout or "").rstrip("\n"))


def sbatch_test_only(argv: Sequence[str], *, cwd: str, env: Mapping[str, str], runner: Runner | None = None) -> None:
    """Ask Slurm whether it would accept this submission (``sbatch --test-only``)."""
    proc = _run(runner, ["sbatch", "--test-only", *argv], cwd=cwd, env=env)
    if proc.returncode != 0:
        raise SlurmError(_reason(proc))


def controller_reachable(environ: Mapping[str, str], *, runner: Runner | None = None) -> bool:
    """True when the Slurm client is installed and ``scontrol ping`` finds a controller."""
    from shutil import which

    if which("sbatch", path=environ.get("PATH")) is None:
        return False
    try:
        return _run(runner, ["scontrol", "ping"], env=environ).returncode == 0
    except SlurmError:
        return False


def queued_job_ids(job_ids: Iterable[str], *, runner: Runner | None = None) -> set[str]:
    """The subset of ``job_ids`` still in the queue (pending or running)."""
    ids = sorted({str(i) for i in job_ids if str(i).isdigit()}, key=int)  # ids only
    if not ids:
        return set()
    proc = _run(runner, ["squeue", "--me", "-h", "-o", "%i"])
    if proc.returncode != 0:
        raise SlurmError(f"squeue failed: {_reason(proc)}")
    return {line.strip() for line in (proc.stdout or "").splitlines()} & set(ids)


def _squeue_states(ids: list[str], runner: Runner | None) -> dict[str, str]:
    proc = _run(runner, ["squeue", "-h", "-o", "%i %T", "-j", ",".join(ids)])
    if proc.returncode != 0:
        return {}
    return dict(line.split(None, 1) for line in proc.stdout.splitlines() if len(line.split(None, 1)) == 2)


def _sacct_states(ids: list[str], runner: Runner | None) -> dict[str, str]:
    proc = _run(runner, ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)])
    if proc.returncode != 0:
        return {}  # accounting disabled or slurmdbd down
    states = {}
    for line in proc.stdout.splitlines():
        job, _, state = line.partition("|")
        if job in ids and state:
            states[job] = state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    return states


def _scontrol_state(job_id: str, runner: Runner | None) -> str | None:
    proc = _run(runner, ["scontrol", "show", "job", "-o", job_id])
    match = re.search(r"\bJobState=(\S+)", proc.stdout or "") if proc.returncode == 0 else None
    return match.group(1) if match else None


def job_states(job_ids: Iterable[str], *, runner: Runner | None = None) -> dict[str, str]:
    """Slurm state per job id: squeue, then sacct, then scontrol for the rest.

    Ids no source knows are left out (callers show "unknown"). Raises
    SlurmError only when the Slurm client cannot be run at all.
    """
    ids = sorted({str(i) for i in job_ids if str(i).isdigit()}, key=int)  # ids only
    if not ids:
        return {}
    states = _squeue_states(ids, runner)
    missing = [i for i in ids if i not in states]
    if missing:
        states.update(_sacct_states(missing, runner))
    for job_id in [i for i in ids if i not in states]:
        state = _scontrol_state(job_id, runner)
        if state:
            states[job_id] = state
    return states
