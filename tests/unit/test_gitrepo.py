"""Tests of nrl_launch.experiment.gitrepo against real git repositories made in tmp_path.

The module-level helpers (``git``, ``make_repo``, ``make_tree``) are reused by
the other snapshot-related test modules.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nrl_launch.errors import GitError
from testkit import TREE_FILES, copy_tree, git, make_repo, write


@pytest.fixture
def tree(tree_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the ``make_tree`` repository."""
    return copy_tree(tree_template, tmp_path)




def test_find_repo_clean(tree: Path) -> None:
    from nrl_launch.experiment.gitrepo import find_repo

    info = find_repo(tree / "tests")
    assert info.root == tree.resolve()
    assert info.head_sha == git(tree, "rev-parse", "HEAD").strip()
    assert info.short_meta == git(tree, "log", "-1", "--format=%h-%f").strip()
    assert info.head_subject == "Add: the first version (with a sub-module)!"
    assert info.dirty_files == ()
    assert not info.dirty
    sub_sha = git(tree / "third_party/sub", "rev-parse", "HEAD").strip()
    nested_sha = git(tree / "third_party/sub/deps/nested", "rev-parse", "HEAD").strip()
    assert dict(info.submodules) == {"third_party/sub": sub_sha, "third_party/sub/deps/nested": nested_sha}


def test_find_repo_dirty_includes_submodule_files(tree: Path) -> None:
    from nrl_launch.experiment.gitrepo import find_repo

    write(tree / "README.md", "readme edited\n")
    write(tree / "third_party/sub/deps/nested/nested.txt", "nested edited\n")
    write(tree / "untracked.txt", "not tracked\n")
    write(tree / "debug.log", "ignored\n")
    info = find_repo(tree)
    assert info.dirty_files == ("README.md", "third_party/sub/deps/nested/nested.txt")
    assert info.dirty


def test_find_repo_staged_and_moved_submodule_are_dirty(tree: Path) -> None:
    from nrl_launch.experiment.gitrepo import find_repo

    write(tree / "README.md", "staged\n")
    git(tree, "add", "README.md")
    sub = tree / "third_party/sub"
    write(sub / "sub.txt", "sub v2\n")
    git(sub, "commit", "-q", "-am", "sub v2")
    info = find_repo(tree)
    assert info.dirty_files == ("README.md", "third_party/sub")
    assert info.submodules["third_party/sub"] == git(sub, "rev-parse", "HEAD").strip()


def test_find_repo_outside_git(tmp_path: Path) -> None:
    from nrl_launch.experiment.gitrepo import find_repo

    (tmp_path / "plain").mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        find_repo(tmp_path / "plain")


def test_find_repo_without_commit(tmp_path: Path) -> None:
    from nrl_launch.experiment.gitrepo import find_repo

    git(tmp_path, "init", "-q")
    with pytest.raises(GitError, match="no commit"):
        find_repo(tmp_path)


def test_short_meta_sanitizes_like_git(tmp_path: Path) -> None:
    from nrl_launch.experiment.gitrepo import find_repo

    repo = make_repo(tmp_path / "r", {"a": "a"}, message="Fix: weird/ chars -- & spaces  (v2.0)...")
    assert find_repo(repo).short_meta == git(repo, "log", "-1", "--format=%h-%f").strip()


def test_list_tracked_files_is_what_git_lists(tree: Path, tmp_path: Path) -> None:
    from nrl_launch.experiment.gitrepo import list_tracked_files

    write(tree / "untracked.txt", "x")
    write(tree / "debug.log", "x")  # ignored
    assert list_tracked_files(tree) == TREE_FILES
    (tree / "README.md").unlink()
    assert "README.md" in list_tracked_files(tree)  # tracked still; the snapshot skips it
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tree), str(clone))  # submodules not initialized
    files = list_tracked_files(clone)
    assert "README.md" in files
    assert [f for f in files if f.startswith("third_party/")] == ["third_party/sub"]  # the gitlink itself


def test_tracked_path(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nrl_launch.experiment.gitrepo import tracked_path

    root = tree.resolve()
    assert tracked_path(tree / "tests/test_suites/llm/exp1.sh", root) == "tests/test_suites/llm/exp1.sh"
    monkeypatch.chdir(tree / "tests/test_suites")
    assert tracked_path(Path("llm/exp1.sh"), root) == "tests/test_suites/llm/exp1.sh"
    assert tracked_path(Path("../../third_party/sub/tools/run.sh"), root) == "third_party/sub/tools/run.sh"
    assert (tracked_path(Path("../../third_party/sub/deps/nested/nested.txt"), root)
            == "third_party/sub/deps/nested/nested.txt")
    assert tracked_path(tree / "run-link.sh", root) == "run-link.sh"  # the symlink itself


@pytest.mark.parametrize("listed", [False, True], ids=["asking git", "from the launch's file list"])
def test_tracked_path_untracked(tree: Path, tmp_path: Path, listed: bool) -> None:
    from nrl_launch.experiment.gitrepo import list_tracked_files, tracked_path

    write(tree / "tests/test_suites/llm/new.sh", "echo new\n")
    write(tree / "third_party/sub/new.sh", "echo new\n")
    files = set(list_tracked_files(tree)) if listed else None  # what a launch of many scripts passes
    new = tree / "tests/test_suites/llm/new.sh"
    with pytest.raises(GitError) as caught:
        tracked_path(new, tree, files)
    assert str(caught.value) == f"{new} is not tracked by git (commit it: snapshots must be reproducible)"
    with pytest.raises(GitError, match="is not tracked by git"):
        tracked_path(tree / "third_party/sub/new.sh", tree, files)
    with pytest.raises(GitError, match="outside"):
        tracked_path(tmp_path / "elsewhere.sh", tree, files)
    assert tracked_path(tree / "third_party/sub/tools/run.sh", tree, files) == "third_party/sub/tools/run.sh"


def test_gitrepo_is_the_only_git_importer() -> None:
    """snapshot/manifest/status must import without GitPython (DRYRUN path)."""
    code = ("import sys; import nrl_launch.experiment.snapshot, nrl_launch.experiment.manifest, "
            "nrl_launch.follow.status; "
            "sys.exit(1 if 'git' in sys.modules else 0)")
    tools = Path(__file__).resolve().parents[2] / "tools"
    done = subprocess.run(["python", "-c", code], env={**os.environ, "PYTHONPATH": str(tools)})
    assert done.returncode == 0
