"""The one test kit: real git repositories, recipe builders and fake Slurms.

Shared by tests/unit and tests/integration (``tests`` is on sys.path through
setup.cfg); the conftest files only turn these into fixtures.

Two fake Slurms, for two levels:

* :class:`FakeSlurm` is a *runner* for :class:`nrl_launch.slurm.SlurmClient`
  (the launcher's one Slurm seam): in process, recording every call, with a
  small model of a queue. Library and CLI unit tests use it
  (``CliRunner().invoke(main, …, obj=CliContext(fake))``).
* :class:`SlurmOnPath` puts ``tests/unit/fakes/fake_slurm.py`` first on
  ``PATH`` under the names of the Slurm commands, for tests that run real
  processes (the ``tools/launch`` shim, ``continue.sh``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from nrl_launch.slurm import Completed, SlurmClient

REPO = Path(__file__).resolve().parents[1]
FAKES = Path(__file__).resolve().parent / "unit" / "fakes"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,  # a developer's ~/.gitconfig (gpgsign, hooks) must not matter
}

# The launcher's required variables, as a test launch sets them.
BASE_ENV = {
    "CONTAINER": "nvcr.io/nvidia/nemo-rl:test",
    "ACCOUNT": "acct",
    "PARTITION": "batch",
    "HF_HOME": "/hf",
    "HF_DATASETS_CACHE": "/hf/datasets",
}

# A CONFIG block body: 1 node, 2 runs of 240 minutes.
CONFIG_1N = """\
NUM_NODES=1
STEPS_PER_RUN=60
MAX_STEPS=120
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=240
"""


# ---------------------------------------------------------------- files and git


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (fixed identity, file:// submodules allowed); return its stdout."""
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(["git", "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout


def write(path: Path, text: str, mode: int | None = None) -> Path:
    """Create ``path`` (and its folders) with ``text``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def make_repo(path: Path, files: Mapping[str, str], message: str = "initial commit") -> Path:
    """A new repository at ``path`` with ``files`` committed."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    for rel, text in files.items():
        write(path / rel, text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return path


def make_tree(base: Path) -> Path:
    """The top repository of a tree with a submodule that has a nested one.

    top/                         (repo)
      README.md, .gitignore (*.log)
      tests/test_suites/llm/exp1.sh   (executable)
      run-link.sh -> tests/test_suites/llm/exp1.sh   (symlink)
      third_party/sub/           (submodule)
        sub.txt, tools/run.sh
        deps/nested/             (nested submodule)
          nested.txt
    """
    nested = make_repo(base / "origin-nested", {"nested.txt": "nested v1\n"})
    sub = make_repo(base / "origin-sub", {"sub.txt": "sub v1\n", "tools/run.sh": "echo sub\n"})
    git(sub, "submodule", "add", "-q", str(nested), "deps/nested")
    git(sub, "commit", "-q", "-m", "add nested")
    top = base / "top"
    top.mkdir()
    git(top, "init", "-q")
    write(top / "README.md", "readme v1\n")
    write(top / ".gitignore", "*.log\n")
    write(top / "tests/test_suites/llm/exp1.sh", "#!/bin/bash\necho exp1\n", 0o755)
    os.symlink("tests/test_suites/llm/exp1.sh", top / "run-link.sh")
    git(top, "add", "-A")
    git(top, "submodule", "add", "-q", str(sub), "third_party/sub")
    git(top, "submodule", "update", "-q", "--init", "--recursive")
    git(top, "commit", "-q", "-m", "Add: the first version (with a sub-module)!")
    return top


# Every file a snapshot of ``make_tree``'s tree holds (manifest aside).
TREE_FILES = [
    ".gitignore",
    ".gitmodules",
    "README.md",
    "run-link.sh",
    "tests/test_suites/llm/exp1.sh",
    "third_party/sub/.gitmodules",
    "third_party/sub/deps/nested/nested.txt",
    "third_party/sub/sub.txt",
    "third_party/sub/tools/run.sh",
]


def copy_tree(template: Path, base: Path) -> Path:
    """A private copy of a ``make_tree`` top repository (submodules use
    relative git dirs, so the copy is a complete working tree)."""
    top = base / "top"
    shutil.copytree(template, top, symlinks=True)
    return top


def recipe_text(config: str, body: str = 'echo "recipe $@"\n') -> str:
    """A recipe script with the given CONFIG block body."""
    return f"#!/bin/bash\n# a test recipe\n# ===== BEGIN CONFIG =====\n{config}# ===== END CONFIG =====\n{body}"


def launch_env(env: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """``env`` with every other launch variable unset: what CliRunner.invoke(env=…) needs to hide
    the developer's own CONTAINER, DRYRUN, WATCH… from a test."""
    from nrl_launch.options import LAUNCH_OPTIONS

    return {**{option.envvar: None for option in LAUNCH_OPTIONS}, **(env or {})}


def config_block(**values: object) -> str:
    """A whole CONFIG block (markers included) assigning ``values`` in order."""
    body = "".join(f"{name}={value}\n" for name, value in values.items())
    return f"# ===== BEGIN CONFIG =====\n{body}# ===== END CONFIG =====\n"


@dataclass
class Project:
    """A real git repository holding recipes and a batch script."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> Project:
        """A new repository at ``root`` with ``ray.sub``, a README and a .gitignore committed."""
        root.mkdir(parents=True)
        git(root, "init", "-q", "-b", "main")
        (root / "ray.sub").write_text("#!/bin/bash\n#SBATCH --exclusive\nbash -c \"$COMMAND\"\n")
        (root / ".gitignore").write_text("/code_snapshots/\n")
        (root / "README.md").write_text("demo project\n")
        project = cls(root)
        project.commit("Initial commit: batch script")
        return project

    def add_recipe(self, name: str, config: str = CONFIG_1N, kind: str = "llm", commit: bool = True) -> Path:
        """Write ``tests/test_suites/<kind>/<name>.sh`` (and commit it)."""
        path = self.root / "tests" / "test_suites" / kind / f"{name}.sh"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(recipe_text(config))
        path.chmod(0o755)
        if commit:
            self.commit(f"add {name}")
        return path

    def commit(self, message: str) -> None:
        """Commit everything in the working tree."""
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", message)

    def meta(self) -> str:
        """What ``git log -1 --format=%h-%f`` prints (the job's ``++git_meta``)."""
        return git(self.root, "log", "-1", "--format=%h-%f").strip()


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


# ---------------------------------------------------------------- real processes


def launcher_env(**extra: str) -> dict[str, str]:
    """The environment of a launcher process: this one's (fake Slurm on PATH
    included) without the developer's launcher variables, plus BASE_ENV, this
    checkout's package on PYTHONPATH and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(BASE_ENV)
    env.update(PYTHONPATH=str(REPO / "tools"), **extra)
    return env


def start_nrl_launch(*args: str, cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """``python -m nrl_launch ARGS`` (this checkout's package) as a separate process."""
    return subprocess.Popen([sys.executable, "-m", "nrl_launch", *args], cwd=cwd, env=dict(env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    """Wait for ``proc``: (exit status, stdout, stderr); kill it and fail after ``timeout``."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} did not finish within {timeout} s (deadlock?)\n{out}\n{err}")
    return proc.returncode, out, err


def next_stderr_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The next line ``proc`` writes on stderr ("" if it ends or says nothing in time)."""
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    return proc.stderr.readline() if ready else ""


@contextlib.contextmanager
def holding_lock(snapshot_dir: Path) -> Iterator[Path]:
    """Hold the experiment lock of ``snapshot_dir`` in this process, as another
    launch would; yields the lock file's path (where docs/snapshots.md says)."""
    lock = snapshot_dir.parent / f".{snapshot_dir.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield lock


def wait_for_file(path: Path, timeout: float = 30) -> None:
    """Poll until ``path`` exists (a process said it is ready)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.01)


# ---------------------------------------------------------------- end to end, on the local Slurm
#
# Each end-to-end test launches in a private git repository holding a copy of
# this repository's launch-relevant files, the way people type it:
# ``tools/launch ./llm/x.sh`` from ``tests/test_suites``.

LAUNCH = REPO / "tools" / "launch"

# The parts of this repository a launch needs (copied into each test's repo).
COPIED_PATHS = ("ray.sub", ".gitignore", "tests/test_suites", "examples")

# One-node recipes (the local cluster has a single node) ...
SFT = "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.v2"
VLM_SFT = "vlm_sft-qwen2.5-vl-3b-instruct-1n8g-dtensor2tp1"
QUICK = "sft-qwen2.5-1.5b-1n4g-fsdp2tp1-quick"  # GPUS_PER_NODE=4
DPO_1N = "dpo-qwen2.5-1.5b-1n8g-dtensor2tp1-actckpt"
GRPO_LONG = "grpo-qwen2.5-1.5b-1n8g-megatron-long"  # has JOB_REAPER_COMMENT
# ... and one Slurm 22.05 rejects (SEGMENT_SIZE=2 -> --segment=2, 2 nodes).
DPO_2N = "dpo-llama3.1-8b-instruct-2n8g-tp4pp2-sp"

STEPS_PER_RUN, MAX_STEPS, NUM_RUNS = 2, 6, 3

# Variables of the developer's shell that would change what a launch or a
# recipe does; the tests set the ones they need explicitly.
SCRUBBED_ENV = (
    "DRYRUN", "WATCH", "WATCH_INTERVAL", "EXTRA_ENV", "MOUNTS", "IS_RELEASE",
    "EXCLUDE_GRES", "SLURM_JOB_SUFFIX", "EXTRA_SCRIPT_ARGS", "SANDBOX_CONTAINER",
    "SANDBOX_COMMAND", "SANDBOX_ENV_VARS", "CODE_SNAPSHOT_DIRNAME", "SNAPSHOT_MODE",
    "BATCH_SCRIPT", "NRL_FORCE_FAILING_CHECK", "TEST_DRYRUN", "NUM_NODES",
    "GPUS_PER_NODE", "SEGMENT_SIZE", "NUM_MINUTES", "NUM_RUNS", "CUDA_VISIBLE_DEVICES",
    "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NAME", "SLURM_SUBMIT_DIR",
)
SUBMITTED_RE = re.compile(r"^Submitted batch job (\d+)$", re.MULTILINE)
STAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]"
JOB_TIMEOUT_S = 180  # generous: other sessions may share the (exclusive) node

def _launch_files() -> list[str]:
    """Files of COPIED_PATHS that git does not ignore (no per-experiment
    output folders, no __pycache__), as they are in the working tree."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *COPIED_PATHS],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return sorted({p for p in out.split("\0") if p and os.path.lexists(REPO / p)})


def copy_launch_repo(dest: Path, extra_files: dict[str, str] | None = None) -> Path:
    """A new git repository at ``dest`` holding a copy of the launch-relevant
    files (plus ``extra_files``), everything committed."""
    dest.mkdir(parents=True)
    for rel in _launch_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target, follow_symlinks=False)
    for rel, text in (extra_files or {}).items():
        (dest / rel).write_text(text)
        (dest / rel).chmod(0o755)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "e2e copy of the recipes")
    return dest


def script_arg(name: str) -> str:
    """The recipe path as typed from tests/test_suites."""
    return f"./{'vlm' if name.startswith('vlm_') else 'llm'}/{name}.sh"


def config_value(recipe: Path, key: str) -> int:
    m = re.search(rf"^{key}=(\d+)", recipe.read_text(), re.MULTILINE)
    assert m, f"{recipe}: no literal {key}= in the CONFIG block"
    return int(m.group(1))


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


@dataclass
class LaunchRun:
    """One finished ``tools/launch`` invocation."""

    repo: Path
    scripts: tuple[str, ...]
    env: dict
    returncode: int
    stdout: str
    stderr: str
    job_ids: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def suffix(self) -> str:
        return self.env["SLURM_JOB_SUFFIX"]

    def snapshot(self, name: str) -> Path:
        return self.repo / "code_snapshots" / name

    def exp_dir(self, name: str) -> Path:
        kind = "vlm" if name.startswith("vlm_") else "llm"
        return self.snapshot(name) / "tests" / "test_suites" / kind / name

    def jobs_of(self, name: str) -> list[str]:
        """Job ids printed after the ``Submitting`` lines of ``name``."""
        ids, current = [], None
        for line in self.lines:
            m = re.match(r"^Submitting \d+/\d+ job with \d+ nodes for (\S+)\.sh$", line)
            if m:
                current = m.group(1)
                continue
            m = SUBMITTED_RE.match(line)
            if m and current == name:
                ids.append(m.group(1))
        return ids

    def driver_log(self, name: str, job_id: str) -> Path:
        return self.snapshot(name) / f"{job_id}-logs" / "ray-driver.log"

    def describe(self) -> str:
        return (f"exit {self.returncode}\n--- stdout ---\n{self.stdout}"
                f"--- stderr ---\n{self.stderr}")


class Launcher:
    """Runs the launcher in a private copy of the repository and cleans up
    every job it (or a test through :meth:`track`) put in the queue."""

    def __init__(self, cluster, base: Path, tag: str, extra_files: dict[str, str] | None = None):
        self.cluster = cluster
        self.base = base
        self.repo = copy_launch_repo(base / "repo", extra_files)
        self.suffix = f"-{re.sub(r'[^A-Za-z0-9]+', '-', tag)[-40:].strip('-')}-{secrets.token_hex(3)}"
        self.submitted: list[str] = []
        hf = base / "hf"
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env.update(
            CONTAINER="", ACCOUNT="acct", PARTITION=cluster.partition,
            HF_HOME=str(hf), HF_DATASETS_CACHE=str(hf / "datasets"),
            STEPS_PER_RUN=str(STEPS_PER_RUN), MAX_STEPS=str(MAX_STEPS),
            SLURM_CONF=str(cluster.slurm_conf), SLURM_JOB_SUFFIX=self.suffix,
        )
        self.env = env

    @property
    def suite_dir(self) -> Path:
        return self.repo / "tests" / "test_suites"

    def run(self, *names: str, timeout: float = 240, **env_overrides: str) -> LaunchRun:
        scripts = tuple(script_arg(n) for n in names)
        env = {**self.env, **env_overrides}
        try:
            res = subprocess.run([str(LAUNCH), *scripts], cwd=self.suite_dir, env=env,
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"tools/launch {' '.join(scripts)} did not finish in {timeout}s:\n"
                        f"{e.stdout}\n{e.stderr}")
        run = LaunchRun(self.repo, scripts, env, res.returncode, res.stdout, res.stderr,
                        SUBMITTED_RE.findall(res.stdout))
        self.track(*run.job_ids)
        return run

    def track(self, *job_ids: str) -> None:
        self.submitted.extend(job_ids)

    def job_names(self) -> dict[str, str]:
        """Every job Slurm still remembers (queued or finished) whose name
        carries this launcher's suffix: {job id: name}."""
        res = self.cluster.run("scontrol", "-o", "show", "job")
        found = {}
        for line in res.stdout.splitlines():
            m = re.search(r"\bJobId=(\d+) JobName=(\S+)", line)
            if m and m.group(2).endswith(self.suffix):
                found[m.group(1)] = m.group(2)
        return found

    def queued_names(self) -> list[str]:
        """``squeue --me -h -o %j`` names carrying this launcher's suffix."""
        res = self.cluster.run("squeue", "--me", "-h", "-o", "%j")
        assert res.returncode == 0, res.stderr
        return [n for n in res.stdout.split() if n.endswith(self.suffix)]

    def close(self) -> None:
        res = self.cluster.run("squeue", "-h", "-o", "%i %j")
        ours = set(self.submitted)
        for line in res.stdout.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[1].endswith(self.suffix):
                ours.add(parts[0])
        if ours:
            self.cluster.run("scancel", *sorted(ours))


def wait_all(cluster, job_ids, timeout: float = JOB_TIMEOUT_S) -> dict:
    return cluster.wait_for_jobs(job_ids, timeout=timeout)


def read_runs_log(path: Path) -> list[tuple[float, float, str, int, int]]:
    """``<start> <end> <job id> <first step> <last step>`` lines."""
    rows = []
    for line in path.read_text().splitlines():
        start, end, job, first, last = line.split()
        rows.append((float(start), float(end), job, int(first), int(last)))
    return rows


def expected_gpu_hours(repo: Path, name: str, num_runs: int = NUM_RUNS) -> int:
    kind = "vlm" if name.startswith("vlm_") else "llm"
    recipe = repo / "tests" / "test_suites" / kind / f"{name}.sh"
    text = recipe.read_text()
    gpus = int(m.group(1)) if (m := re.search(r"^GPUS_PER_NODE=(\d+)", text, re.M)) else 8
    return num_runs * 1 * gpus * config_value(recipe, "NUM_MINUTES") // 60


def verdict_blocks(lines: list[str]) -> list[tuple[str, list[str]]]:
    """WATCH's ``[WATCH]: Checking <exp>`` sections: (verdict line, evidence lines)."""
    blocks: list[tuple[str, list[str]]] = []
    index = 0
    while index < len(lines):
        if lines[index].startswith("[WATCH]: Checking ") and index + 1 < len(lines):
            blocks.append((lines[index + 1], []))
            index += 2
            continue
        if blocks and not lines[index].startswith("[INFO]: "):
            blocks[-1][1].append(lines[index])
        index += 1
    return blocks


def manifest_runs(snapshot: Path) -> list[dict]:
    return yaml.safe_load((snapshot / ".nrl_launch.yaml").read_text()).get("runs") or []




# ---------------------------------------------------------------- the local Slurm cluster (tools/local-slurm)

LOCAL_SLURM = REPO / "tools" / "local-slurm"
RAY_SUB = REPO / "ray.sub"

# generous: the first `up` on a fresh machine apt-installs Slurm and MUNGE
UP_TIMEOUT_S = 900
EXPORT_RE = re.compile(r"^export SLURM_CONF=(\S+)\s*$")
DEFAULT_TEST_NODES = 3


def slurm_required(env: Mapping[str, str]) -> bool:
    """True when a missing Slurm must fail the run instead of skipping it:
    in CI, i.e. ``CI`` is ``true`` (any case) or ``1``."""
    return env.get("CI", "").strip().lower() in ("true", "1")


def cluster_verdict(up_ok: bool, sbatch_found: bool, up_tail: str,
                    env: Mapping[str, str]) -> tuple[str, str]:
    """What the session does after ``tools/local-slurm up``: ``("run", "")``,
    or ``("skip" | "fail", reason)``.  A failed ``up`` with Slurm installed
    is a broken cluster: always a failure.  No ``sbatch`` at all is a
    machine without Slurm: skipped, except in CI (:func:`slurm_required`)."""
    if up_ok and sbatch_found:
        return "run", ""
    if up_ok:
        reason = ("sbatch not found on PATH although tools/local-slurm up "
                  "succeeded: run tools/local-slurm up and check PATH")
    elif sbatch_found:
        return "fail", f"tools/local-slurm up failed:\n{up_tail}"
    else:
        reason = f"sbatch not found: run tools/local-slurm up (it failed here: {up_tail or 'no output'})"
    if slurm_required(env):
        return "fail", f"{reason} (CI={env.get('CI')}: a missing Slurm fails the run in CI)"
    return "skip", reason


def cluster_node_count(env: Mapping[str, str]) -> str:
    """Node count for the test cluster: ``LOCAL_SLURM_NODES`` when set and
    non-empty (tools/local-slurm validates it), else 3."""
    return env.get("LOCAL_SLURM_NODES", "").strip() or str(DEFAULT_TEST_NODES)


@dataclass(frozen=True)
class SlurmJob:
    """Final (or current) state of one job: ``state`` e.g. COMPLETED/FAILED,
    ``exit_code`` and ``signal`` from Slurm's ``ExitCode=code:signal``."""

    job_id: str
    state: str
    exit_code: int | None
    signal: int | None
    source: str  # "scontrol" or "jobcomp"
    fields: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __str__(self) -> str:
        return self.state


def _parse_fields(text: str) -> dict[str, str]:
    """``Key=Value`` pairs of a one-line scontrol/jobcomp record (values that
    contain spaces are truncated; JobState/ExitCode never do)."""
    out = {}
    for tok in text.split():
        key, sep, value = tok.partition("=")
        if sep and key and key not in out:
            out[key] = value
    return out


def _job_info(job_id: str, fields: dict[str, str], source: str) -> SlurmJob:
    state = fields.get("JobState", "UNKNOWN")
    code = sig = None
    m = re.fullmatch(r"(\d+):(\d+)", fields.get("ExitCode", ""))
    if m:
        code, sig = int(m.group(1)), int(m.group(2))
    return SlurmJob(job_id, state, code, sig, source, fields)


@dataclass
class LocalSlurm:
    state_dir: Path
    slurm_conf: Path
    partition: str = "local"
    started_here: bool = False

    def nodes(self) -> list[str]:
        """Names of the cluster's nodes, in order (node1, node2, ...)."""
        res = self.run("sinfo", "-h", "-N", "-p", self.partition, "-o", "%N", check=True)
        return sorted(set(res.stdout.split()), key=lambda n: (len(n), n))

    def node_states(self) -> dict[str, str]:
        """{node: state} as sinfo shows it (``idle``, ``down*``, ...)."""
        res = self.run("sinfo", "-h", "-N", "-p", self.partition, "-o", "%N %T", check=True)
        return dict(line.split() for line in res.stdout.splitlines() if line.strip())

    def slurmd_pid(self, node: str) -> int:
        """Pid of the slurmd emulating ``node`` (from its pid file)."""
        return int((self.state_dir / "run" / f"slurmd-{node}.pid").read_text().strip())

    def up(self) -> None:
        """``tools/local-slurm up`` on this cluster, keeping its node count:
        restarts a missing daemon, resumes DOWN nodes, waits until all are
        idle (fails the test if it cannot)."""
        env = {k: v for k, v in os.environ.items() if k != "LOCAL_SLURM_NODES"}
        res = subprocess.run([str(LOCAL_SLURM), "--state", str(self.state_dir), "up"],
                             capture_output=True, text=True, env=env, timeout=120)
        if res.returncode != 0:
            pytest.fail(f"tools/local-slurm up failed:\n{res.stderr}", pytrace=False)

    @property
    def jobcomp_file(self) -> Path:
        try:
            for line in self.slurm_conf.read_text().splitlines():
                if line.strip().startswith("JobCompLoc="):
                    return Path(line.split("=", 1)[1].strip())
        except OSError:
            pass
        return self.state_dir / "log" / "jobcomp.txt"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.slurm_conf)
        env.update(extra)
        return env

    def run(self, *args: str, check: bool = False, timeout: float = 60,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (text mode, output captured)."""
        kw.setdefault("env", self.env())
        return subprocess.run(
            list(args), capture_output=True, text=True, check=check,
            timeout=timeout, **kw,
        )

    def sbatch(self, *args: str, cwd: str | Path | None = None,
               env: dict[str, str] | None = None) -> str:
        """``sbatch --parsable <args>``; returns the job id (fails the test on error)."""
        res = self.run("sbatch", "--parsable", *args, cwd=cwd,
                       env=env if env is not None else self.env())
        if res.returncode != 0:
            pytest.fail(f"sbatch {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout.strip().split(";")[0]

    def job_state(self, job_id: str | int) -> SlurmJob | None:
        """State of a job from ``scontrol show job`` (kept 1 h after the end,
        MinJobAge=3600), falling back to the jobcomp file; None if unknown."""
        job_id = str(job_id)
        res = self.run("scontrol", "show", "job", "-o", job_id)
        if res.returncode == 0 and res.stdout.strip():
            return _job_info(job_id, _parse_fields(res.stdout), "scontrol")
        try:
            lines = self.jobcomp_file.read_text().splitlines()
        except OSError:
            return None
        for line in reversed(lines):  # job ids restart if the state folder was wiped
            if line.startswith(f"JobId={job_id} "):
                return _job_info(job_id, _parse_fields(line), "jobcomp")
        return None

    def wait_for_jobs(self, job_ids: Iterable[str | int] | str | int,
                      timeout: float = 60, poll: float = 0.2) -> dict[str, SlurmJob | None]:
        """Poll squeue until none of ``job_ids`` is pending/running/completing.
        Returns {job_id: SlurmJob}; raises TimeoutError after ``timeout`` s."""
        if isinstance(job_ids, (str, int)):
            job_ids = [job_ids]
        wanted = {str(j) for j in job_ids}
        deadline = time.monotonic() + timeout
        while True:
            res = self.run("squeue", "-h", "-o", "%i")
            if res.returncode == 0:
                alive = wanted & set(res.stdout.split())
                if not alive:
                    break
            if time.monotonic() > deadline:
                queue = self.run("squeue", "-o", "%i %j %T %r").stdout
                raise TimeoutError(
                    f"jobs still queued after {timeout}s: {sorted(wanted)}\n{queue}"
                )
            time.sleep(poll)
        return {j: self.job_state(j) for j in sorted(wanted, key=lambda s: (len(s), s))}


    def finished(self, job_id: str, timeout: float = 60) -> SlurmJob:
        """Wait for one job to leave the queue; its final state (fails the
        test when Slurm no longer knows the job)."""
        info = self.wait_for_jobs([job_id], timeout=timeout)[str(job_id)]
        if info is None:
            pytest.fail(f"job {job_id} left the queue but Slurm has no record of it")
        return info


def daemons_up(env: dict[str, str]) -> bool:
    try:
        res = subprocess.run([str(LOCAL_SLURM), "status"], capture_output=True,
                             text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


