"""Tests of nrl_launch.experiment.snapshot with real git trees (see test_gitrepo helpers)."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from nrl_launch.errors import SnapshotError
from nrl_launch.experiment import snapshot as snapshot_mod
from nrl_launch.experiment.manifest import MANIFEST_NAME, Manifest, SnapshotStats, read_manifest
from nrl_launch.experiment.snapshot import SnapshotBatch, ensure_snapshot
from testkit import TREE_FILES, copy_tree, git, write


@pytest.fixture
def tree(tree_template: Path, tmp_path: Path) -> Path:
    """A repository with a submodule (with a nested submodule), an uncommitted
    edit, an untracked and an ignored file."""
    top = copy_tree(tree_template, tmp_path)
    write(top / "README.md", "readme edited, not committed\n")
    write(top / "third_party/sub/deps/nested/nested.txt", "nested edited\n")
    write(top / "untracked.txt", "untracked\n")
    write(top / "debug.log", "ignored\n")
    return top


def tracked(root: Path) -> list[str]:
    from nrl_launch.experiment.gitrepo import list_tracked_files

    return list_tracked_files(root)


def snapshot_files(path: Path) -> list[str]:
    """Every non-directory below ``path``, relative, sorted (manifest excluded)."""
    found = []
    for folder, _dirs, files in os.walk(path):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), path)
            if rel != MANIFEST_NAME:
                found.append(rel)
    return sorted(found)


def test_snapshot_contents(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "snaps" / "exp1"
    result = ensure_snapshot(tree, tracked(tree), dest)
    assert result.path == dest and result.created
    assert result.mode_used in ("copy", "reflink")
    assert result.files == len(TREE_FILES)
    assert snapshot_files(dest) == TREE_FILES
    assert (dest / "README.md").read_text() == "readme edited, not committed\n"
    assert (dest / "third_party/sub/deps/nested/nested.txt").read_text() == "nested edited\n"
    assert not (dest / "untracked.txt").exists() and not (dest / "debug.log").exists()
    assert result.bytes == sum((tree / f).lstat().st_size for f in TREE_FILES if f != "run-link.sh")


def test_deleted_files_are_skipped_and_unchecked_out_submodules_are_empty_folders(tree: Path,
                                                                                   tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tree), str(clone))  # the submodule is registered, not checked out
    (clone / "README.md").unlink()  # deleted in the working tree, still tracked
    batch = SnapshotBatch(clone, tracked(clone))
    for dest in (tmp_path / "copy", tmp_path / "linked"):  # the first copy, and a link to it
        batch.ensure(dest)
        assert snapshot_files(dest) == [".gitignore", ".gitmodules", "run-link.sh", "tests/test_suites/llm/exp1.sh"]
        assert (dest / "third_party" / "sub").is_dir()
        assert list((dest / "third_party" / "sub").iterdir()) == []


def test_exec_bits_and_symlinks_kept(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "exp1"
    ensure_snapshot(tree, tracked(tree), dest)
    script = dest / "tests/test_suites/llm/exp1.sh"
    # the working tree's permission bits, write bits included: a snapshot of its own can be hot-fixed
    assert stat.S_IMODE(script.stat().st_mode) == stat.S_IMODE((tree / "tests/test_suites/llm/exp1.sh").stat().st_mode)
    assert stat.S_IMODE(script.stat().st_mode) & 0o111
    assert stat.S_IMODE((dest / "README.md").stat().st_mode) == stat.S_IMODE((tree / "README.md").stat().st_mode)
    link = dest / "run-link.sh"
    assert link.is_symlink()
    assert os.readlink(link) == "tests/test_suites/llm/exp1.sh"
    assert link.read_text() == "#!/bin/bash\necho exp1\n"


def test_existing_snapshot_is_reused(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "exp1"
    first = ensure_snapshot(tree, tracked(tree), dest, manifest=Manifest("exp1"))
    write(tree / "README.md", "edited again\n")
    again = ensure_snapshot(tree, tracked(tree), dest)
    assert again.created is False and again.path == dest
    assert (again.mode_used, again.files, again.bytes) == (first.mode_used, first.files, first.bytes)
    assert (dest / "README.md").read_text() == "readme edited, not committed\n"


def test_interrupted_creation_leaves_nothing(tree: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # the disk fails on the fourth file: every copied file gets its mode with fchmod
    real_fchmod = os.fchmod
    calls = {"n": 0}
    lock = threading.Lock()

    def failing_fchmod(fd: int, mode: int) -> None:
        with lock:
            calls["n"] += 1
            if calls["n"] > 3:
                raise OSError(5, "simulated I/O error")
        real_fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", failing_fchmod)
    dest = tmp_path / "snaps" / "exp1"
    with pytest.raises(SnapshotError, match="simulated I/O error"):
        ensure_snapshot(tree, tracked(tree), dest)
    assert calls["n"] > 3
    assert not dest.exists()
    assert list((tmp_path / "snaps").iterdir()) == []  # the tmp folder is gone too

    monkeypatch.setattr(os, "fchmod", real_fchmod)
    result = ensure_snapshot(tree, tracked(tree), dest)
    assert result.created and snapshot_files(dest) == TREE_FILES


def test_leftover_tmp_of_a_dead_launch_is_cleaned(tree: Path, tmp_path: Path) -> None:
    import socket

    snaps = tmp_path / "snaps"
    dead = snaps / f".exp1.tmp-{socket.gethostname()}-999999999-abcdef12"
    alive = snaps / f".exp1.tmp-{socket.gethostname()}-{os.getpid()}-abcdef12"
    other = snaps / ".exp1.tmp-some-other-host-12-abcdef12"
    for folder in (dead, alive, other):
        write(folder / "README.md", "partial")
    ensure_snapshot(tree, tracked(tree), snaps / "exp1")
    assert not dead.exists()
    assert alive.exists() and other.exists()  # possibly still in progress
    assert (snaps / "exp1/README.md").exists()


def test_a_lock_file_sharing_the_tmp_prefix_is_left_alone(tmp_path: Path) -> None:
    # the lock of experiment "exp1.tmp-x" starts like a tmp folder of "exp1"
    lock = write(tmp_path / "snaps" / ".exp1.tmp-x.lock", "")
    os.utime(lock, (0, 0))  # older than a day, like another host's leftover
    assert snapshot_mod.clean_stale_tmps(tmp_path / "snaps" / "exp1") == []
    assert lock.is_file()


def test_losing_a_race_reuses_the_winner(tree: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "exp1"
    winner = ensure_snapshot(tree, tracked(tree), tmp_path / "winner", manifest=Manifest())
    winners_manifest = read_manifest(winner.path)
    real_rename = os.rename

    def other_launch_first(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == dest:
            real_rename(winner.path, dest)  # the other launch publishes just before this one
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", other_launch_first)
    result = ensure_snapshot(tree, tracked(tree), dest)
    assert result.created is False
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".exp1")] == []
    assert snapshot_files(dest) == TREE_FILES
    assert read_manifest(dest) == winners_manifest  # the winner's snapshot, not a mix of both


def test_invalid_mode(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="invalid snapshot mode 'fast'"):
        ensure_snapshot(tree, tracked(tree), tmp_path / "x", mode="fast")
    assert not (tmp_path / "x").exists()


def test_destination_is_a_file(tree: Path, tmp_path: Path) -> None:
    write(tmp_path / "x", "file")
    with pytest.raises(SnapshotError, match="not a snapshot folder"):
        ensure_snapshot(tree, tracked(tree), tmp_path / "x")


def test_progress_reports_all_files(tree: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    ensure_snapshot(tree, tracked(tree), tmp_path / "x", progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, len(TREE_FILES))
    assert seen[-1] == (len(TREE_FILES), len(TREE_FILES))


def test_manifest_written_before_publish(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What the folder holds at the moment it is renamed into place (the OS call
    # is watched, not replaced): a snapshot without its manifest is never visible.
    real_rename = os.rename
    at_rename: list[tuple[Path, Manifest | None]] = []

    def watched_rename(src, dst, *args, **kwargs):
        held = (Path(src) / MANIFEST_NAME).is_file()
        at_rename.append((Path(dst), read_manifest(Path(src)) if held else None))
        return real_rename(src, dst, *args, **kwargs)

    seen_paths: list[Path] = []

    def make_manifest(result):
        seen_paths.append(result.path)
        return Manifest("exp1", snapshot=SnapshotStats(result.mode_used, result.files, result.bytes))

    monkeypatch.setattr(os, "rename", watched_rename)
    dest = tmp_path / "exp1"
    result = ensure_snapshot(tree, tracked(tree), dest, manifest=make_manifest)
    stats = SnapshotStats(result.mode_used, len(TREE_FILES), result.bytes)
    assert at_rename == [(dest, Manifest("exp1", snapshot=stats))]
    assert seen_paths == [dest]
    assert read_manifest(dest).snapshot == stats
    assert os.access(dest / MANIFEST_NAME, os.W_OK)
    assert stat.S_IMODE((dest / MANIFEST_NAME).stat().st_mode) & stat.S_IWUSR


def test_a_manifest_that_cannot_be_written_leaves_no_snapshot(tree: Path, tmp_path: Path) -> None:
    # Published first and described after, a failed manifest would leave a
    # folder that the next launch reuses as a complete snapshot.
    def disk_full(result):
        raise SnapshotError(f"cannot write the manifest {result.path}: [Errno 28] No space left on device")

    dest = tmp_path / "snaps" / "exp1"
    with pytest.raises(SnapshotError, match="No space left on device"):
        ensure_snapshot(tree, tracked(tree), dest, manifest=disk_full)
    assert list((tmp_path / "snaps").iterdir()) == []
    again = ensure_snapshot(tree, tracked(tree), dest, manifest=Manifest("exp1"))
    assert again.created and read_manifest(dest).experiment == "exp1"


# --------------------------------------------------------------------------- batches and modes


def inode(path: Path) -> int:
    return path.lstat().st_ino


def test_link_mode_isolation(tree: Path, tmp_path: Path) -> None:
    files = tracked(tree)
    batch = SnapshotBatch(tree, files, mode="link")
    results = [batch.ensure(tmp_path / f"exp{i}", manifest=Manifest(f"exp{i}"))
               for i in range(3)]
    assert [r.mode_used for r in results][1:] == ["link", "link"]
    assert results[0].mode_used in ("copy", "reflink")
    first, second, third = (r.path for r in results)
    for rel in files:
        if rel == "run-link.sh":
            assert os.readlink(third / rel) == "tests/test_suites/llm/exp1.sh"
            continue
        assert inode(second / rel) == inode(first / rel) == inode(third / rel)
        assert inode(first / rel) != inode(tree / rel)  # a copy of the source, not a link to it
        assert (first / rel).stat().st_mode & 0o222 == 0  # read-only for everybody
    assert snapshot_files(third) == TREE_FILES
    # the manifests are separate, writable files
    from nrl_launch.experiment.manifest import append_run

    append_run(second, "42", "1/1")
    assert read_manifest(second).runs[0].job_id == "42"
    assert read_manifest(first).runs == () and read_manifest(third).runs == ()
    # editing the source tree (in place or by replacing a file) reaches no snapshot
    with open(tree / "README.md", "w") as handle:
        handle.write("edited after the launch\n")
    os.replace(write(tree / "new.tmp", "replaced\n"), tree / "tests/test_suites/llm/exp1.sh")
    for snap in (first, second, third):
        assert (snap / "README.md").read_text() == "readme edited, not committed\n"
        assert (snap / "tests/test_suites/llm/exp1.sh").read_text() == "#!/bin/bash\necho exp1\n"


def test_batch_snapshots_share_the_first_copy_content(tree: Path, tmp_path: Path) -> None:
    batch = SnapshotBatch(tree, tracked(tree))  # auto
    batch.ensure(tmp_path / "a")
    write(tree / "README.md", "edited between two snapshots\n")
    for mode in ("auto", "copy"):
        batch.mode = mode
        result = batch.ensure(tmp_path / mode)
        assert (result.path / "README.md").read_text() == "readme edited, not committed\n"


def test_copy_mode_isolation(tree: Path, tmp_path: Path) -> None:
    files = tracked(tree)
    batch = SnapshotBatch(tree, files, mode="copy")
    first, second = (batch.ensure(tmp_path / name) for name in ("a", "b"))
    assert first.mode_used in ("copy", "reflink") and second.mode_used in ("copy", "reflink")
    for rel in files:
        if rel != "run-link.sh":
            assert len({inode(first.path / rel), inode(second.path / rel), inode(tree / rel)}) == 3
            assert (second.path / rel).stat().st_mode & stat.S_IWUSR  # files of its own: writable
    target = first.path / "README.md"
    target.write_text("changed by a job\n")
    assert (second.path / "README.md").read_text() == "readme edited, not committed\n"
    assert (tree / "README.md").read_text() == "readme edited, not committed\n"


EXDEV = OSError(18, "Invalid cross-device link")


def test_auto_falls_back_to_copy_across_filesystems(tree: Path, tmp_path: Path, mocker: MockerFixture) -> None:
    batch = SnapshotBatch(tree, tracked(tree), mode="auto")
    first = batch.ensure(tmp_path / "a")
    link = mocker.patch.object(os, "link", side_effect=EXDEV)  # as between two filesystems
    second = batch.ensure(tmp_path / "b")
    assert link.called
    assert second.mode_used in ("copy", "reflink") and second.created
    assert inode(second.path / "README.md") != inode(first.path / "README.md")
    assert snapshot_files(second.path) == TREE_FILES
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_link_mode_refuses_cross_filesystem(tree: Path, tmp_path: Path, mocker: MockerFixture) -> None:
    batch = SnapshotBatch(tree, tracked(tree), mode="link")
    batch.ensure(tmp_path / "a")
    mocker.patch.object(os, "link", side_effect=EXDEV)
    with pytest.raises(SnapshotError, match="different filesystems"):
        batch.ensure(tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_reused_snapshot_is_not_a_link_base(tree: Path, tmp_path: Path) -> None:
    old = ensure_snapshot(tree, tracked(tree), tmp_path / "old")
    write(tree / "README.md", "newer\n")
    batch = SnapshotBatch(tree, tracked(tree))
    assert batch.ensure(tmp_path / "old").created is False
    fresh = batch.ensure(tmp_path / "new")
    assert fresh.mode_used in ("copy", "reflink")
    assert (fresh.path / "README.md").read_text() == "newer\n"
    assert inode(fresh.path / "README.md") != inode(old.path / "README.md")
    linked = batch.ensure(tmp_path / "newer")
    assert linked.mode_used == "link"
    assert inode(linked.path / "README.md") == inode(fresh.path / "README.md")


def test_link_progress(tree: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    batch = SnapshotBatch(tree, tracked(tree), progress=lambda d, t: seen.append((d, t)))
    batch.ensure(tmp_path / "a")
    seen.clear()
    batch.ensure(tmp_path / "b")
    assert seen[-1] == (len(TREE_FILES), len(TREE_FILES))


def test_many_files_in_parallel_chunks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = [f"d{i % 7}/f{i}.txt" for i in range(700)]
    for i, rel in enumerate(files):
        write(src / rel, f"content {i}\n")
    seen: list[tuple[int, int]] = []
    batch = SnapshotBatch(src, files, workers=4, progress=lambda d, t: seen.append((d, t)))
    result = batch.ensure(tmp_path / "a")
    # How many chunks end between two reports depends on the scheduler: the counts only grow, by whole chunks
    # (five of CHUNK files and a last one of 700 % CHUNK, in any order).
    assert result.files == 700 and seen[0] == (0, 700) and seen[-1] == (700, 700)
    done = [d for d, _ in seen]
    assert done == sorted(done) and all(d % snapshot_mod.CHUNK in (0, 700 % snapshot_mod.CHUNK) for d in done)
    assert all((tmp_path / "a" / rel).read_text() == f"content {i}\n" for i, rel in enumerate(files))
    assert batch.ensure(tmp_path / "b").mode_used == "link"


def test_ctrl_c_leaves_nothing(tree: Path, tmp_path: Path, mocker: MockerFixture) -> None:
    # Ctrl-C arrives while a file is being copied
    mocker.patch.object(os, "fchmod", side_effect=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        SnapshotBatch(tree, tracked(tree), workers=4).ensure(tmp_path / "snaps" / "exp1")
    assert list((tmp_path / "snaps").iterdir()) == []


# --------------------------------------------------------------------------- what the filesystem offers
#
# The OS calls below are replaced to play a filesystem this machine does not
# have (no copy_file_range, a failing one, one that reflinks): the snapshot's
# bytes, modes and recorded mode are then checked as a user would see them.


def big_tree(tmp_path: Path) -> tuple[Path, list[str]]:
    """A few files, one of several MiB (several read/write blocks), with modes to keep."""
    src = tmp_path / "src"
    files = {"big.bin": bytes(range(256)) * (3 * 4096 + 7), "exec.sh": b"#!/bin/sh\necho hi\n", "empty": b"",
             "d/e/small.txt": "é\n".encode()}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    (src / "exec.sh").chmod(0o755)
    return src, list(files)


def same_bytes_and_modes(src: Path, dest: Path, files: list[str]) -> None:
    for rel in files:
        assert (dest / rel).read_bytes() == (src / rel).read_bytes(), rel
        assert stat.S_IMODE((dest / rel).stat().st_mode) == stat.S_IMODE((src / rel).stat().st_mode), rel


@pytest.mark.parametrize("kernel", ["no copy_file_range", "cross-device after a partial copy"])
def test_copies_are_byte_exact_without_copy_file_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       kernel: str) -> None:
    import errno

    real = os.copy_file_range
    if kernel == "no copy_file_range":
        monkeypatch.delattr(os, "copy_file_range")
    else:
        def partial_then_exdev(src_fd: int, dst_fd: int, count: int, *args: int) -> int:
            if os.lseek(dst_fd, 0, os.SEEK_CUR) == 0:
                return real(src_fd, dst_fd, min(count, 1000), *args)  # some bytes land, then the kernel gives up
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", partial_then_exdev)
    src, files = big_tree(tmp_path)
    result = SnapshotBatch(src, files, workers=1).ensure(tmp_path / "snap")
    assert (result.created, result.mode_used, result.files) == (True, "copy", 4)
    assert result.bytes == sum((src / rel).stat().st_size for rel in files)
    same_bytes_and_modes(src, tmp_path / "snap", files)


def test_a_reflinking_filesystem_is_used_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    clones: list[int] = []

    def ficlone(dst_fd: int, request: int, src_fd: int) -> int:
        assert request == 0x40049409  # FICLONE, _IOW(0x94, 9, int)
        clones.append(dst_fd)
        os.lseek(src_fd, 0, os.SEEK_SET)
        while block := os.read(src_fd, 1 << 16):
            os.write(dst_fd, block)
        return 0

    monkeypatch.setattr(fcntl, "ioctl", ficlone)
    src, files = big_tree(tmp_path)
    batch = SnapshotBatch(src, files, mode="copy", workers=1)
    first = batch.ensure(tmp_path / "a", manifest=Manifest("a"))
    assert (first.mode_used, first.files, len(clones)) == ("reflink", 4, 4)
    assert read_manifest(tmp_path / "a").snapshot == SnapshotStats("reflink", 4, first.bytes)
    same_bytes_and_modes(src, tmp_path / "a", files)
    assert batch.ensure(tmp_path / "b").mode_used == "reflink"  # copy mode: reflinked from the first one


@pytest.mark.skipif(not os.environ.get("NRL_REFLINK_DIR"),
                    reason="set NRL_REFLINK_DIR to a folder on btrfs or XFS (docs/development.md)")
def test_reflinks_on_a_real_reflinking_filesystem(tmp_path: Path) -> None:
    # Opt-in: CI's disks are ext4, which cannot reflink. The OS is not played here.
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(dir=os.environ["NRL_REFLINK_DIR"]))
    try:
        src, files = big_tree(base)
        batch = SnapshotBatch(src, files, mode="auto", workers=2)
        first = batch.ensure(base / "a", manifest=Manifest("a"))
        assert (first.mode_used, first.files) == ("reflink", 4)
        assert read_manifest(base / "a").snapshot.mode == "reflink"
        same_bytes_and_modes(src, base / "a", files)
        if shutil.which("filefrag"):  # the extents really are shared with the source
            shown = subprocess.run(["filefrag", "-v", str(base / "a" / "big.bin")], capture_output=True, text=True)
            assert "shared" in shown.stdout, shown.stdout
        os.chmod(src / "big.bin", 0o644)
        (src / "big.bin").write_bytes(b"changed after the snapshot")  # copy on write: the snapshot keeps its bytes
        assert (base / "a" / "big.bin").read_bytes() == bytes(range(256)) * (3 * 4096 + 7)
        # auto on a reflinking filesystem: later snapshots are reflinked copies, files of their own
        second = batch.ensure(base / "b")
        assert second.mode_used == "reflink" and inode(base / "b" / "big.bin") != inode(base / "a" / "big.bin")
        (base / "b" / "big.bin").write_bytes(b"hot-fixed")  # writable, and copy on write: a keeps its bytes
        assert (base / "a" / "big.bin").read_bytes() == bytes(range(256)) * (3 * 4096 + 7)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_a_filesystem_without_reflinks_is_asked_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import fcntl

    asked: list[int] = []

    def unsupported(fd: int, request: int, arg: int) -> int:
        asked.append(request)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(fcntl, "ioctl", unsupported)
    src, files = big_tree(tmp_path)
    result = SnapshotBatch(src, files, workers=1).ensure(tmp_path / "a")
    assert (result.mode_used, asked) == ("copy", [0x40049409])
    same_bytes_and_modes(src, tmp_path / "a", files)


def test_a_reflink_that_fails_for_another_reason_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import fcntl

    def disk_error(fd: int, request: int, arg: int) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fcntl, "ioctl", disk_error)
    src, files = big_tree(tmp_path)
    with pytest.raises(SnapshotError) as caught:
        SnapshotBatch(src, files, workers=1).ensure(tmp_path / "snaps" / "a")
    assert str(caught.value).startswith(f"cannot copy {src} into {tmp_path / 'snaps'}/.a.tmp-")
    assert str(caught.value).endswith(": [Errno 5] Input/output error")
    assert list((tmp_path / "snaps").iterdir()) == []


def test_link_mode_results_describe_the_snapshot(tree: Path, tmp_path: Path) -> None:
    batch = SnapshotBatch(tree, tracked(tree), mode="link", workers=1)
    first = batch.ensure(tmp_path / "a")
    second = batch.ensure(tmp_path / "b")
    assert (second.path, second.created, second.mode_used, second.files, second.bytes) == (
        tmp_path / "b", True, "link", first.files, first.bytes)
    assert os.readlink(tmp_path / "b" / "run-link.sh") == "tests/test_suites/llm/exp1.sh"  # a link, not its target


@pytest.mark.parametrize(
    ("name", "age_s", "removed"),
    [
        ("{host}-999999999-abcdef12", 0, True),  # this host, process gone
        ("{host}-{pid}-abcdef12", 10 * 86400, False),  # this host, process alive: even when old
        ("other-host-12-abcdef12", 86400 + 600, True),  # another host: older than a day
        ("other-host-12-abcdef12", 86400 - 600, False),  # another host: not yet a day old
        ("{host}-12x-abcdef12", 0, False),  # not a pid: treated as another host's, fresh
        ("{host}-999999999", 86400 + 600, True),  # not our pattern: by age only
        ("{host}-999999999", 0, False),
    ],
)
def test_which_leftover_tmp_folders_are_cleaned(tmp_path: Path, name: str, age_s: int, removed: bool) -> None:
    import socket
    import time

    folder = tmp_path / (".exp1.tmp-" + name.format(host=socket.gethostname(), pid=os.getpid()))
    write(folder / "README.md", "partial")
    os.utime(folder, (time.time() - age_s, time.time() - age_s))
    assert snapshot_mod.clean_stale_tmps(tmp_path / "exp1") == ([folder] if removed else [])
    assert folder.exists() is not removed


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("parent is a file", "cannot inspect {dest}: [Errno 20] Not a directory: '{dest}'"),
        ("parent is a dangling link", "cannot create the snapshot folder {dest.parent}/.exp1.tmp-"),
        ("dest is a file", "{dest} exists and is not a snapshot folder"),
    ],
)
def test_destinations_that_cannot_hold_a_snapshot(tree: Path, tmp_path: Path, setup: str, message: str) -> None:
    dest = tmp_path / "snaps" / "exp1"
    if setup == "parent is a dangling link":
        dest.parent.symlink_to(tmp_path / "gone")
    else:
        write(dest.parent if setup == "parent is a file" else dest, "a file")
    with pytest.raises(SnapshotError) as caught:
        ensure_snapshot(tree, tracked(tree), dest)
    assert str(caught.value).startswith(message.format(dest=dest))


def test_missing_folders_above_the_snapshot_are_created(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "code_snapshots_bisect" / "abc1234-Fix" / "exp1"  # a nested CODE_SNAPSHOT_DIRNAME
    assert ensure_snapshot(tree, tracked(tree), dest).created
    assert snapshot_files(dest) == TREE_FILES


def test_an_empty_folder_at_the_destination_is_replaced(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "exp1"
    dest.mkdir()  # left by a tool that stopped before copying
    assert ensure_snapshot(tree, tracked(tree), dest).created
    assert snapshot_files(dest) == TREE_FILES


def test_progress_given_to_one_snapshot_of_a_batch(tree: Path, tmp_path: Path) -> None:
    batch = SnapshotBatch(tree, tracked(tree), mode="copy")
    for name in ("a", "b"):  # the first copies the tree, the second copies the first
        seen: list[tuple[int, int]] = []
        batch.ensure(tmp_path / name, progress=lambda d, t, seen=seen: seen.append((d, t)))
        assert (seen[0], seen[-1]) == ((0, len(TREE_FILES)), (len(TREE_FILES), len(TREE_FILES))), name


def test_an_invalid_mode_names_the_valid_ones(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(SnapshotError) as caught:
        SnapshotBatch(tree, tracked(tree), mode="fast")
    assert str(caught.value) == "invalid snapshot mode 'fast': expected one of auto, copy, link"


def test_a_listed_path_that_cannot_be_read_is_an_error(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(SnapshotError) as caught:
        ensure_snapshot(tree, ["README.md/inside"], tmp_path / "snaps" / "exp1")
    assert str(caught.value) == f"cannot read {tree}/README.md/inside: [Errno 20] Not a directory: " \
                                f"'{tree}/README.md/inside'"
    assert list((tmp_path / "snaps").iterdir()) == []


def test_a_failure_in_one_of_many_parallel_chunks_leaves_nothing(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    files = [f"d{i % 9}/f{i}.txt" for i in range(2000)]
    for i, rel in enumerate(files):
        write(src / rel, f"{i}\n")
    real_open = os.open

    def failing_open(path, flags, *args, **kwargs):
        if str(path).endswith("/f1500.txt") and not flags & os.O_CREAT:
            raise OSError(5, "Input/output error")  # the disk fails on one source file
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(SnapshotError, match=r"\[Errno 5\] Input/output error"):
        SnapshotBatch(src, files, workers=4).ensure(tmp_path / "snaps" / "exp1")
    assert list((tmp_path / "snaps").iterdir()) == []


def test_a_rename_that_fails_says_where(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src, dst, *args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "rename", refuse)
    dest = tmp_path / "snaps" / "exp1"
    with pytest.raises(SnapshotError) as caught:
        ensure_snapshot(tree, tracked(tree), dest)
    assert str(caught.value) == f"cannot move the snapshot into place at {dest}: [Errno 30] Read-only file system"
    assert list((tmp_path / "snaps").iterdir()) == []


def test_a_filesystem_that_reflinks_only_some_files_is_recorded_as_copy(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import fcntl

    clones: list[int] = []

    def first_two_only(dst_fd: int, request: int, src_fd: int) -> int:
        if len(clones) == 2:
            raise OSError(errno.EXDEV, "Invalid cross-device link")  # e.g. a submodule on another filesystem
        clones.append(dst_fd)
        os.lseek(src_fd, 0, os.SEEK_SET)
        while block := os.read(src_fd, 1 << 16):
            os.write(dst_fd, block)
        return 0

    monkeypatch.setattr(fcntl, "ioctl", first_two_only)
    src, files = big_tree(tmp_path)
    result = SnapshotBatch(src, files, workers=1).ensure(tmp_path / "a")
    assert (result.mode_used, len(clones)) == ("copy", 2)
    same_bytes_and_modes(src, tmp_path / "a", files)


def test_a_hard_link_that_fails_says_what_it_linked(tree: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    batch = SnapshotBatch(tree, tracked(tree), mode="link", workers=1)
    batch.ensure(tmp_path / "snaps" / "a")

    def broken_link(src, dst, *args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "link", broken_link)
    with pytest.raises(SnapshotError) as caught:
        batch.ensure(tmp_path / "snaps" / "b")
    assert str(caught.value).startswith(f"cannot hard-link {tmp_path / 'snaps' / 'a'} into "
                                        f"{tmp_path / 'snaps'}/.b.tmp-")
    assert str(caught.value).endswith(": [Errno 5] Input/output error")
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == ["a"]


def test_a_live_launch_is_only_asked_whether_it_is_alive(tmp_path: Path) -> None:
    import socket

    child = subprocess.Popen(["sleep", "60"])
    try:
        folder = write(tmp_path / f".exp1.tmp-{socket.gethostname()}-{child.pid}-abcdef12" / "x", "partial").parent
        assert snapshot_mod.clean_stale_tmps(tmp_path / "exp1") == []
        assert folder.exists() and child.poll() is None  # signal 0 only: the launch runs on
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("host", ["node-01", "gpu-a-7"])
def test_leftovers_of_a_dead_launch_on_a_host_with_dashes_in_its_name(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       host: str) -> None:
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: host)
    dead = write(tmp_path / f".exp1.tmp-{host}-999999999-abcdef12" / "x", "partial").parent
    alive = write(tmp_path / f".exp1.tmp-{host}-{os.getpid()}-abcdef12" / "x", "partial").parent
    assert snapshot_mod.clean_stale_tmps(tmp_path / "exp1") == [dead]
    assert alive.exists()
