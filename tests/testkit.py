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

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    def add_job(self, job_id: str, state: str) -> None:
        """A job submitted earlier (e.g. by another launch), now in ``state``."""
        self.jobs[job_id] = FakeJob(job_id, (), "", {}, state)

    def finish(self, *ids: str, state: str = "COMPLETED") -> None:
        """Make these jobs (all, without ids) leave the queue with ``state``."""
        for job_id in ids or list(self.jobs):
            self.jobs[job_id].state = state

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
            return Completed(0, "".join(f"{j.job_id} {j.state}\n" for j in queued if j.job_id in wanted), "")
        return Completed(0, "".join(f"{j.job_id}\n" for j in queued), "")

    def _sacct(self, call: Call) -> Completed:
        if not self.accounting:
            return Completed(1, "", "sacct: error: Slurm accounting storage is disabled\n")
        wanted = call.argv[call.argv.index("-j") + 1].split(",")
        return Completed(0, "".join(f"{i}|{self.jobs[i].state}\n" for i in wanted if i in self.jobs), "")

    def _scontrol(self, call: Call) -> Completed:
        if call.argv[1:] == ("ping",):
            return Completed(0, "Slurmctld(primary) at fake is UP\n", "")
        job = self.jobs.get(call.argv[-1])
        if job is None:
            return Completed(1, "", "slurm_load_jobs error: Invalid job id specified\n")
        return Completed(0, f"JobId={job.job_id} JobName=x JobState={job.state} Reason=None\n", "")

    def _scancel(self, call: Call) -> Completed:
        for job_id in call.argv[1:]:
            if job_id in self.jobs and self.jobs[job_id].state in QUEUED_STATES:
                self.jobs[job_id].state = "CANCELLED"
        return Completed(0, "", "")


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
