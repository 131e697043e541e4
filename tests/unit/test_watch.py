"""WATCH: polling, verdicts from driver logs, and ``nrl-launch watch``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nrl_launch.cli import CliContext, main
from nrl_launch.errors import LauncherError, SlurmError
from nrl_launch.watch import GENERAL_FAIL, METRIC_FAIL, PASS, follow, judge, metric_section
from testkit import BASE_ENV, FakeSlurm, Project, SlurmOnPath, driver_log, finish_after, write


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ("no checks here\n", None),
        ("Metric Checks\n  [PASS] a < 1\n  [PASS] b < 2\n", ("[PASS] a < 1", "[PASS] b < 2")),
        ("x\n=== Metric Checks ===\n\n  [FAIL] a\n\nafter\n", ("[FAIL] a",)),
        ("Metric Checks\n[FAIL] old\n\nMetric Checks\n[PASS] new\n", ("[PASS] new",)),  # the last section counts
        ("Metric Checks\n", ()),
        ("Metric Checks\n  [PASS] a\n\n[ray.sub] COMMAND exited with status 0 (no FAIL here)\n", ("[PASS] a",)),
        ("Metric Checks\n┏━━━┳━━━┓\n┃ Metric ┃ Status ┃\n│ loss < 1 │ FAIL │\n└───┘\n\nFAIL-safe\n", ("│ loss < 1 │ "
                                                                                                      "FAIL │",)),
    ],
)
def test_metric_section(log: str, expected: tuple[str, ...] | None) -> None:
    assert metric_section(log) == expected


@pytest.mark.parametrize(
    ("logs", "status"),
    [
        ([], GENERAL_FAIL),
        (["crashed\n"], GENERAL_FAIL),
        (["Metric Checks\n  [PASS] loss\n"], PASS),
        (["Metric Checks\n  [PASS] loss\n  [FAIL] reward\n"], METRIC_FAIL),
        (["Metric Checks\n  [PASS] loss\n", "max steps reached: exiting early\n"], PASS),  # a later early-exit run
    ],
)
def test_judge(tmp_path: Path, logs: list[str], status: str) -> None:
    paths = [write(tmp_path / f"{i}-logs" / "ray-driver.log", text) for i, text in enumerate(logs)]
    verdict = judge("exp", paths)
    assert verdict.status == status
    assert verdict.render().startswith(f"[{status}]")


def test_follow_reports_progress_and_retries_when_slurm_is_unreachable() -> None:
    answers = [SlurmError("connection refused"), {"1", "2"}, {"2"}, set()]
    lines: list[str] = []
    waits: list[float] = []

    def queued(ids):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    follow(["1", "2"], interval=7, queued=queued, wait=waits.append, report=lines.append, clock=lambda: "T")
    assert lines == [
        "[T] [WARNING]: cannot reach Slurm (connection refused); retrying in 7s",
        "[T] Remaining: 2",
        "[T] Finished jobs: 1",
        "[T] Remaining: 1",
        "[T] Finished jobs: 2",
        "[T] Remaining: 0",
    ]
    assert waits == [7, 7, 7]


def test_follow_ctrl_c_names_the_jobs_still_queued() -> None:
    def wait(_: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(LauncherError) as info:
        follow(["5", "6"], interval=1, queued=lambda ids: {"6"}, wait=wait, report=lambda _: None,
               resume_hint="nrl-launch watch exp")
    assert "6" in str(info.value) and "5" not in str(info.value).split(":")[1]
    assert "Resume with: nrl-launch watch exp" in str(info.value)


def test_watch_command_follows_recorded_jobs(project: Project, slurm_on_path: SlurmOnPath,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    monkeypatch.setenv("FAKE_DRIVER_LOG_1002", "Metric Checks\n  [FAIL] train/loss too high\n")
    runner = CliRunner()
    assert runner.invoke(main, ["launch", str(script)], env={**BASE_ENV, "DRYRUN": None}).exit_code == 0
    monkeypatch.setenv("FAKE_SQUEUE_POLLS", "1")
    monkeypatch.chdir(project.root / "tests")
    result = runner.invoke(main, ["watch", "--watch-interval", "0.01", "sft-a"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["[METRIC FAIL]    sft-a", "    [FAIL] train/loss too high"]
    assert "Finished jobs: 1001 1002" in result.stderr


def test_watch_command_unknown_experiment(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)
    result = CliRunner().invoke(main, ["watch", "nope"])
    assert result.exit_code == 1
    assert "[ERROR]: no snapshot of experiment 'nope'" in result.stderr


def test_status_command_shows_job_states(project: Project, slurm_on_path: SlurmOnPath,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    runner = CliRunner()
    assert runner.invoke(main, ["launch", str(script)], env={**BASE_ENV, "DRYRUN": None}).exit_code == 0
    monkeypatch.setenv("FAKE_JOB_STATES", "1001=COMPLETED,1002=RUNNING")
    monkeypatch.chdir(project.root)
    result = runner.invoke(main, ["status", "--format", "json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert {job["job_id"]: job["state"] for job in row["jobs"]} == {"1001": "COMPLETED", "1002": "RUNNING"}


def test_enter_on_a_terminal_polls_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import pty
    import sys
    import time

    from nrl_launch.watch import wait_or_enter

    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as terminal:
        monkeypatch.setattr(sys, "stdin", terminal)
        os.write(master, b"\n")  # the user presses Enter
        started = time.monotonic()
        wait_or_enter(600)  # would sleep ten minutes without the key press
        assert time.monotonic() - started < 60
    os.close(master)


# ---------------------------------------------------------------- the Slurm seam, in process


def test_watch_and_status_commands_through_the_client_seam(project: Project, fake_slurm: FakeSlurm,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n")
    fake_slurm.on_submit = driver_log({"1001": "Metric Checks\n  [PASS] loss\n",
                                       "1002": "Metric Checks\n  [FAIL] train/loss too high\n"})
    runner = CliRunner()
    launched = runner.invoke(main, ["launch", str(script)], env={**BASE_ENV, "DRYRUN": None},
                             obj=CliContext(fake_slurm))
    assert launched.exit_code == 0, launched.output
    monkeypatch.chdir(project.root / "tests")  # the project is found from a subfolder

    fake_slurm.finish("1001")
    status = runner.invoke(main, ["status", "--format", "json"], obj=CliContext(fake_slurm))
    assert status.exit_code == 0, status.output
    [row] = json.loads(status.stdout)
    assert row["experiment"] == "sft-a"
    assert row["jobs"] == [{"job_id": "1001", "run": "1/2", "state": "COMPLETED"},
                           {"job_id": "1002", "run": "2/2", "state": "PENDING"}]

    fake_slurm.on_poll = finish_after(1)
    watched = runner.invoke(main, ["watch", "--watch-interval", "0.01", "sft-a"], obj=CliContext(fake_slurm))
    assert watched.exit_code == 1  # the last run's checks failed
    assert watched.stdout.splitlines() == ["[METRIC FAIL]    sft-a", "    [FAIL] train/loss too high"]
    polls = [c.argv for c in fake_slurm.calls if c.argv[0] == "squeue"]
    assert polls[-2:] == [("squeue", "--me", "-h", "-o", "%i")] * 2  # polled until the queue was empty
