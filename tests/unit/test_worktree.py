"""The working tree found without GitPython (``status`` and the commands that follow experiments)
is git's own answer, or no answer: never another folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from nrl_launch.errors import GitError
from nrl_launch.experiment.gitrepo import project_root
from nrl_launch.experiment.worktree import plain_work_tree
from testkit import git, make_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with a nested submodule, a linked worktree beside it and a bare clone."""
    base = tmp_path_factory.mktemp("worktree")
    top = make_tree(base)
    git(top, "worktree", "add", "-q", str(base / "linked"))
    git(base, "clone", "-q", "--bare", str(top), str(base / "bare.git"))
    (base / "outside").mkdir()
    return base


@pytest.mark.parametrize(("where", "plain"), [
    ("top", "top"),                                  # a plain repository: decided without git
    ("top/tests/test_suites/llm", "top"),            # from a subfolder
    ("top/third_party/sub", None),                   # a submodule (.git file): left to git
    ("top/third_party/sub/deps/nested", None),       # a nested one
    ("linked", None),                                # a linked worktree (.git file)
    ("bare.git", None),                              # a bare repository: git decides
    ("bare.git/refs", None),
])
def test_the_plain_answer_is_git_s_or_none(tree: Path, where: str, plain: str | None) -> None:
    found = plain_work_tree(tree / where)
    assert found == (tree / plain if plain else None)
    if found is not None:
        assert found == project_root(tree / where)  # what GitPython says


def test_outside_any_repository_there_is_no_plain_answer(tree: Path) -> None:
    assert plain_work_tree(tree / "outside") is None
    with pytest.raises(GitError):
        project_root(tree / "outside")


@pytest.mark.parametrize("variable", ["GIT_DIR", "GIT_WORK_TREE", "GIT_CEILING_DIRECTORIES"])
def test_git_s_discovery_variables_leave_it_to_git(tree: Path, variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, str(tree / "top"))
    assert plain_work_tree(tree / "top") is None
