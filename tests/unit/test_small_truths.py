"""What a user reads in the corners (issue 22 item 12): Ctrl-C before anything was submitted, ``logs``
of a run that has not started, a relative BASE_LOG_DIR, the bisect helper's snapshot root, plurals."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nrl_launch.experiment.manifest import Manifest, append_run, read_manifest, write_manifest
from nrl_launch.slurm.client import Completed
from testkit import BASE_ENV, REPO, Call, FakeSlurm, Project, run_cli, write

ONE_RUN = "NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n"


def test_ctrl_c_before_anything_was_submitted_says_so(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)

    def pressed_during_the_preflight(call: Call) -> Completed:
        raise KeyboardInterrupt

    fake_slurm.answers["sbatch"] = pressed_during_the_preflight
    result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == "[ERROR]: interrupted before anything was submitted: nothing was " \
                                             "submitted"
    assert fake_slurm.submissions() == []


def test_logs_of_a_run_that_has_not_started_suggests_follow(tmp_path: Path) -> None:
    folder = tmp_path / "code_snapshots" / "exp"
    folder.mkdir(parents=True)
    write_manifest(folder, Manifest("exp", "tests/exp.sh"))
    append_run(folder, "101", "1/1")
    result = run_cli("logs", "--project-root", str(tmp_path), "exp", slurm=FakeSlurm())
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert "its job has not started yet" in line and "1 jobs" not in line
    assert line.endswith(f"; to wait for it and follow it: nrl-launch logs --follow --project-root {tmp_path} "
                         "--code-snapshot-dirname code_snapshots exp")


def test_a_relative_base_log_dir_is_resolved_where_the_launch_runs(project: Project, fake_slurm: FakeSlurm,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    monkeypatch.chdir(project.root / "tests")
    result = run_cli("launch", str(script), env={**BASE_ENV, "BASE_LOG_DIR": "joblogs"}, slurm=fake_slurm)
    assert result.exit_code == 0, result.output
    where = str(project.root / "tests" / "joblogs")
    assert fake_slurm.submissions()[0].env["BASE_LOG_DIR"] == where  # the job gets the folder the user meant
    snapshot = project.root / "code_snapshots" / "sft-a"
    assert read_manifest(snapshot).runs[0].base_log_dir == where
    assert f"export BASE_LOG_DIR={where}" in (snapshot / "continue.sh").read_text()


def test_the_bisect_helpers_snapshot_root_is_ignored_by_git(tmp_path: Path) -> None:
    for folder in ("code_snapshots", "code_snapshots_bisect"):
        path = f"{folder}/abc1234-Fix/exp/README.md"
        done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO)
        assert done.returncode == 0, f"{path} is not ignored by the repository's .gitignore"


def test_plurals(tmp_path: Path) -> None:
    from nrl_launch.experiment.joblogs import TrackedExperiment, TrackedJob
    from nrl_launch.follow.verdict import judge_jobs
    from nrl_launch.follow.watch import explain
    from nrl_launch.lint import summary
    from nrl_launch.lint.report import Finding, LintReport

    log = write(tmp_path / "31-logs" / "ray-driver.log", "Traceback: boom\n")
    fake = FakeSlurm(accounting=True)
    fake.add_job("31", "FAILED", exit_code="1:0")
    exp = TrackedExperiment("x", (TrackedJob("31", tmp_path),))
    assert f"[WHY] x: the last line of {log}:" in explain(exp, judge_jobs("x", exp.jobs), fake.client())
    assert summary(LintReport(tmp_path, findings=(), files=2)) == "0 errors, 0 warnings in 2 files"
    findings = (Finding("a.sh", 1, "r", "error", "m"), Finding("b.sh", None, "r", "warning", "m"))
    assert summary(LintReport(tmp_path, findings=findings, files=1)) == "1 error, 1 warning in 1 file"
