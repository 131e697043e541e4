"""End-to-end tests of ``tools/launch`` against the local single-node Slurm.

Every test runs the launcher the way people do -- ``tools/launch ./llm/x.sh``
from ``tests/test_suites`` of a git checkout -- against a fresh copy of this
repository's launch-relevant files (``ray.sub``, ``tests/test_suites``,
``examples``, ``.gitignore``) committed into a new git repository under the
test's temporary folder. The recipes run for real (the CPU stand-in trainer)
with ``STEPS_PER_RUN=2 MAX_STEPS=6``, i.e. three chained runs each.

Assertions are about what a user sees: the contract's stdout lines, exit
status, jobs in the queue, the experiment's ``runs.log``, the driver logs and
the snapshot's ``continue.sh`` and manifest (see ../shared/LAUNCHER_SPEC.md).

Every test gets its own ``SLURM_JOB_SUFFIX`` so singleton chains of different
tests never wait on each other, and every job a test submitted (found by id
and by that suffix) is cancelled when it ends, pass or fail.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

import pytest

from testkit import (
    DPO_1N,
    DPO_2N,
    GRPO_LONG,
    MAX_STEPS,
    NUM_RUNS,
    QUICK,
    SFT,
    SUBMITTED_RE,
    VLM_SFT,
    Launcher,
    LaunchRun,
    expected_gpu_hours,
    manifest_runs,
    no_traceback,
    read_runs_log,
    verdict_blocks,
    wait_all,
)

pytestmark = pytest.mark.slurm

# A batch script that only records the job's environment (NUL separated).
ENV_DUMP_SUB = """#!/bin/bash
# e2e test batch script: write the job's environment next to the snapshot.
env -0 > "$SLURM_SUBMIT_DIR/$SLURM_JOB_ID-env.bin"
"""


@pytest.fixture
def launcher(local_slurm, tmp_path, request):
    """A private repository copy + launcher runner for one test."""
    lau = Launcher(local_slurm, tmp_path, request.node.name)
    request.addfinalizer(lau.close)
    return lau


@pytest.fixture
def launcher_factory(local_slurm, tmp_path, request):
    """Like ``launcher`` but with extra committed files: ``make(extra_files)``."""
    made = []

    def make(extra_files: dict[str, str] | None = None, tag: str = "") -> Launcher:
        lau = Launcher(local_slurm, tmp_path / f"l{len(made)}", request.node.name + tag, extra_files)
        made.append(lau)
        return lau

    yield make
    for lau in made:
        lau.close()


def _module_launcher(local_slurm, tmp_path_factory, request, tag: str) -> Launcher:
    lau = Launcher(local_slurm, tmp_path_factory.mktemp(tag), tag)
    request.addfinalizer(lau.close)
    return lau


# --------------------------------------------------------------------------
# 1. two recipes, NUM_RUNS=3, no WATCH; then continue.sh
# --------------------------------------------------------------------------

CHAIN_RECIPES = (SFT, VLM_SFT)


@pytest.fixture(scope="module")
def chain_launch(local_slurm, tmp_path_factory, request):
    """Launch two recipes (3 chained runs each) and wait for all six jobs."""
    lau = _module_launcher(local_slurm, tmp_path_factory, request, "chain")
    run = lau.run(*CHAIN_RECIPES)
    states = wait_all(local_slurm, run.job_ids) if run.returncode == 0 else {}
    return lau, run, states


def test_launch_prints_contract_lines_and_submits_every_run(chain_launch):
    lau, run, _ = chain_launch
    assert run.returncode == 0, run.describe()
    no_traceback(run.stderr)

    expected: list[str | re.Pattern] = []
    for name, script in zip(CHAIN_RECIPES, run.scripts, strict=True):
        expected.append(f"[INFO]: {expected_gpu_hours(lau.repo, name)} GPUhrs to run {script}")
        for i in range(1, NUM_RUNS + 1):
            expected.append(f"Submitting {i}/{NUM_RUNS} job with 1 nodes for {name}.sh")
            expected.append(SUBMITTED_RE)
    total = sum(expected_gpu_hours(lau.repo, n) for n in CHAIN_RECIPES)
    expected.append(f"[INFO]: Total GPU hours: {total}")

    assert len(run.lines) == len(expected), run.describe()
    for got, want in zip(run.lines, expected, strict=True):
        if isinstance(want, re.Pattern):
            assert want.fullmatch(got), (got, run.describe())
        else:
            assert got == want, run.describe()

    ids = [int(j) for j in run.job_ids]
    assert len(ids) == 2 * NUM_RUNS and len(set(ids)) == len(ids), ids
    for name in CHAIN_RECIPES:  # each chain in order (the experiments are submitted at once: SUBMIT_PARALLEL)
        chain = [int(j) for j in run.jobs_of(name)]
        assert len(chain) == NUM_RUNS and chain == sorted(chain), (name, chain)


def test_chained_runs_resume_in_order_and_reach_max_steps(chain_launch, local_slurm):
    lau, run, states = chain_launch
    assert run.returncode == 0, run.describe()
    for job_id, info in states.items():
        assert info is not None and info.state == "COMPLETED", (job_id, info)

    for name in CHAIN_RECIPES:
        job_ids = run.jobs_of(name)
        assert len(job_ids) == NUM_RUNS, run.describe()
        rows = read_runs_log(run.exp_dir(name) / "runs.log")
        assert [r[2] for r in rows] == job_ids, rows
        for before, after in itertools.pairwise(rows):
            assert after[0] >= before[1], f"{name}: runs overlap: {before} / {after}"
        assert [(r[3], r[4]) for r in rows] == [(1, 2), (3, 4), (5, 6)], rows

        for job_id in job_ids:
            assert run.driver_log(name, job_id).is_file(), (name, job_id)
        last_log = run.driver_log(name, job_ids[-1]).read_text()
        assert "Metric Checks" in last_log, last_log
        checks = last_log.split("Metric Checks", 1)[1]
        assert "[PASS]" in checks and "[FAIL]" not in checks, last_log

        # the manifest records the launcher's runs, in order
        runs = manifest_runs(run.snapshot(name))
        assert [(r["job_id"], r["via"]) for r in runs] == [(j, "launcher") for j in job_ids], runs
        # and the job names form one singleton chain per experiment
        for job_id in job_ids:
            assert local_slurm.job_state(job_id).fields.get("JobName") == f"acct:{name}{run.suffix}"


@pytest.fixture(scope="module")
def continued(chain_launch, local_slurm, tmp_path_factory):
    """Run the first experiment's continue.sh from an unrelated folder, with
    a minimal environment, and wait for the job it submits."""
    lau, run, _ = chain_launch
    assert run.returncode == 0, run.describe()
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = {"PATH": os.environ["PATH"], "HOME": str(elsewhere),
           "SLURM_CONF": str(local_slurm.slurm_conf)}
    script = run.snapshot(SFT) / "continue.sh"
    res = subprocess.run(["bash", str(script)], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=60)
    job_ids = SUBMITTED_RE.findall(res.stdout)
    lau.track(*job_ids)
    states = wait_all(local_slurm, job_ids) if job_ids else {}
    return run, res, job_ids, states


def test_continue_sh_submits_one_more_chained_run(continued, local_slurm):
    run, res, job_ids, states = continued
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert len(job_ids) == 1 and res.stdout.strip() == f"Submitted batch job {job_ids[0]}", res.stdout
    job = job_ids[0]
    assert int(job) > max(int(j) for j in run.job_ids)
    assert states[job] is not None and states[job].state == "COMPLETED", states
    assert states[job].fields.get("JobName") == f"acct:{SFT}{run.suffix}"
    assert run.driver_log(SFT, job).is_file()

    runs = manifest_runs(run.snapshot(SFT))
    assert runs[-1]["job_id"] == job and runs[-1]["via"] == "continue.sh", runs
    assert len(runs) == NUM_RUNS + 1, runs


def test_continue_sh_run_after_the_end_exits_early(continued):
    run, res, job_ids, _ = continued
    assert res.returncode == 0 and len(job_ids) == 1, (res.stdout, res.stderr)
    log = run.driver_log(SFT, job_ids[0]).read_text()
    assert f"MAX_STEPS={MAX_STEPS} reached" in log and "exiting early" in log, log
    assert "Metric Checks" in log and "[PASS]" in log.split("Metric Checks")[-1], log
    rows = read_runs_log(run.exp_dir(SFT) / "runs.log")
    assert len(rows) == NUM_RUNS and max(r[4] for r in rows) == MAX_STEPS, rows


# --------------------------------------------------------------------------
# 2./3. WATCH
# --------------------------------------------------------------------------

@pytest.mark.parametrize("how", [
    pytest.param({"NRL_FORCE_FAILING_CHECK": "1"}, id="NRL_FORCE_FAILING_CHECK"),
    pytest.param({"EXTRA_SCRIPT_ARGS": "checks.train/accuracy.min=2"}, id="EXTRA_SCRIPT_ARGS"),
])
def test_watch_reports_metric_fail_and_exits_1(launcher, local_slurm, how):
    run = launcher.run(GRPO_LONG, WATCH="1", WATCH_INTERVAL="1", **how)
    assert run.returncode == 1, run.describe()
    no_traceback(run.stderr)
    assert len(run.job_ids) == NUM_RUNS, run.describe()
    assert launcher.queued_names() == []
    blocks = verdict_blocks(run.lines)
    assert [head for head, _ in blocks] == [f"[METRIC FAIL]    {GRPO_LONG}"], run.describe()
    body = blocks[0][1]
    last_log = str(run.driver_log(GRPO_LONG, run.job_ids[-1]))
    assert any(re.fullmatch(rf"{re.escape(last_log)}-\s+\[FAIL\] train/accuracy@6 = .* > 2", line)
               for line in body), body
    # the failing check is the last run's (the one reaching MAX_STEPS) exit status
    states = {j: local_slurm.job_state(j) for j in run.job_ids}
    assert [states[j].state for j in run.job_ids] == ["COMPLETED", "COMPLETED", "FAILED"], states


@pytest.mark.parametrize("how", [
    pytest.param({"NRL_FORCE_FAILING_CHECK": "1"}, id="NRL_FORCE_FAILING_CHECK"),
    pytest.param({"EXTRA_SCRIPT_ARGS": "checks.train/accuracy.min=2"}, id="EXTRA_SCRIPT_ARGS"),
])
def test_relaunch_after_the_end_keeps_the_failing_verdict(launcher, how):
    """Relaunching a finished experiment (snapshot reused, every run exits
    early at MAX_STEPS) judges the same checks as the launch that trained."""
    one_run = {"STEPS_PER_RUN": str(MAX_STEPS), "WATCH": "1", "WATCH_INTERVAL": "1", **how}
    first = launcher.run(DPO_1N, **one_run)
    assert first.returncode == 1 and f"[METRIC FAIL]    {DPO_1N}" in first.lines, first.describe()

    again = launcher.run(DPO_1N, **one_run)
    assert "Using existing code snapshot" in again.stderr, again.describe()
    assert len(again.job_ids) == 1, again.describe()
    log = again.driver_log(DPO_1N, again.job_ids[0]).read_text()
    assert "exiting early" in log, log
    assert again.returncode == 1, again.describe()
    blocks = verdict_blocks(again.lines)
    assert [head for head, _ in blocks] == [f"[METRIC FAIL]    {DPO_1N}"], again.describe()


# --------------------------------------------------------------------------
# 4. job name, gres, EXTRA_ENV as seen by Slurm and inside the job
# --------------------------------------------------------------------------

OPTION_RECIPES = (GRPO_LONG, QUICK)
EXTRA_ENV = 'FOO=bar BAZ="two words"'


def _read_env_dump(path: Path) -> dict[str, str]:
    env = {}
    for item in path.read_bytes().decode().split("\0"):
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    return env


@pytest.mark.parametrize("exclude_gres", [False, True], ids=["gres", "EXCLUDE_GRES"])
def test_job_name_gres_and_extra_env_reach_the_job(launcher_factory, local_slurm, exclude_gres):
    lau = launcher_factory({"env-dump.sub": ENV_DUMP_SUB})
    extra = {"BATCH_SCRIPT": "env-dump.sub", "EXTRA_ENV": EXTRA_ENV,
             "STEPS_PER_RUN": str(MAX_STEPS)}  # one run per recipe is enough here
    if exclude_gres:
        extra["EXCLUDE_GRES"] = "1"
    run = lau.run(*OPTION_RECIPES, **extra)
    assert run.returncode == 0, run.describe()
    assert len(run.job_ids) == len(OPTION_RECIPES), run.describe()
    states = wait_all(local_slurm, run.job_ids)

    for name in OPTION_RECIPES:
        (job,) = run.jobs_of(name)
        info = states[job]
        assert info is not None and info.state == "COMPLETED", info
        shown = local_slurm.run("scontrol", "show", "job", "-o", job).stdout
        assert f" JobName=acct:{name}{run.suffix} " in f" {shown} ", shown
        gres_fields = " ".join(f"{k}={v}" for k, v in info.fields.items()
                               if k in ("TRES", "TresPerNode", "TresPerJob", "TresPerTask", "Gres"))
        gpus = 4 if name == QUICK else 8
        if exclude_gres:
            assert "gpu" not in gres_fields, shown
        else:
            assert re.search(rf"gres[:/]gpu[:=]{gpus}\b", gres_fields), shown

        dump = run.snapshot(name) / f"{job}-env.bin"
        assert dump.is_file(), sorted(p.name for p in run.snapshot(name).iterdir())
        env = _read_env_dump(dump)
        assert env.get("FOO") == "bar" and env.get("BAZ") == "two words", {
            k: env.get(k) for k in ("FOO", "BAZ")}
        assert env.get("SLURM_JOB_NAME") == f"acct:{name}{run.suffix}"
        assert env.get("HF_HOME") == run.env["HF_HOME"]
        assert env.get("GPUS_PER_NODE") == str(gpus)
        if exclude_gres:
            assert "CUDA_VISIBLE_DEVICES" not in env, env.get("CUDA_VISIBLE_DEVICES")
        else:
            assert env.get("CUDA_VISIBLE_DEVICES") == ",".join(str(i) for i in range(gpus))
        if name == GRPO_LONG:  # JOB_REAPER_COMMENT -> --comment
            # (read from the raw line: the helper's fields stop at a space)
            assert (' Comment={"Reaper":{"exemptIdleTimeMins":"120",'
                    '"reason":"long rollouts"}} ') in shown, shown


# --------------------------------------------------------------------------
# 5./6. pre-flight and DRYRUN=2
# --------------------------------------------------------------------------

def _assert_slurm_rejection(lau: Launcher, run: LaunchRun) -> None:
    assert run.returncode == 1, run.describe()
    no_traceback(run.stderr)
    errors = [line for line in run.stderr.splitlines() if line.startswith("[ERROR]:")]
    assert len(errors) == 1, run.stderr
    assert DPO_2N in errors[0], run.stderr
    assert "segment" in run.stderr, run.stderr  # Slurm's own reason
    assert "Submitted batch job" not in run.stdout, run.describe()
    assert "Total GPU hours" not in run.stdout, run.describe()
    assert lau.queued_names() == [], "jobs of a rejected launch are queued"
    assert lau.job_names() == {}, "a rejected launch submitted jobs"


def test_rejected_request_stops_the_whole_launch(launcher):
    # the valid recipe comes first: nothing of it may be queued either
    run = launcher.run(SFT, DPO_2N)
    _assert_slurm_rejection(launcher, run)


def test_dryrun_2_snapshots_without_submitting(launcher):
    run = launcher.run(SFT, VLM_SFT, DRYRUN="2")
    assert run.returncode == 0, run.describe()
    no_traceback(run.stderr)
    expected = []
    for name, script in zip((SFT, VLM_SFT), run.scripts, strict=True):
        snap = run.snapshot(name)
        expected.append(f"[INFO]: {expected_gpu_hours(launcher.repo, name)} GPUhrs to run {script}")
        for i in range(1, NUM_RUNS + 1):
            expected.append(f"Submitting {i}/{NUM_RUNS} job with 1 nodes for {name}.sh")
            expected.append(f"[DRY_RUN]: Skipping submission of {script}. Find the snapshot at "
                            f"{snap} and manually launch with 'bash continue.sh'")
        assert (snap / "ray.sub").is_file()
        assert (snap / "tests" / "test_suites" / script).is_file()
        cont = snap / "continue.sh"
        assert cont.is_file() and os.access(cont, os.X_OK), cont
        syntax = subprocess.run(["bash", "-n", str(cont)], capture_output=True, text=True)
        assert syntax.returncode == 0, syntax.stderr
    total = sum(expected_gpu_hours(launcher.repo, n) for n in (SFT, VLM_SFT))
    expected.append(f"[INFO]: Total GPU hours: {total}")
    assert run.lines == expected, run.describe()
    assert launcher.queued_names() == []
    assert launcher.job_names() == {}


def test_dryrun_2_runs_the_preflight(launcher):
    """DRYRUN=2 with a reachable controller asks Slurm (--test-only) too and
    warns about a rejection; it submits nothing, so the plan still succeeds."""
    run = launcher.run(SFT, DPO_2N, DRYRUN="2")
    assert run.returncode == 0, run.describe()
    no_traceback(run.stderr)
    warnings = [line for line in run.stderr.splitlines() if line.startswith("[WARNING]: pre-flight:")]
    assert len(warnings) == 1 and DPO_2N in warnings[0] and "segment" in run.stderr, run.stderr
    assert "Submitted batch job" not in run.stdout, run.describe()
    assert lau_nothing_submitted(launcher)


def lau_nothing_submitted(lau: Launcher) -> bool:
    return lau.queued_names() == [] and lau.job_names() == {}
