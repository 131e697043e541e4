"""Code snapshots: the filesystem side (spec section 4, docs/snapshots.md).

A snapshot is a folder holding the tracked files of a working tree, with their
working-tree content, made under a temporary sibling name and renamed into
place once complete: a folder at the destination is always a complete
snapshot. Its files keep their permission bits, so a snapshot of its own can be
hot-fixed as the bash launcher's could; only files that snapshots share through
hard links are made read-only (write bits cleared, other bits kept), since a
write would change every snapshot that shares them. The manifest
``.nrl_launch.yaml`` is always writable.

``SnapshotBatch`` makes several snapshots of one tree in one launch: the first
one is a real copy (a reflink where the filesystem can), later ones hard-link
to the first one's files (``link``, and ``auto`` on a filesystem without
reflinks) or copy it again (``copy``, and ``auto`` where reflinks make the copy
share its bytes until one side writes). :func:`make_writable` gives a snapshot
files of its own (``nrl-launch snapshot --writable``).

This module does not import GitPython: the file list comes from the caller.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, TypeVar

from nrl_launch.errors import SnapshotError
from nrl_launch.experiment import manifest as manifest_mod
from nrl_launch.settings import SNAPSHOT_MODES, SnapshotMode

_HAVE_FCNTL = True
try:  # Linux only; without it reflinks are simply never attempted
    import fcntl
except ImportError:  # pragma: no cover - non-Linux
    _HAVE_FCNTL = False

MODES = SNAPSHOT_MODES
FICLONE = 0x40049409  # _IOW(0x94, 9, int): clone a whole file (btrfs, XFS, ...)
CHUNK = 128  # files per unit of work handed to a worker thread
STALE_FOREIGN_TMP_SECONDS = 24 * 3600  # age after which another host's tmp is removed
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_NO_REFLINK_ERRNOS = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF}

Progress = Callable[[int, int], None]
ManifestSource = manifest_mod.Manifest | Callable[["SnapshotResult"], manifest_mod.Manifest] | None


@dataclass(frozen=True)
class SnapshotResult:
    """What ``ensure`` did for one destination."""

    path: Path  # the snapshot folder
    created: bool  # False when an existing complete snapshot was reused
    mode_used: str  # "reflink", "copy" or "link"; the recorded mode when reused
    files: int  # files (regular + symlinks) in the snapshot
    bytes: int  # total size of its regular files


class _Entry(NamedTuple):
    """One file of a snapshot, as found when the first copy was made."""

    rel: str
    is_link: bool
    target: str  # symlink target ("" for a regular file)
    size: int
    mode: int  # permission bits of the snapshot file (the working tree file's)


class _Listing(NamedTuple):
    """What a snapshot of the tree holds: its files and its empty folders."""

    entries: tuple[_Entry, ...]
    # Folders of submodules that are registered but not checked out: they
    # appear empty in the snapshot, as rsync --files-from would leave them.
    empty_dirs: tuple[str, ...]
    parents: tuple[str, ...] = ()  # the folders of the entries, parents first (found once, made for each snapshot)

    def make_folders(self, root: Path) -> None:
        """Create every folder the listing needs under ``root``."""
        for parent in self.parents:
            os.makedirs(os.path.join(root, parent), exist_ok=True)
        for rel in self.empty_dirs:
            os.makedirs(root / rel, exist_ok=True)


class _CrossDevice(Exception):
    """Internal: hard links are impossible between the base and the destination."""


def validate_mode(mode: str) -> SnapshotMode:
    """Return ``mode`` if it is a valid SNAPSHOT_MODE, else raise SnapshotError."""
    if mode not in MODES:
        raise SnapshotError(f"invalid snapshot mode {mode!r}: expected one of {', '.join(MODES)}")
    return mode


def read_only_mode(st_mode: int) -> int:
    """Permission bits for a snapshot file copied from a file of mode ``st_mode``."""
    return stat.S_IMODE(st_mode) & ~_WRITE_BITS & 0o777


# --------------------------------------------------------------------------- low level


def _clone_fd(src_fd: int, dst_fd: int) -> bool:
    """Try a reflink of src into dst; False when the filesystem can't."""
    if not _HAVE_FCNTL:
        return False
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError as e:
        if e.errno in _NO_REFLINK_ERRNOS:
            return False
        raise
    return True


def _copy_fd(src_fd: int, dst_fd: int) -> None:
    """Copy the whole content of src into dst, in the kernel when possible."""
    try:
        while os.copy_file_range(src_fd, dst_fd, 1 << 30) > 0:
            pass
        return
    except (AttributeError, OSError) as e:
        if isinstance(e, OSError) and e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    os.lseek(src_fd, 0, os.SEEK_SET)
    os.lseek(dst_fd, 0, os.SEEK_SET)
    os.ftruncate(dst_fd, 0)
    while True:
        block = os.read(src_fd, 1 << 20)
        if not block:
            return
        view = memoryview(block)
        while view:
            view = view[os.write(dst_fd, view):]


def _copy_regular(src: str, dst: str, mode: int, try_reflink: bool) -> bool:
    """Copy one regular file (content + ``mode``); True if it was reflinked."""
    src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            cloned = try_reflink and _clone_fd(src_fd, dst_fd)
            if not cloned:
                _copy_fd(src_fd, dst_fd)
            os.fchmod(dst_fd, mode)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    return cloned


def _remove_tree(path: Path) -> None:
    """Remove a (possibly partial) snapshot tree, best effort."""
    shutil.rmtree(path, ignore_errors=True)


def _parents(rels: Iterable[str]) -> tuple[str, ...]:
    """The parent folders of ``rels``, each once, sorted (a folder before the ones inside it)."""
    return tuple(sorted({os.path.dirname(rel) for rel in rels} - {""}))


_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def _chunks(items: Sequence[_Item], size: int) -> list[Sequence[_Item]]:
    """Split ``items`` into consecutive slices of at most ``size``."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def _run_parallel(work: Callable[[Sequence[_Item]], _Result], items: Sequence[_Item], pool: _Pool,
                  progress: Progress | None) -> list[_Result]:
    """Run ``work`` on chunks of ``items`` in ``pool``'s threads; return the results in order.
    The first exception cancels what has not started and is raised once the running chunks
    have finished."""
    chunks = _chunks(items, CHUNK)
    total = len(items)
    if progress is not None:
        progress(0, total)
    executor = pool.get() if len(chunks) > 1 else None
    if executor is None:
        results: list[_Result] = []
        for chunk in chunks:
            results.append(work(chunk))
            if progress is not None:
                progress(sum(len(c) for c in chunks[:len(results)]), total)
        return results
    futures: dict[Future[_Result], int] = {}
    try:
        futures.update((executor.submit(work, chunk), len(chunk)) for chunk in chunks)
        pending = set(futures)
        done_count = 0
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
                done_count += futures[future]
            if progress is not None:
                progress(done_count, total)
        return [future.result() for future in futures]
    finally:
        # on any exit (error, Ctrl-C): drop the chunks not started, wait for the running ones
        for future in futures:
            future.cancel()
        wait(futures)


class _Pool:
    """The worker threads of one batch, started at the first snapshot that needs them and kept
    for the next ones (a launch makes hundreds of snapshots: starting threads for each cost more
    than linking a small tree)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ThreadPoolExecutor | None = None

    def get(self) -> ThreadPoolExecutor | None:
        """The threads (None: one worker, the caller's thread does the work)."""
        if self.workers <= 1:
            return None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="nrl-snapshot")
        return self._executor

    def close(self) -> None:
        """Stop the threads (a later snapshot starts new ones)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def _default_workers() -> int:
    """Threads for copying: I/O bound, so a few per CPU."""
    return min(16, 4 * (os.cpu_count() or 2))


# --------------------------------------------------------------------------- destinations


def _tmp_prefix(dest: Path) -> str:
    """Name prefix of the temporary folders made for ``dest``."""
    return f".{dest.name}.tmp-"


def _make_tmp(dest: Path) -> Path:
    """Create a fresh temporary sibling folder for ``dest``."""
    name = f"{_tmp_prefix(dest)}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = dest.parent / name
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise SnapshotError(f"cannot create the snapshot folder {tmp}: {e}") from e
    return tmp


def _pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tmp_is_stale(path: Path, prefix: str, host: str, now: float) -> bool:
    """True for a leftover tmp folder whose launch is certainly gone."""
    parts = path.name[len(prefix):].rsplit("-", 2)  # host, pid, random token
    if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
        return not _pid_alive(int(parts[1]))
    try:
        return now - path.lstat().st_mtime > STALE_FOREIGN_TMP_SECONDS
    except OSError:
        return False


def clean_stale_tmps(dest: Path) -> list[Path]:
    """Remove the temporary folders of interrupted launches for ``dest``.

    A tmp folder made on this host is removed when its process is gone; one
    made on another host when it is older than a day. Returns what was removed.
    """
    dest = Path(dest)
    prefix = _tmp_prefix(dest)
    host, now = socket.gethostname(), time.time()
    removed: list[Path] = []
    try:
        # folders only: a lock file (``.<experiment>.lock``, locks.py) may share the prefix. One scandir,
        # no Path per entry: a launch looks here once per snapshot, in a folder of hundreds
        with os.scandir(dest.parent) as entries:
            candidates = [Path(entry.path) for entry in entries
                          if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=True)]
    except OSError:
        return removed
    for path in candidates:
        if _tmp_is_stale(path, prefix, host, now):
            _remove_tree(path)
            removed.append(path)
    return removed


def is_published(dest: Path) -> bool:
    """True when a complete snapshot is at ``dest`` (its manifest is not read).

    An empty folder is not a snapshot (creation replaces it); anything else
    at ``dest`` was published by a rename, so it is complete.
    """
    try:
        st = dest.lstat()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise SnapshotError(f"cannot inspect {dest}: {e}") from e
    if not stat.S_ISDIR(st.st_mode):
        raise SnapshotError(f"{dest} exists and is not a snapshot folder")
    return any(os.scandir(dest))


def existing_snapshot(dest: Path) -> SnapshotResult | None:
    """The reuse result for a complete snapshot at ``dest``, or None; the mode, files and
    bytes its manifest records ("unknown", 0, 0 without a readable one)."""
    if not is_published(dest):
        return None
    try:
        stats = manifest_mod.read_manifest(dest).snapshot
    except SnapshotError:  # e.g. made by an older launcher
        stats = manifest_mod.SnapshotStats()
    return SnapshotResult(dest, False, stats.mode or "unknown", stats.files or 0, stats.size or 0)


def _publish(tmp: Path, dest: Path) -> bool:
    """Rename ``tmp`` to ``dest``; False if a concurrent launch got there first."""
    try:
        os.rename(tmp, dest)
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST) or (e.errno == errno.ENOTDIR and dest.exists()):
            return False
        raise SnapshotError(f"cannot move the snapshot into place at {dest}: {e}") from e
    return True


# --------------------------------------------------------------------------- batch


@dataclass(frozen=True)
class _BaseCopy:
    """The first snapshot a batch made: later ones link to (or copy) it."""

    path: Path
    listing: _Listing
    reflinked: bool  # its files are reflinks: copies of it share their bytes until written (copy on write)


class SnapshotBatch:
    """Snapshots of one working tree for the experiments of one launch.

    The file list is scanned once; the first snapshot this batch creates is a
    copy of the working tree; later ones are hard links to it (``link``, and
    ``auto`` when on the same filesystem) or copies of it (``copy``), so every
    snapshot of a batch has the same content.
    """

    def __init__(self, src_root: Path, files: Sequence[str], *, mode: str = "auto",
                 progress: Progress | None = None, workers: int | None = None) -> None:
        self.src_root = Path(src_root)
        self.files = list(files)
        self.mode = validate_mode(mode)
        self.progress = progress
        self.workers = workers if workers is not None else _default_workers()
        self._pool = _Pool(self.workers)
        self._base: _BaseCopy | None = None  # set once, by the first snapshot published
        self._try_reflink = True
        self._base_shared = False  # the base's files were made read-only: snapshots link to them

    def close(self) -> None:
        """Stop the batch's worker threads (it can still make snapshots: it starts new ones)."""
        self._pool.close()

    def ensure(self, dest: Path, *, manifest: ManifestSource = None,
               progress: Progress | None = None) -> SnapshotResult:
        """Make sure a complete snapshot exists at ``dest`` and describe it.

        An existing snapshot is reused as is (``created=False``). Otherwise it
        is built in a temporary sibling folder, ``manifest`` (a dict, or a
        callable given the result) is written into it, and it is renamed into
        place. Raises SnapshotError on any failure, leaving nothing at ``dest``.
        """
        dest = Path(dest)
        progress = progress if progress is not None else self.progress
        found = existing_snapshot(dest)
        if found is not None:
            return found
        clean_stale_tmps(dest)
        tmp = _make_tmp(dest)
        published = False
        try:
            filled, listing = self._fill(tmp, progress)
            result = replace(filled, path=dest)
            self._write_manifest(tmp, manifest, result)
            published = _publish(tmp, dest)
        except OSError as e:
            raise SnapshotError(f"cannot create the snapshot {dest}: {e}") from e
        finally:
            if not published:
                _remove_tree(tmp)
        if not published:
            return self._reuse_after_race(dest)
        if self._base is None:
            self._base = _BaseCopy(dest, listing, result.mode_used == "reflink")
        return result

    def _reuse_after_race(self, dest: Path) -> SnapshotResult:
        """Describe the snapshot a concurrent launch put at ``dest``."""
        found = existing_snapshot(dest)
        if found is None:
            raise SnapshotError(f"{dest} vanished while it was being created")
        return found

    def _write_manifest(self, tmp: Path, manifest: ManifestSource, result: SnapshotResult) -> None:
        """Write the manifest (if any) into the not yet published folder."""
        if manifest is None:
            return
        data = manifest(result) if callable(manifest) else manifest.with_snapshot(
            result.mode_used, result.files, result.bytes)
        manifest_mod.write_manifest(tmp, data)

    def _fill(self, tmp: Path, progress: Progress | None) -> tuple[SnapshotResult, _Listing]:
        """Populate ``tmp``; the result's path is a placeholder. Also returns what was copied."""
        base = self._base
        if base is None:
            listing = self._scan()
            return self._copy_from(self.src_root, listing, tmp, progress), listing
        # auto: where reflinks make a copy share its bytes, copy (each snapshot keeps files of its own)
        if self.mode == "link" or (self.mode == "auto" and not base.reflinked):
            try:
                return self._link_from(base, tmp, progress), base.listing
            except _CrossDevice as e:
                if self.mode == "link":
                    raise SnapshotError(
                        f"SNAPSHOT_MODE=link: cannot hard-link {tmp.parent} to {base.path} "
                        f"(different filesystems); use SNAPSHOT_MODE=auto or copy") from e
                _remove_tree(tmp)
                tmp.mkdir()
        return self._copy_from(base.path, base.listing, tmp, progress), base.listing

    # -- copying

    def _scan(self) -> _Listing:
        """lstat the listed paths of the source tree (skipping vanished ones)."""
        entries = []
        empty_dirs = []
        for rel in self.files:
            src = os.path.join(self.src_root, rel)
            try:
                st = os.lstat(src)
                if stat.S_ISLNK(st.st_mode):
                    entries.append(_Entry(rel, True, os.readlink(src), 0, 0))
                elif stat.S_ISREG(st.st_mode):
                    entries.append(_Entry(rel, False, "", st.st_size, stat.S_IMODE(st.st_mode) & 0o777))
                elif stat.S_ISDIR(st.st_mode):  # a submodule that is not checked out
                    empty_dirs.append(rel)
            except FileNotFoundError:
                continue  # deleted from the working tree
            except OSError as e:
                raise SnapshotError(f"cannot read {src}: {e}") from e
        return _Listing(tuple(entries), tuple(empty_dirs), _parents(entry.rel for entry in entries))

    def _copy_from(self, src_root: Path, listing: _Listing, tmp: Path,
                   progress: Progress | None) -> SnapshotResult:
        """Copy the ``listing`` of ``src_root`` into ``tmp``."""
        listing.make_folders(tmp)
        entries = listing.entries
        src_text, tmp_text = str(src_root), str(tmp)

        def work(chunk: Sequence[_Entry]) -> tuple[int, int]:
            regular = cloned = 0
            for entry in chunk:
                dst = os.path.join(tmp_text, entry.rel)
                if entry.is_link:
                    os.symlink(entry.target, dst)
                    continue
                regular += 1
                if _copy_regular(os.path.join(src_text, entry.rel), dst, entry.mode, self._try_reflink):
                    cloned += 1
                else:
                    self._try_reflink = False  # don't retry a failing ioctl per file
            return regular, cloned

        try:
            counts = _run_parallel(work, entries, self._pool, progress)
        except OSError as e:
            raise SnapshotError(f"cannot copy {src_root} into {tmp}: {e}") from e
        regular = sum(c[0] for c in counts)
        cloned = sum(c[1] for c in counts)
        mode_used = "reflink" if regular and cloned == regular else "copy"
        return SnapshotResult(tmp, True, mode_used, len(entries), sum(e.size for e in entries))

    # -- linking

    def _share(self, base: _BaseCopy) -> None:
        """Make the base's files read-only before the first snapshot links to them: a write
        to a file that snapshots share would change all of them (``nrl-launch snapshot
        --writable`` gives one snapshot files of its own)."""
        if self._base_shared:
            return
        try:
            for entry in base.listing.entries:
                if not entry.is_link:
                    os.chmod(os.path.join(base.path, entry.rel), read_only_mode(entry.mode))
        except OSError as e:
            raise SnapshotError(f"cannot make the files of {base.path} read-only before sharing them: {e}") from e
        self._base_shared = True

    def _link_from(self, base: _BaseCopy, tmp: Path, progress: Progress | None) -> SnapshotResult:
        """Hard-link the base snapshot's files into ``tmp`` (_CrossDevice if impossible)."""
        try:
            same_device = os.stat(base.path).st_dev == os.stat(tmp).st_dev
        except OSError as e:
            raise SnapshotError(f"cannot inspect {base.path} or {tmp}: {e}") from e
        if not same_device:
            raise _CrossDevice(str(tmp))
        self._share(base)
        base.listing.make_folders(tmp)
        entries = base.listing.entries
        base_text, tmp_text = str(base.path), str(tmp)

        def work(chunk: Sequence[_Entry]) -> None:
            for entry in chunk:
                dst = os.path.join(tmp_text, entry.rel)
                if entry.is_link:
                    os.symlink(entry.target, dst)
                else:
                    os.link(os.path.join(base_text, entry.rel), dst, follow_symlinks=False)

        try:
            _run_parallel(work, entries, self._pool, progress)
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise _CrossDevice(str(tmp)) from e
            raise SnapshotError(f"cannot hard-link {base.path} into {tmp}: {e}") from e
        return SnapshotResult(tmp, True, "link", len(entries), sum(e.size for e in entries))


class Writable(NamedTuple):
    """What :func:`make_writable` did."""

    copied: int  # shared files replaced by a private copy
    unlocked: int  # read-only files of its own given the owner's write bit


def make_writable(dest: Path) -> Writable:
    """Give the snapshot at ``dest`` files of its own that their owner can write, so that it can
    be hot-fixed (then ``continue.sh``) without changing any other snapshot: a file it shares
    through a hard link (another snapshot of its launch) is replaced by a private copy (a
    reflink where the filesystem can: the bytes stay shared until written), made beside it and
    renamed over it (a job reading the old file keeps reading it); a read-only file of its own
    gets its owner's write bit. Symlinks are left alone. The caller holds the experiment's lock."""
    copied = unlocked = 0
    try:
        for folder, _dirs, names in os.walk(dest):  # symlinked folders are not followed
            for name in names:
                path = os.path.join(folder, name)
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                mode = stat.S_IMODE(st.st_mode) | stat.S_IWUSR
                if st.st_nlink > 1:
                    private = os.path.join(folder, f".{name}.writable-{uuid.uuid4().hex[:8]}")
                    try:
                        _copy_regular(path, private, mode, try_reflink=True)
                        os.replace(private, path)
                    finally:
                        if os.path.lexists(private):
                            os.unlink(private)
                    copied += 1
                elif not st.st_mode & stat.S_IWUSR:
                    os.chmod(path, mode)
                    unlocked += 1
    except OSError as e:
        raise SnapshotError(f"cannot make {dest} writable: {e}") from e
    return Writable(copied, unlocked)


def writable_snapshot(dest: Path, *, err: Callable[[str], None]) -> Writable:
    """``nrl-launch snapshot --writable``: :func:`make_writable` under the experiment's lock (no
    launch, ``continue.sh`` or retry of it meanwhile), said on stderr."""
    from nrl_launch.experiment.locks import experiment_locks

    with experiment_locks([dest], err):
        done = make_writable(dest)
    err(f"[INFO]: {dest}: {done.copied} shared file{'s' * (done.copied != 1)} replaced by a copy of its own, "
        f"{done.unlocked} read-only file{'s' * (done.unlocked != 1)} made writable; editing them changes no other "
        "snapshot")
    return done


def ensure_snapshot(src_root: Path, files: Sequence[str], dest: Path, *, mode: str = "auto",
                    progress: Progress | None = None,
                    manifest: ManifestSource = None) -> SnapshotResult:
    """Make sure a complete snapshot of ``files`` (paths relative to
    ``src_root``) exists at ``dest``; a one-snapshot ``SnapshotBatch``.

    See ``SnapshotBatch.ensure``. Raises SnapshotError.
    """
    batch = SnapshotBatch(src_root, files, mode=mode, progress=progress)
    try:
        return batch.ensure(dest, manifest=manifest)
    finally:
        batch.close()
