"""Exit statuses as the README and spec sections 7 and 9 give them (issue 22, items 6 and 7).

2: a bad invocation or environment, before anything is made; 128: Slurm cannot be reached (a
watch that gives up, ``logs --follow`` too), which ``git bisect run`` reads as "stop" rather than
"bad commit"; 130: Ctrl-C; 1: anything else.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nrl_launch.experiment.manifest import Manifest, append_run, write_manifest
from testkit import BASE_ENV, FakeSlurm, Project, run_cli, write


def nothing_made(project: Project) -> bool:
    return not any(project.root.glob("**/.nrl_launch.yaml"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CODE_SNAPSHOT_DIRNAME": "tests"}, "CODE_SNAPSHOT_DIRNAME=tests is tracked by git"),
        ({"BATCH_SCRIPT": "nope.sub"}, "batch script nope.sub is not a tracked file of the repository"),
        ({"BATCH_SCRIPT": "/nowhere/nope.sub"}, "the batch script /nowhere/nope.sub does not exist"),
        ({"DRYRUN": "3"}, "DRYRUN must be empty, 0, 1 or 2"),
        ({"HF_HOME": ""}, "HF_HOME must be set and non-empty"),
    ],
)
def test_environment_errors_exit_2_before_anything_is_made(project: Project, fake_slurm: FakeSlurm,
                                                          env: dict[str, str], message: str) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    result = run_cli("launch", str(script), env={**BASE_ENV, **env}, slurm=fake_slurm)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("[ERROR]") == 1
    assert fake_slurm.submissions() == [] and nothing_made(project)


def test_a_watch_that_gives_up_exits_128(project: Project, fake_slurm: FakeSlurm,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    assert run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm).exit_code == 0
    fake_slurm.down = True
    monkeypatch.chdir(project.root)
    watched = run_cli("watch", "--watch-interval", "0.05", "--watch-give-up", "0.2", "sft-a", slurm=fake_slurm)
    assert watched.exit_code == 128, watched.output
    assert re.search(r"\[ERROR\]: gave up watching: Slurm has not answered for \d+ s \(cannot reach Slurm: ",
                     watched.stderr)


def test_a_launch_with_watch_that_gives_up_exits_128(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    fake_slurm.on_submit = lambda job: setattr(fake_slurm, "squeue_down", 10**6)  # Slurm goes away after sbatch
    result = run_cli("launch", "--watch", "--watch-interval", "0.05", "--watch-give-up", "0.2", str(script),
                     env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 128, result.output
    assert "[ERROR]: gave up watching: Slurm has not answered for" in result.stderr
    assert "Resume with: nrl-launch watch" in result.stderr


def snapshot_with_a_queued_run(root: Path) -> Path:
    folder = root / "code_snapshots" / "exp"
    folder.mkdir(parents=True)
    write_manifest(folder, Manifest("exp", "tests/exp.sh"))
    append_run(folder, "101", "1/1")
    write(folder / "101-logs" / "ray-driver.log", "step 1\n")
    return folder


def test_logs_follow_gives_up_like_watch(tmp_path: Path) -> None:
    snapshot_with_a_queued_run(tmp_path)
    fake = FakeSlurm(down=True)
    fake.add_job("101", "RUNNING")
    result = run_cli("logs", "--follow", "--interval", "0.05", "--watch-give-up", "0.3", "--project-root",
                     str(tmp_path), "exp", slurm=fake)
    assert result.exit_code == 128, result.output
    assert result.stdout == "step 1\n"
    assert re.search(r"\[ERROR\]: gave up following the logs of exp: Slurm has not answered for \d+ s \(cannot "
                     r"reach Slurm: .*\)\. Resume with: nrl-launch logs --follow", result.stderr), result.stderr
    assert "--watch-give-up 0.3" in result.stderr.splitlines()[-1] and "'exp'" not in result.stderr.splitlines()[-1]
