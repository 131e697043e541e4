"""One model of Slurm for unit tests, run in process or on PATH.

:class:`FakeSlurm` models the queue (jobs, their states) and the answers of
sbatch, squeue, sacct, scontrol, sinfo and scancel. In process it is a runner
for :class:`nrl_launch.slurm.client.SlurmClient` (``run_cli(…, slurm=fake)``);
on PATH (:class:`SlurmOnPath`, for real processes such as the ``tools/launch``
shim and ``continue.sh``) ``tests/unit/fakes/fake_slurm.py`` runs the same
model, its state kept in a file and its knobs read from ``FAKE_*`` variables.

This module imports nothing of the kit and, at import, only the launcher's
light ``slurm.runner``: the on-PATH script loads it on every call.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nrl_launch.slurm.runner import Completed

if TYPE_CHECKING:
    from nrl_launch.slurm.client import SlurmClient

FAKES = Path(__file__).resolve().parents[1] / "unit" / "fakes"
PROGRAMS = ("sbatch", "squeue", "sacct", "scontrol", "sinfo", "scancel")


@dataclass(frozen=True)
class Call:
    """One command the client ran through :class:`FakeSlurm`."""

    argv: tuple[str, ...]
    cwd: str | None
    env: dict[str, str]
    timeout: float = 0.0  # the seconds the client let the command take
    executable: str | None = None  # the program the client found on its own PATH, when it gave one


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

    def option(self, name: str) -> str:
        """The value of sbatch option ``--<name>=…`` of the job ("" without it)."""
        prefix = f"--{name}="
        return next((word[len(prefix):] for word in self.argv if word.startswith(prefix)), "")

    def name(self) -> str:
        """The job's name (``--job-name``)."""
        return self.option("job-name")

    def stdout(self) -> str:
        """The job's --output path as squeue shows it (``%j`` not expanded), absolute."""
        output = self.option("output") or "slurm-%j.out"
        return output if output.startswith("/") else f"{self.cwd.rstrip('/')}/{output}"


QUEUED_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")
NO_CONTROLLER = "error: Unable to contact slurm controller (connect failure)"
INVALID_ACCOUNT = "Batch job submission failed: Invalid account or account/partition combination specified"
REPLY_LOST = "Batch job submission failed: Socket timed out on send/recv operation"


@dataclass
class FakeSlurm:
    """A model of Slurm that records every call and answers like Slurm.

    Submitted jobs get ids 1001, 1002, … and stay PENDING until the test
    changes their state (:meth:`finish`) or ``on_poll`` does. Knobs:
    ``reject`` (test-only refuses with that reason), ``down`` (every command
    fails as with no controller), ``squeue_down`` (the first N squeue calls
    do), ``squeue_flaky`` (the first N squeue calls lose their reply: "Socket
    timed out"), ``fail_at`` / ``garbage_at`` (the N-th real submission fails, or
    exits 0 without a job id), ``flaky_every`` (every N-th sbatch call, test-only
    ones included, fails with a lost reply -- the 1st, 3rd, 5th… of those real
    submissions after queueing the job, as a controller that accepted it),
    ``noise`` (every real submission also prints a line with non-UTF-8 bytes),
    ``id_on_stderr`` (sbatch says its job id on stderr, as some site wrappers),
    ``accounting`` (sacct answers instead of failing), ``answers`` (per program,
    a function returning a :class:`Completed` to answer instead),
    ``on_submit(job)`` and ``on_poll(fake)`` hooks (e.g. write a driver log,
    finish jobs after some polls), ``node_states`` (sinfo's %T per node;
    absent: idle), ``first_id`` (the first job id).

    Time is virtual: a client made by :meth:`client` (or ``run_cli(…,
    slurm=fake)``) waits between its tries with :meth:`sleep`, which only
    advances :attr:`clock` and records the delay in :attr:`slept`.
    """

    reject: str | None = None
    down: bool = False
    squeue_down: int = 0
    squeue_flaky: int = 0
    fail_at: int = 0
    flaky_every: int = 0
    garbage_at: int = 0
    noise: bool = False
    id_on_stderr: bool = False
    accounting: bool = False
    answers: dict[str, Callable[[Call], Completed]] = field(default_factory=dict)
    on_submit: Callable[[FakeJob], None] | None = None
    on_poll: Callable[[FakeSlurm], None] | None = None
    calls: list[Call] = field(default_factory=list)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    node_states: dict[str, str] = field(default_factory=dict)
    attempts: int = 0  # real submissions tried
    squeue_calls: int = 0
    sbatch_calls: int = 0  # test-only ones included
    flaky_failures: int = 0  # sbatch calls that lost their reply (flaky_every)
    first_id: int = 1001
    clock: float = 0.0  # virtual seconds (see sleep)
    slept: list[float] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def __call__(self, argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str],
                 timeout: float, executable: str | None = None) -> Completed:
        with self._lock:  # a parallel launch calls it from several threads: one call at a time, as a controller
            return self._answer(argv, cwd=cwd, env=env, timeout=timeout, executable=executable)

    def _answer(self, argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str], timeout: float,
                executable: str | None) -> Completed:
        call = Call(tuple(argv), cwd, dict(env), timeout, executable)
        self.calls.append(call)
        program = call.argv[0]
        if program in self.answers:
            return self.answers[program](call)
        if program == "squeue":
            self.squeue_calls += 1
        if self.down or (program == "squeue" and self.squeue_calls <= self.squeue_down):
            return Completed(1, "", f"{program}: {NO_CONTROLLER}\n")
        if program == "squeue" and self.squeue_calls <= self.squeue_down + self.squeue_flaky:
            return Completed(1, "", "squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation\n")
        handler = getattr(self, f"_{program}", None)
        if handler is None:
            raise FileNotFoundError(program)
        result: Completed = handler(call)
        return result

    def sleep(self, seconds: float) -> None:
        """The client's wait between tries: virtual (advances :attr:`clock`)."""
        self.slept.append(seconds)
        self.clock += seconds

    def now(self) -> float:
        """The virtual clock."""
        return self.clock

    def client(self, environ: Mapping[str, str] | None = None, timeout: float = 5.0, **options: Any) -> SlurmClient:
        """A client that runs its commands through this fake (on its virtual clock)."""
        from nrl_launch.slurm.client import SlurmClient

        return SlurmClient(dict(os.environ if environ is None else environ), self, timeout=timeout,
                           **{"sleep": self.sleep, "now": self.now, **options})

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

    # ---- the state between the calls of the on-PATH commands

    def state(self) -> dict[str, Any]:
        """The queue as JSON data (jobs without their environment: calls.jsonl has it)."""
        jobs = [{**asdict(job), "env": {}} for job in self.jobs.values()]
        return {"jobs": jobs, "attempts": self.attempts, "squeue_calls": self.squeue_calls,
                "sbatch_calls": self.sbatch_calls, "flaky_failures": self.flaky_failures}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back a queue saved by :meth:`state`."""
        self.jobs = {job["job_id"]: FakeJob(**{**job, "argv": tuple(job["argv"])}) for job in state.get("jobs", [])}
        self.attempts = state.get("attempts", 0)
        self.squeue_calls = state.get("squeue_calls", 0)
        self.sbatch_calls = state.get("sbatch_calls", 0)
        self.flaky_failures = state.get("flaky_failures", 0)

    # ---- the commands

    def _sbatch(self, call: Call) -> Completed:
        self.sbatch_calls += 1
        flaky = bool(self.flaky_every) and self.sbatch_calls % self.flaky_every == 0
        lost = Completed(1, "", f"sbatch: error: {REPLY_LOST}\n")
        if call.argv[1] == "--test-only":
            if flaky:
                return lost
            if self.reject:
                return Completed(1, "", f"sbatch: error: {self.reject}\n")
            return Completed(0, "", "sbatch: Job 999 to start at 2026-01-01T00:00:00 using 8 processors\n")
        self.attempts += 1
        if self.attempts == self.fail_at:
            return Completed(1, "", f"sbatch: error: {INVALID_ACCOUNT}\n")
        if flaky:
            self.flaky_failures += 1
            if self.flaky_failures % 2 == 0:
                return lost  # the request never reached the controller
        noise = "sbatch: warning: \udcff\udcfe not UTF-8\n" if self.noise else ""  # the bytes ff fe
        if self.attempts == self.garbage_at:
            return Completed(0, f"{noise}sbatch: something unexpected\n", "")
        job = FakeJob(str(self.first_id + len(self.jobs)), call.argv[1:], call.cwd or "", call.env)
        self.jobs[job.job_id] = job
        if self.on_submit is not None:
            self.on_submit(job)
        if flaky:
            return lost  # queued, but the controller's reply was lost
        answer = f"Submitted batch job {job.job_id}\n"
        return Completed(0, noise, answer) if self.id_on_stderr else Completed(0, noise + answer, "")

    def _squeue(self, call: Call) -> Completed:
        if self.on_poll is not None:
            self.on_poll(self)
        listed = list(self.jobs.values())
        if "-t" not in call.argv or call.argv[call.argv.index("-t") + 1] != "all":
            listed = [job for job in listed if job.state in QUEUED_STATES]
        if "-j" in call.argv:
            wanted = call.argv[call.argv.index("-j") + 1].split(",")
            listed = [job for job in listed if job.job_id in wanted]
        if "-n" in call.argv:
            listed = [job for job in listed if job.name() in call.argv[call.argv.index("-n") + 1].split(",")]
        if "-O" in call.argv:  # JobID, [Name,] StdOut: the fields the client asks for
            named = "Name" in call.argv[call.argv.index("-O") + 1]
            return Completed(0, "".join(f"{j.job_id}|{j.name() + '|' if named else ''}{j.stdout()}\n"
                                        for j in listed), "")
        return Completed(0, "".join(f"{j.job_id}|{j.state}|{j.reason}|{j.nodes}\n" for j in listed), "")

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
        if call.argv[1:] == ("show", "job", "-o"):  # every job the controller holds
            return Completed(0, "".join(self._scontrol_line(job) for job in self.jobs.values()), "")
        job = self.jobs.get(call.argv[-1])
        if job is None:
            return Completed(1, "", "slurm_load_jobs error: Invalid job id specified\n")
        return Completed(0, self._scontrol_line(job), "")

    @staticmethod
    def _scontrol_line(job: FakeJob) -> str:
        return (f"JobId={job.job_id} JobName={job.name() or 'x'} JobState={job.state} Reason={job.reason} "
                f"ExitCode={job.exit_code} NodeList={job.nodes or '(null)'}\n")

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
            log = Path(job.cwd) / f"{job.job_id}-logs" / "ray-driver.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(texts[job.job_id])

    return hook


# ---------------------------------------------------------------- Slurm, on PATH


@dataclass
class SlurmOnPath:
    """``tests/unit/fakes/fake_slurm.py`` first on PATH under the name of every Slurm command."""

    state: Path
    bin: Path

    @classmethod
    def install(cls, state: Path) -> SlurmOnPath:
        """Make the folder of fake commands under ``state`` (the caller puts ``bin`` on PATH)."""
        bindir = state / "bin"
        bindir.mkdir(parents=True)
        for prog in PROGRAMS:
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




# ---------------------------------------------------------------- one call of an on-PATH command

# The knobs of the on-PATH commands, FAKE_* variables of the caller's environment:
#   FAKE_SBATCH_REJECT="why"   sbatch --test-only rejects every request (reject)
#   FAKE_SBATCH_FAIL_AT=N      the N-th real submission fails, exit 1 (fail_at)
#   FAKE_SBATCH_GARBAGE_AT=N   the N-th real submission exits 0 without a job id (garbage_at)
#   FAKE_SBATCH_FLAKY_EVERY=N  every N-th sbatch call loses its reply, half of them after queueing (flaky_every)
#   FAKE_SBATCH_KILL_CALLER_AT=N  the N-th real submission queues its job, then SIGKILLs its caller (the
#                              launcher) before answering: a launch killed between sbatch's answer and its record
#   FAKE_SBATCH_NOISE=1        every real submission also prints non-UTF-8 bytes (noise)
#   FAKE_SBATCH_ID_ON_STDERR=1 "Submitted batch job N" on stderr (id_on_stderr)
#   FAKE_SLURM_DOWN=1          every command fails as with no controller (down)
#   FAKE_SQUEUE_DOWN=N         the first N squeue calls do (squeue_down)
#   FAKE_SQUEUE_POLLS=N        jobs stay queued for N squeue calls, then end COMPLETED (default 0:
#                              a job has ended by the first look)
#   FAKE_JOB_STATES="1001=RUNNING,1002=COMPLETED"   these jobs are in these states (no POLLS then)
#   FAKE_DRIVER_LOG_<job id>="text"   the job "runs": its <cwd>/<id>-logs/ray-driver.log holds text


def on_path_model(env: Mapping[str, str]) -> FakeSlurm:
    """The model as the on-PATH commands configure it from ``env`` (its queue restored separately)."""
    def number(name: str) -> int:
        return int(env.get(name) or 0)

    fake = FakeSlurm(reject=env.get("FAKE_SBATCH_REJECT") or None, down=bool(env.get("FAKE_SLURM_DOWN")),
                     squeue_down=number("FAKE_SQUEUE_DOWN"), fail_at=number("FAKE_SBATCH_FAIL_AT"),
                     garbage_at=number("FAKE_SBATCH_GARBAGE_AT"), noise=bool(env.get("FAKE_SBATCH_NOISE")),
                     flaky_every=number("FAKE_SBATCH_FLAKY_EVERY"),
                     id_on_stderr=bool(env.get("FAKE_SBATCH_ID_ON_STDERR")))
    prefix = "FAKE_DRIVER_LOG_"
    fake.on_submit = driver_log({name[len(prefix):]: text for name, text in env.items() if name.startswith(prefix)})
    states = dict(item.split("=", 1) for item in env.get("FAKE_JOB_STATES", "").split(",") if "=" in item)
    if states:
        fake.on_poll = lambda model: _set_states(model, states)
    else:
        polls = number("FAKE_SQUEUE_POLLS")
        fake.on_poll = lambda model: model.finish() if model.squeue_calls - model.squeue_down > polls else None
    return fake


def _set_states(fake: FakeSlurm, states: Mapping[str, str]) -> None:
    for job_id, state in states.items():
        fake.jobs.setdefault(job_id, FakeJob(job_id, (), "", {})).state = state


def serve_on_path(program: str, args: list[str], state_dir: Path) -> int:
    """Answer one call of an on-PATH command with the model, the queue kept in
    ``state_dir/queue.json``: record the call, print the answer, return the exit status.
    Calls may run at once (concurrent launches): the state changes under one lock."""
    import fcntl
    import sys

    entry: dict[str, Any] = {"prog": program, "argv": args, "cwd": os.getcwd(), "env": dict(os.environ)}
    if program == "sbatch" and args and os.path.isfile(args[-1]):
        entry["script"] = Path(args[-1]).read_text(errors="surrogateescape")
    fake = on_path_model(os.environ)
    with open(state_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(state_dir / "calls.jsonl", "a") as log:
            # argv and the environment bytes-faithful: a non-UTF-8 byte is kept as its surrogate escape
            log.write(json.dumps(entry) + "\n")
        queue = state_dir / "queue.json"
        fake.restore(json.loads(queue.read_text()) if queue.exists() else {})
        try:
            answer = fake([program, *args], cwd=os.getcwd(), env=dict(os.environ), timeout=0)
        except FileNotFoundError:
            answer = Completed(127, "", f"{program}: not modelled by the fake Slurm\n")
        queue.write_text(json.dumps(fake.state()))
        kill_at = int(os.environ.get("FAKE_SBATCH_KILL_CALLER_AT") or 0)
        if program == "sbatch" and args[:1] != ["--test-only"] and fake.attempts == kill_at:
            import signal

            os.kill(os.getppid(), signal.SIGKILL)
            return 1
    for stream, text in ((sys.stdout, answer.stdout), (sys.stderr, answer.stderr)):
        stream.flush()
        stream.buffer.write(text.encode("utf-8", "surrogateescape"))
        stream.buffer.flush()
    return answer.returncode
