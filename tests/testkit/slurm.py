"""Fake Slurms: in process (a runner for SlurmClient) and on PATH (for real processes)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrl_launch.slurm.client import Completed, SlurmClient
from testkit.repos import write

FAKES = Path(__file__).resolve().parents[1] / "unit" / "fakes"


# ---------------------------------------------------------------- Slurm, in process


@dataclass(frozen=True)
class Call:
    """One command the client ran through :class:`FakeSlurm`."""

    argv: tuple[str, ...]
    cwd: str | None
    env: dict[str, str]


@dataclass
class FakeJob:
    """A job :class:`FakeSlurm` accepted."""

    job_id: str
    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    state: str = "PENDING"
    reason: str = "None"
    exit_code: str = "0:0"
    nodes: str = ""


QUEUED_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")


@dataclass
class FakeSlurm:
    """A runner for :class:`SlurmClient` that records calls and answers like Slurm.

    Submitted jobs get ids 1001, 1002, … and stay PENDING until the test
    changes their state (:meth:`finish`) or ``on_poll`` does. Knobs:
    ``reject`` (test-only refuses with that reason), ``down`` (every command
    fails as with no controller), ``answers`` (per program, a function
    returning a :class:`Completed` to answer instead), ``accounting`` (sacct
    answers instead of failing), ``on_submit(job)`` and ``on_poll(fake)``
    hooks (e.g. write a driver log, finish jobs after some polls).
    """

    reject: str | None = None
    down: bool = False
    accounting: bool = False
    answers: dict[str, Callable[[Call], Completed]] = field(default_factory=dict)
    on_submit: Callable[[FakeJob], None] | None = None
    on_poll: Callable[[FakeSlurm], None] | None = None
    calls: list[Call] = field(default_factory=list)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    node_states: dict[str, str] = field(default_factory=dict)  # sinfo's %T per node; absent: idle

    def __call__(self, argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str],
                 timeout: float) -> Completed:
        call = Call(tuple(argv), cwd, dict(env))
        self.calls.append(call)
        program = call.argv[0]
        if program in self.answers:
            return self.answers[program](call)
        if self.down:
            return Completed(1, "", f"{program}: error: Unable to contact slurm controller (connect failure)\n")
        handler = getattr(self, f"_{program}", None)
        if handler is None:
            raise FileNotFoundError(program)
        result: Completed = handler(call)
        return result

    def client(self, environ: Mapping[str, str] | None = None, timeout: float = 5.0) -> SlurmClient:
        """A client that runs its commands through this fake."""
        return SlurmClient(dict(os.environ if environ is None else environ), self, timeout=timeout)

    # ---- what the test looks at

    def programs(self) -> list[str]:
        """The programs called, in order (``sbatch --test-only`` as ``sbatch-test``)."""
        return ["sbatch-test" if c.argv[:2] == ("sbatch", "--test-only") else c.argv[0] for c in self.calls]

    def submissions(self) -> list[FakeJob]:
        """The jobs queued, in submission order."""
        return list(self.jobs.values())

    def add_job(self, job_id: str, state: str, **details: str) -> None:
        """A job submitted earlier (e.g. by another launch), now in ``state``."""
        self.jobs[job_id] = FakeJob(job_id, (), "", {}, state, **details)

    def finish(self, *ids: str, state: str = "COMPLETED", exit_code: str = "0:0", nodes: str = "n1") -> None:
        """Make these jobs (all, without ids) leave the queue with ``state``."""
        for job_id in ids or list(self.jobs):
            job = self.jobs[job_id]
            job.state, job.exit_code, job.nodes = state, exit_code, nodes

    # ---- the commands

    def _sbatch(self, call: Call) -> Completed:
        if call.argv[1] == "--test-only":
            if self.reject:
                return Completed(1, "", f"sbatch: error: {self.reject}\n")
            return Completed(0, "", "sbatch: Job 999 to start at 2026-01-01T00:00:00 using 8 processors\n")
        job = FakeJob(str(1001 + len(self.jobs)), call.argv[1:], call.cwd or "", call.env)
        self.jobs[job.job_id] = job
        if self.on_submit is not None:
            self.on_submit(job)
        return Completed(0, f"Submitted batch job {job.job_id}\n", "")

    def _squeue(self, call: Call) -> Completed:
        if self.on_poll is not None:
            self.on_poll(self)
        queued = [job for job in self.jobs.values() if job.state in QUEUED_STATES]
        if "-j" in call.argv:
            wanted = call.argv[call.argv.index("-j") + 1].split(",")
            queued = [job for job in queued if job.job_id in wanted]
        return Completed(0, "".join(f"{j.job_id}|{j.state}|{j.reason}|{j.nodes}\n" for j in queued), "")

    def _sacct(self, call: Call) -> Completed:
        if not self.accounting:
            return Completed(1, "", "sacct: error: Slurm accounting storage is disabled\n")
        wanted = call.argv[call.argv.index("-j") + 1].split(",")
        jobs = [self.jobs[i] for i in wanted if i in self.jobs]
        return Completed(0, "".join(f"{j.job_id}|{j.state}|{j.exit_code}|{j.nodes or 'None assigned'}|{j.reason}\n"
                                    for j in jobs), "")

    def _scontrol(self, call: Call) -> Completed:
        if call.argv[1:] == ("ping",):
            return Completed(0, "Slurmctld(primary) at fake is UP\n", "")
        job = self.jobs.get(call.argv[-1])
        if job is None:
            return Completed(1, "", "slurm_load_jobs error: Invalid job id specified\n")
        return Completed(0, f"JobId={job.job_id} JobName=x JobState={job.state} Reason={job.reason} "
                            f"ExitCode={job.exit_code} NodeList={job.nodes or '(null)'}\n", "")

    def _sinfo(self, call: Call) -> Completed:
        names = expand_hostlist(call.argv[call.argv.index("-n") + 1]) if "-n" in call.argv else list(self.node_states)
        return Completed(0, "".join(f"{name}|{self.node_states.get(name, 'idle')}\n" for name in names), "")

    def _scancel(self, call: Call) -> Completed:
        for job_id in call.argv[1:]:
            if job_id in self.jobs and self.jobs[job_id].state in QUEUED_STATES:
                self.jobs[job_id].state = "CANCELLED"
        return Completed(0, "", "")


def expand_hostlist(hostlist: str) -> list[str]:
    """Slurm's ``n[1-3],m7`` as names, for the fake's sinfo (one bracket per name, as Slurm prints them)."""
    names: list[str] = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", hostlist):
        if plain:
            names.append(plain)
            continue
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            names += [f"{prefix}{str(i).zfill(len(first))}" for i in range(int(first), int(last or first) + 1)]
    return names


def finish_after(polls: int, state: str = "COMPLETED") -> Callable[[FakeSlurm], None]:
    """An ``on_poll`` hook: every job leaves the queue with ``state`` at poll ``polls + 1``."""
    seen = [0]

    def hook(fake: FakeSlurm) -> None:
        seen[0] += 1
        if seen[0] > polls:
            fake.finish(state=state)

    return hook


def driver_log(texts: Mapping[str, str]) -> Callable[[FakeJob], None]:
    """An ``on_submit`` hook: the job with id ``i`` "runs" and leaves
    ``<cwd>/<i>-logs/ray-driver.log`` holding ``texts[i]``."""
    def hook(job: FakeJob) -> None:
        if job.job_id in texts:
            write(Path(job.cwd) / f"{job.job_id}-logs" / "ray-driver.log", texts[job.job_id])

    return hook


# ---------------------------------------------------------------- Slurm, on PATH


@dataclass
class SlurmOnPath:
    """``tests/unit/fakes/fake_slurm.py`` first on PATH as sbatch, squeue, sacct and scontrol."""

    state: Path
    bin: Path

    @classmethod
    def install(cls, state: Path) -> SlurmOnPath:
        """Make the folder of fake commands under ``state`` (the caller puts ``bin`` on PATH)."""
        bindir = state / "bin"
        bindir.mkdir(parents=True)
        for prog in ("sbatch", "squeue", "sacct", "scontrol", "scancel"):
            (bindir / prog).symlink_to(FAKES / "fake_slurm.py")
        return cls(state, bindir)

    def calls(self, prog: str | None = None) -> list[dict[str, Any]]:
        """Every recorded call (of ``prog``), in order."""
        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return [e for e in entries if prog is None or e["prog"] == prog]

    def submissions(self) -> list[dict[str, Any]]:
        """Real sbatch calls (not --test-only)."""
        return [c for c in self.calls("sbatch") if "--test-only" not in c["argv"]]


