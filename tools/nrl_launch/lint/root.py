"""Which repository ``nrl-launch lint`` checks when ``--root`` is not given.

The nearest configuration decides: from the current folder up to the root
of its git working tree (outside git: up to the file system's root), the
first folder whose pyproject.toml has a ``[tool.nrl-launch.lint]`` section
is the root. Without one, the git root (outside git: the current folder) is
the root, with the default configuration. A pyproject.toml on the way that
cannot be read as TOML stops the search with a LintConfigError: whether it
configures the lint cannot be known.
"""

from __future__ import annotations

import os
from pathlib import Path

from nrl_launch.lint.pyproject import PYPROJECT, read_section


def lint_root(start: Path) -> Path:
    """The repository to lint for a command run in ``start`` (module docstring)."""
    start = start.resolve()
    top = _git_root(start)
    for folder in (start, *start.parents):
        path = folder / PYPROJECT
        if path.is_file() and read_section(path, shown=_shown(path, start)) is not None:
            return folder
        if folder == top:
            break
    return top or start


def _git_root(start: Path) -> Path | None:
    """The root of the git working tree holding ``start`` (the innermost: a
    submodule may be a recipe repository of its own), or None outside git."""
    from nrl_launch.errors import GitError
    from nrl_launch.experiment.gitrepo import work_tree_root  # GitPython: only when linting

    try:
        return work_tree_root(start)
    except GitError:
        return None


def _shown(path: Path, start: Path) -> str:
    """``path`` as an error message names it: relative to where the command runs."""
    return os.path.relpath(path, start)
