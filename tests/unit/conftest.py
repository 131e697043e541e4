"""Shared fixtures: real git projects in tmp_path and a recording fake Slurm."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit import git, write  # noqa: F401  (shared with tests/integration; re-exported)

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


def make_repo(path: Path, files: dict[str, str], message: str = "initial commit") -> Path:
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


@pytest.fixture(scope="session")
def tree_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``make_tree`` tree built once per session (copied by ``copy_tree``)."""
    return make_tree(tmp_path_factory.mktemp("template"))


def copy_tree(template: Path, base: Path) -> Path:
    """A private copy of the template's top repository (submodules use
    relative git dirs, so the copy is a complete working tree)."""
    top = base / "top"
    shutil.copytree(template, top, symlinks=True)
    return top


EXPECTED_FILES = [
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
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", message)

    def meta(self) -> str:
        return git(self.root, "log", "-1", "--format=%h-%f").strip()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
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
