"""``nrl-launch logs``: the current run's log, the --output fallback, and
following a chain across runs. Logs are real files that the tests write while
the follower waits; Slurm is the in-process ``FakeSlurm``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nrl_launch.errors import LauncherError, SnapshotError
from nrl_launch.experiment.folder import ExperimentDir, SnapshotRoot
from nrl_launch.experiment.manifest import Manifest, append_run, write_manifest
from nrl_launch.follow.logs import Follower, print_current, recorded_jobs
from testkit import FakeSlurm, run_cli

STAMP = "261129-101010"


def snapshot_with_runs(root: Path, *job_ids: str, base_log_dir: str | None = None) -> Path:
    folder = root / "code_snapshots" / "exp"
    folder.mkdir(parents=True)
    write_manifest(folder, Manifest("exp"))
    for index, job_id in enumerate(job_ids, start=1):
        append_run(folder, job_id, f"{index}/{len(job_ids)}", base_log_dir=base_log_dir)
    return folder


def folder_of(snapshot: Path) -> ExperimentDir:
    """The experiment folder ``snapshot``, its manifest not read yet."""
    return SnapshotRoot(snapshot.parent.parent, snapshot.parent.name).experiment(snapshot.name)


def show(snapshot: Path, jobs: list, **printed: Callable) -> None:
    print_current(folder_of(snapshot), jobs, **printed)


def driver(snapshot: Path, job_id: str, text: str, attempt: int = 0, mode: str = "a") -> Path:
    folder = snapshot / (f"{job_id}-{attempt}-logs" if attempt else f"{job_id}-logs")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ray-driver.log", mode) as handle:
        handle.write(text)
    return folder / "ray-driver.log"


def output(snapshot: Path, job_id: str, text: str, run: int = 1, total: int = 2) -> Path:
    path = snapshot / f"slurm-{STAMP}-{job_id}-exp-{run}.{total}.out"
    with open(path, "a") as handle:
        handle.write(text)
    return path


class Printed:
    """What the command printed: stdout bytes, stderr lines."""

    def __init__(self) -> None:
        self.stdout = b""
        self.stderr: list[str] = []

    def write(self, data: bytes) -> None:
        self.stdout += data


def follow(snapshot: Path, fake: FakeSlurm, moves: list[Callable[[], None]], only: str | None = None) -> Printed:
    """Follow ``exp``; the i-th wait applies ``moves[i]`` (the test fails if it waits once more than that)."""
    printed = Printed()
    pending = list(moves)

    def wait(_: float) -> None:
        assert pending, f"waited once more than the test planned; printed so far: {printed.stdout!r}"
        pending.pop(0)()

    Follower(folder_of(snapshot), fake.client(), only=only, write=printed.write, err=printed.stderr.append,
             wait=wait, interval=0.01, ask_every=0).run()
    assert pending == [], "stopped before the chain ended"
    return printed


def queued(fake: FakeSlurm, *ids: str) -> None:
    for job_id in ids:
        fake.add_job(job_id, "RUNNING")


# ---------------------------------------------------------------- the current run


def test_show_prints_the_newest_started_runs_driver_log(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101", "102", "103")
    driver(snapshot, "101", "run one\n")
    out = output(snapshot, "102", "slurm says: run two starting\n", run=2, total=3)
    printed = Printed()
    jobs = recorded_jobs(folder_of(snapshot))
    show(snapshot, jobs, write=printed.write, err=printed.stderr.append)
    assert printed.stdout == b"slurm says: run two starting\n"  # no driver log yet: the --output file
    assert printed.stderr == [f"==> {out} (job 102) <=="]
    log = driver(snapshot, "102", "run two\r\nbytes \xff as they are\n")
    printed = Printed()
    show(snapshot, jobs, write=printed.write, err=printed.stderr.append)
    assert printed.stdout == log.read_bytes() and printed.stderr == [f"==> {log} (job 102) <=="]


def test_show_reads_the_latest_attempt_and_base_log_dir(tmp_path: Path) -> None:
    logs = tmp_path / "central"
    snapshot = snapshot_with_runs(tmp_path, "101", base_log_dir=str(logs))
    driver(logs, "101", "first attempt\n")
    driver(logs, "101", "after requeue 2\n", attempt=2)
    driver(logs, "101", "after requeue 10\n", attempt=10)
    driver(snapshot, "101", "not here: BASE_LOG_DIR was set\n")
    printed = Printed()
    show(snapshot, recorded_jobs(folder_of(snapshot)), write=printed.write, err=printed.stderr.append)
    assert printed.stdout == b"after requeue 10\n"


def test_show_without_any_log_says_where_it_looked(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101", "102")
    with pytest.raises(LauncherError) as info:
        show(snapshot, recorded_jobs(folder_of(snapshot)), write=lambda _: None, err=lambda _: None)
    assert str(info.value) == (f"no log of exp yet: none of its 2 jobs has started yet (looked for "
                               f"{snapshot}/101-logs/ray-driver.log and the jobs' --output files in {snapshot})")


def test_only_a_recorded_job(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101", "102")
    assert [job.job_id for job in recorded_jobs(folder_of(snapshot), "102")] == ["102"]
    with pytest.raises(SnapshotError, match="job 7 is not a run of exp \\(its jobs: 101 102\\)"):
        recorded_jobs(folder_of(snapshot), "7")


# ---------------------------------------------------------------- following


def test_follow_prints_a_chain_in_order_and_ends_with_it(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101", "102")
    fake = FakeSlurm()
    queued(fake, "101", "102")
    first = driver(snapshot, "101", "a\n")

    def second_starts() -> None:
        driver(snapshot, "101", "b\n")
        fake.finish("101")
        output(snapshot, "102", "[ray.sub] job 102\n", run=2)  # Slurm made the file; the driver log comes next

    second = snapshot / "102-logs" / "ray-driver.log"
    printed = follow(snapshot, fake, [
        lambda: driver(snapshot, "101", "a2\n"),
        second_starts,
        lambda: driver(snapshot, "102", "[ray.sub] job 102\nc\n"),
        lambda: driver(snapshot, "102", "d\n"),
        lambda: fake.finish("102"),
    ])
    assert printed.stdout == b"a\na2\nb\n[ray.sub] job 102\nc\nd\n"  # nothing twice, nothing lost
    assert printed.stderr == [f"==> {first} (job 101) <==", f"==> {second} (job 102) <=="]


def test_follow_starts_at_the_current_run_and_waits_for_a_pending_one(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101", "102", "103")
    fake = FakeSlurm()
    driver(snapshot, "101", "old run\n")
    fake.add_job("101", "COMPLETED")
    driver(snapshot, "102", "current\n")
    queued(fake, "102")
    fake.add_job("103", "PENDING")
    printed = follow(snapshot, fake, [
        lambda: fake.finish("102"),
        lambda: None,  # 103 still pending (e.g. Resources): keep waiting
        lambda: driver(snapshot, "103", "last\n"),
        lambda: fake.finish("103"),
    ])
    assert printed.stdout == b"current\nlast\n"


def test_follow_falls_back_to_the_output_file_of_a_batch_script_without_driver_log(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    fake = FakeSlurm()
    queued(fake, "101")
    out = output(snapshot, "101", "custom batch script\n")
    printed = follow(snapshot, fake, [lambda: output(snapshot, "101", "more\n"), lambda: fake.finish("101")])
    assert printed.stdout == b"custom batch script\nmore\n"
    assert printed.stderr == [f"==> {out} (job 101) <=="]


def test_follow_moves_to_a_requeued_attempt_and_to_runs_added_meanwhile(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    fake = FakeSlurm()
    queued(fake, "101")
    driver(snapshot, "101", "attempt 0\n")

    def retried() -> None:  # WATCH's retry (or continue.sh) adds a run to the manifest
        fake.finish("101", state="NODE_FAIL")
        append_run(snapshot, "102", "2", via="retry")
        queued(fake, "102")

    printed = follow(snapshot, fake, [
        lambda: driver(snapshot, "101", "attempt 1\n", attempt=1),  # Slurm requeued the job
        retried,
        lambda: driver(snapshot, "102", "the retry\n"),
        lambda: fake.finish("102"),
    ])
    assert printed.stdout == b"attempt 0\nattempt 1\nthe retry\n"
    assert [line.split(" (job")[0].rsplit("/", 2)[-2] for line in printed.stderr] == ["101-logs", "101-1-logs",
                                                                                      "102-logs"]


def test_follow_one_job_ends_with_that_job(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101", "102")
    fake = FakeSlurm()
    queued(fake, "101", "102")
    driver(snapshot, "101", "one\n")
    printed = follow(snapshot, fake, [lambda: fake.finish("101")], only="101")
    assert printed.stdout == b"one\n"  # 102 is still queued, but only 101 was asked for


def test_follow_keeps_going_while_slurm_cannot_answer(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    fake = FakeSlurm(down=True)
    driver(snapshot, "101", "x\n")
    fake.add_job("101", "COMPLETED")

    def back() -> None:
        fake.down = False

    printed = follow(snapshot, fake, [lambda: None, back])  # asked once while down, once after
    assert printed.stdout == b"x\n"
    warning = "[WARNING]: cannot ask Slurm which jobs are queued ("
    assert any(line.startswith(warning) for line in printed.stderr), printed.stderr


def test_follow_of_a_chain_that_never_started(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    fake = FakeSlurm()
    fake.add_job("101", "CANCELLED")
    printed = follow(snapshot, fake, [])
    assert printed.stdout == b""
    assert printed.stderr == ["[INFO]: exp: no job left in the queue, and none of its jobs wrote a log"]


def test_a_log_that_is_replaced_is_read_again_from_its_start(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    fake = FakeSlurm()
    queued(fake, "101")
    driver(snapshot, "101", "a long first version\n")
    printed = follow(snapshot, fake, [lambda: driver(snapshot, "101", "short\n", mode="w"),
                                      lambda: fake.finish("101")])
    assert printed.stdout == b"a long first version\nshort\n"


# ---------------------------------------------------------------- the command


def test_logs_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101", "102")
    driver(snapshot, "101", "one\n")
    driver(snapshot, "102", "two\n")
    fake = FakeSlurm()
    fake.add_job("101", "COMPLETED")
    fake.add_job("102", "COMPLETED")
    monkeypatch.chdir(tmp_path)  # not a git repository: the current folder is the project root
    assert run_cli("logs", "exp", slurm=fake).stdout == "two\n"
    assert run_cli("logs", "exp", "--job", "101", slurm=fake).stdout == "one\n"
    assert [c.argv[0] for c in fake.calls] == []  # files only
    followed = run_cli("logs", "exp", "--follow", "--job", "101", "--interval", "0.05", slurm=fake)
    assert (followed.exit_code, followed.stdout) == (0, "one\n")
    unknown = run_cli("logs", "nope", slurm=fake)
    assert unknown.exit_code == 1 and unknown.stderr.startswith("[ERROR]: no snapshot of experiment 'nope' in ")
    wrong = run_cli("logs", "exp", "--job", "7", slurm=fake)
    assert wrong.exit_code == 1 and "job 7 is not a run of exp" in wrong.stderr


def test_what_a_job_writes_just_before_it_leaves_the_queue_is_printed(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    driver(snapshot, "101", "working\n")

    def last_words(fake: FakeSlurm) -> None:  # between the follower's last read and Slurm's answer
        driver(snapshot, "101", "last words\n")
        fake.finish("101")

    fake = FakeSlurm(on_poll=last_words)
    queued(fake, "101")
    assert follow(snapshot, fake, [lambda: None]).stdout == b"working\nlast words\n"


def test_slurm_is_asked_at_most_every_ask_every_seconds(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    driver(snapshot, "101", "x\n")
    fake = FakeSlurm()
    queued(fake, "101")
    clock = [0.0]

    def wait(seconds: float) -> None:
        clock[0] += seconds
        if clock[0] >= 25:
            fake.finish("101")

    printed = Printed()
    Follower(folder_of(snapshot), fake.client(), write=printed.write, err=printed.stderr.append, wait=wait,
             interval=1, now=lambda: clock[0], ask_every=10).run()
    asked = [c.argv[0] for c in fake.calls]
    assert asked == ["squeue"] * 4  # at 1, 11 and 21 s (queued), at 31 s (gone): not once a second
    assert printed.stdout == b"x\n"


def test_following_gives_up_when_watch_give_up_says(tmp_path: Path) -> None:
    from nrl_launch.errors import SlurmUnreachable

    snapshot = snapshot_with_runs(tmp_path, "101")
    driver(snapshot, "101", "x\n")
    fake = FakeSlurm(down=True)
    clock = [0.0]
    asked: list[float] = []
    fake.answers["squeue"] = lambda call: (asked.append(clock[0]), FakeSlurm(down=True)(call.argv, cwd=None, env={},
                                                                                          timeout=1))[1]
    printed = Printed()
    follower = Follower(folder_of(snapshot), fake.client(retry_for=0), write=printed.write,
                        err=printed.stderr.append, wait=lambda s: clock.__setitem__(0, clock[0] + s), interval=1,
                        now=lambda: clock[0], ask_every=5, give_up=12, resume_hint="nrl-launch logs --follow exp")
    with pytest.raises(SlurmUnreachable) as info:
        follower.run()
    # asked at 1 s, then every 5 s, the last wait cut short so that the give-up comes at 12 s after the first failure
    assert asked == [1.0, 6.0, 11.0, 13.0]
    assert str(info.value).startswith("gave up following the logs of exp: Slurm has not answered for 12 s (")
    assert str(info.value).endswith("Resume with: nrl-launch logs --follow exp")
    assert len(printed.stderr) == 3 + 1  # the header, and a warning for each failure before the last


def test_the_client_s_own_retries_end_when_following_gives_up(tmp_path: Path) -> None:
    from nrl_launch.errors import SlurmUnreachable

    snapshot = snapshot_with_runs(tmp_path, "101")
    driver(snapshot, "101", "x\n")
    fake = FakeSlurm(down=True)  # "Unable to contact slurm controller": transient, tried again for a minute
    follower = Follower(folder_of(snapshot), fake.client(), write=Printed().write, err=lambda _: None,
                        wait=fake.sleep, interval=1, now=fake.now, ask_every=5, give_up=12,
                        resume_hint="nrl-launch logs --follow exp")
    with pytest.raises(SlurmUnreachable):
        follower.run()
    assert fake.squeue_calls > 1  # the client did try again
    assert fake.now() <= 1 + 12 + 2  # but not past the give-up (the first ask is after 1 s), not NRL_SLURM_RETRY's 60 s

def test_the_follow_command_carries_the_options_given(tmp_path: Path) -> None:
    from nrl_launch.follow.logs import follow_command

    snapshots = SnapshotRoot(tmp_path, "snaps dir")
    assert follow_command(snapshots, "exp", None, 2.0, 1800.0) == (
        f"nrl-launch logs --follow --project-root {tmp_path} --code-snapshot-dirname 'snaps dir' exp")
    assert follow_command(snapshots, "exp", "101", 0.5, 30.0) == (
        f"nrl-launch logs --follow --project-root {tmp_path} --code-snapshot-dirname 'snaps dir' --interval 0.5 "
        "--watch-give-up 30 --job 101 exp")


def test_an_experiment_without_runs_or_jobs_says_so(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path)
    result = run_cli("logs", "--project-root", str(tmp_path), "exp", slurm=FakeSlurm())
    assert result.stderr == "[ERROR]: no run of exp is recorded in its manifest: nothing has a log\n"
    with pytest.raises(SnapshotError, match=r"job 7 is not a run of exp \(its jobs: none\)"):
        recorded_jobs(folder_of(snapshot), "7")


def test_ctrl_c_while_following_says_how_to_resume(tmp_path: Path) -> None:
    from nrl_launch.errors import Interrupted
    from nrl_launch.follow.logs import follow as follow_logs

    snapshot = snapshot_with_runs(tmp_path, "101", "102")
    driver(snapshot, "101", "x\n")
    fake = FakeSlurm()
    queued(fake, "101", "102")

    def ctrl_c(_: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        follow_logs(SnapshotRoot(tmp_path, "code_snapshots"), "exp", "101", fake.client(), write=lambda _: None,
                    err=lambda _: None, interval=1, wait=ctrl_c)
    assert str(info.value) == (f"stopped following the logs of exp. Resume with: nrl-launch logs --follow "
                               f"--project-root {tmp_path} --code-snapshot-dirname code_snapshots --interval 1 "
                               "--job 101 exp")
