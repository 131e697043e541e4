"""``nrl-launch cancel`` and what ``status`` shows of cancellations and retries.

Launches go through the real CLI into a real git repository with the
in-process ``FakeSlurm``; ``continue.sh`` runs with bash.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from nrl_launch.errors import SnapshotError
from nrl_launch.experiment.locks import experiment_locks
from nrl_launch.experiment.manifest import Cancellation, RetryOrigin, append_run, read_manifest
from nrl_launch.slurm.client import Completed
from testkit import BASE_ENV, Call, FakeSlurm, Project, run_cli, write

THREE_RUNS = "NUM_NODES=1\nNUM_RUNS=3\nNUM_MINUTES=10\n"


@pytest.fixture
def launched(project: Project, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch) -> Project:
    """Two experiments launched: sft-a (jobs 1001-1003) and sft-b (1004-1006), all pending."""
    for name in ("sft-a", "sft-b"):
        script = project.add_recipe(name, config=THREE_RUNS)
        result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
        assert result.exit_code == 0, result.output
    monkeypatch.chdir(project.root)
    return project


def scancels(fake: FakeSlurm) -> list[tuple[str, ...]]:
    return [c.argv for c in fake.calls if c.argv[0] == "scancel"]


def manifest_text(project: Project, name: str) -> str:
    return (project.root / "code_snapshots" / name / ".nrl_launch.yaml").read_text()


def test_cancel_stops_every_queued_job_in_one_scancel_and_records_it(launched: Project,
                                                                     fake_slurm: FakeSlurm) -> None:
    fake_slurm.finish("1004")  # sft-b's first run is over: nothing to cancel there
    fake_slurm.jobs["1005"].state = "RUNNING"
    result = run_cli("cancel", "sft-a", "sft-b", slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    assert scancels(fake_slurm) == [("scancel", "1001", "1002", "1003", "1005", "1006")]
    assert result.stdout.splitlines() == ["[INFO]: sft-a: cancelled 3 jobs: 1001 1002 1003",
                                          "[INFO]: sft-b: cancelled 2 jobs: 1005 1006"]
    assert {job.state for job in fake_slurm.jobs.values()} == {"CANCELLED", "COMPLETED"}
    entries = [e.to_data() for e in read_manifest(launched.root / "code_snapshots" / "sft-a").entries
               if "planned" not in e.to_data()]  # (the launch's plan, recorded before its runs)
    assert [e.get("job_id") for e in entries] == ["1001", "1002", "1003", None]
    assert (entries[-1]["cancelled"], entries[-1]["via"]) == ("1001 1002 1003", "nrl-launch cancel")
    assert read_manifest(launched.root / "code_snapshots" / "sft-b").entries[-1].to_data()["cancelled"] == "1005 1006"


def test_cancel_waits_for_a_launch_holding_the_experiment_and_cancels_what_it_queued(
        launched: Project, fake_slurm: FakeSlurm) -> None:
    # A continue.sh of sft-a holds its lock and queues one more run: cancel, started meanwhile,
    # must look at the queue after it, not before, or that run would escape.
    snapshot = launched.root / "code_snapshots" / "sft-a"
    holding = threading.Event()

    def continue_sh() -> None:
        with experiment_locks([snapshot], lambda _: None):
            holding.set()
            time.sleep(2.0)  # long enough for the cancel below to find the lock taken
            fake_slurm.add_job("1007", "PENDING")
            append_run(snapshot, "1007", "4", via="continue.sh")

    other = threading.Thread(target=continue_sh)
    other.start()
    holding.wait()
    result = run_cli("cancel", "sft-a", slurm=fake_slurm)
    other.join()
    assert result.exit_code == 0, result.output
    assert "waiting for another launch, continue.sh or code_snapshot.sh of experiment sft-a" in result.stderr
    assert scancels(fake_slurm) == [("scancel", "1001", "1002", "1003", "1007")]


def test_cancel_is_idempotent(launched: Project, fake_slurm: FakeSlurm) -> None:
    assert run_cli("cancel", "sft-a", slurm=fake_slurm).exit_code == 0
    before = manifest_text(launched, "sft-a")
    again = run_cli("cancel", "sft-a", slurm=fake_slurm)
    assert again.exit_code == 0, again.output
    assert again.stdout == "[INFO]: sft-a: nothing to cancel (none of its 3 jobs is queued or running)\n"
    assert len(scancels(fake_slurm)) == 1  # the first cancel's only
    assert manifest_text(launched, "sft-a") == before


def test_dry_run_cancels_and_records_nothing(launched: Project, fake_slurm: FakeSlurm) -> None:
    before = manifest_text(launched, "sft-a")
    fake_slurm.finish("1006")
    result = run_cli("cancel", "--dry-run", "sft-a", "sft-b", slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["[DRY_RUN]: sft-a: would cancel 3 jobs: 1001 1002 1003",
                                          "[DRY_RUN]: sft-b: would cancel 2 jobs: 1004 1005",
                                          "[DRY_RUN]: would run: scancel 1001 1002 1003 1004 1005"]
    assert scancels(fake_slurm) == []
    assert manifest_text(launched, "sft-a") == before
    assert fake_slurm.jobs["1001"].state == "PENDING"


@pytest.mark.parametrize("names", [["nope"], ["sft-a", "nope"]])
def test_an_unknown_experiment_cancels_nothing(launched: Project, fake_slurm: FakeSlurm, names: list[str]) -> None:
    calls = len(fake_slurm.calls)
    result = run_cli("cancel", *names, slurm=fake_slurm)
    assert result.exit_code == 1
    assert result.stderr.startswith("[ERROR]: no snapshot of experiment 'nope' in ")
    assert "nothing was cancelled" in result.stderr and "Traceback" not in result.output
    assert len(fake_slurm.calls) == calls  # Slurm not even asked


def test_an_unreachable_slurm_cancels_and_records_nothing(launched: Project, fake_slurm: FakeSlurm) -> None:
    before = manifest_text(launched, "sft-a")
    fake_slurm.down = True
    result = run_cli("cancel", "sft-a", slurm=fake_slurm)
    assert result.exit_code == 128  # Slurm cannot be reached (spec sections 7 and 9)
    assert "[ERROR]: cannot reach Slurm: Unable to contact slurm controller" in result.stderr
    assert manifest_text(launched, "sft-a") == before


def test_scancel_complaining_about_a_job_that_just_ended(launched: Project, fake_slurm: FakeSlurm) -> None:
    def scancel(call: Call) -> Completed:
        for job_id in call.argv[1:]:
            fake_slurm.jobs[job_id].state = "CANCELLED"
        return Completed(1, "", "scancel: error: Kill job error on job id 1001: Job/step already completing\n")

    fake_slurm.answers["scancel"] = scancel
    result = run_cli("cancel", "sft-a", slurm=fake_slurm)
    assert result.exit_code == 0, result.output  # nothing is left queued: done
    assert result.stdout == "[INFO]: sft-a: cancelled 3 jobs: 1001 1002 1003\n"
    fake_slurm.answers["scancel"] = lambda call: Completed(1, "", "scancel: error: Access/permission denied\n")
    assert run_cli("cancel", "sft-b", slurm=fake_slurm).exit_code == 1  # still queued: the error stands
    assert not isinstance(read_manifest(launched.root / "code_snapshots" / "sft-b").entries[-1], Cancellation)


def test_continue_sh_and_status_after_a_cancel(launched: Project, fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    assert run_cli("cancel", "sft-a", slurm=fake_slurm).exit_code == 0
    snapshot = launched.root / "code_snapshots" / "sft-a"
    # continue.sh needs only bash and an sbatch: this one answers like Slurm
    write(tmp_path / "bin" / "sbatch", "#!/bin/bash\necho 'Submitted batch job 2001'\n", 0o755)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(snapshot / "continue.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    runs = [e.to_data() for e in read_manifest(snapshot).entries if "planned" not in e.to_data()]
    assert [(r.get("job_id"), r.get("run")) for r in runs] == [("1001", "1/3"), ("1002", "2/3"), ("1003", "3/3"),
                                                              (None, None), ("2001", "4")]
    fake_slurm.add_job("2001", "PENDING")
    status = run_cli("status", "--format", "json", "sft-a", slurm=fake_slurm)
    assert status.exit_code == 0, status.output
    [row] = json.loads(status.stdout)
    assert row["runs"] == 4
    assert [(j["job_id"], j["state"]) for j in row["jobs"]] == [("1001", "CANCELLED"), ("1002", "CANCELLED"),
                                                               ("1003", "CANCELLED"), ("2001", "PENDING")]
    assert [c["jobs"] for c in row["cancellations"]] == [["1001", "1002", "1003"]]
    assert row["cancellations"][0]["at"] == runs[3]["cancelled_at"]
    assert row["retries"] == []
    table = run_cli("status", "sft-a", slurm=fake_slurm)
    assert table.stdout.splitlines()[1].endswith("cancelled 3 jobs"), table.stdout


def test_status_summary_counts_cancelled_experiments(launched: Project, fake_slurm: FakeSlurm) -> None:
    assert run_cli("cancel", "sft-a", slurm=fake_slurm).exit_code == 0
    # sft-a is stopped, sft-b still waits for its verdict
    assert run_cli("status", slurm=fake_slurm).stdout.splitlines()[-1] == (
        "2 experiments, 6 jobs: 0 passed, 0 failed, 1 cancelled, 1 with jobs queued, 0 without a verdict yet")
    # a cancelled experiment relaunched with continue.sh has a job queued again: no longer counted as cancelled
    append_run(launched.root / "code_snapshots" / "sft-a", "2001", "4", via="continue.sh")
    fake_slurm.add_job("2001", "PENDING")
    assert run_cli("status", slurm=fake_slurm).stdout.splitlines()[-1] == (
        "2 experiments, 7 jobs: 0 passed, 0 failed, 2 with jobs queued, 0 without a verdict yet")


def test_status_shows_retries(launched: Project, fake_slurm: FakeSlurm) -> None:
    snapshot = launched.root / "code_snapshots" / "sft-a"
    append_run(snapshot, "1007", "4", via="retry", retry=RetryOrigin("1003", "NODE_FAIL", "n[1-2]", "n2"))
    append_run(snapshot, "1008", "5", via="retry", retry=RetryOrigin("1007", "PREEMPTED", "n[1-2]"))
    fake_slurm.add_job("1007", "PREEMPTED")
    fake_slurm.add_job("1008", "RUNNING")
    status = run_cli("status", "--format", "json", "sft-a", "sft-b", slurm=fake_slurm)
    rows = {row["experiment"]: row for row in json.loads(status.stdout)}
    assert rows["sft-a"]["retries"] == [
        {"job_id": "1007", "retry_of": "1003", "after": "NODE_FAIL", "failed_on": "n[1-2]", "exclude": "n2"},
        {"job_id": "1008", "retry_of": "1007", "after": "PREEMPTED", "failed_on": "n[1-2]", "exclude": ""}]
    assert rows["sft-b"]["retries"] == [] and rows["sft-a"]["runs"] == 5
    assert run_cli("cancel", "sft-a", slurm=fake_slurm).exit_code == 0
    table = run_cli("status", "sft-a", "sft-b", env={"COLUMNS": "200"}, slurm=fake_slurm).stdout.splitlines()
    assert table[0].split()[-1] == "NOTE"
    assert table[1].startswith("sft-a") and table[1].endswith("2 retries after NODE_FAIL, PREEMPTED; cancelled 4 jobs")
    assert "GENERAL FAIL" in table[1]  # judged as WATCH judges it: nothing queued, no Metric Checks
    assert table[2].startswith("sft-b") and not table[2].endswith("jobs")


def test_manifest_entries_of_retries_and_cancellations(tmp_path: Path) -> None:
    from nrl_launch.experiment.manifest import Manifest, append_cancellation, write_manifest

    write_manifest(tmp_path, Manifest("x"))
    append_run(tmp_path, "7", "1/1")
    append_run(tmp_path, "8", "2", via="retry", retry=RetryOrigin("7", "NODE_FAIL", "n1"))
    append_cancellation(tmp_path, ["8"], when="2026-11-29T01:00:09+00:00")
    recorded = read_manifest(tmp_path)
    assert [(r.job_id, r.via, r.retry and r.retry.retry_of) for r in recorded.runs] == [("7", "launcher", None),
                                                                                       ("8", "retry", "7")]
    assert recorded.cancellations == (Cancellation(("8",), "2026-11-29T01:00:09+00:00"),)
    assert recorded.next_run_number == 3  # the cancellation is no run
    with pytest.raises(SnapshotError, match="needs at least one job id"):
        append_cancellation(tmp_path, [])
    with pytest.raises(SnapshotError, match="no manifest to record in"):
        append_cancellation(tmp_path / "nowhere", ["1"])


@pytest.mark.parametrize("name", ["../code_snapshots/sft-a", ".hidden", "a/b", ""])
def test_names_that_are_not_experiments(launched: Project, fake_slurm: FakeSlurm, name: str) -> None:
    for command in (["cancel", name], ["logs", name], ["watch", name]):
        result = run_cli(*command, slurm=fake_slurm)
        assert result.exit_code == 1, (command, result.output)
        assert f"[ERROR]: {name!r} is not an experiment name" in result.stderr
    assert scancels(fake_slurm) == []


def test_an_experiment_with_nothing_queued_does_not_stop_the_others(launched: Project, fake_slurm: FakeSlurm) -> None:
    for job_id in ("1001", "1002", "1003"):
        fake_slurm.finish(job_id)  # sft-a is over; sft-b, named after it, still waits
    dry = run_cli("cancel", "--dry-run", "sft-a", "sft-b", slurm=fake_slurm)
    assert dry.stdout.splitlines() == [
        "[INFO]: sft-a: nothing to cancel (none of its 3 jobs is queued or running)",
        "[DRY_RUN]: sft-b: would cancel 3 jobs: 1004 1005 1006",
        "[DRY_RUN]: would run: scancel 1004 1005 1006"]
    result = run_cli("cancel", "sft-a", "sft-b", slurm=fake_slurm)
    assert result.stdout.splitlines() == ["[INFO]: sft-a: nothing to cancel (none of its 3 jobs is queued or running)",
                                          "[INFO]: sft-b: cancelled 3 jobs: 1004 1005 1006"]
    assert read_manifest(launched.root / "code_snapshots" / "sft-b").cancellations[0].jobs == ("1004", "1005", "1006")


def test_a_manifest_that_cannot_record_the_cancel_is_a_warning(launched: Project, fake_slurm: FakeSlurm) -> None:
    manifest = launched.root / "code_snapshots" / "sft-a" / ".nrl_launch.yaml"

    def scancel_then_the_manifest_goes(call: Call) -> Completed:  # read before, gone when the cancel is recorded
        answer = FakeSlurm._scancel(fake_slurm, call)
        manifest.rename(manifest.with_name("moved"))
        manifest.mkdir()
        return answer

    fake_slurm.answers["scancel"] = scancel_then_the_manifest_goes
    result = run_cli("cancel", "sft-a", slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    assert result.stdout == "[INFO]: sft-a: cancelled 3 jobs: 1001 1002 1003\n"  # the jobs are cancelled all the same
    assert "[WARNING]: sft-a: its jobs are cancelled, but the manifest could not record it: " in result.stderr
