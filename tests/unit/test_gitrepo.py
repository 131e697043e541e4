"""Tests of nrl_launch.gitrepo against real git repositories made in tmp_path.

The module-level helpers (``git``, ``make_repo``, ``make_tree``) are reused by
the other snapshot-related test modules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nrl_launch.errors import GitError

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (file:// submodules allowed); return its stdout."""
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


@pytest.fixture
def tree(tree_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the ``make_tree`` repository."""
    return copy_tree(tree_template, tmp_path)


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


def test_find_repo_clean(tree: Path) -> None:
    from nrl_launch.gitrepo import find_repo

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
    from nrl_launch.gitrepo import find_repo

    write(tree / "README.md", "readme edited\n")
    write(tree / "third_party/sub/deps/nested/nested.txt", "nested edited\n")
    write(tree / "untracked.txt", "not tracked\n")
    write(tree / "debug.log", "ignored\n")
    info = find_repo(tree)
    assert info.dirty_files == ("README.md", "third_party/sub/deps/nested/nested.txt")
    assert info.dirty


def test_find_repo_staged_and_moved_submodule_are_dirty(tree: Path) -> None:
    from nrl_launch.gitrepo import find_repo

    write(tree / "README.md", "staged\n")
    git(tree, "add", "README.md")
    sub = tree / "third_party/sub"
    write(sub / "sub.txt", "sub v2\n")
    git(sub, "commit", "-q", "-am", "sub v2")
    info = find_repo(tree)
    assert info.dirty_files == ("README.md", "third_party/sub")
    assert info.submodules["third_party/sub"] == git(sub, "rev-parse", "HEAD").strip()


def test_find_repo_outside_git(tmp_path: Path) -> None:
    from nrl_launch.gitrepo import find_repo

    (tmp_path / "plain").mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        find_repo(tmp_path / "plain")


def test_find_repo_without_commit(tmp_path: Path) -> None:
    from nrl_launch.gitrepo import find_repo

    git(tmp_path, "init", "-q")
    with pytest.raises(GitError, match="no commit"):
        find_repo(tmp_path)


def test_short_meta_sanitizes_like_git(tmp_path: Path) -> None:
    from nrl_launch.gitrepo import find_repo

    repo = make_repo(tmp_path / "r", {"a": "a"}, message="Fix: weird/ chars -- & spaces  (v2.0)...")
    assert find_repo(repo).short_meta == git(repo, "log", "-1", "--format=%h-%f").strip()


def test_list_tracked_files_recurses_and_skips_deleted(tree: Path) -> None:
    from nrl_launch.gitrepo import list_tracked_files

    write(tree / "untracked.txt", "x")
    write(tree / "debug.log", "x")
    assert list_tracked_files(tree) == EXPECTED_FILES
    (tree / "README.md").unlink()
    assert "README.md" not in list_tracked_files(tree)


def test_list_tracked_files_skips_uninitialized_submodule(tree: Path, tmp_path: Path) -> None:
    from nrl_launch.gitrepo import list_tracked_files

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tree), str(clone))  # submodules not initialized
    files = list_tracked_files(clone)
    assert "README.md" in files
    assert not any(f.startswith("third_party/sub") for f in files)


def test_tracked_path(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nrl_launch.gitrepo import tracked_path

    root = tree.resolve()
    assert tracked_path(tree / "tests/test_suites/llm/exp1.sh", root) == "tests/test_suites/llm/exp1.sh"
    monkeypatch.chdir(tree / "tests/test_suites")
    assert tracked_path(Path("llm/exp1.sh"), root) == "tests/test_suites/llm/exp1.sh"
    assert tracked_path(Path("../../third_party/sub/tools/run.sh"), root) == "third_party/sub/tools/run.sh"
    assert (tracked_path(Path("../../third_party/sub/deps/nested/nested.txt"), root)
            == "third_party/sub/deps/nested/nested.txt")
    assert tracked_path(tree / "run-link.sh", root) == "run-link.sh"  # the symlink itself


def test_tracked_path_untracked(tree: Path, tmp_path: Path) -> None:
    from nrl_launch.gitrepo import tracked_path

    write(tree / "tests/test_suites/llm/new.sh", "echo new\n")
    write(tree / "third_party/sub/new.sh", "echo new\n")
    with pytest.raises(GitError, match="is not tracked by git .commit it: snapshots must be reproducible"):
        tracked_path(tree / "tests/test_suites/llm/new.sh", tree)
    with pytest.raises(GitError, match="is not tracked by git"):
        tracked_path(tree / "third_party/sub/new.sh", tree)
    with pytest.raises(GitError, match="outside"):
        tracked_path(tmp_path / "elsewhere.sh", tree)


def test_gitrepo_is_the_only_git_importer() -> None:
    """snapshot/manifest/status must import without GitPython (DRYRUN path)."""
    code = ("import sys; import nrl_launch.snapshot, nrl_launch.manifest, nrl_launch.status; "
            "sys.exit(1 if 'git' in sys.modules else 0)")
    tools = Path(__file__).resolve().parents[2] / "tools"
    done = subprocess.run(["python", "-c", code], env={**os.environ, "PYTHONPATH": str(tools)})
    assert done.returncode == 0
