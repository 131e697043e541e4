"""The experiment lock: launches, ``nrl-launch snapshot`` and continue.sh of
one experiment take turns (docs/snapshots.md). Concurrency is tested with
real processes (``python -m nrl_launch``), never threads."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from nrl_launch.experiment.folder import SnapshotRoot
from nrl_launch.experiment.gitrepo import find_repo, list_tracked_files
from nrl_launch.experiment.manifest import Source, build_manifest, read_manifest
from nrl_launch.experiment.snapshot import ensure_snapshot
from nrl_launch.launch import launch
from nrl_launch.pipeline import Repository, SnapshotMaker
from nrl_launch.settings import make_settings
from testkit import (
    BASE_ENV,
    REPO,
    FakeSlurm,
    Project,
    SlurmOnPath,
    finish,
    holding_lock,
    launcher_env,
    next_stderr_line,
    run_cli,
    start_nrl_launch,
)

ONE_RUN = "NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n"
TWO_RUNS = "NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n"
SUBMITTED_RE = re.compile(r"^Submitted batch job (\d+)$", re.MULTILINE)


def test_a_launch_waits_for_the_lock_then_reuses_the_snapshot_with_the_stale_check(
        project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    older = find_repo(project.root)  # what another launch, started earlier, snapshots
    (project.root / "README.md").write_text("newer code\n")
    project.commit("newer code")
    snapshot = project.root / "code_snapshots" / "sft-a"
    with holding_lock(snapshot) as lock:  # that launch is between its snapshot and its last sbatch
        proc = start_nrl_launch("launch", str(script), cwd=project.root, env=launcher_env())
        line = next_stderr_line(proc)
        assert line.startswith("[INFO]: waiting for another launch") and str(lock) in line, line
        # it asked Slurm (the pre-flight comes first), then waits before looking at the snapshot
        assert not snapshot.exists() and slurm_on_path.submissions() == []
        ensure_snapshot(project.root, list_tracked_files(project.root), snapshot,
                        manifest=build_manifest(older, config_values={}, gpu_hours=2, experiment="sft-a"))
    code, out, err = finish(proc)
    assert code == 0, err
    assert f"Using existing code snapshot in {snapshot}" in err and "Creating new code snapshot" not in err
    warning = next(line for line in err.splitlines() if line.startswith("[WARNING]: reusing"))
    assert older.head_sha[:12] in warning and find_repo(project.root).head_sha[:12] in warning
    assert "waiting for another launch" not in err  # said once (the line read above)
    assert [r.job_id for r in read_manifest(snapshot).runs] == SUBMITTED_RE.findall(out) == ["1001"]


def test_concurrent_launches_of_one_experiment_make_one_snapshot_and_record_every_run(
        project: Project, slurm_on_path: SlurmOnPath) -> None:
    script = project.add_recipe("sft-a", config=TWO_RUNS)
    procs = [start_nrl_launch("launch", str(script), cwd=project.root, env=launcher_env()) for _ in range(4)]
    results = [finish(proc) for proc in procs]
    assert [code for code, _, _ in results] == [0] * 4, results
    stderr = "".join(err for _, _, err in results)
    assert stderr.count("Creating new code snapshot") == 1 and stderr.count("Using existing code snapshot") == 3
    printed = [job for _, out, _ in results for job in SUBMITTED_RE.findall(out)]
    recorded = [run.job_id for run in read_manifest(project.root / "code_snapshots" / "sft-a").runs]
    assert len(printed) == 8 and sorted(recorded) == sorted(printed)


def test_launches_of_overlapping_sets_do_not_deadlock(project: Project, slurm_on_path: SlurmOnPath) -> None:
    scripts = [str(project.add_recipe(name, config=ONE_RUN)) for name in ("sft-a", "sft-b", "sft-c")]
    orders = [scripts, scripts[::-1], [scripts[1], scripts[2], scripts[0]]]
    procs = [start_nrl_launch("launch", *order, cwd=project.root, env=launcher_env()) for order in orders]
    results = [finish(proc, timeout=60) for proc in procs]  # a deadlock fails here
    assert [code for code, _, _ in results] == [0, 0, 0], results
    for name in ("sft-a", "sft-b", "sft-c"):
        assert len(read_manifest(project.root / "code_snapshots" / name).runs) == 3


def test_the_snapshot_command_takes_the_lock(project: Project) -> None:
    snapshot = project.root / "code_snapshots" / "exp-x"
    with holding_lock(snapshot):
        proc = start_nrl_launch("snapshot", "exp-x", cwd=project.root, env=launcher_env())
        line = next_stderr_line(proc)
        assert line.startswith("[INFO]: waiting for another launch") and "exp-x" in line, line
        assert not snapshot.exists()
    code, out, err = finish(proc)
    assert code == 0, err
    assert out == f"{snapshot}\n" and f"Creating new code snapshot in {snapshot}" in err


def test_a_snapshot_published_by_another_process_during_the_copy_goes_through_the_stale_check(
        project: Project) -> None:
    # A process that does not take the lock (an older launcher) publishes the
    # snapshot while this one copies: the rename loses, the other's is used.
    repo = Repository.describe(project.root)
    dest = project.root / "code_snapshots" / "exp-x"
    other = replace(repo.info, head_sha="0" * 40)  # its tree was at another commit

    def progress_for(_: Path):
        def progress(done: int, total: int) -> None:
            if not dest.exists():
                ensure_snapshot(project.root, repo.files, dest,
                                manifest=build_manifest(other, config_values={}, gpu_hours=None))
        return progress

    said: list[str] = []
    fresh = build_manifest(repo.info, config_values={}, gpu_hours=None, experiment="exp-x")
    folder = SnapshotRoot(project.root, "code_snapshots").experiment("exp-x")
    SnapshotMaker("auto", said.append, progress_for).provide(repo, folder, fresh)
    assert said[0] == f"Creating new code snapshot in {dest}"
    assert said[1].startswith("[WARNING]: another process created") and str(dest) in said[1]
    assert any(line.startswith(f"[WARNING]: reusing {dest}: ") and "000000000000" in line for line in said[2:])
    assert read_manifest(dest).source == Source.of(other)


def test_lock_files_are_hidden_files_beside_the_snapshots(project: Project, fake_slurm: FakeSlurm,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = [str(project.add_recipe(name, config=ONE_RUN)) for name in ("sft-a", "sft-b")]
    result = run_cli("launch", *scripts, env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    root = project.root / "code_snapshots"
    assert sorted(p.name for p in root.iterdir()) == [".sft-a.lock", ".sft-b.lock", "sft-a", "sft-b"]
    assert all((root / name).is_file() for name in (".sft-a.lock", ".sft-b.lock"))
    assert not [p for p in root.rglob("*.lock") if p.parent != root]  # none inside a snapshot
    monkeypatch.chdir(project.root)
    status = run_cli("status", "--format", "json", slurm=fake_slurm)
    assert status.exit_code == 0, status.output
    assert [row["experiment"] for row in json.loads(status.stdout)] == ["sft-a", "sft-b"]


def test_the_locks_are_released_before_watch(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    lock = project.root / "code_snapshots" / ".sft-a.lock"
    free: list[bool] = []

    def probe(_: float) -> None:  # WATCH's wait between polls: can another process take the lock?
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                free.append(True)
            except BlockingIOError:
                free.append(False)
        fake_slurm.finish()

    settings = make_settings({**BASE_ENV, "WATCH": "1", "WATCH_INTERVAL": "1"}, launch_stamp="261129-000000")
    launch([str(script)], settings, environ=dict(os.environ), slurm=fake_slurm.client(), out=lambda _: None,
           err=lambda _: None, wait=probe)
    assert free == [True]


def test_lock_order_is_one_sorted_order_of_distinct_locks(tmp_path: Path) -> None:
    from nrl_launch.experiment.locks import lock_order, lock_path

    dirs = [tmp_path / "snaps" / name for name in ("b", "a", "c", "a", "B")]
    assert [d.name for d in lock_order(dirs)] == ["B", "a", "b", "c"]
    assert lock_path(tmp_path / "snaps" / "a") == tmp_path / "snaps" / ".a.lock"


def test_a_busy_lock_is_announced_once_and_waited_for(tmp_path: Path) -> None:
    from nrl_launch.experiment.locks import experiment_locks, lock_path

    said: list[str] = []
    snapshots = [tmp_path / "snaps" / "a", tmp_path / "snaps" / "b"]
    with experiment_locks(snapshots, said.append):
        assert said == []  # free locks are taken silently
        # a second holder of b would wait: try it without waiting
        with open(lock_path(snapshots[1]), "a") as handle, pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock_path(snapshots[1]), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released at the end of the block


def test_an_experiment_name_starting_with_a_dot_is_refused(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe(".hidden", config=ONE_RUN)
    result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 1
    assert "[ERROR]: " in result.stderr and "starts with '.'" in result.stderr
    assert not (project.root / "code_snapshots").exists() and fake_slurm.calls == []


# One process locking a suite of 1,000 experiments under a given limit of open files.
LOCK_MANY = """
import resource, sys
from pathlib import Path
from nrl_launch.errors import SnapshotError
from nrl_launch.experiment.locks import experiment_locks
resource.setrlimit(resource.RLIMIT_NOFILE, (256, int(sys.argv[1])))
try:
    with experiment_locks([Path(sys.argv[2]) / f"exp{i}" for i in range(1000)], print):
        print("held")
except SnapshotError as e:
    print(e)
"""


@pytest.mark.parametrize(
    ("hard", "said"),
    [(4096, "held"),
     (512, "cannot lock 1000 experiments at once: the limit of open files is 512 (ulimit -Hn); launch them in "
           "smaller groups")],
)
def test_a_large_suite_raises_the_open_files_limit_or_says_why_it_cannot(tmp_path: Path, hard: int,
                                                                        said: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "tools")}
    proc = subprocess.run([sys.executable, "-c", LOCK_MANY, str(hard), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == said + "\n"
