"""``tools/code_snapshot.sh`` and ``nrl-launch snapshot``, as launch scripts call them (spec section 9)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nrl_launch.experiment.manifest import read_manifest
from testkit import REPO, Project, git, run_cli


@pytest.fixture
def repo_with_tools(project: Project) -> Project:
    """A project that carries the launcher in its own tools/ folder, as the real repository does."""
    (project.root / "tools").mkdir()
    shutil.copy2(REPO / "tools" / "code_snapshot.sh", project.root / "tools" / "code_snapshot.sh")
    shutil.copytree(REPO / "tools" / "nrl_launch", project.root / "tools" / "nrl_launch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    project.add_recipe("sft-a", commit=False)
    project.commit("the launcher and a recipe")
    return project


def shell(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "CODE_SNAPSHOT_DIRNAME"}
    environ.update(NRL_LAUNCH_PYTHON=sys.executable, **env)
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)


CALLER = 'SNAPSHOT_DIR=$(bash "$TOOLS/code_snapshot.sh" "$EXP") && cd "$SNAPSHOT_DIR" && pwd && cat README.md'


def test_the_launch_script_calling_pattern(repo_with_tools: Project, tmp_path: Path) -> None:
    root = repo_with_tools.root
    (root / "README.md").write_text("edited, not committed\n")  # the working tree is what is snapshotted
    tools = str(root / "tools")
    first = shell(CALLER, tmp_path, TOOLS=tools, EXP="my-exp")  # from outside the repository
    snapshot = root / "code_snapshots" / "my-exp"
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [str(snapshot), "edited, not committed"]
    assert first.stderr.splitlines()[0] == f"Creating new code snapshot in {snapshot}"
    assert (snapshot / "tests/test_suites/llm/sft-a.sh").is_file()
    assert read_manifest(snapshot).experiment == "my-exp"

    (root / "README.md").write_text("changed again\n")
    again = shell(CALLER, root / "tests", TOOLS=tools, EXP="my-exp")
    assert again.stdout.splitlines() == [str(snapshot), "edited, not committed"]  # reused as it is
    assert again.stderr.splitlines()[0] == f"Using existing code snapshot in {snapshot}"


def test_code_snapshot_dirname_may_be_nested(repo_with_tools: Project) -> None:
    root = repo_with_tools.root
    done = shell('bash tools/code_snapshot.sh exp-b', root, CODE_SNAPSHOT_DIRNAME="code_snapshots_bisect/abc-Fix")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{root}/code_snapshots_bisect/abc-Fix/exp-b\n"
    assert (root / "code_snapshots_bisect/abc-Fix/exp-b/ray.sub").is_file()


@pytest.mark.parametrize("args", ["", "''", "a b"])
def test_usage_without_one_experiment(repo_with_tools: Project, args: str) -> None:
    done = shell(f"bash tools/code_snapshot.sh {args}", repo_with_tools.root)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("usage: tools/code_snapshot.sh EXPERIMENT")
    assert not (repo_with_tools.root / "code_snapshots").exists()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_is_usage_not_an_experiment(repo_with_tools: Project, flag: str) -> None:
    done = shell(f"bash tools/code_snapshot.sh {flag}", repo_with_tools.root)
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr.startswith("usage: tools/code_snapshot.sh EXPERIMENT")
    assert not (repo_with_tools.root / "code_snapshots").exists()


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", "'x\ny'"])
def test_names_that_are_not_folder_names(repo_with_tools: Project, name: str) -> None:
    done = shell(f"bash tools/code_snapshot.sh {name}", repo_with_tools.root)
    assert done.returncode != 0
    assert done.stdout == ""
    assert "[ERROR]" in done.stderr and "Traceback" not in done.stderr
    assert not (repo_with_tools.root / "code_snapshots").exists()


def test_snapshot_command_from_a_subfolder(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.add_recipe("sft-a")
    monkeypatch.chdir(project.root / "tests")
    result = run_cli("snapshot", "sft-a", env={"CODE_SNAPSHOT_DIRNAME": None})
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{project.root / 'code_snapshots' / 'sft-a'}\n"
    assert git(project.root, "status", "--porcelain") == ""  # snapshots are ignored, nothing else changed
