"""Tests of nrl_launch.experiment.folder: the name rule, ExperimentDir, and how often a manifest is opened.

Opens are counted at the OS boundary with an audit hook (``sys.addaudithook``):
every ``open()`` and ``os.open()`` of the process raises the ``open`` event,
whoever makes it, so the count covers code this test does not know about.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from nrl_launch.errors import SnapshotError
from nrl_launch.experiment.folder import SnapshotRoot, name_problem
from nrl_launch.experiment.manifest import MANIFEST_NAME, Manifest, append_run, write_manifest
from testkit import BASE_ENV, FakeSlurm, Project, run_cli, write

TWO_RUNS = "NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n"

# ---------------------------------------------------------------- counting opens

_OPENS: list[tuple[str, str]] | None = None  # (how, file name) while counting
_HOOKED = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _OPENS is None or event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = Path(os.fsdecode(args[0]))
    mode, flags = args[1], args[2]
    if isinstance(mode, str):
        how = "write" if any(c in mode for c in "wax+") else "read"
    else:
        how = "append" if flags & os.O_APPEND else "write" if flags & (os.O_WRONLY | os.O_RDWR) else "read"
    _OPENS.append((how, str(path)))


@contextmanager
def opens_of(folder: Path) -> Iterator[list[tuple[str, str]]]:
    """The opens of the manifest of ``folder`` (and of its temporary sibling) in the block."""
    global _OPENS, _HOOKED
    if not _HOOKED:  # an audit hook cannot be removed: one, idle unless a block counts
        sys.addaudithook(_audit)
        _HOOKED = True
    _OPENS = []
    found: list[tuple[str, str]] = []
    try:
        yield found
    finally:
        seen, _OPENS = _OPENS, None
        found.extend((how, Path(path).name) for how, path in seen
                     if Path(path).parent == folder and Path(path).name.startswith(MANIFEST_NAME))


# ---------------------------------------------------------------- the name rule


@pytest.mark.parametrize(("name", "problem"), [
    ("", "is empty"),
    (".x", "starts with '.'"),
    ("..", "starts with '.'"),
    ("a/b", "contains '/'"),
    ("../x", "starts with '.'"),
    ("a\nb", "contains a control character"),
    ("tab\there", "contains a control character"),
    ("del\x7f", "contains a control character"),
    ("ok-name", None),
    ("grpo-llama3.2-1b-1n8g-fsdp2tp1.v3", None),
    ("with space and 'quote'", None),
])
def test_the_name_rule(tmp_path: Path, name: str, problem: str | None) -> None:
    snapshots = SnapshotRoot(tmp_path, "code_snapshots")
    assert name_problem(name) == problem
    if problem is None:
        assert snapshots.experiment(name).path == tmp_path / "code_snapshots" / name
        return
    with pytest.raises(SnapshotError) as info:
        snapshots.experiment(name)
    assert str(info.value) == f"{name!r} is not an experiment name (a folder of {snapshots.path}): it {problem}"


@pytest.mark.parametrize("name", ["", ".x", "..", "a/b", "a\nb"])
def test_every_command_applies_the_name_rule(project: Project, fake_slurm: FakeSlurm, name: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)
    for command in ("status", "watch", "cancel", "logs"):
        result = run_cli(command, name, slurm=fake_slurm)
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.startswith(f"[ERROR]: {name!r} is not an experiment name"), (command, result.stderr)
    made = run_cli("snapshot", name)
    assert made.exit_code == 1 and made.stderr.startswith(f"[ERROR]: invalid experiment name {name!r}: it ")
    assert fake_slurm.calls == [] and not (project.root / "code_snapshots").exists()


def test_a_recipe_whose_name_holds_a_control_character_is_not_launched(project: Project,
                                                                       fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft\ta", config=TWO_RUNS)
    result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 1
    assert result.stderr == (f"[ERROR]: the script path {str(script)!r} contains a control character (\\t): its "
                             "stdout lines, snapshot folder and job name would break; rename the file\n")
    assert fake_slurm.calls == [] and not (project.root / "code_snapshots").exists()


# ---------------------------------------------------------------- the folder


def test_finding_and_listing_experiments(tmp_path: Path) -> None:
    snapshots = SnapshotRoot(tmp_path, "snaps")
    assert snapshots.experiments() == []  # no snapshot root yet
    for name in ("b", "a", ".a.tmp-host-1-x", "tab\tname"):
        (snapshots.path / name).mkdir(parents=True)
    write(snapshots.path / ".a.lock", "")
    write(snapshots.path / "a-file", "")
    assert [folder.name for folder in snapshots.experiments()] == ["a", "b"]
    assert snapshots.find("a").path == snapshots.path / "a"
    with pytest.raises(SnapshotError) as info:
        snapshots.find("c")
    assert str(info.value) == f"no snapshot of experiment 'c' in {snapshots.path}"


def test_a_missing_or_corrupt_manifest_is_an_error_naming_the_file(tmp_path: Path) -> None:
    folder = SnapshotRoot(tmp_path, "snaps").experiment("x")
    folder.path.mkdir(parents=True)
    path = folder.path / MANIFEST_NAME
    with pytest.raises(SnapshotError, match=f"^{path}: no manifest"):
        _ = folder.manifest
    assert folder.manifest_problem() == f"no manifest ({MANIFEST_NAME})"
    write(path, "runs: [\n")
    folder.refresh()  # the file appeared
    with pytest.raises(SnapshotError, match=f"^{path}: corrupt manifest"):
        _ = folder.manifest
    assert folder.manifest_problem() is not None and folder.manifest_problem().startswith(f"{path}: corrupt")
    assert folder.recorded() is None  # a snapshot without a readable manifest records nothing


def test_the_manifest_is_read_once_and_again_only_when_it_changed(tmp_path: Path) -> None:
    folder = SnapshotRoot(tmp_path, "snaps").experiment("x")
    folder.path.mkdir(parents=True)
    write_manifest(folder.path, Manifest("x"))
    append_run(folder.path, "1", "1/2")
    with opens_of(folder.path) as opens:
        assert [run.job_id for run in folder.manifest.runs] == ["1"]
        folder.refresh()  # nothing changed
        assert folder.manifest.next_run_number == 2
    assert opens == [("read", MANIFEST_NAME)]
    append_run(folder.path, "2", "2/2")  # another process records a run
    with opens_of(folder.path) as opens:
        assert folder.manifest.next_run_number == 2  # not looked at again until asked to
        with folder.lock(lambda _: None):  # holding the lock, every recorded run is seen
            assert folder.manifest.next_run_number == 3
            folder.record_run("3", "3", "continue.sh")
            assert [run.job_id for run in folder.manifest.runs] == ["1", "2", "3"]
    # its own entry joins the manifest in memory: not read again
    assert opens == [("read", MANIFEST_NAME), ("append", MANIFEST_NAME)]
    with opens_of(folder.path) as opens:
        append_run(folder.path, "4", "4", via="continue.sh")  # another process, while this one holds no lock
        folder.record_run("5", "5", "continue.sh")  # the file changed since it was read: read again when asked
        assert [run.job_id for run in folder.manifest.runs] == ["1", "2", "3", "4", "5"]
    assert opens == [("append", MANIFEST_NAME), ("append", MANIFEST_NAME), ("read", MANIFEST_NAME)]


def test_a_manifest_written_through_the_folder_is_not_read_back(tmp_path: Path) -> None:
    folder = SnapshotRoot(tmp_path, "snaps").experiment("x")
    folder.path.mkdir(parents=True)
    (folder.path / "old.txt").write_text("made by another tool\n")
    fresh = Manifest("x", gpu_hours=3)
    with opens_of(folder.path) as opens:
        assert folder.adopt(fresh) and not folder.adopt(fresh)
        assert folder.manifest == fresh.adopted()
        folder.refresh()
        assert folder.manifest.source is not None and folder.manifest.source.unknown
    assert opens == [("write", f"{MANIFEST_NAME}.tmp-{os.getpid()}")]
    assert stat.S_IMODE((folder.path / MANIFEST_NAME).stat().st_mode) == 0o644


def test_jobs_and_their_log_folders(tmp_path: Path) -> None:
    folder = SnapshotRoot(tmp_path, "snaps").experiment("x")
    folder.path.mkdir(parents=True)
    write_manifest(folder.path, Manifest("x"))
    append_run(folder.path, "11", "1/1")
    append_run(folder.path, "21", "1/2", base_log_dir="logs")
    append_run(folder.path, "22", "2/2", base_log_dir=str(tmp_path / "central"))
    latest = folder.tracked()
    assert (latest.name, [(job.job_id, job.log_root) for job in latest.jobs]) == (
        "x", [("21", folder.path / "logs"), ("22", tmp_path / "central")])
    assert folder.tracked(folder.manifest.runs).ids == ["11", "21", "22"]
    write(folder.path / "slurm-261129-101010-21-x-1.2.out", "")
    write(folder.path / "slurm-261129-101010-21-y-1.2.out", "")  # another experiment's
    assert folder.output_file("21") == folder.path / "slurm-261129-101010-21-x-1.2.out"
    assert folder.output_file("22") is None


# ---------------------------------------------------------------- one relaunch, one read


@pytest.mark.parametrize(("dryrun", "appends"), [("2", 0), (None, 3)])  # the launch's plan, then its 2 runs
def test_a_relaunch_of_a_reused_snapshot_reads_its_manifest_once(project: Project, fake_slurm: FakeSlurm,
                                                                 dryrun: str | None, appends: int) -> None:
    script = project.add_recipe("sft-a", config=TWO_RUNS)
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    snapshot = project.root / "code_snapshots" / "sft-a"
    with opens_of(snapshot) as opens:
        again = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": dryrun}, slurm=fake_slurm)
    assert again.exit_code == 0, again.output
    assert f"Using existing code snapshot in {snapshot}" in again.stderr
    assert "holds commit" in again.stderr and "and 2 recorded runs" in again.stderr  # read, and said
    assert opens == [("read", MANIFEST_NAME)] + [("append", MANIFEST_NAME)] * appends


def test_a_relaunch_of_a_snapshot_without_manifest_tries_once_and_writes_once(project: Project,
                                                                               fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config=TWO_RUNS)
    assert run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2"}, slurm=fake_slurm).exit_code == 0
    snapshot = project.root / "code_snapshots" / "sft-a"
    (snapshot / MANIFEST_NAME).unlink()  # as the bash launcher left its snapshots
    with opens_of(snapshot) as opens:
        again = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2"}, slurm=fake_slurm)
    assert again.exit_code == 0, again.output
    assert "its commit is unknown" in again.stderr and "wrote a manifest into" in again.stderr
    assert opens == [("read", MANIFEST_NAME), ("write", f"{MANIFEST_NAME}.tmp-{os.getpid()}")]
