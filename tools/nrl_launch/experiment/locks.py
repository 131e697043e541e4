"""One writer per experiment: the lock beside each snapshot (docs/snapshots.md).

Whatever creates, reuses or records runs in the snapshot ``<root>/<experiment>``
holds the lock file ``<root>/.<experiment>.lock`` with ``flock(2)``: a launch
(for its whole section snapshot → continue.sh → submit), ``nrl-launch
snapshot`` (``tools/code_snapshot.sh``) and ``continue.sh`` (with ``flock(1)``
when installed). A second one waits, saying once on stderr what it waits for:
the holder's work is bounded (every Slurm call has a timeout), and Ctrl-C stops
the wait. Lock files are hidden files, never folders, so ``status`` does not
take them for snapshots; they are never removed (removing a lock file that
another process is about to lock would let two processes in at once).

A launch of many experiments takes their locks in one fixed order (sorted by
path), so two launches of overlapping sets cannot deadlock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nrl_launch.errors import SnapshotError

Emit = Callable[[str], None]
LOCK_SUFFIX = ".lock"
# flock(2) is not available on every network filesystem (e.g. Lustre mounted
# without -o flock): there the launch goes on without it, and says so.
_NO_LOCKING_ERRNOS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}
SPARE_DESCRIPTORS = 256  # for everything else a launch opens while it holds the locks


def lock_path(snapshot_dir: Path) -> Path:
    """The lock file of the snapshot ``snapshot_dir``: a hidden sibling file."""
    return snapshot_dir.parent / f".{snapshot_dir.name}{LOCK_SUFFIX}"


def waiting_line(experiment: str, lock: Path) -> str:
    """What a process says on stderr, once, when another one holds ``lock``."""
    return (f"[INFO]: waiting for another launch, continue.sh or code_snapshot.sh of experiment {experiment} "
            f"to finish with its snapshot (lock {lock})")


def _open(lock: Path) -> int:
    """Open (creating it and its folder) the lock file; SnapshotError on failure."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise SnapshotError(f"cannot open the lock file {lock}: {e.strerror or e}") from e


def _acquire(snapshot_dir: Path, err: Emit) -> int | None:
    """Lock ``snapshot_dir`` exclusively, waiting if needed; the open descriptor
    (closing it releases the lock), or None when the filesystem cannot lock."""
    lock = lock_path(snapshot_dir)
    fd = _open(lock)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            err(waiting_line(snapshot_dir.name, lock))
            fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:
        os.close(fd)
        if e.errno in _NO_LOCKING_ERRNOS:
            err(f"[WARNING]: cannot lock {lock} ({e.strerror}): launches of experiment {snapshot_dir.name} "
                "running at the same time are not kept apart")
            return None
        raise SnapshotError(f"cannot lock {lock}: {e.strerror or e}") from e
    except BaseException:  # Ctrl-C while waiting
        os.close(fd)
        raise
    return fd


def lock_order(snapshot_dirs: Iterable[Path]) -> list[Path]:
    """The snapshots to lock, each once, in the one order every launch uses."""
    # Sorted by the bytes of the lock path: the same order in every process,
    # whatever its locale. Each path once: a second flock of the same file in
    # one process would wait for the first forever.
    return sorted({Path(d) for d in snapshot_dirs}, key=lambda d: os.fsencode(lock_path(d)))


def _make_room_for(count: int) -> None:
    """Raise the soft limit of open files so that ``count`` lock files can stay
    open (a suite of a thousand recipes exceeds the usual 1024); SnapshotError
    when even the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = count + SPARE_DESCRIPTORS
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise SnapshotError(f"cannot lock {count} experiments at once: the limit of open files is {hard} "
                            f"(ulimit -Hn); launch them in smaller groups")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@contextmanager
def experiment_locks(snapshot_dirs: Iterable[Path], err: Emit) -> Iterator[None]:
    """Hold the locks of every snapshot in ``snapshot_dirs`` for the ``with`` block."""
    ordered = lock_order(snapshot_dirs)
    _make_room_for(len(ordered))
    held: list[int] = []
    try:
        for snapshot_dir in ordered:
            fd = _acquire(snapshot_dir, err)
            if fd is not None:
                held.append(fd)
        yield
    finally:
        for fd in reversed(held):
            os.close(fd)
