"""A job's logs are its own: a log folder counts for a run only when ray.sub wrote that run's token
into it (or, without tokens, when it was written after the run's submission). A controller whose job
ids restart never turns an old ``<id>-logs`` folder into a new verdict -- in WATCH, ``nrl-launch
watch`` and ``nrl-launch status``."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from nrl_launch.experiment.folder import SnapshotRoot
from nrl_launch.experiment.joblogs import IDENTITY_FILE, TIME_SLACK, TrackedJob, belongs, driver_logs, folder_token
from nrl_launch.experiment.manifest import Manifest, append_run, write_manifest
from nrl_launch.follow.verdict import GENERAL_FAIL, PASS, judge_jobs
from testkit import REPO, FakeSlurm, run_cli, write

PASSING = "Metric Checks\n  [PASS] train/loss@2 = 0.1 < 0.5\n"
TOKEN, OLD_TOKEN = "0123456789abcdef", "fedcba9876543210"


def log_folder(root: Path, job_id: str, token: str | None, *, age: float = 0.0, text: str = PASSING) -> Path:
    """``<root>/<job_id>-logs`` with a driver log, an identity with ``token`` (None: none, as the bash
    launcher's batch script left it), written ``age`` seconds ago."""
    folder = root / f"{job_id}-logs"
    write(folder / "ray-driver.log", text)
    if token is not None:
        write(folder / IDENTITY_FILE, f"token={token}\njob={job_id}\nrestart=0\njob_name=acct:x\nstarted=now\n")
    when = time.time() - age
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (when, when))
    return folder


@pytest.mark.parametrize(
    ("folder_token_", "age", "job_token", "since_ago", "counts"),
    [
        (TOKEN, 0, TOKEN, 10, True),  # its own
        (OLD_TOKEN, 0, TOKEN, 10, False),  # an earlier job of the same id: even written just now
        (OLD_TOKEN, 3600, TOKEN, 10, False),
        (None, 3600, TOKEN, 10, False),  # no identity (the bash launcher's ray.sub): older than the run
        (None, 5, TOKEN, 10, True),  # ... written after the run was submitted
        (None, 10 + TIME_SLACK - 1, TOKEN, 10, True),  # within the slack
        (OLD_TOKEN, 5, "", 10, True),  # a run recorded without token (an older launcher): by time
        (OLD_TOKEN, 3600, "", 10, False),
        ("", 3600, TOKEN, 10, False),  # ray.sub given no token: by time
        (OLD_TOKEN, 3600, "", None, True),  # nothing known of the run: every folder of its id counts
    ],
)
def test_a_log_folder_belongs_to_a_job(tmp_path: Path, folder_token_: str | None, age: float, job_token: str,
                                       since_ago: float | None, counts: bool) -> None:
    folder = log_folder(tmp_path, "5", folder_token_, age=age)
    since = None if since_ago is None else time.time() - since_ago
    job = TrackedJob("5", tmp_path, job_token, since)
    assert belongs(folder, job) is counts
    assert driver_logs([job]) == ([folder / "ray-driver.log"] if counts else [])


def test_every_attempt_of_a_requeued_job_is_checked(tmp_path: Path) -> None:
    log_folder(tmp_path, "7", TOKEN)
    mine = tmp_path / "7-1-logs"
    write(mine / "ray-driver.log", "second attempt\n")
    write(mine / IDENTITY_FILE, f"token={TOKEN}\n")
    write(tmp_path / "7-2-logs" / "ray-driver.log", "another job's\n")
    write(tmp_path / "7-2-logs" / IDENTITY_FILE, f"token={OLD_TOKEN}\n")
    logs = driver_logs([TrackedJob("7", tmp_path, TOKEN, time.time())])
    assert logs == [tmp_path / "7-logs" / "ray-driver.log", mine / "ray-driver.log"]


def test_folder_token_reads_the_token_line(tmp_path: Path) -> None:
    write(tmp_path / IDENTITY_FILE, "job=3\ntoken= abc \nrestart=0\n")
    assert folder_token(tmp_path) == "abc"
    assert folder_token(tmp_path / "none") == ""


# ---------------------------------------------------------------- ids restarted: status and watch


def experiment_with_a_reused_id(tmp_path: Path) -> SnapshotRoot:
    """An experiment relaunched after its controller's ids restarted: its new job 5 never ran (it was
    cancelled), and ``5-logs`` is the passing log of the job 5 of its earlier launch."""
    root = SnapshotRoot(tmp_path, "code_snapshots")
    snapshot = root.path / "exp"
    snapshot.mkdir(parents=True)
    write_manifest(snapshot, Manifest(experiment="exp", script="exp.sh"))
    append_run(snapshot, "5", "1/1", "launcher", when="2020-01-01T00:00:00+00:00", token=OLD_TOKEN)
    log_folder(snapshot, "5", OLD_TOKEN, age=60)
    append_run(snapshot, "5", "1/1", "launcher", token=TOKEN)  # the relaunch: the same id, handed out again
    return root


def test_status_does_not_pass_a_job_on_an_earlier_jobs_log(tmp_path: Path) -> None:
    root = experiment_with_a_reused_id(tmp_path)
    folder = root.find("exp")
    assert judge_jobs("exp", folder.tracked().jobs).status == GENERAL_FAIL
    fake = FakeSlurm()
    fake.add_job("5", "CANCELLED")
    result = run_cli("status", "--project-root", str(tmp_path), "--format", "json", "exp", slurm=fake)
    [row] = json.loads(result.stdout)
    assert row["metric_checks"] != "PASS" and row["log"] is None


def test_watch_does_not_pass_a_job_on_an_earlier_jobs_log(tmp_path: Path) -> None:
    experiment_with_a_reused_id(tmp_path)
    fake = FakeSlurm()
    fake.add_job("5", "CANCELLED")
    result = run_cli("watch", "--project-root", str(tmp_path), "--watch-interval", "0.01", "exp", slurm=fake)
    assert result.exit_code == 1
    assert "[GENERAL FAIL]   exp" in result.stdout and "[METRIC PASS]" not in result.stdout


def test_the_earlier_launch_still_passes_on_its_own_log(tmp_path: Path) -> None:
    root = experiment_with_a_reused_id(tmp_path)
    folder = root.find("exp")
    first = folder.manifest.runs[:1]
    assert judge_jobs("exp", folder.tracked(first).jobs).status == PASS


# ---------------------------------------------------------------- ray.sub writes the identity


def test_ray_sub_writes_the_runs_identity_into_its_log_folder(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "77", "SLURM_SUBMIT_DIR": str(tmp_path),
           "SLURM_JOB_NAME": "acct:exp", "COMMAND": "echo driver ran", "NRL_RUN_TOKEN": TOKEN,
           "SLURM_RESTART_COUNT": "2"}
    done = subprocess.run(["bash", str(REPO / "ray.sub")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    identity = (tmp_path / "77-2-logs" / IDENTITY_FILE).read_text().splitlines()
    assert identity[:4] == [f"token={TOKEN}", "job=77", "restart=2", "job_name=acct:exp"]
    assert identity[4].startswith("started=") and len(identity) == 5
    assert "driver ran" in (tmp_path / "77-2-logs" / "ray-driver.log").read_text()
    assert belongs(tmp_path / "77-2-logs", TrackedJob("77", tmp_path, TOKEN, time.time()))


@pytest.mark.parametrize("identity", [True, False])
def test_watch_of_a_relaunch_does_not_pass_on_an_earlier_jobs_log(tmp_path: Path, identity: bool) -> None:
    from testkit import BASE_ENV, Project

    project = Project.create(tmp_path / "proj")
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    env = {**BASE_ENV, "WATCH": "1", "WATCH_INTERVAL": "0.01"}
    first = FakeSlurm(on_poll=lambda fake: fake.finish())
    # job 1001 runs and passes: its log folder as ray.sub writes it (with the run's token), or as the bash
    # launcher's batch script did (without)
    first.on_submit = lambda job: log_folder(Path(job.cwd), job.job_id, job.env["NRL_RUN_TOKEN"] if identity else None)
    assert run_cli("launch", str(script), env=env, slurm=first).exit_code == 0
    old = project.root / "code_snapshots" / "sft-a" / "1001-logs"
    for path in [*old.iterdir(), old]:
        os.utime(path, (time.time() - 3600,) * 2)  # an hour later, the controller is reinstalled
    wiped = FakeSlurm(on_poll=lambda fake: fake.finish(state="CANCELLED"))  # ids start again; cancelled at once
    result = run_cli("launch", str(script), env=env, slurm=wiped)
    assert list(wiped.jobs) == ["1001"] and result.exit_code == 1
    assert "[GENERAL FAIL]   sft-a" in result.stdout and "[METRIC PASS]" not in result.stdout
