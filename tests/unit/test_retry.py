"""Retries after infrastructure failures: which endings count, when a run is
added, the limit, the --exclude value, and that a retry is continue.sh's run.

Slurm is the in-process ``FakeSlurm`` (it records every command); snapshots,
manifests and driver logs are real files; ray.sub's node-check line comes from
running the real ray.sub with bash.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nrl_launch.errors import SlurmError, SnapshotError, UsageProblem
from nrl_launch.experiment.folder import ExperimentDir, SnapshotRoot
from nrl_launch.experiment.joblogs import TrackedExperiment, TrackedJob
from nrl_launch.experiment.manifest import Manifest, RetryOrigin, append_run, read_manifest, write_manifest
from nrl_launch.experiment.rerun import NEXT_RUN_NAME, NextRun, load_next_run, save_next_run, submit
from nrl_launch.follow.retry import (
    NODE_CHECK_FAILED,
    InfraFailure,
    Retrier,
    RetryBook,
    exclusion,
    infra_failure,
    node_check_silent,
    retry_line,
)
from nrl_launch.follow.verdict import GENERAL_FAIL, PASS
from nrl_launch.follow.watch import Watcher
from nrl_launch.settings import WatchSettings, parse_max_retries
from nrl_launch.slurm.client import Completed, JobInfo, SlurmClient, unhealthy_state
from testkit import BASE_ENV, RAY_SUB, FakeJob, FakeSlurm, Project, SlurmOnPath, run_cli, write

PASS_LOG = "step 4\nMetric Checks\n  [PASS] train/loss@4 = 0.3 < 0.5\n\ndone\n"
HALF_LOG = "[ray.sub] job started\nstep 1\nstep 2\n"  # a run the node failure cut short
ARGV = ("--nodes=2", "--account=acct", "--job-name=acct:exp", "--time=0:10:0",
        "--output=slurm-261129-101010-%j-exp-1.1.out", "--dependency=singleton", "ray.sub")


# ---------------------------------------------------------------- helpers


def snapshot_with_runs(tmp_path: Path, *job_ids: str, total: int = 1) -> Path:
    """A snapshot folder whose manifest records these launcher runs."""
    folder = tmp_path / "code_snapshots" / "exp"
    folder.mkdir(parents=True)
    write_manifest(folder, Manifest("exp"))
    for index, job_id in enumerate(job_ids, start=1):
        append_run(folder, job_id, f"{index}/{total}")
    return folder


def folder_of(snapshot: Path) -> ExperimentDir:
    """The experiment folder ``snapshot``, its manifest not read yet."""
    return SnapshotRoot(snapshot.parent.parent, snapshot.parent.name).experiment(snapshot.name)


def next_run(snapshot: Path, total: int = 1) -> NextRun:
    return NextRun("exp", str(snapshot), ARGV, (("HF_HOME", "/hf"), ("COMMAND", "uv run x.sh 'a b'")),
                   (("MAX_STEPS", "6"), ("NUM_NODES", None), ("UID", "7")), total, "261129-101010", total)


def passing_retries(job: FakeJob) -> None:
    """``on_submit``: every retry runs and passes its checks."""
    write(Path(job.cwd) / f"{job.job_id}-logs" / "ray-driver.log", PASS_LOG)


MAX_POLLS = 30  # a watch that polls more often in these tests would poll forever: a bug


def steps(*moves: Callable[[FakeSlurm], None]) -> Callable[[FakeSlurm], None]:
    """``on_poll``: the n-th poll (``squeue --me``) first applies ``moves[n]`` (nothing after the last)."""
    pending = list(moves)
    return polls(lambda fake, n: pending.pop(0)(fake) if pending else None)


def polls(move: Callable[[FakeSlurm, int], None]) -> Callable[[FakeSlurm], None]:
    """``on_poll``: ``move(fake, n)`` at the n-th poll (``squeue --me``); the test fails past MAX_POLLS."""
    count = [0]

    def hook(fake: FakeSlurm) -> None:
        if "--me" not in fake.calls[-1].argv:
            return
        count[0] += 1
        if count[0] > MAX_POLLS:
            raise AssertionError(f"still polling after {MAX_POLLS} polls: {fake.jobs}")
        move(fake, count[0])

    return hook


def fail_every_queued_job(fake: FakeSlurm, n: int) -> None:
    """A ``polls`` move: every queued job ends NODE_FAIL (jobs finish normally from poll 10 on, so
    that a broken limit shows up as too many retries rather than a watch without end)."""
    for job_id, job in fake.jobs.items():
        if job.state in ("RUNNING", "PENDING"):
            node_fail(job_id)(fake) if n < 10 else finish(job_id)(fake)


def node_fail(job_id: str, nodes: str = "n[1-2]", down: str = "n2") -> Callable[[FakeSlurm], None]:
    def move(fake: FakeSlurm) -> None:
        fake.finish(job_id, state="NODE_FAIL", exit_code="0:15", nodes=nodes)
        if down:
            fake.node_states[down] = "down"

    return move


def finish(job_id: str, state: str = "COMPLETED", exit_code: str = "0:0") -> Callable[[FakeSlurm], None]:
    return lambda fake: fake.finish(job_id, state=state, exit_code=exit_code, nodes="n[1-3]")


def run_watch(fake: FakeSlurm, snapshot: Path, ids: tuple[str, ...], *, max_retries: int = 1,
              book: RetryBook | None = None) -> tuple[str, list[str], list[str]]:
    """Watch experiment ``exp`` (jobs ``ids``) with retries; (verdict status, stdout, stderr)."""
    out: list[str] = []
    err: list[str] = []
    client = fake.client({"PATH": os.environ["PATH"], "NUM_NODES": "4", "MAX_STEPS": "99"})
    books = {"exp": book or RetryBook(folder_of(snapshot), next_run(snapshot))}
    retrier = Retrier(client, max_retries, books, out=out.append, err=err.append, clock=lambda: "T")
    watcher = Watcher(client, WatchSettings(interval=1, max_retries=max_retries), out=out.append, err=err.append,
                      wait=lambda _: None, clock=lambda: "T", retrier=retrier)
    [verdict] = watcher.watch([TrackedExperiment("exp", tuple(TrackedJob(i, snapshot) for i in ids))])
    return verdict.status, out, err


def sbatches(fake: FakeSlurm) -> list[tuple[str, ...]]:
    return [c.argv for c in fake.calls if c.argv[0] == "sbatch"]


# ---------------------------------------------------------------- which endings are lost runs

FAKE_SRUN = "#!/bin/bash\nprintf '%s\\n' $FAKE_SRUN_ANSWER\nexit 1\n"
FAKE_SCONTROL = "#!/bin/bash\nprintf 'node1\\nnode2\\nnode3\\n'\n"


def ray_sub_node_check_log(tmp_path: Path, answer: str) -> Path:
    """The driver log the real ray.sub writes when only ``answer`` answers its node check."""
    bin_dir = tmp_path / "bin"
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        write(bin_dir / name, text, 0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "CONTAINER": "",
           "SLURM_SUBMIT_DIR": str(tmp_path), "SLURM_JOB_ID": "9", "SLURM_JOB_NUM_NODES": "3",
           "SLURM_JOB_NODELIST": "node[1-3]", "COMMAND": "true", "FAKE_SRUN_ANSWER": answer}
    done = subprocess.run(["bash", str(RAY_SUB)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 75, done
    return tmp_path / "9-logs" / "ray-driver.log"


@pytest.mark.parametrize(("answer", "silent"), [("node1", ("node2", "node3")), ("node1 node3", ("node2",)),
                                                ("node1 node2 node3", ())])  # srun failed, every node answered
def test_the_silent_nodes_of_ray_subs_node_check(tmp_path: Path, answer: str, silent: tuple[str, ...]) -> None:
    assert node_check_silent(ray_sub_node_check_log(tmp_path, answer)) == silent
    assert node_check_silent(write(tmp_path / "other.log", "[ray.sub] node check: all 3 nodes answered\n")) is None
    assert node_check_silent(tmp_path / "missing.log") is None


@pytest.mark.parametrize(("state", "exit_code", "node_check", "lost"), [
    ("NODE_FAIL", "0:15", False, "NODE_FAIL"),
    ("BOOT_FAIL", "0:0", False, "BOOT_FAIL"),
    ("PREEMPTED", "0:15", False, "PREEMPTED"),
    ("FAILED", "75:0", True, NODE_CHECK_FAILED),
    ("FAILED", "75:0", False, None),  # a recipe that exits 75 by itself
    ("FAILED", "1:0", True, None),  # the line alone is not enough either
    ("FAILED", "1:0", False, None),
    ("TIMEOUT", "0:15", False, None),
    ("OUT_OF_MEMORY", "0:125", False, None),
    ("CANCELLED", "0:15", False, None),
    ("COMPLETED", "0:0", False, None),
])
def test_which_endings_are_lost_to_the_infrastructure(tmp_path: Path, state: str, exit_code: str,
                                                      node_check: bool, lost: str | None) -> None:
    log = ray_sub_node_check_log(tmp_path, "node1") if node_check else write(tmp_path / "x.log", HALF_LOG)
    failure = infra_failure(JobInfo("9", state, "", exit_code, "node[1-3]"), log)
    assert (failure.state if failure else None) == lost
    if lost == NODE_CHECK_FAILED:
        assert failure == InfraFailure("9", NODE_CHECK_FAILED, "node[1-3]", ("node2", "node3"))


@pytest.mark.parametrize(("failure", "states", "expected"), [
    (InfraFailure("1", "NODE_FAIL", "n[1-2]"), {"n2": "down"}, "n2"),  # the node Slurm took down
    (InfraFailure("1", "NODE_FAIL", "n[1-3]"), {"n1": "drained", "n3": "idle*"}, "n1,n3"),
    (InfraFailure("1", "BOOT_FAIL", "n[1-2]"), {"n1": "fail"}, "n1"),
    (InfraFailure("1", "NODE_FAIL", "n[1-2]"), {}, "n[1-2]"),  # Slurm names none: every node of the job
    (InfraFailure("1", "NODE_FAIL", "n[1-2]"), None, "n[1-2]"),  # sinfo fails: the same
    (InfraFailure("1", "PREEMPTED", "n[1-2]"), {"n2": "down"}, ""),  # the nodes are fine
    (InfraFailure("1", NODE_CHECK_FAILED, "n[1-3]", ("n3",)), {"n1": "down"}, "n3"),  # the log says which
    (InfraFailure("1", "BOOT_FAIL", ""), {"n1": "down"}, ""),  # no node at all
])
def test_the_nodes_a_retry_excludes(failure: InfraFailure, states: dict[str, str] | None, expected: str) -> None:
    fake = FakeSlurm(node_states=states or {})
    if states is None:
        fake.answers["sinfo"] = lambda call: Completed(1, "", "sinfo: error\n")
    assert exclusion(failure, fake.client().unhealthy_nodes) == expected


@pytest.mark.parametrize(("state", "unhealthy"), [
    ("down", True), ("down*", True), ("idle*", True), ("drained", True), ("draining", True), ("drain", True),
    ("fail", True), ("failing", True), ("not_responding", True), ("unknown", True), ("DOWN", True),
    ("idle", False), ("allocated", False), ("mixed", False), ("completing", False), ("idle~", False),
    ("reserved", False), ("planned", False),
])
def test_node_states_that_make_a_node_unhealthy(state: str, unhealthy: bool) -> None:
    assert unhealthy_state(state) is unhealthy


def test_unhealthy_nodes_asks_sinfo_about_the_jobs_nodes_only() -> None:
    fake = FakeSlurm(node_states={"n1": "idle", "n2": "down*", "n7": "down"})
    client = fake.client()
    assert client.unhealthy_nodes("n[1-2]") == ["n2"]
    assert fake.calls[-1].argv == ("sinfo", "-h", "-N", "-n", "n[1-2]", "-o", "%N|%T")
    assert client.unhealthy_nodes("") == [] and client.unhealthy_nodes("n1;rm -rf /") == []
    assert len(fake.calls) == 1  # nothing that is not a host list reaches a command line
    fake.answers["sinfo"] = lambda call: Completed(1, "", "boom\n")
    with pytest.raises(SlurmError, match="sinfo failed: boom"):
        client.unhealthy_nodes("n1")


@pytest.mark.parametrize(("raw", "value"), [(None, 0), ("", 0), ("0", 0), ("3", 3), (" 2 ", 2), ("100", 100)])
def test_max_retries_values(raw: str | None, value: int) -> None:
    assert parse_max_retries(raw) == value


@pytest.mark.parametrize("raw", ["-1", "x", "1.5", "101", "٣", "1e2"])
def test_max_retries_rejects(raw: str) -> None:
    with pytest.raises(UsageProblem, match="MAX_RETRIES must be a whole number from 0 to 100"):
        parse_max_retries(raw)


# ---------------------------------------------------------------- the watcher retries


def test_a_node_failure_is_retried_on_the_other_nodes(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    write(snapshot / "101-logs" / "ray-driver.log", HALF_LOG)
    fake = FakeSlurm(on_submit=passing_retries, on_poll=steps(node_fail("101"), finish("1002")))
    fake.add_job("101", "RUNNING", nodes="n[1-2]")
    status, out, err = run_watch(fake, snapshot, ("101",))
    assert status == PASS  # the verdict reads the retry's log too
    assert out[:8] == [
        "[T] [WATCH]: Tracking 1 jobs: 101",
        "[T] [WATCH]: Polling every 1s. Press Enter to refresh immediately.",
        "[T] [WATCH]: Finished jobs: 101",
        "[T] [WATCH]: Retrying exp after NODE_FAIL on n[1-2] (1/1): job 1002",
        "[T] [WATCH]: Remaining: 1",
        "[T] [WATCH]: Finished jobs: 1002",
        "[T] [WATCH]: Remaining: 0",
        "[T] [WATCH]: All tracked jobs have finished.",
    ]
    assert out[8:10] == ["[WATCH]: Checking exp", "[METRIC PASS]    exp"]
    assert "[T] exp: job 1002 is run 2 of the chain, excluding n2 (Submitted batch job 1002)" in err
    # the progress line of that poll names the new job, which the queue did not hold yet
    assert any(line.startswith("[T] 1002 submitted; next poll at ") for line in err), err
    [retry] = [job for job in fake.submissions() if job.argv]
    # continue.sh's run 2: its own --output file name, and the node to avoid
    assert retry.argv == ("--nodes=2", "--account=acct", "--job-name=acct:exp", "--time=0:10:0",
                          "--output=slurm-261129-101010-%j-exp-2.1.out", "--dependency=singleton", "--exclude=n2",
                          "ray.sub")
    assert retry.cwd == str(snapshot)
    assert (retry.env["COMMAND"], retry.env["HF_HOME"], retry.env["MAX_STEPS"]) == ("uv run x.sh 'a b'", "/hf", "6")
    assert "NUM_NODES" not in retry.env  # pinned as unset, as continue.sh does
    assert "UID" not in retry.env  # bash's own variables are never pinned
    last = read_manifest(snapshot).runs[-1]
    assert last.to_data() == {
        "job_id": "1002", "submitted_at": last.submitted_at, "run": "2", "via": "retry", "token": last.token,
        "retry_of": "101", "after": "NODE_FAIL", "failed_on": "n[1-2]", "exclude": "n2"}
    assert retry.env["NRL_RUN_TOKEN"] == last.token != ""  # its log folders are told by it


def test_a_run_another_watch_already_retried_is_followed_not_submitted_again(tmp_path: Path) -> None:
    # Two watches of one experiment both see job 101 lost; the first one (here: before this watch
    # takes the experiment's lock) submitted and recorded job 1002; the second follows that job.
    snapshot = snapshot_with_runs(tmp_path, "101")
    write(snapshot / "101-logs" / "ray-driver.log", HALF_LOG)
    fake = FakeSlurm()
    fake.add_job("101", "RUNNING", nodes="n[1-2]")

    def other_watch_retries(f: FakeSlurm) -> None:
        node_fail("101")(f)
        append_run(snapshot, "1002", "2", via="retry", retry=RetryOrigin("101", "NODE_FAIL", ""))
        f.add_job("1002", "RUNNING")
        write(snapshot / "1002-logs" / "ray-driver.log", PASS_LOG)

    fake.on_poll = steps(other_watch_retries, finish("1002"))
    status, out, err = run_watch(fake, snapshot, ("101",))
    assert status == PASS  # judged with the other watch's retry
    assert sbatches(fake) == []
    assert not [line for line in out if "Retrying" in line]
    assert ("[T] [INFO]: exp: job 101 ended NODE_FAIL; already retried as job 1002 (by another watch of this "
            "experiment): following that job") in err
    assert "[T] [WATCH]: Finished jobs: 1002" in out
    assert [run.job_id for run in read_manifest(snapshot).runs] == ["101", "1002"]


def test_watches_of_one_experiment_share_the_max_retries_count(tmp_path: Path) -> None:
    # This watch follows runs 101 and 102. Another watch saw 101 lost and retried it (job 1003);
    # here Slurm has forgotten 101 (so this watch never saw it lost). When 102 is lost too,
    # the recorded retry counts: MAX_RETRIES=1 is reached.
    snapshot = snapshot_with_runs(tmp_path, "101", "102", total=2)
    fake = FakeSlurm()
    fake.add_job("101", "RUNNING", nodes="n[1-2]")
    fake.add_job("102", "PENDING")

    def other_watch_retries_101(f: FakeSlurm) -> None:
        del f.jobs["101"]
        f.jobs["102"].state = "RUNNING"
        append_run(snapshot, "1003", "3", via="retry", retry=RetryOrigin("101", "NODE_FAIL", ""))

    fake.on_poll = steps(other_watch_retries_101, node_fail("102"))
    status, out, err = run_watch(fake, snapshot, ("101", "102"), max_retries=1)
    assert status == GENERAL_FAIL
    assert sbatches(fake) == [] and not [line for line in out if "Retrying" in line]
    assert "[T] [INFO]: exp: job 102 ended NODE_FAIL; not retried: MAX_RETRIES=1 reached" in err


@pytest.mark.parametrize("max_retries", [1, 2, 3])
def test_at_most_max_retries_per_experiment(tmp_path: Path, max_retries: int) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    fake = FakeSlurm()
    fake.add_job("101", "RUNNING")
    fake.on_poll = polls(fail_every_queued_job)
    status, out, err = run_watch(fake, snapshot, ("101",), max_retries=max_retries)
    assert status == GENERAL_FAIL
    retries = [line for line in out if "Retrying" in line]
    assert retries == [f"[T] [WATCH]: Retrying exp after NODE_FAIL on n[1-2] ({k}/{max_retries}): job {1001 + k}"
                       for k in range(1, max_retries + 1)]
    assert len(sbatches(fake)) == max_retries
    last = str(1001 + max_retries)
    assert f"[T] [INFO]: exp: job {last} ended NODE_FAIL; not retried: MAX_RETRIES={max_retries} reached" in err
    assert [run.via for run in read_manifest(snapshot).runs] == ["launcher"] + ["retry"] * max_retries


def test_no_retry_while_the_chain_still_has_a_queued_run(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101", "102", total=2)
    fake = FakeSlurm(on_submit=passing_retries)
    fake.add_job("101", "RUNNING", nodes="n[1-2]")
    fake.add_job("102", "PENDING")
    submitted_at: list[int] = []

    def second_run_starts(f: FakeSlurm) -> None:
        node_fail("101")(f)
        f.jobs["102"].state = "RUNNING"

    def second_run_ends(f: FakeSlurm) -> None:
        submitted_at.append(len(sbatches(f)))  # nothing submitted while 102 was queued
        write(snapshot / "102-logs" / "ray-driver.log", HALF_LOG)  # it trained, without reaching the end
        finish("102")(f)

    fake.on_poll = steps(second_run_starts, second_run_ends, finish("1003"))
    status, out, _ = run_watch(fake, snapshot, ("101", "102"))
    assert submitted_at == [0]
    assert status == PASS
    assert out[2:6] == ["[T] [WATCH]: Finished jobs: 101", "[T] [WATCH]: Remaining: 1",
                        "[T] [WATCH]: Finished jobs: 102",
                        "[T] [WATCH]: Retrying exp after NODE_FAIL on n[1-2] (1/1): job 1003"]


def test_no_retry_once_the_logs_hold_the_metric_checks(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101", "102", total=2)
    fake = FakeSlurm()
    fake.add_job("101", "RUNNING", nodes="n[1-2]")
    fake.add_job("102", "PENDING")
    write(snapshot / "102-logs" / "ray-driver.log", PASS_LOG)  # the later run reached MAX_STEPS anyway
    fake.on_poll = steps(node_fail("101"), finish("102"))
    status, out, err = run_watch(fake, snapshot, ("101", "102"))
    assert status == PASS
    assert sbatches(fake) == [] and not any("Retrying" in line for line in out)
    assert ("[T] [INFO]: exp: not retrying job 101: the logs already hold the Metric Checks (the recipe reached "
            "its end)") in err


@pytest.mark.parametrize(("state", "exit_code"), [("FAILED", "1:0"), ("FAILED", "75:0"), ("TIMEOUT", "0:15"),
                                                  ("OUT_OF_MEMORY", "0:125"), ("CANCELLED", "0:15"),
                                                  ("COMPLETED", "0:0")])
def test_a_job_that_ends_by_itself_is_never_retried(tmp_path: Path, state: str, exit_code: str) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    write(snapshot / "101-logs" / "ray-driver.log", HALF_LOG)
    fake = FakeSlurm(on_poll=steps(finish("101", state, exit_code)))
    fake.add_job("101", "RUNNING")
    status, out, err = run_watch(fake, snapshot, ("101",), max_retries=5)
    assert status == GENERAL_FAIL
    assert [c.argv[0] for c in fake.calls if c.argv[0] in ("sbatch", "sinfo")] == []
    assert not any("Retrying" in line for line in out) and not any("retr" in line for line in err)


def test_retries_alone_never_cancel_the_rest_of_a_failed_chain(tmp_path: Path) -> None:
    # MAX_RETRIES makes the watch ask how jobs ended; only STOP_CHAIN_ON_FAILURE may cancel on a FAILED run
    snapshot = snapshot_with_runs(tmp_path, "101", "102", total=2)
    fake = FakeSlurm(on_poll=steps(finish("101", "FAILED", "1:0"), finish("102")))
    fake.add_job("101", "RUNNING")
    fake.add_job("102", "PENDING")
    status, out, _ = run_watch(fake, snapshot, ("101", "102"), max_retries=2)
    assert status == GENERAL_FAIL
    assert [c.argv for c in fake.calls if c.argv[0] == "scancel"] == []
    assert fake.jobs["102"].state == "COMPLETED" and "[T] [WATCH]: Finished jobs: 102" in out


def test_the_progress_line_names_every_retry_submitted_in_one_poll(tmp_path: Path) -> None:
    runs = {}
    for name, job_id in (("a", "101"), ("b", "102")):
        folder = tmp_path / name / "code_snapshots" / name
        folder.mkdir(parents=True)
        write_manifest(folder, Manifest(name))
        append_run(folder, job_id, "1/1")
        runs[name] = (folder, job_id)
    fake = FakeSlurm()
    fake.on_poll = steps(lambda f: (node_fail("101")(f), node_fail("102")(f)), lambda f: f.finish())
    for _, job_id in runs.values():
        fake.add_job(job_id, "RUNNING", nodes="n[1-2]")
    err: list[str] = []
    client = fake.client({"PATH": os.environ["PATH"]})
    books = {name: RetryBook(folder_of(folder), NextRun(name, str(folder), ARGV, (), (), 1, "261129-101010", 1))
             for name, (folder, _) in runs.items()}
    retrier = Retrier(client, 1, books, out=lambda _: None, err=err.append, clock=lambda: "T")
    watcher = Watcher(client, WatchSettings(interval=1, max_retries=1), out=lambda _: None, err=err.append,
                      wait=lambda _: None, clock=lambda: "T", retrier=retrier)
    watcher.watch([TrackedExperiment(name, (TrackedJob(job_id, folder),)) for name, (folder, job_id) in runs.items()])
    assert any(line.startswith("[T] 1003 submitted, 1004 submitted; next poll at ") for line in err), err


def test_a_failed_node_check_is_retried_without_the_silent_nodes(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "9")
    ray_sub_node_check_log(snapshot, "node1 node2")  # node3 did not answer
    fake = FakeSlurm(on_submit=passing_retries,
                     on_poll=steps(lambda f: f.finish("9", state="FAILED", exit_code="75:0", nodes="node[1-3]"),
                                   finish("1002")))
    fake.add_job("9", "RUNNING")
    status, out, _ = run_watch(fake, snapshot, ("9",))
    assert status == PASS
    assert "[T] [WATCH]: Retrying exp after NODE_CHECK_FAILED on node[1-3] (1/1): job 1002" in out
    assert sbatches(fake)[0][-2:] == ("--exclude=node3", "ray.sub")
    assert not any(c.argv[0] == "sinfo" for c in fake.calls)  # the log said which node


def test_a_retry_sbatch_refuses_is_reported_and_the_watch_ends(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    fake = FakeSlurm(on_poll=steps(node_fail("101", down="")))
    fake.add_job("101", "RUNNING")
    fake.answers["sbatch"] = lambda call: Completed(
        1, "", "sbatch: error: Requested node configuration is not available\n")
    status, out, err = run_watch(fake, snapshot, ("101",))
    assert status == GENERAL_FAIL
    assert sbatches(fake)[0][-2:] == ("--exclude=n[1-2]", "ray.sub")  # Slurm named no failed node
    assert any(line.startswith("[T] [WARNING]: exp: job 101 ended NODE_FAIL; the retry could not be submitted: "
                               "sbatch failed: sbatch: error: Requested node configuration") for line in err), err
    assert out[-1].endswith("Exiting with status 1.")


def test_without_a_recorded_submission_watch_says_why_it_cannot_retry(tmp_path: Path) -> None:
    snapshot = snapshot_with_runs(tmp_path, "101")
    fake = FakeSlurm(on_poll=steps(node_fail("101")))
    fake.add_job("101", "RUNNING")
    book = RetryBook(folder_of(snapshot), None, why_not="no record")
    status, _, err = run_watch(fake, snapshot, ("101",), book=book)
    assert status == GENERAL_FAIL and sbatches(fake) == []
    assert "[T] [WARNING]: exp: job 101 ended NODE_FAIL; cannot retry it: no record" in err


# ---------------------------------------------------------------- a retry is continue.sh's run


def test_next_run_survives_the_file(tmp_path: Path) -> None:
    run = NextRun("exp", str(tmp_path), ("--nodes=1", "--output=slurm-261129-101010-%j-exp-3.3.out", "ray.sub"),
                  (("A", "x y 'z'"), ("B", "caf\udce9"), ("C", "")), (("N", None), ("M", "6")), 3, "261129-101010",
                  3)
    save_next_run(tmp_path, run)
    assert load_next_run(tmp_path) == run
    assert json.loads((tmp_path / NEXT_RUN_NAME).read_text())["format"] == 1


GOOD_RECORD = {"format": 1, "experiment": "e", "cwd": "/s", "argv": ["--output=slurm-7-%j-e-2.2.out", "ray.sub"],
               "env": [["A", "b"]], "config_env": [["N", None]], "total": 2, "stamp": "7", "index": 2}


@pytest.mark.parametrize(("change", "message"), [
    (None, "does not exist (a launch by an older nrl-launch, or DRYRUN=1)"),
    ("{", "cannot read"),
    ({"format": 2}, "not a submission record of this nrl-launch (format 2, expected 1)"),
    ({"argv": []}, "argv is empty"),
    ({"argv": ["x", 1]}, "1 is not a string"),
    ({"argv": ["--output=slurm-7-%j-e-1.2.out", "ray.sub"]}, "argv does not hold '--output=slurm-7-%j-e-2.2.out' once"),
    ({"env": [["A", None]]}, "env holds a null value"),
    ({"env": [["A"]]}, "['A'] is not a [name, value] pair"),
    ({"total": 0}, "total 0 is not a positive whole number"),
    ({"index": True}, "index True is not a positive whole number"),
    ({"stamp": None}, "None is not a string"),
    ({"config_env": "N"}, "'N' is not a [name, value] pair"),
    ({"cwd": ...}, "'cwd'"),  # missing
])
def test_a_missing_or_broken_record_is_a_clear_error(tmp_path: Path, change: dict[str, object] | str | None,
                                                     message: str) -> None:
    if isinstance(change, str):
        (tmp_path / NEXT_RUN_NAME).write_text(change)
    elif change is not None:
        record = {key: value for key, value in {**GOOD_RECORD, **change}.items() if value is not ...}
        (tmp_path / NEXT_RUN_NAME).write_text(json.dumps(record))
    with pytest.raises(SnapshotError) as info:
        load_next_run(tmp_path)
    assert message in str(info.value) and NEXT_RUN_NAME in str(info.value)
    (tmp_path / NEXT_RUN_NAME).write_text(json.dumps(GOOD_RECORD))
    assert load_next_run(tmp_path).sbatch_args(3) == ("--output=slurm-7-%j-e-3.2.out", "ray.sub")


def test_a_retry_submits_what_continue_sh_submits(project: Project, slurm_on_path: SlurmOnPath,
                                                  tmp_path: Path) -> None:
    config = ('NUM_NODES="${NUM_NODES:-2}"\nSTEPS_PER_RUN=${STEPS_PER_RUN:-20}\nMAX_STEPS=${MAX_STEPS:-40}\n'
              "NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))\nNUM_MINUTES=10\n")
    script = project.add_recipe("sft-a", config=config)
    env = {**BASE_ENV, "EXTRA_ENV": "FOO='x y'", "EXTRA_SCRIPT_ARGS": "a=1 'b=2 3'", "MAX_STEPS": "6",
           "BASE_LOG_DIR": str(tmp_path / "logs")}
    launched = run_cli("launch", str(script), env=env)
    assert launched.exit_code == 0, launched.output
    snapshot = project.root / "code_snapshots" / "sft-a"
    shell = {"PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"], "HOME": str(tmp_path),
             "NUM_NODES": "7", "MAX_STEPS": "99"}  # a shell that would plan another run
    by_bash = subprocess.run(["bash", str(snapshot / "continue.sh")], cwd=tmp_path, env=shell, capture_output=True,
                             text=True)
    assert by_bash.returncode == 0, by_bash.stderr
    number = read_manifest(snapshot).next_run_number - 1  # the run continue.sh just added
    submit(SlurmClient(shell), load_next_run(snapshot), number, exclude="n2")
    continued, retried = slurm_on_path.submissions()[-2:]
    assert retried["argv"] == [*continued["argv"][:-1], "--exclude=n2", continued["argv"][-1]]
    assert retried["cwd"] == continued["cwd"] == str(snapshot)
    bash_own = {"PWD", "OLDPWD", "SHLVL", "_", "NRL_RUN_TOKEN"}  # (and each run has its own token)
    assert ({k: v for k, v in retried["env"].items() if k not in bash_own} ==
            {k: v for k, v in continued["env"].items() if k not in bash_own})
    assert retried["env"]["NRL_RUN_TOKEN"] != continued["env"]["NRL_RUN_TOKEN"]
    assert (retried["env"]["MAX_STEPS"], "NUM_NODES" in retried["env"]) == ("6", False)


# ---------------------------------------------------------------- through the commands


def test_watch_with_max_retries_through_the_launch(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=2\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    fake_slurm.on_submit = lambda job: passing_retries(job) if job.job_id == "1002" else None
    fake_slurm.on_poll = steps(node_fail("1001"), finish("1002"))
    env = {**BASE_ENV, "WATCH": "1", "WATCH_INTERVAL": "0.01", "MAX_RETRIES": "1"}
    result = run_cli("launch", str(script), env=env, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    first, retry = fake_slurm.submissions()
    # run 2 of the chain, as continue.sh would submit it, avoiding the failed node
    again = [word.replace("-1.1.out", "-2.1.out") if word.startswith("--output=") else word for word in first.argv]
    assert retry.argv == (*again[:-1], "--exclude=n2", again[-1]) != first.argv
    def without_token(env: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if k != "NRL_RUN_TOKEN"}

    assert (retry.cwd, without_token(retry.env)) == (first.cwd, without_token(first.env))
    lines = [line.split("] ", 1)[-1] for line in result.stdout.splitlines()]
    assert "[WATCH]: Retrying sft-a after NODE_FAIL on n[1-2] (1/1): job 1002" in lines
    assert lines[-1] == "[INFO]: All tests passed. Exiting with status 0."
    runs = read_manifest(project.root / "code_snapshots" / "sft-a").runs
    assert [(r.job_id, r.run, r.via, r.retry and r.retry.retry_of) for r in runs] == [
        ("1001", "1/1", "launcher", None), ("1002", "2", "retry", "1001")]


def test_without_max_retries_a_node_failure_fails_the_experiment(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=2\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    fake_slurm.on_poll = steps(node_fail("1001"))
    result = run_cli("launch", str(script), env={**BASE_ENV, "WATCH": "1", "WATCH_INTERVAL": "0.01"},
                     slurm=fake_slurm)
    assert result.exit_code == 1
    assert len(fake_slurm.submissions()) == 1 and "Retrying" not in result.stdout
    assert "[GENERAL FAIL]   sft-a" in result.stdout
    assert not any(c.argv[0] == "sinfo" for c in fake_slurm.calls)


def test_watch_command_retries_from_the_snapshots_record(project: Project, fake_slurm: FakeSlurm,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=2\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    monkeypatch.chdir(project.root)
    node_fail("1001")(fake_slurm)  # while nobody watched
    fake_slurm.on_poll = polls(fail_every_queued_job)
    watched = run_cli("watch", "--watch-interval", "0.01", "--max-retries", "1", "sft-a", slurm=fake_slurm)
    assert watched.exit_code == 1
    first, retry = fake_slurm.submissions()
    assert retry.argv[-2:] == ("--exclude=n2", first.argv[-1]) and retry.cwd == first.cwd
    assert "Retrying sft-a after NODE_FAIL on n[1-2] (1/1): job 1002" in watched.stdout
    # the retry recorded earlier counts, and job 1001 is answered: a second watch adds nothing
    again = run_cli("watch", "--watch-interval", "0.01", "--max-retries", "1", "sft-a", slurm=fake_slurm)
    assert again.exit_code == 1 and len(fake_slurm.submissions()) == 2
    assert "job 1002 ended NODE_FAIL; not retried: MAX_RETRIES=1 reached" in again.stderr
    assert "job 1001" not in again.stderr
    # one more allowed: 1002 is retried, 1001 still not
    third = run_cli("watch", "--watch-interval", "0.01", "--max-retries", "2", "sft-a", slurm=fake_slurm)
    assert "Retrying sft-a after NODE_FAIL on n[1-2] (2/2): job 1003" in third.stdout
    assert [(r.job_id, r.retry and r.retry.retry_of) for r in read_manifest(project.root / "code_snapshots" /
                                                                              "sft-a").runs] == [
        ("1001", None), ("1002", "1001"), ("1003", "1002")]


def test_the_resume_command_keeps_max_retries(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    result = run_cli("launch", str(script), env={**BASE_ENV, "MAX_RETRIES": "2"}, slurm=fake_slurm)
    assert result.exit_code == 0
    assert any("nrl-launch watch" in line and line.split("   #")[0].endswith("--max-retries 2 sft-a")
               for line in result.stderr.splitlines()), result.stderr


# ---------------------------------------------------------------- planted bugs (issue 22)


def test_a_retry_waits_for_the_experiments_lock_and_then_follows_what_its_holder_recorded(tmp_path: Path) -> None:
    # Another process (a watch, continue.sh) holds the experiment's lock while it retries job 101 itself:
    # this watch must wait for the lock, then read the manifest and follow that retry, not submit another one.
    import threading

    from testkit import holding_lock

    snapshot = snapshot_with_runs(tmp_path, "101")
    write(snapshot / "101-logs" / "ray-driver.log", HALF_LOG)
    fake = FakeSlurm(on_poll=steps(node_fail("101"), finish("1002")))
    fake.add_job("101", "RUNNING", nodes="n[1-2]")
    result: list[tuple[str, list[str], list[str]]] = []
    with holding_lock(snapshot):
        watching = threading.Thread(target=lambda: result.append(run_watch(fake, snapshot, ("101",))))
        watching.start()
        watching.join(timeout=3)
        assert watching.is_alive(), "the retry did not wait for the experiment's lock"
        append_run(snapshot, "1002", "2", via="retry", retry=RetryOrigin("101", "NODE_FAIL", ""))
        fake.add_job("1002", "RUNNING")
        write(snapshot / "1002-logs" / "ray-driver.log", PASS_LOG)
    watching.join(timeout=60)
    [(status, out, err)] = result
    assert status == PASS and sbatches(fake) == []  # one run of the experiment for the lost one, not two
    assert any("already retried as job 1002" in line for line in err), err
    assert [run.job_id for run in read_manifest(snapshot).runs] == ["101", "1002"]


def test_retries_of_an_earlier_launch_do_not_count_against_this_one(tmp_path: Path) -> None:
    # launch 1 (job 91) was retried once (job 92); launch 2 (job 101) loses its run: MAX_RETRIES=1 still allows one
    snapshot = snapshot_with_runs(tmp_path, "91")
    append_run(snapshot, "92", "2", via="retry", retry=RetryOrigin("91", "NODE_FAIL", "n1"))
    append_run(snapshot, "101", "1/1")
    fake = FakeSlurm(on_submit=passing_retries, on_poll=steps(node_fail("101"), finish("1002")))
    fake.add_job("101", "RUNNING", nodes="n[1-2]")
    status, out, err = run_watch(fake, snapshot, ("101",), max_retries=1)
    assert status == PASS
    assert "[T] [WATCH]: Retrying exp after NODE_FAIL on n[1-2] (1/1): job 1002" in out


def test_a_retry_after_a_cancellation_is_numbered_as_the_next_run(tmp_path: Path) -> None:
    # runs 1/2 and 2/2, then `nrl-launch cancel` recorded an entry, then continue.sh's run 3: the retry is run 4
    from nrl_launch.experiment.manifest import append_cancellation

    snapshot = snapshot_with_runs(tmp_path, "101", "102", total=2)
    append_cancellation(snapshot, ["102"])
    append_run(snapshot, "103", "3", via="continue.sh")
    fake = FakeSlurm(on_submit=passing_retries, on_poll=steps(node_fail("103"), finish("1002")))
    fake.add_job("103", "RUNNING", nodes="n[1-2]")
    argv = tuple(word.replace("-1.1.out", "-2.2.out") for word in ARGV)  # the launcher's last run: 2/2
    last = NextRun("exp", str(snapshot), argv, (("HF_HOME", "/hf"),), (), 2, "261129-101010", 2)
    status, out, err = run_watch(fake, snapshot, ("103",), book=RetryBook(folder_of(snapshot), last))
    assert status == PASS
    [retry] = [job for job in fake.submissions() if job.argv]
    assert "--output=slurm-261129-101010-%j-exp-4.2.out" in retry.argv
    assert read_manifest(snapshot).runs[-1].run == "4"


def test_a_retry_logs_where_the_launch_logged_and_is_judged_there(tmp_path: Path) -> None:
    # the launch had BASE_LOG_DIR: the retry is recorded with it, and its log is read from there
    logs = tmp_path / "joblogs"
    snapshot = snapshot_with_runs(tmp_path, "101")
    write(logs / "101-logs" / "ray-driver.log", HALF_LOG)
    last = NextRun("exp", str(snapshot), ARGV, (("HF_HOME", "/hf"), ("BASE_LOG_DIR", str(logs))), (), 1,
                   "261129-101010", 1)

    def retry_passes_in_base_log_dir(job: FakeJob) -> None:
        write(logs / f"{job.job_id}-logs" / "ray-driver.log", PASS_LOG)

    fake = FakeSlurm(on_submit=retry_passes_in_base_log_dir, on_poll=steps(node_fail("101"), finish("1002")))
    fake.add_job("101", "RUNNING", nodes="n[1-2]")
    book = RetryBook(folder_of(snapshot), last)
    tracked = TrackedExperiment("exp", (TrackedJob("101", logs),))
    out: list[str] = []
    client = fake.client({"PATH": os.environ["PATH"]})
    retrier = Retrier(client, 1, {"exp": book}, out=out.append, err=lambda _: None, clock=lambda: "T")
    [verdict] = Watcher(client, WatchSettings(interval=1, max_retries=1), out=out.append, err=lambda _: None,
                        wait=lambda _: None, clock=lambda: "T", retrier=retrier).watch([tracked])
    assert verdict.status == PASS, out
    assert read_manifest(snapshot).runs[-1].base_log_dir == str(logs)


def test_every_silent_node_is_excluded_and_a_job_without_nodes_is_named_so() -> None:
    failure = InfraFailure("7", NODE_CHECK_FAILED, "n[1-3]", ("n2", "n3"))
    assert exclusion(failure, lambda nodes: []) == "n2,n3"
    assert exclusion(InfraFailure("7", "PREEMPTED", "n[1-3]", ("n2", "n3")), lambda nodes: []) == "n2,n3"
    assert retry_line("T", "exp", InfraFailure("7", "BOOT_FAIL", ""), 1, 2, "8") == (
        "[T] [WATCH]: Retrying exp after BOOT_FAIL on no node (1/2): job 8")
