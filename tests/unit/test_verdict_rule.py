"""One verdict rule for WATCH, ``nrl-launch watch`` and ``nrl-launch status`` (issue 22, items 1 and 3).

An experiment is judged only when nothing of it is queued, and the three give it the same verdict
(``[GENERAL FAIL]`` included), through the commands a user types.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nrl_launch.experiment.manifest import append_run
from testkit import BASE_ENV, FakeJob, FakeSlurm, Project, driver_log, finish_after, run_cli, table_cell, write

PASS_LOG = "step 40\nMetric Checks\n  [PASS] train/loss@40 = 0.3 < 0.5\n"
FAIL_LOG = "step 80\nMetric Checks\n  [FAIL] train/loss@80 = 0.9 < 0.5\n"
CRASH_LOG = "step 3\nTraceback (most recent call last):\nRuntimeError: CUDA error\n"
WORDS = {"[METRIC PASS]    sft-a": "METRIC PASS", "[METRIC FAIL]    sft-a": "METRIC FAIL",
         "[GENERAL FAIL]   sft-a": "GENERAL FAIL"}


def verdict_in(stdout: str) -> str:
    """The verdict a WATCH output gives sft-a."""
    lines = stdout.splitlines()
    return WORDS[lines[lines.index("[WATCH]: Checking sft-a") + 1]]


@pytest.mark.parametrize(
    ("log", "state", "verdict", "checks"),
    [
        (CRASH_LOG, "FAILED", "GENERAL FAIL", "GENERAL FAIL"),  # the run crashed before its checks
        (None, "FAILED", "GENERAL FAIL", "GENERAL FAIL"),  # the run left no log at all
        (PASS_LOG, "COMPLETED", "METRIC PASS", "PASS"),
        (FAIL_LOG, "COMPLETED", "METRIC FAIL", "FAIL"),
    ],
)
def test_status_gives_the_verdict_watch_gives(project: Project, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch,
                                              log: str | None, state: str, verdict: str, checks: str) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    fake_slurm.on_submit = driver_log({} if log is None else {"1001": log})
    fake_slurm.on_poll = finish_after(0, state=state)
    watched = run_cli("launch", "--watch", "--watch-interval", "0.01", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert verdict_in(watched.stdout) == verdict
    monkeypatch.chdir(project.root)
    again = run_cli("watch", "--watch-interval", "0.01", "sft-a", slurm=fake_slurm)
    assert verdict_in(again.stdout) == verdict

    status = run_cli("status", "--format", "json", slurm=fake_slurm)
    [row] = json.loads(status.stdout)
    assert (row["verdict"], row["metric_checks"]) == (verdict, checks)
    table = run_cli("status", slurm=fake_slurm).stdout.splitlines()
    assert table_cell(table, 1, "VERDICT") == verdict
    failed = int(verdict != "METRIC PASS")
    assert table[-1] == (f"1 experiment, 1 job: {1 - failed} passed, {failed} failed, "
                                             "0 with jobs queued, 0 without a verdict yet")


def continue_sh_during_the_watch(project: Project, fake: FakeSlurm) -> None:
    """At the first poll, run 1001 ends (passing) and a continue.sh run (job 2001, which will fail its checks)
    is queued and recorded, as continue.sh records it; it ends at the third poll."""
    snapshot = project.root / "code_snapshots" / "sft-a"
    polls = [0]

    def poll(fake: FakeSlurm) -> None:
        polls[0] += 1
        if polls[0] == 1:
            fake.finish("1001")
            fake.jobs["2001"] = FakeJob("2001", (), str(snapshot), {})
            append_run(snapshot, "2001", "2", "continue.sh")
        elif polls[0] == 3:
            write(snapshot / "2001-logs" / "ray-driver.log", FAIL_LOG)
            fake.finish("2001")

    fake.on_poll = lambda fake: poll(fake) if fake.calls[-1].argv[:2] == ("squeue", "--me") else None


@pytest.mark.parametrize("command", ["launch --watch", "watch"])
def test_no_verdict_while_a_run_of_the_experiment_is_queued(project: Project, fake_slurm: FakeSlurm,
                                                           monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    fake_slurm.on_submit = driver_log({"1001": PASS_LOG})
    env = {**BASE_ENV, "DRYRUN": None, "WATCH": None}
    monkeypatch.chdir(project.root)
    if command == "watch":
        assert run_cli("launch", str(script), env=env, slurm=fake_slurm).exit_code == 0
        continue_sh_during_the_watch(project, fake_slurm)
        result = run_cli("watch", "--watch-interval", "0.01", "sft-a", slurm=fake_slurm)
    else:
        fake_slurm.on_submit = driver_log({"1001": PASS_LOG})
        continue_sh_during_the_watch(project, fake_slurm)
        result = run_cli("launch", "--watch", "--watch-interval", "0.01", str(script), env=env, slurm=fake_slurm)
    # the continue.sh run is followed to its end, and its failed check fails the experiment
    assert result.exit_code == 1, result.output
    assert verdict_in(result.stdout) == "METRIC FAIL"
    lines = [line.split("] ", 1)[1] if line.startswith("[20") else line for line in result.stdout.splitlines()]
    assert lines.index("[WATCH]: Finished jobs: 2001") < lines.index("[WATCH]: All tracked jobs have finished.")
    assert "following job 2001 too (run 2, via continue.sh)" in result.stderr
    status = run_cli("status", "--format", "json", slurm=fake_slurm)
    assert json.loads(status.stdout)[0]["verdict"] == "METRIC FAIL"


def test_status_gives_no_verdict_while_a_run_is_queued(project: Project, fake_slurm: FakeSlurm,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # the first run passed its checks, the second is still pending: no verdict yet, as WATCH would not give one
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    fake_slurm.on_submit = driver_log({"1001": PASS_LOG})
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    fake_slurm.finish("1001")
    monkeypatch.chdir(project.root)
    status = run_cli("status", "--format", "json", slurm=fake_slurm)
    [row] = json.loads(status.stdout)
    assert (row["verdict"], row["metric_checks"], row["waiting"]) == (None, None, "jobs queued")
    table = run_cli("status", slurm=fake_slurm).stdout.splitlines()
    assert (table_cell(table, 1, "VERDICT"), table_cell(table, 1, "JOBS")) == ("queued", "1 COMPLETED, 1 PENDING")
    assert table[-1] == "1 experiment, 2 jobs: 0 passed, 0 failed, 1 with jobs queued, 0 without a verdict yet"


def test_a_verdict_needs_to_know_that_nothing_is_queued(project: Project, fake_slurm: FakeSlurm,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    fake_slurm.on_submit = driver_log({"1001": PASS_LOG})
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    fake_slurm.down = True
    monkeypatch.chdir(project.root)
    status = run_cli("status", "--format", "json", slurm=fake_slurm)
    [row] = json.loads(status.stdout)
    assert (row["verdict"], row["waiting"]) == (None, "job states unknown")
    assert status.exit_code != 0


def test_summary_counts_add_up_to_the_experiments(tmp_path: Path) -> None:
    from nrl_launch.experiment.folder import SnapshotRoot
    from nrl_launch.experiment.manifest import Manifest, Source, append_cancellation, write_manifest
    from nrl_launch.follow.status import collect, summary

    root = tmp_path / "code_snapshots"

    def experiment(name: str, jobs: dict[str, str], logs: dict[str, str], cancelled: bool = False) -> None:
        folder = root / name
        folder.mkdir(parents=True)
        write_manifest(folder, Manifest(name, f"tests/{name}.sh", source=Source(commit="0" * 40)))
        for i, job_id in enumerate(jobs, start=1):
            append_run(folder, job_id, f"{i}/{len(jobs)}")
        for job_id, text in logs.items():
            write(folder / f"{job_id}-logs" / "ray-driver.log", text)
        if cancelled:
            append_cancellation(folder, [j for j, state in jobs.items() if state == "CANCELLED"])

    states = {"11": "COMPLETED", "21": "COMPLETED", "31": "FAILED", "41": "COMPLETED", "42": "PENDING",
              "51": "CANCELLED", "52": "CANCELLED"}
    experiment("a-pass", {"11": ""}, {"11": PASS_LOG})
    experiment("b-metric-fail", {"21": ""}, {"21": FAIL_LOG})
    experiment("c-crashed", {"31": ""}, {"31": CRASH_LOG})
    experiment("d-queued", {"41": "", "42": ""}, {"41": PASS_LOG})
    experiment("e-cancelled", {"51": "CANCELLED", "52": "CANCELLED"}, {}, cancelled=True)
    experiment("f-never-launched", {}, {})
    fake = FakeSlurm(accounting=True)
    for job_id, state in states.items():
        fake.add_job(job_id, state)
    report = collect(SnapshotRoot(tmp_path, "code_snapshots"), None, fake.client())
    assert [row.verdict for row in report.rows] == ["METRIC PASS", "METRIC FAIL", "GENERAL FAIL", None,
                                                    "GENERAL FAIL", None]
    assert summary(report) == ("6 experiments, 7 jobs: 1 passed, 2 failed, 1 cancelled, 1 with jobs queued, "
                               "1 without a verdict yet")
