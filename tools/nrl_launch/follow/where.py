"""Where the snapshots of the commands that follow experiments (``status``, ``watch``, ``cancel``,
``logs``) are: under ``--project-root``, else under the repository of the current directory."""

from __future__ import annotations

from pathlib import Path

from nrl_launch.errors import EnvironmentProblem, GitError
from nrl_launch.experiment.folder import SnapshotRoot
from nrl_launch.experiment.worktree import plain_work_tree
from nrl_launch.settings import parse_snapshot_dirname


def snapshot_root(project_root: str | None, dirname: str | None) -> SnapshotRoot:
    """The snapshot root: ``<project root>/<CODE_SNAPSHOT_DIRNAME>``. The project root is
    ``project_root``, else the (top) git root of the current directory, else, outside git, the
    current directory when it holds the snapshot root (a copy of one, a login node without the
    repository); EnvironmentProblem otherwise: outside any repository no launch left snapshots."""
    chosen = parse_snapshot_dirname(dirname)
    if project_root is not None:
        return SnapshotRoot(Path(project_root).resolve(), chosen)
    here = Path.cwd()
    plain = plain_work_tree(here)
    if plain is not None:
        return SnapshotRoot(plain, chosen)
    from nrl_launch.experiment.gitrepo import project_root as git_root  # GitPython: submodules, worktrees

    try:
        return SnapshotRoot(git_root(here), chosen)
    except GitError as e:
        if (here / chosen).is_dir():
            return SnapshotRoot(here, chosen)
        raise EnvironmentProblem(f"{e}: the snapshots of a launch are under its repository's root; run this in "
                                 "the repository, or give --project-root") from e

