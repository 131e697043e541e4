"""Git queries the launcher needs (spec section 4).

This is the only module of the launcher that imports GitPython. Everything it
returns is plain data (``RepoInfo``, strings, lists) so that the rest of the
launcher, and the DRYRUN=1 path, never touch ``git`` objects.

Every failure is reported as ``GitError``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import git

from nrl_launch.errors import GitError

_GITLINK_MODE = "160000"  # the index mode of a submodule entry


@dataclass(frozen=True)
class RepoInfo:
    """The state of a working tree at launch time."""

    root: Path  # top level of the working tree (absolute, symlinks resolved)
    head_sha: str  # full commit id of HEAD
    short_meta: str  # exactly what `git log -1 --format=%h-%f` prints
    head_subject: str  # first line of HEAD's commit message
    # tracked files (submodules included, paths from root, POSIX) whose
    # working-tree content differs from HEAD; a submodule path appears itself
    # when its checked-out commit differs from the one HEAD records
    dirty_files: tuple[str, ...]
    # submodule path (from root, POSIX) -> commit checked out in it, recursive
    submodules: Mapping[str, str] = field(default_factory=dict)

    @property
    def dirty(self) -> bool:
        """True when the working tree differs from HEAD."""
        return bool(self.dirty_files)


def _open_repo(path: Path) -> git.Repo:
    """Open the repository containing ``path`` (GitError when there is none)."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
        raise GitError(f"{path} is not inside a git repository") from e
    except git.GitError as e:
        raise GitError(f"cannot open the git repository at {path}: {e}") from e
    if repo.bare or repo.working_tree_dir is None:
        raise GitError(f"{path}: the git repository is bare (no working tree)")
    return repo


def _top(repo: git.Repo) -> Path:
    """The working tree of a repository opened by :func:`_open_repo` (never bare)."""
    if repo.working_tree_dir is None:  # _open_repo rejects bare repositories
        raise GitError(f"{repo.git_dir}: the git repository is bare (no working tree)")
    return Path(repo.working_tree_dir)


def _git(repo: git.Repo, command: str, *args: str) -> str:
    """Run ``git <command> <args>`` in ``repo``; GitError on failure."""
    try:
        return str(getattr(repo.git, command)(*args))
    except git.GitCommandError as e:
        stderr = (e.stderr or "").strip()
        raise GitError(f"git {command} failed in {repo.working_tree_dir}: {stderr or e}") from e
    except git.GitError as e:
        raise GitError(f"git {command} failed in {repo.working_tree_dir}: {e}") from e


def _split_z(output: str) -> list[str]:
    """Split NUL-separated git output, dropping empty items."""
    return [item for item in output.split("\0") if item]


def _submodule_paths(repo: git.Repo) -> list[str]:
    """Paths (relative to ``repo``) of the submodules recorded in its index."""
    paths = []
    for entry in _split_z(_git(repo, "ls_files", "-z", "--stage")):
        meta, _, path = entry.partition("\t")
        if meta.split(" ", 1)[0] == _GITLINK_MODE:
            paths.append(path)
    return paths


def _walk_repos(repo: git.Repo, prefix: str = "") -> Iterator[tuple[str, git.Repo]]:
    """Yield (path prefix from the top root, repo) for ``repo`` and every
    initialized submodule below it, depth first."""
    yield prefix, repo
    top = _top(repo)
    for sub in _submodule_paths(repo):
        if not (top / sub / ".git").exists():
            continue  # not initialized: nothing checked out
        try:
            subrepo = git.Repo(top / sub)
        except git.GitError as e:
            raise GitError(f"cannot open submodule {prefix}{sub}: {e}") from e
        yield from _walk_repos(subrepo, f"{prefix}{sub}/")


def _head_sha(repo: git.Repo, where: str) -> str:
    """Full commit id of HEAD; GitError for a repository without commits."""
    try:
        return repo.head.commit.hexsha
    except ValueError as e:
        raise GitError(f"{where}: the repository has no commit yet") from e


def _dirty_files(repo: git.Repo, prefix: str) -> list[str]:
    """Tracked paths of one repo (prefixed) whose working tree differs from HEAD.

    Files inside submodules are reported by the submodules themselves, so only
    a changed submodule commit is reported here (``--ignore-submodules=dirty``).
    """
    out = _git(repo, "diff", "HEAD", "--name-only", "-z", "--no-renames", "--ignore-submodules=dirty")
    return [prefix + p for p in _split_z(out)]


def find_repo(path: Path) -> RepoInfo:
    """Describe the git working tree containing ``path``.

    Raises GitError when ``path`` is not inside a git working tree or when the
    repository has no commit.
    """
    repo = _open_repo(Path(path))
    root = _top(repo).resolve()
    head_sha = _head_sha(repo, str(root))
    # %f is git's own sanitized subject: the contract's "<short sha>-<subject>".
    short_meta, _, subject = _git(repo, "log", "-1", "--format=%h-%f%n%s").partition("\n")
    dirty: list[str] = []
    submodules: dict[str, str] = {}
    for prefix, sub in _walk_repos(repo):
        if prefix:
            submodules[prefix.rstrip("/")] = _head_sha(sub, prefix.rstrip("/"))
        dirty.extend(_dirty_files(sub, prefix))
    return RepoInfo(
        root=root,
        head_sha=head_sha,
        short_meta=short_meta,
        head_subject=subject,
        dirty_files=tuple(sorted(set(dirty))),
        submodules=submodules,
    )


def work_tree_root(path: Path) -> Path:
    """The root of the git working tree containing ``path`` (no git process)."""
    return _top(_open_repo(Path(path))).resolve()


def project_root(path: Path) -> Path:
    """The root of the outermost working tree containing ``path``: for a path
    inside a submodule (at any depth), the top superproject's root.

    A recipe in a submodule runs in the whole tree it was checked out in, so
    that is what its snapshot holds (docs/snapshots.md). A git process is
    only asked for working trees whose ``.git`` is a file (submodules and
    linked worktrees), once per root.
    """
    root = work_tree_root(path)
    while (root / ".git").is_file():
        parent = _superproject(root)
        if parent is None:
            break  # a linked worktree, not a submodule
        root = parent
    return root


@cache
def _superproject(root: Path) -> Path | None:
    """The working tree whose submodule ``root`` is, or None."""
    out = _git(_open_repo(root), "rev_parse", "--show-superproject-working-tree").strip()
    return Path(out).resolve() if out else None


def _relative_to_root(script: Path, root: Path) -> str:
    """``script`` as a POSIX path relative to ``root`` (GitError if outside)."""
    script = Path(script)
    # Resolve the folder but not the file itself: a tracked symlink stays itself.
    absolute = Path(os.path.abspath(script))
    absolute = absolute.parent.resolve() / absolute.name
    try:
        return absolute.relative_to(Path(root).resolve()).as_posix()
    except ValueError as e:
        raise GitError(f"{script} is outside the git repository {root}") from e


def tracked_path(script: Path, root: Path, tracked_files: Collection[str] | None = None) -> str:
    """Return ``script``'s path relative to the git root ``root`` (POSIX).

    Raises GitError when the script is outside the repository or not tracked
    (a script inside a submodule counts when the submodule tracks it).
    ``tracked_files`` (from :func:`list_tracked_files`) answers without
    asking git again, for launches of many scripts.
    """
    rel = _relative_to_root(script, root)
    if tracked_files is not None:
        if rel in tracked_files:
            return rel
        raise _untracked(script)
    repo = _open_repo(Path(root))
    for prefix, sub in _walk_repos(repo):
        if prefix and not rel.startswith(prefix):
            continue
        inner = rel[len(prefix):]
        if inner in _split_z(_git(sub, "ls_files", "-z", "--", inner)):
            return rel
    raise _untracked(script)


def _untracked(script: Path) -> GitError:
    return GitError(f"{script} is not tracked by git (commit it: snapshots must be reproducible)")


def list_tracked_files(root: Path) -> list[str]:
    """Every tracked path of the repository at ``root`` and of its submodules
    (recursively), as POSIX paths relative to ``root``, sorted: what
    ``git ls-files --recurse-submodules`` lists.

    The working tree is not looked at: a tracked file deleted from it is still
    listed, and a submodule that is not checked out is listed as its folder.
    The snapshot, which reads every path anyway, skips the former and keeps the
    latter as an empty folder.
    """
    repo = _open_repo(Path(root))
    return sorted(set(_split_z(_git(repo, "ls_files", "-z", "--recurse-submodules"))))
