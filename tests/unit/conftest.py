"""Shared fixtures: real git projects in tmp_path and a recording fake Slurm."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

FAKES = Path(__file__).parent / "fakes"
BASE_ENV = {
    "CONTAINER": "nvcr.io/nvidia/nemo-rl:test",
    "ACCOUNT": "acct",
    "PARTITION": "batch",
    "HF_HOME": "/hf",
    "HF_DATASETS_CACHE": "/hf/datasets",
}
CONFIG_1N = """\
NUM_NODES=1
STEPS_PER_RUN=60
MAX_STEPS=120
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=240
"""


def run_git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (with a fixed identity) and return its stdout."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", "-c", "protocol.file.allow=always", *args], cwd=cwd, env=env,
                          check=True, capture_output=True, text=True).stdout


def recipe_text(config: str, body: str = 'echo "recipe $@"\n') -> str:
    """A recipe script with the given CONFIG block body."""
    return f"#!/bin/bash\n# a test recipe\n# ===== BEGIN CONFIG =====\n{config}# ===== END CONFIG =====\n{body}"


@dataclass
class Project:
    """A real git repository holding recipes and a batch script."""

    root: Path

    def add_recipe(self, name: str, config: str = CONFIG_1N, kind: str = "llm", commit: bool = True) -> Path:
        path = self.root / "tests" / "test_suites" / kind / f"{name}.sh"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(recipe_text(config))
        path.chmod(0o755)
        if commit:
            self.commit(f"add {name}")
        return path

    def commit(self, message: str) -> None:
        run_git(self.root, "add", "-A")
        run_git(self.root, "commit", "-qm", message)

    def meta(self) -> str:
        return run_git(self.root, "log", "-1", "--format=%h-%f").strip()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    run_git(root, "init", "-q", "-b", "main")
    (root / "ray.sub").write_text("#!/bin/bash\n#SBATCH --exclusive\nbash -c \"$COMMAND\"\n")
    (root / ".gitignore").write_text("/code_snapshots/\n")
    (root / "README.md").write_text("demo project\n")
    proj = Project(root)
    proj.commit("Initial commit: batch script")
    return proj


@dataclass
class FakeSlurm:
    """The recording fake Slurm client put first on PATH."""

    state: Path
    bin: Path

    def calls(self, prog: str | None = None) -> list[dict]:
        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return [e for e in entries if prog is None or e["prog"] == prog]

    def submissions(self) -> list[dict]:
        """Real sbatch calls (not --test-only)."""
        return [c for c in self.calls("sbatch") if "--test-only" not in c["argv"]]


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    state = tmp_path / "fake-slurm"
    bindir = state / "bin"
    bindir.mkdir(parents=True)
    for prog in ("sbatch", "squeue", "sacct", "scontrol"):
        (bindir / prog).symlink_to(FAKES / "fake_slurm.py")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return FakeSlurm(state, bindir)
