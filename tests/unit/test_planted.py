"""The behaviours that planted bugs went unnoticed in (issue 22, "Planted bugs no test caught"):
each test here fails with its bug planted (``python3 benchmarks/mutation.py planted``)."""

from __future__ import annotations

import fcntl
import json
import shlex
from pathlib import Path

import pytest

from nrl_launch.experiment.manifest import append_run
from testkit import BASE_ENV, FakeJob, FakeSlurm, Project, driver_log, finish_after, run_cli, write

ONE_RUN = "NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n"
THREE_RUNS = "NUM_NODES=1\nNUM_RUNS=3\nNUM_MINUTES=10\n"
PASS_LOG = "Metric Checks\n  [PASS] loss\n"
FAIL_LOG = "Metric Checks\n  [FAIL] loss\n"


def test_the_printed_resume_command_keeps_stop_chain_on_failure(project: Project, fake_slurm: FakeSlurm,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # WATCH gives up (Slurm silent); the command it prints resumes with the same options: run 1001 then
    # fails, and the resumed watch cancels the rest of the chain as the launch was asked to
    script = project.add_recipe("sft-a", config=THREE_RUNS)
    fake_slurm.on_submit = lambda job: setattr(fake_slurm, "squeue_down", 10**6) if job.job_id == "1003" else None
    result = run_cli("launch", "--watch", "--watch-interval", "0.05", "--watch-give-up", "0.1",
                     "--stop-chain-on-failure", "1", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 128, result.output
    resume = result.stderr.rsplit("Resume with: ", 1)[1].strip()
    words = shlex.split(resume)
    assert words[:2] == ["nrl-launch", "watch"] and words[words.index("--stop-chain-on-failure") + 1] == "1"
    fake_slurm.squeue_down = 0
    fake_slurm.jobs["1001"].state = "RUNNING"
    fake_slurm.on_poll = lambda fake: fake.finish("1001", state="FAILED", exit_code="1:0") \
        if fake.jobs["1001"].state == "RUNNING" else None
    monkeypatch.chdir(project.root)
    resumed = run_cli(*words[1:], slurm=fake_slurm)
    assert any(line.endswith("[WATCH]: Cancelled 1002 1003 of sft-a: run 1001 ended FAILED (STOP_CHAIN_ON_FAILURE)")
               for line in resumed.stdout.splitlines()), resumed.output


def test_dryrun_2_with_watch_watches_nothing_and_exits_0(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    result = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2", "WATCH": "1"}, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "[INFO]: Total GPU hours: 1"  # nothing was submitted to watch
    assert "[WATCH]" not in result.stdout and fake_slurm.submissions() == []


def test_logs_follow_through_the_command_follows_a_run_added_meanwhile(project: Project, fake_slurm: FakeSlurm,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    fake_slurm.on_submit = driver_log({"1001": "run one\n"})
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    snapshot = project.root / "code_snapshots" / "sft-a"
    asked = [0]

    def continue_sh_while_following(fake: FakeSlurm) -> None:  # at the first look: run 1 ends, continue.sh adds run 2
        asked[0] += 1
        if asked[0] == 1:
            fake.finish("1001")
            fake.jobs["2001"] = FakeJob("2001", (), str(snapshot), {}, state="RUNNING")
            append_run(snapshot, "2001", "2", via="continue.sh")
            write(snapshot / "2001-logs" / "ray-driver.log", "run two\n")
        elif asked[0] == 2:
            fake.finish("2001")

    fake_slurm.on_poll = continue_sh_while_following
    monkeypatch.chdir(project.root)
    followed = run_cli("logs", "--follow", "--interval", "0.05", "sft-a", slurm=fake_slurm)
    assert followed.exit_code == 0, followed.output
    assert followed.stdout == "run one\nrun two\n"


def test_watch_of_several_experiments_fails_when_any_fails(project: Project, fake_slurm: FakeSlurm,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = [str(project.add_recipe(name, config=ONE_RUN)) for name in ("sft-a", "sft-b")]
    fake_slurm.on_submit = driver_log({"1001": PASS_LOG, "1002": FAIL_LOG})
    assert run_cli("launch", *scripts, env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    fake_slurm.on_poll = finish_after(0)
    monkeypatch.chdir(project.root)
    for order in (["sft-a", "sft-b"], ["sft-b", "sft-a"]):
        result = run_cli("watch", "--watch-interval", "0.01", *order, slurm=fake_slurm)
        assert result.exit_code == 1, result.output
        assert result.stdout.splitlines()[-1] == "[INFO]: One or more tests failed. Exiting with status 1."


@pytest.mark.parametrize(("option", "env", "seconds"), [([], {"NRL_SLURM_TIMEOUT": "7"}, 7.0),
                                                         (["--slurm-timeout", "9"], {"NRL_SLURM_TIMEOUT": "7"}, 9.0),
                                                         ([], {}, 120.0)])
def test_every_slurm_command_gets_the_timeout_the_user_set(project: Project, fake_slurm: FakeSlurm,
                                                           monkeypatch: pytest.MonkeyPatch, option: list[str],
                                                           env: dict[str, str], seconds: float) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    fake_slurm.on_poll = finish_after(0)
    launched = run_cli("launch", "--watch", "--watch-interval", "0.01", *option, str(script), env={**BASE_ENV, **env},
                       slurm=fake_slurm)
    assert launched.exit_code == 1, launched.output  # no log: a GENERAL FAIL
    monkeypatch.chdir(project.root)
    assert run_cli("status", *option, env=env, slurm=fake_slurm).exit_code == 0
    assert {call.timeout for call in fake_slurm.calls} == {seconds}
    assert {call.argv[0] for call in fake_slurm.calls} >= {"sbatch", "squeue", "sacct"}


def test_a_launch_keeps_every_experiment_it_launches_locked(project: Project, fake_slurm: FakeSlurm) -> None:
    # while the launch submits sft-a's run, nobody else (continue.sh, another launch) may write sft-b
    scripts = [str(project.add_recipe(name, config=ONE_RUN)) for name in ("sft-a", "sft-b")]
    held: dict[str, bool] = {}

    def try_to_write(job: FakeJob) -> None:
        if job.job_id != "1001":
            return
        for name in ("sft-a", "sft-b"):
            with open(project.root / "code_snapshots" / f".{name}.lock", "a") as handle:  # as continue.sh's flock
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    held[name] = True
                else:
                    held[name] = False
                    fcntl.flock(handle, fcntl.LOCK_UN)

    fake_slurm.on_submit = try_to_write
    assert run_cli("launch", *scripts, env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    assert held == {"sft-a": True, "sft-b": True}
    status = run_cli("status", "--format", "json", "--project-root", str(project.root), slurm=fake_slurm)
    assert [row["runs"] for row in json.loads(status.stdout)] == [1, 1]


def test_the_timeout_reaches_the_runner_of_every_command(tmp_path: Path) -> None:
    from nrl_launch.slurm.client import SlurmClient

    fake = FakeSlurm()
    fake.add_job("5", "RUNNING")
    SlurmClient({"NRL_SLURM_TIMEOUT": "3"}, fake).queue(["5"])
    SlurmClient({}, fake, timeout=4).jobs(["5"])
    assert [call.timeout for call in fake.calls] == [3.0, 4.0]
