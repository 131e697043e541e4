"""A recipe inside a git submodule runs in the superproject's tree: its
snapshot is the superproject's, submodules included (docs/snapshots.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nrl_launch.experiment import gitrepo
from nrl_launch.experiment.manifest import read_manifest
from testkit import BASE_ENV, FakeSlurm, copy_tree, git, recipe_text, run_cli, write


@pytest.fixture
def tree(tree_template: Path, tmp_path: Path) -> Path:
    """``make_tree``'s tree with a batch script at the top and a recipe in the submodule."""
    top = copy_tree(tree_template, tmp_path)
    sub = top / "third_party" / "sub"
    write(sub / "tests/test_suites/llm/sub-exp.sh", recipe_text("NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=30\n"), 0o755)
    git(sub, "add", "-A")
    git(sub, "commit", "-qm", "a recipe in the submodule")
    write(top / "ray.sub", "#!/bin/bash\nbash -c \"$COMMAND\"\n")
    write(top / ".gitignore", "*.log\n/code_snapshots/\n")
    git(top, "add", "-A")
    git(top, "commit", "-qm", "batch script; the submodule's new recipe")
    return top


@pytest.mark.parametrize("inside", ["", "tests/test_suites/llm", "third_party/sub", "third_party/sub/tools",
                                    "third_party/sub/deps/nested"])
def test_project_root_is_the_top_superproject(tree: Path, inside: str) -> None:
    assert gitrepo.project_root(tree / inside) == tree.resolve()


def test_a_linked_worktree_is_its_own_project(tree: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    git(tree, "worktree", "add", "-q", str(linked))
    assert (linked / ".git").is_file()  # like a submodule's, but no superproject
    assert gitrepo.project_root(linked / "tests") == gitrepo.work_tree_root(linked) == linked.resolve()


def test_a_recipe_in_a_submodule_is_snapshotted_with_the_whole_tree(tree: Path, fake_slurm: FakeSlurm) -> None:
    recipe = tree / "third_party/sub/tests/test_suites/llm/sub-exp.sh"
    result = run_cli("launch", str(recipe), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    snapshot = tree.resolve() / "code_snapshots" / "sub-exp"
    assert f"Creating new code snapshot in {snapshot}" in result.stderr
    for rel in ("README.md", "ray.sub", "third_party/sub/sub.txt", "third_party/sub/deps/nested/nested.txt",
                "third_party/sub/tests/test_suites/llm/sub-exp.sh"):
        assert (snapshot / rel).is_file(), rel
    jobs = fake_slurm.submissions()
    assert [job.cwd for job in jobs] == [str(snapshot)] * 2
    assert jobs[0].env["COMMAND"].startswith("uv run third_party/sub/tests/test_suites/llm/sub-exp.sh ")
    manifest = read_manifest(snapshot)
    assert manifest.script == "third_party/sub/tests/test_suites/llm/sub-exp.sh"
    assert manifest.source is not None and manifest.source.repository == str(tree.resolve())
    assert git(tree / "third_party/sub", "status", "--porcelain") == ""  # nothing written into the submodule


def test_status_cancel_and_logs_from_inside_the_submodule_find_the_snapshot(tree: Path, fake_slurm: FakeSlurm,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = tree / "third_party/sub/tests/test_suites/llm/sub-exp.sh"
    launched = run_cli("launch", str(recipe), env=BASE_ENV, slurm=fake_slurm)
    assert launched.exit_code == 0, launched.output
    monkeypatch.chdir(tree / "third_party/sub/tests")  # where someone working on the recipe stands

    status = run_cli("status", "--format", "json", "sub-exp", slurm=fake_slurm)
    assert status.exit_code == 0, status.output
    [row] = json.loads(status.stdout)
    assert [job["job_id"] for job in row["jobs"]] == ["1001", "1002"]
    cancelled = run_cli("cancel", "--dry-run", "sub-exp", slurm=fake_slurm)
    assert cancelled.exit_code == 0 and "1001" in cancelled.stdout, cancelled.output
    write(tree / "code_snapshots/sub-exp/1001-logs/ray-driver.log", "step 1 of sub-exp\n")
    logs = run_cli("logs", "--job", "1001", "sub-exp", slurm=fake_slurm)
    assert logs.exit_code == 0 and logs.stdout == "step 1 of sub-exp\n", logs.output


def test_the_snapshot_command_from_inside_the_submodule_snapshots_the_whole_tree(
        tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the launcher does for a recipe there: the top superproject, submodules included.
    monkeypatch.chdir(tree / "third_party/sub/tests")
    result = run_cli("snapshot", "sub-exp", env={"CODE_SNAPSHOT_DIRNAME": None})
    assert result.exit_code == 0, result.output
    snapshot = tree.resolve() / "code_snapshots" / "sub-exp"
    assert result.stdout == f"{snapshot}\n"
    assert (snapshot / "ray.sub").is_file() and (snapshot / "third_party/sub/deps/nested/nested.txt").is_file()
    assert not (tree / "third_party/sub/code_snapshots").exists()
