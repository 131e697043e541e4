"""Snapshots people can hot-fix (issue 22 item 13), as the bash launcher's writable copies could be,
without a write to one snapshot ever reaching another one that shares its bytes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nrl_launch.experiment.manifest import Manifest
from nrl_launch.experiment.snapshot import SnapshotBatch, make_writable
from testkit import BASE_ENV, FakeSlurm, Project, run_cli

FILES = {"README.md": "readme\n", "run.sh": "#!/bin/bash\necho run\n", "pkg/train.py": "LR = 0.1\n"}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "run.sh").chmod(0o755)
    return root


def writable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IWUSR)


def test_a_snapshot_of_its_own_is_writable_as_the_bash_launchers(src: Path, tmp_path: Path) -> None:
    for mode in ("auto", "copy", "link"):
        result = SnapshotBatch(src, list(FILES), mode=mode).ensure(tmp_path / mode, manifest=Manifest(mode))
        assert all(writable(result.path / rel) for rel in FILES), mode
        (result.path / "pkg/train.py").write_text("LR = 0.01  # hot-fixed\n")
        assert (src / "pkg/train.py").read_text() == "LR = 0.1\n"  # a copy: the working tree is untouched
    # executable bits kept
    assert stat.S_IMODE((tmp_path / "auto" / "run.sh").stat().st_mode) == stat.S_IMODE((src / "run.sh").stat().st_mode)


def test_snapshots_that_share_files_are_read_only_and_writable_gives_one_its_own(src: Path, tmp_path: Path) -> None:
    batch = SnapshotBatch(src, list(FILES), mode="auto")  # no reflinks on this filesystem: hard links
    first, second, third = (batch.ensure(tmp_path / name, manifest=Manifest(name)).path for name in "abc")
    assert (tmp_path / "b" / "README.md").stat().st_nlink == 3
    for snap in (first, second, third):  # a write would change all three: refused
        assert not any(writable(snap / rel) for rel in FILES)
    done = make_writable(second)
    assert (done.copied, done.unlocked) == (3, 0)
    assert all(writable(second / rel) for rel in FILES)
    assert stat.S_IMODE((second / "run.sh").stat().st_mode) == stat.S_IMODE((src / "run.sh").stat().st_mode)
    (second / "pkg/train.py").write_text("LR = 0.01  # hot-fixed\n")
    for snap in (first, third):  # the others keep their bytes, and stay read-only
        assert (snap / "pkg/train.py").read_text() == "LR = 0.1\n"
        assert not writable(snap / "pkg/train.py")
        assert (snap / "README.md").stat().st_nlink == 2
    assert sorted(os.listdir(second / "pkg")) == ["train.py"]  # no temporary copy left beside it
    assert make_writable(second) == (0, 0)  # done already: nothing to do


def test_a_read_only_file_of_its_own_gets_its_owners_write_bit(src: Path, tmp_path: Path) -> None:
    snap = SnapshotBatch(src, list(FILES), mode="copy").ensure(tmp_path / "a").path
    (snap / "README.md").chmod(0o444)
    link = snap / "link.md"
    link.symlink_to("README.md")
    assert make_writable(snap) == (0, 1)
    assert stat.S_IMODE((snap / "README.md").stat().st_mode) == 0o644
    assert link.is_symlink()


def test_the_snapshot_command_makes_a_snapshot_writable(project: Project, fake_slurm: FakeSlurm) -> None:
    scripts = [str(project.add_recipe(name)) for name in ("sft-a", "sft-b")]
    launched = run_cli("launch", *scripts, env=BASE_ENV, slurm=fake_slurm)
    assert launched.exit_code == 0, launched.output
    # said where a user meets the read-only files: when the shared snapshots are made
    assert launched.stderr.count("nrl-launch snapshot --writable <experiment>") == 1
    snapshot = project.root / "code_snapshots" / "sft-b"
    assert not writable(snapshot / "README.md")
    result = run_cli("snapshot", "--writable", "--project-root", str(project.root), "sft-b")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{snapshot}\n"
    assert f"[INFO]: {snapshot}: " in result.stderr and "replaced by a copy of its own" in result.stderr
    (snapshot / "README.md").write_text("hot-fixed\n")
    assert (project.root / "code_snapshots" / "sft-a" / "README.md").read_text() == "demo project\n"


def test_one_experiment_says_nothing_of_read_only_files(project: Project, fake_slurm: FakeSlurm) -> None:
    launched = run_cli("launch", str(project.add_recipe("sft-a")), env=BASE_ENV, slurm=fake_slurm)
    assert "--writable" not in launched.stderr
    assert writable(project.root / "code_snapshots" / "sft-a" / "README.md")
