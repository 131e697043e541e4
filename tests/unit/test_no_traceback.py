"""Odd input and odd Slurm answers end as a clear ``[ERROR]`` or are accepted,
never as a traceback; and what is known about queued jobs is never lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nrl_launch.errors import UsageProblem
from nrl_launch.experiment.manifest import read_manifest
from nrl_launch.settings import WATCH_INTERVAL
from nrl_launch.slurm.client import Completed
from testkit import BASE_ENV, REPO, Call, FakeSlurm, Project, SlurmOnPath, launcher_env, run_cli

ONE_RUN = "NUM_NODES=1\nNUM_RUNS=1\nNUM_MINUTES=10\n"
TWO_RUNS = "NUM_NODES=1\nNUM_RUNS=2\nNUM_MINUTES=10\n"
LOCAL_HINT = 'is SLURM_CONF set? for the local cluster: eval "$(tools/local-slurm up | tail -n 1)"'


# ---------------------------------------------------------------- non-UTF-8 bytes


def test_non_utf8_bytes_in_names_and_variables_pass_through(project: Project, slurm_on_path: SlurmOnPath) -> None:
    # A real process whose stdout refuses what is not UTF-8 (as in any UTF-8
    # locale but C.UTF-8): argv and the environment hold b"\xff" as "\udcff".
    recipe = project.root / "tests" / "test_suites" / "llm" / "sft-\udcff.sh"
    recipe.parent.mkdir(parents=True)
    recipe.write_text(f"# ===== BEGIN CONFIG =====\n{ONE_RUN}# ===== END CONFIG =====\n")
    project.commit("a recipe whose name is not UTF-8")
    env = launcher_env(DRYRUN="2", PYTHONIOENCODING="utf-8:strict", CODE_SNAPSHOT_DIRNAME="snaps-\udcfe",
                       EXTRA_ENV="LATIN1='caf\udce9'", EXTRA_SCRIPT_ARGS="x=\udcff", SLURM_JOB_SUFFIX="-\udcff",
                       BASE_LOG_DIR="/logs/\udcfe")
    proc = subprocess.run([sys.executable, "-m", "nrl_launch", "launch", str(recipe)], cwd=project.root, env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"Traceback" not in proc.stderr
    snapshot = project.root / "snaps-\udcfe" / "sft-\udcff"
    assert proc.stdout.splitlines() == [
        b"[INFO]: 1 GPUhrs to run " + os.fsencode(recipe),
        b"Submitting 1/1 job with 1 nodes for sft-\xff.sh",
        b"[DRY_RUN]: Skipping submission of " + os.fsencode(recipe) + b". Find the snapshot at "
        + os.fsencode(snapshot) + b" and manually launch with 'bash continue.sh'",
        b"[INFO]: Total GPU hours: 1",
    ]
    script = (snapshot / "continue.sh").read_bytes()
    assert b"export LATIN1='caf\xe9'\n" in script and b"'--job-name=acct:sft-\xff-\xff'" in script
    assert read_manifest(snapshot).experiment == "sft-\udcff"


def test_an_sbatch_answer_with_non_utf8_bytes_keeps_the_list_of_queued_jobs(
        project: Project, slurm_on_path: SlurmOnPath, monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config=TWO_RUNS)
    monkeypatch.setenv("FAKE_SBATCH_NOISE", "1")  # b"\xff\xfe" in every answer
    monkeypatch.setenv("FAKE_SBATCH_FAIL_AT", "2")
    result = run_cli("launch", str(script), env=BASE_ENV)
    assert result.exit_code == 1
    assert "Submitted batch job 1001" in result.stdout
    assert "Already submitted (still queued; cancel with 'scancel 1001'): sft-a: 1001" in result.stderr
    assert "Invalid account" in result.stderr
    assert [run.job_id for run in read_manifest(project.root / "code_snapshots" / "sft-a").runs] == ["1001"]


# ---------------------------------------------------------------- recipes and settings


@pytest.mark.parametrize("head", ["", "#!/bin/bash\n"])
@pytest.mark.parametrize("dryrun", ["1", "0"])
def test_a_recipe_with_a_byte_order_mark_is_a_clear_error(project: Project, fake_slurm: FakeSlurm, head: str,
                                                          dryrun: str) -> None:
    script = project.root / "tests" / "test_suites" / "llm" / "sft-a.sh"
    script.parent.mkdir(parents=True)
    script.write_text(f"\ufeff{head}# ===== BEGIN CONFIG =====\n{ONE_RUN}# ===== END CONFIG =====\n")
    project.commit("a recipe saved with a BOM")
    result = run_cli("launch", str(script), env={**BASE_ENV, "DRYRUN": dryrun}, slurm=fake_slurm)
    assert result.exit_code == 1
    assert result.stderr == (f"[ERROR]: {script}:1: the file starts with a UTF-8 byte order mark (BOM): bash "
                             'reads it as part of the first line, so neither "#!" nor a marker there works as such; '
                             "save the file without a BOM\n")
    assert result.stdout == "" and fake_slurm.calls == []


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "1e400", "-1", "0", "86401", "1e300"])
def test_watch_interval_must_be_a_sane_number_of_seconds(raw: str) -> None:
    with pytest.raises(UsageProblem, match="WATCH_INTERVAL must be a positive number of seconds, at most 86400"):
        WATCH_INTERVAL.read(raw)


@pytest.mark.parametrize(("raw", "seconds"), [("86400", 86400.0), ("0.5", 0.5), (" 60 ", 60.0), ("", 300.0)])
def test_watch_interval_accepted(raw: str, seconds: float) -> None:
    assert WATCH_INTERVAL.read(raw) == seconds


@pytest.mark.parametrize("command", [["launch", "--watch", "1"], ["watch"]])
def test_an_infinite_watch_interval_is_a_usage_error(project: Project, fake_slurm: FakeSlurm,
                                                     monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    monkeypatch.chdir(project.root)
    target = str(script) if command[0] == "launch" else "sft-a"
    result = run_cli(*command, "--watch-interval", "inf", target, env=dict(BASE_ENV), slurm=fake_slurm)
    assert result.exit_code == 2
    assert result.stderr.startswith("[ERROR]: WATCH_INTERVAL must be a positive number of seconds")
    assert fake_slurm.calls == []


# ---------------------------------------------------------------- Slurm's answers


def test_sbatch_printing_its_id_on_stderr_is_accepted(project: Project, slurm_on_path: SlurmOnPath,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    script = project.add_recipe("sft-a", config=TWO_RUNS)
    monkeypatch.setenv("FAKE_SBATCH_ID_ON_STDERR", "1")
    result = run_cli("launch", str(script), env=BASE_ENV)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2:5:2] == ["Submitted batch job 1001", "Submitted batch job 1002"]
    assert [r.job_id for r in read_manifest(project.root / "code_snapshots" / "sft-a").runs] == ["1001", "1002"]


def sbatch_timing_out_at(n: int, fake: FakeSlurm):
    """An ``answers`` entry: real submission ``n`` and every later one time out (the runner's TimeoutError),
    the earlier ones are queued."""
    seen = [0]

    def answer(call: Call) -> Completed:
        if call.argv[1] == "--test-only":
            return Completed(0, "", "sbatch: Job 999 to start at 2026-01-01T00:00:00\n")
        seen[0] += 1
        if seen[0] >= n:
            raise TimeoutError("sbatch did not finish")
        job_id = str(1000 + seen[0])
        fake.add_job(job_id, "PENDING")
        return Completed(0, f"Submitted batch job {job_id}\n", "")

    return answer


@pytest.mark.parametrize(
    ("n", "summary"),
    [
        (1, "No job is known to be queued (check squeue --me)."),
        (2, "Already submitted (still queued; cancel with 'scancel 1001'): sft-a: 1001 — and possibly one more: "
            "check squeue --me"),
    ],
)
def test_an_sbatch_timeout_never_claims_nothing_was_submitted(project: Project, fake_slurm: FakeSlurm, n: int,
                                                              summary: str) -> None:
    script = project.add_recipe("sft-a", config=TWO_RUNS)
    fake_slurm.answers["sbatch"] = sbatch_timing_out_at(n, fake_slurm)
    result = run_cli("launch", str(script), env=BASE_ENV, slurm=fake_slurm)
    assert result.exit_code == 1
    assert "sbatch did not answer within" in result.stderr and "Nothing was submitted" not in result.stderr
    assert result.stderr.rstrip("\n").endswith(summary)
    assert "(tried " in result.stderr  # tried again (the queue said it was not queued) until NRL_SLURM_RETRY ran out


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        ("sbatch: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host\n"
         "sbatch: error: fetch_config: DNS SRV lookup failed\n"
         "sbatch: fatal: Could not establish a configuration source\n",
         "no Slurm configuration found (Could not establish a configuration source)"),
        ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n",
         "Unable to contact slurm controller (connect failure)"),
    ],
)
def test_no_slurm_configuration_is_one_clear_line(project: Project, stderr: str, reason: str) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    fake = FakeSlurm(answers={"sbatch": lambda call: Completed(1, "", stderr)})
    result = run_cli("launch", str(script), env={**BASE_ENV, "NRL_SLURM_RETRY": "0"}, slurm=fake)
    assert result.exit_code == 128  # spec sections 7 and 9: not a failing experiment (git bisect run aborts)
    assert result.stderr.splitlines()[-1] == f"[ERROR]: cannot reach Slurm: {reason}; {LOCAL_HINT}"
    assert fake.programs() == ["sbatch-test"]  # the pre-flight; nothing queued


def test_a_poll_that_cannot_reach_slurm_says_so_once(project: Project, fake_slurm: FakeSlurm) -> None:
    script = project.add_recipe("sft-a", config=ONE_RUN)
    down = Completed(1, "", "squeue: error: Unable to contact slurm controller (connect failure)\n")
    polls = iter([down])

    def squeue(call: Call) -> Completed:  # the first poll fails, then the job has left the queue
        return next(polls, None) or FakeSlurm._squeue(fake_slurm, call)

    fake_slurm.answers["squeue"] = squeue
    fake_slurm.on_submit = lambda job: fake_slurm.finish(job.job_id)
    # (NRL_SLURM_RETRY=0: the client does not try again itself, so the watch's own retry speaks)
    result = run_cli("launch", str(script), env={**BASE_ENV, "WATCH": "1", "WATCH_INTERVAL": "0.01",
                                                 "NRL_SLURM_RETRY": "0"}, slurm=fake_slurm)
    [warning] = [line for line in result.stderr.splitlines() if "[WARNING]" in line]
    assert warning.endswith("[WARNING]: cannot reach Slurm: Unable to contact slurm controller (connect failure); "
                            f"{LOCAL_HINT}; retrying in 0.01s")


def test_bench_snapshot_without_rsync_says_how_to_install_it(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"  # git, but no rsync
    bindir.mkdir()
    (bindir / "git").symlink_to(shutil.which("git"))
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_snapshot.py"), "--reps", "1",
                           "--dir", str(tmp_path)], env={**os.environ, "PATH": str(bindir)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == "" and proc.stderr.count("\n") == 1
    assert "needs rsync" in proc.stderr and "install" in proc.stderr and "Traceback" not in proc.stderr
