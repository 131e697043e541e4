"""The experiment lock: launches, ``nrl-launch snapshot`` and continue.sh of
one experiment take turns (docs/snapshots.md). Concurrency is tested with
real processes (``python -m nrl_launch``), never threads."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from nrl_launch.errors import SnapshotError
from nrl_launch.experiment.folder import SnapshotRoot
from nrl_launch.experiment.gitrepo import find_repo, list_tracked_files
from nrl_launch.experiment.locks import SPARE_DESCRIPTORS, experiment_locks, lock_order, lock_path
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
    # The order is a protocol between processes (launches of two installed
    # versions too): the bytes of the lock path, as docs/snapshots.md says.
    # ".a-b.lock" < ".a.lock" ('-' < '.'), where the names alone sort "a" first.
    dirs = [tmp_path / "snaps" / name for name in ("b", "a", "c", "a", "B", "a-b")]
    assert [d.name for d in lock_order(dirs)] == ["B", "a-b", "a", "b", "c"]
    assert lock_path(tmp_path / "snaps" / "a") == tmp_path / "snaps" / ".a.lock"


def test_free_locks_are_taken_silently_and_released_at_the_end(tmp_path: Path) -> None:
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


# ---------------------------------------------------------------- waiting, in this process
# (the launches above wait in child processes, which mutation testing does not see)

# Another process holding a lock file until its stdin is closed (or a minute has passed).
HOLD = """
import fcntl, select, sys
with open(sys.argv[1], "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    print("held", flush=True)
    select.select([sys.stdin], [], [], 60)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start a process that holds a snapshot's lock until its stdin is closed."""
    started: list[subprocess.Popen[str]] = []

    def hold(snapshot_dir: Path) -> subprocess.Popen[str]:
        lock_path(snapshot_dir).parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_path(snapshot_dir))], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        return proc

    yield hold
    for proc in started:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


def lockable(lock: Path) -> bool:
    """Whether another holder could take ``lock`` now."""
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_lock_held_by_another_process_is_announced_once_then_taken(
        tmp_path: Path, holder: Callable[[Path], subprocess.Popen[str]]) -> None:
    snapshots = [tmp_path / "snaps" / "exp-a", tmp_path / "snaps" / "exp-b"]
    other = holder(snapshots[1])
    said: list[str] = []

    def err(line: str) -> None:
        said.append(line)
        assert other.stdin is not None
        other.stdin.close()  # the other process finishes with its snapshot

    with experiment_locks(snapshots, err):
        assert other.wait(timeout=30) == 0
        assert not lockable(lock_path(snapshots[0])) and not lockable(lock_path(snapshots[1]))
    assert said == ["[INFO]: waiting for another launch, continue.sh or code_snapshot.sh of experiment exp-b to "
                    f"finish with its snapshot (lock {tmp_path / 'snaps' / '.exp-b.lock'})"]
    assert lockable(lock_path(snapshots[0])) and lockable(lock_path(snapshots[1]))


def test_ctrl_c_stops_the_wait_and_holds_nothing(tmp_path: Path,
                                                 holder: Callable[[Path], subprocess.Popen[str]]) -> None:
    snapshots = [tmp_path / "snaps" / "exp-a", tmp_path / "snaps" / "exp-b"]
    other = holder(snapshots[1])
    before = open_descriptors()
    main_thread = threading.get_ident()

    def press_ctrl_c(_: str) -> None:  # once it says it waits:
        # a timer thread only presses the keys: SIGINT to the waiting (main) thread, as a terminal sends it
        threading.Timer(0.2, signal.pthread_kill, (main_thread, signal.SIGINT)).start()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), experiment_locks(snapshots, press_ctrl_c):
            pytest.fail("the lock another process holds was taken")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert open_descriptors() == before  # the lock files are closed: exp-a is free again
    assert lockable(lock_path(snapshots[0]))
    assert other.poll() is None  # the other process still holds exp-b


# ---------------------------------------------------------------- filesystems that cannot lock


def refuse_flock(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """flock(2) fails with ``code``, as on a filesystem mounted without locks (the OS boundary)."""
    def flock(fd: int, operation: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", flock)


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP])
def test_without_flock_a_launch_warns_and_goes_on(project: Project, fake_slurm: FakeSlurm,
                                                  monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    scripts = [str(project.add_recipe(name, config=ONE_RUN)) for name in ("sft-a", "sft-b")]
    refuse_flock(monkeypatch, code)
    result = run_cli("launch", *scripts, env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    root = project.root / "code_snapshots"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("[WARNING]: cannot lock")]
    assert warnings == [f"[WARNING]: cannot lock {root / f'.{name}.lock'} ({os.strerror(code)}): launches of "
                        f"experiment {name} running at the same time are not kept apart" for name in ("sft-a", "sft-b")]
    assert len(fake_slurm.submissions()) == 2 and len(read_manifest(root / "sft-b").runs) == 1


def test_another_flock_error_stops_the_launch_before_it_submits(project: Project, fake_slurm: FakeSlurm,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    refuse_flock(monkeypatch, errno.EIO)
    result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 1
    lock = project.root / "code_snapshots" / ".sft-a.lock"
    assert result.stderr.splitlines()[-1] == f"[ERROR]: cannot lock {lock}: Input/output error"
    assert fake_slurm.submissions() == [] and not (project.root / "code_snapshots" / "sft-a").exists()


def test_a_lock_file_that_cannot_be_opened_stops_the_launch(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    lock = project.root / "code_snapshots" / ".sft-a.lock"
    lock.mkdir(parents=True)  # not a file
    result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"[ERROR]: cannot open the lock file {lock}: Is a directory"
    assert fake_slurm.submissions() == []


def test_the_lock_file_and_its_folders_are_made_for_every_writer_the_umask_allows(tmp_path: Path) -> None:
    # Under a group's umask its members' launches open (O_RDWR) and lock the same file.
    snapshot = tmp_path / "shared" / "team" / "snaps" / "exp-a"
    previous = os.umask(0o002)
    try:
        with experiment_locks([snapshot], print):
            pass
    finally:
        os.umask(previous)
    lock = lock_path(snapshot)
    assert lock.is_file() and lock.stat().st_mode & 0o777 == 0o664


# ---------------------------------------------------------------- the limit of open files, in this process


@pytest.fixture
def soft_limit() -> Iterator[Callable[[int], None]]:
    """Set this process's soft limit of open files for the test; restored after it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield lambda soft: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_more_locks_than_the_soft_limit_allows_are_held_by_raising_it(
        tmp_path: Path, soft_limit: Callable[[int], None]) -> None:
    soft_limit(64)
    snapshots = [tmp_path / f"exp{i}" for i in range(100)]
    with experiment_locks(snapshots, print):
        assert not any(lockable(lock_path(s)) for s in snapshots)
        with open(tmp_path / "one-more-file", "w"):  # and the launch can still open its files
            pass


def test_locks_that_fit_leave_the_limit_of_open_files_as_it_was(tmp_path: Path) -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    with experiment_locks([tmp_path / "exp-a", tmp_path / "exp-b"], print):
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == before


@pytest.mark.parametrize("beyond", [0, 1])
def test_locks_up_to_the_hard_limit_are_held_and_one_more_is_refused_before_any(
        tmp_path: Path, soft_limit: Callable[[int], None], beyond: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard > 65536:
        pytest.skip(f"a hard limit of open files of {hard} is too many files for a test")
    soft_limit(1024)
    count = hard - SPARE_DESCRIPTORS + beyond  # and the spare descriptors a launch keeps for its other files
    snapshots = [tmp_path / f"exp{i}" for i in range(count)]
    if beyond:
        with pytest.raises(SnapshotError) as raised, experiment_locks(snapshots, print):
            pytest.fail("locked beyond the hard limit")
        assert str(raised.value) == (f"cannot lock {count} experiments at once: the limit of open files is {hard} "
                                     "(ulimit -Hn); launch them in smaller groups")
        assert list(tmp_path.iterdir()) == []  # nothing locked
    else:
        with experiment_locks(snapshots, print):
            assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
