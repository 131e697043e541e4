"""What an existing continue.sh pins is never changed silently (issue 22 item 2), and the job's PATH
is the job's (item 5): the launcher's commands come from the launcher's PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nrl_launch.experiment.manifest import read_manifest
from testkit import BASE_ENV, FakeSlurm, Project, SlurmOnPath, run_cli

READS_STEPS = ('NUM_NODES=1\nSTEPS_PER_RUN=${STEPS_PER_RUN:-5}\nMAX_STEPS=${MAX_STEPS:-20}\n'
               "NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))\nNUM_MINUTES=10\n")


def pinned(snapshot: Path) -> list[str]:
    """The lines of continue.sh that pin what the CONFIG block read."""
    return [line for line in (snapshot / "continue.sh").read_text().splitlines()
            if line.startswith(("export STEPS_PER_RUN", "export MAX_STEPS", "unset STEPS_PER_RUN", "unset MAX_STEPS"))]


def test_dryrun2_of_an_experiment_with_runs_leaves_its_continue_sh(project: Project) -> None:
    script = project.add_recipe("sft-a", config=READS_STEPS)
    fake = FakeSlurm()
    launched = run_cli("launch", str(script), env={**BASE_ENV, "STEPS_PER_RUN": "2", "MAX_STEPS": "4"}, slurm=fake)
    assert launched.exit_code == 0, launched.output
    snapshot = project.root / "code_snapshots" / "sft-a"
    before = (snapshot / "continue.sh").read_bytes()
    record = (snapshot / ".nrl_launch.next-run.json").read_bytes()
    assert pinned(snapshot) == ["export STEPS_PER_RUN=2", "export MAX_STEPS=4"]
    dry = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2"}, slurm=fake)
    assert dry.exit_code == 0, dry.output
    assert (snapshot / "continue.sh").read_bytes() == before  # what the running chain goes on with
    assert (snapshot / ".nrl_launch.next-run.json").read_bytes() == record
    assert ("[INFO]: sft-a: DRYRUN=2 leaves its continue.sh as it is (the experiment has runs); a launch would pin "
            "MAX_STEPS (was 4, now unset); STEPS_PER_RUN (was 2, now unset)") in dry.stderr
    assert len(read_manifest(snapshot).runs) == 2 and len(fake.jobs) == 2  # and nothing submitted or recorded


def test_a_launch_that_changes_what_continue_sh_pins_says_so(project: Project) -> None:
    script = project.add_recipe("sft-a", config=READS_STEPS)
    fake = FakeSlurm()
    assert run_cli("launch", str(script), env={**BASE_ENV, "STEPS_PER_RUN": "2", "MAX_STEPS": "4"},
                   slurm=fake).exit_code == 0
    same = run_cli("launch", str(script), env={**BASE_ENV, "STEPS_PER_RUN": "2", "MAX_STEPS": "4"}, slurm=fake)
    assert same.exit_code == 0 and "continue.sh now pins" not in same.stderr
    other = run_cli("launch", str(script), env={**BASE_ENV, "MAX_STEPS": "8", "EXTRA_ENV": "FOO=1"}, slurm=fake)
    assert other.exit_code == 0, other.output
    assert ("[WARNING]: sft-a: continue.sh now pins MAX_STEPS (was 4, now 8); STEPS_PER_RUN (was 2, now unset); "
            "FOO (was unset, now 1)") in other.stderr
    assert pinned(project.root / "code_snapshots" / "sft-a") == ["unset STEPS_PER_RUN", "export MAX_STEPS=8"]


def test_dryrun2_of_an_experiment_without_runs_writes_continue_sh(project: Project) -> None:
    script = project.add_recipe("sft-a", config=READS_STEPS)
    assert run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2", "MAX_STEPS": "4"}).exit_code == 0
    again = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": "2", "MAX_STEPS": "6"})
    assert again.exit_code == 0
    assert "[WARNING]: sft-a: continue.sh now pins MAX_STEPS (was 4, now 6)" in again.stderr
    assert "export MAX_STEPS=6" in pinned(project.root / "code_snapshots" / "sft-a")


def test_extra_env_path_is_the_jobs_not_the_launchers(project: Project, slurm_on_path: SlurmOnPath,
                                                      tmp_path: Path) -> None:
    # EXTRA_ENV='PATH=/opt/bin:$PATH': the value is the job's (literally); sbatch is the launcher's.
    # (The fake sbatch is a Python script: its interpreter's folder must be on the job's PATH too.)
    job_path = f"/opt/bin:$PATH:{os.path.dirname(sys.executable)}"
    script = project.add_recipe("sft-a", config="NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n")
    launched = run_cli("launch", str(script), env={**BASE_ENV, "EXTRA_ENV": f"'PATH={job_path}'"})
    assert launched.exit_code == 0, launched.output
    [first] = slurm_on_path.submissions()
    assert first["env"]["PATH"] == job_path
    snapshot = project.root / "code_snapshots" / "sft-a"
    shell = {"PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"], "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(snapshot / "continue.sh")], cwd=tmp_path, env=shell, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # sbatch, date, tail: from the caller's PATH
    again = slurm_on_path.submissions()[-1]
    assert again["env"]["PATH"] == job_path
    runs = read_manifest(snapshot).runs
    assert [run.run for run in runs] == ["1/1", "2"] and runs[1].submitted_at.endswith("+00:00")
    assert again["env"]["NRL_RUN_TOKEN"] == runs[1].token and len(runs[1].token) == 16
    assert first["env"]["NRL_RUN_TOKEN"] == runs[0].token != runs[1].token
