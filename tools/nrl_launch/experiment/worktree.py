"""The git working tree of a folder, found without GitPython when git itself would not need asking.

``status``, ``watch``, ``cancel`` and ``logs`` only need the repository's root to find the
snapshots; importing GitPython for that costs about 55 ms of a command that should take well
under a second over a thousand experiments. Every case this module does not decide alone (a
``.git`` file: a submodule or a linked worktree; git's own variables that change discovery; a
folder that is itself a git directory) is left to :func:`nrl_launch.experiment.gitrepo.project_root`.
"""

from __future__ import annotations

import os
from pathlib import Path

# Variables that change where git looks for a repository: with any of them set, git decides.
_DISCOVERY_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM",
                        "GIT_COMMON_DIR")


def plain_work_tree(path: Path) -> Path | None:
    """The root of the working tree holding ``path`` when it is a plain one: the nearest folder
    (from ``path`` up) whose ``.git`` is a git directory, never a submodule's or worktree's
    ``.git`` file. None when only git can say (see the module's docstring), or outside git."""
    if any(name in os.environ for name in _DISCOVERY_VARIABLES):
        return None
    here = path.resolve()
    for folder in (here, *here.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir() and (dot_git / "HEAD").is_file():
            return folder
        if dot_git.exists() or _is_git_directory(folder):
            return None  # a .git file, something odd, or a bare repository: git decides
    return None


def _is_git_directory(folder: Path) -> bool:
    """Whether ``folder`` looks like a git directory itself (git would stop there)."""
    return (folder / "HEAD").is_file() and (folder / "objects").is_dir() and (folder / "refs").is_dir()
