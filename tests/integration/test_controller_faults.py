"""A nightly that survives a real controller (issue 19), end to end on a real local Slurm:

* sbatch failing every 10th call, half of those after really queueing the job: the launch exits 0
  with exactly NUM_RUNS jobs per experiment, none duplicated, all recorded;
* a launch SIGKILLed half-way, then run again as typed: the same;
* the controller's state wiped so that job ids restart: a relaunched experiment whose new job reuses
  an old id and is cancelled before it runs is not PASS in WATCH, ``nrl-launch watch`` or
  ``nrl-launch status``;
* a controller that does not answer is said within seconds, by a launch and by ``cancel`` (issue 22
  item 11).

These tests run on a private one-node cluster of their own (tools/local-slurm, its own state folder
and ports), whose state one test wipes; its partition is DOWN (jobs queue but never start) except
where a job must run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import (
    LAUNCH,
    LOCAL_SLURM,
    QUICK,
    REPO,
    SYSTEM_PATH,
    UP_TIMEOUT_S,
    Launcher,
    LocalSlurm,
    census,
    cluster_verdict,
    install_sbatch,
    no_traceback,
    parse_export_line,
    private_env,
    sbatch_calls,
    script_arg,
    session_slurm_version,
)

RUNS = 3  # STEPS_PER_RUN=2, MAX_STEPS=6 (the Launcher's environment)
QUICK_TEXT = (REPO / "tests" / "test_suites" / "llm" / f"{QUICK}.sh").read_text()


def _local_slurm(cluster_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LOCAL_SLURM), *args], env=cluster_env, capture_output=True, text=True,
                          timeout=UP_TIMEOUT_S)


@pytest.fixture(scope="module")
def private() -> Iterator[tuple[LocalSlurm, dict[str, str]]]:
    """A one-node local Slurm of this module's own, of the session's Slurm version, on free ports:
    (the cluster, the environment of tools/local-slurm)."""
    state = Path(tempfile.mkdtemp(prefix="nrl-slurm-ctl-t-", dir="/tmp"))  # short: munge's socket path
    version = session_slurm_version(os.environ)
    env = private_env(state, LOCAL_SLURM_NODES="1", LOCAL_SLURM_VERSION=version)
    up = _local_slurm(env, "up")
    parsed = parse_export_line(up.stdout.strip().splitlines()[-1]) if up.stdout.strip() else None
    action, reason = cluster_verdict(up.returncode == 0 and parsed is not None, shutil.which("sbatch", path=SYSTEM_PATH)
                                     is not None or parsed is not None, (up.stdout + up.stderr)[-2000:], env)
    if action != "run" or parsed is None:
        _local_slurm(env, "down")
        shutil.rmtree(state, ignore_errors=True)
        (pytest.skip if action == "skip" else pytest.fail)(reason)
    conf, bin_dir = parsed
    try:
        yield LocalSlurm(state_dir=state, slurm_conf=conf, bin_dir=bin_dir, version=version, started_here=True), env
    finally:
        _local_slurm(env, "down")
        shutil.rmtree(state, ignore_errors=True)


def launcher(cluster: LocalSlurm, base: Path, tag: str, files: dict[str, str] | None = None) -> Launcher:
    """A Launcher on the private cluster: its client commands first on PATH."""
    lau = Launcher(cluster, base, tag, extra_files=files)
    lau.env["PATH"] = cluster.env()["PATH"]
    return lau


def partition(cluster: LocalSlurm, state: str) -> None:
    cluster.run("scontrol", "update", "partition=local", f"state={state}", check=True)


def recipes(count: int, prefix: str) -> dict[str, str]:
    """``count`` copies of the quick recipe under other names (extra files of the Launcher)."""
    return {f"tests/test_suites/llm/{prefix}-{k}.sh": QUICK_TEXT for k in range(count)}


def names_of(files: dict[str, str]) -> list[str]:
    return [Path(path).stem for path in files]


def queued_exactly_once(lau: Launcher, names: list[str]) -> None:
    """Every run of ``names`` queued once and recorded, no other job of theirs."""
    check = census(lau.env, lau.repo / "code_snapshots", names, "acct:{}" + lau.suffix, RUNS)
    assert check.exact, check


def test_sbatch_failing_every_tenth_call_queues_every_run_exactly_once(private, tmp_path: Path) -> None:
    cluster, _ = private
    partition(cluster, "down")
    files = recipes(8, "flaky")
    lau = launcher(cluster, tmp_path, "faults", files)
    try:
        flaky = install_sbatch(tmp_path / "flaky", every=10)  # half of those failures after queueing the job
        run = lau.run(*names_of(files), PATH=f"{flaky}:{lau.env['PATH']}")
        assert run.returncode == 0, run.describe()
        no_traceback(run.stderr)
        assert sbatch_calls(flaky) >= 8 * RUNS + 1 and "had queued job" in run.stderr
        assert "reject" not in run.stderr.lower()  # the pre-flight never calls a lost reply a rejection
        queued_exactly_once(lau, names_of(files))
        assert sorted(run.job_ids) == sorted(i for name in names_of(files) for i in run.jobs_of(name))
        assert len(run.job_ids) == 8 * RUNS  # sbatch's line of every job on stdout, adopted ones included
    finally:
        lau.close()


def test_a_launch_killed_half_way_then_run_again_queues_every_run_exactly_once(private, tmp_path: Path) -> None:
    cluster, _ = private
    partition(cluster, "down")
    files = recipes(8, "killed")
    lau = launcher(cluster, tmp_path, "kill", files)
    try:
        slow = install_sbatch(tmp_path / "slow", delay=0.15)  # a busy controller: the launch takes seconds
        env = {**lau.env, "PATH": f"{slow}:{lau.env['PATH']}", "SUBMIT_PARALLEL": "2"}
        scripts = [script_arg(name) for name in names_of(files)]
        proc = subprocess.Popen([str(LAUNCH), *scripts], cwd=lau.suite_dir, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        queued: list[str] = []
        deadline = time.monotonic() + 120
        while proc.poll() is None and len(queued) < 8 * RUNS // 2 and time.monotonic() < deadline:
            queued = lau.queued_names()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL and 0 < len(queued) < 8 * RUNS
        time.sleep(1)  # the killed launch's sbatch still running ends (its job queued, never recorded)
        again = lau.run(*names_of(files), PATH=env["PATH"])
        assert again.returncode == 0, again.describe()
        no_traceback(again.stderr)
        queued_exactly_once(lau, names_of(files))
        assert "finishing the launch of" in again.stderr
    finally:
        lau.close()


def nrl_launch(lau: Launcher, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``nrl-launch ARGS`` of this checkout, run from the test's repository."""
    env = {**lau.env, "PYTHONPATH": str(REPO / "tools")}
    return subprocess.run([sys.executable, "-m", "nrl_launch", *args], cwd=lau.repo, env=env, capture_output=True,
                          text=True, timeout=timeout)


def stop_and_forget(cluster: LocalSlurm, env: dict[str, str]) -> None:
    """Stop the cluster and wipe its controller's state: started again, it knows no job and hands out
    ids from 1 again (a reinstalled controller)."""
    assert _local_slurm(env, "down").returncode == 0
    for path in (cluster.state_dir / "ctld").iterdir():
        path.unlink() if path.is_file() else shutil.rmtree(path)


def start(env: dict[str, str]) -> None:
    up = _local_slurm(env, "up")
    assert up.returncode == 0, up.stderr


def first_stderr_line(proc: subprocess.Popen[str]) -> tuple[str, float]:
    """The first line ``proc`` writes on stderr and when (seconds after this call)."""
    started = time.monotonic()
    assert proc.stderr is not None
    line = proc.stderr.readline()
    return line, time.monotonic() - started


def test_a_job_id_handed_out_again_never_passes_on_an_earlier_jobs_log(private, tmp_path: Path) -> None:
    cluster, env = private
    stop_and_forget(cluster, env)
    start(env)
    partition(cluster, "up")
    lau = launcher(cluster, tmp_path, "ids")
    try:
        first = lau.run(QUICK, WATCH="1", WATCH_INTERVAL="1", MAX_STEPS="2")  # one run, which passes
        assert first.returncode == 0, first.describe()
        assert f"[METRIC PASS]    {QUICK}" in first.stdout and len(first.job_ids) == 1
        [old] = first.job_ids  # a low id: the pre-flight's test submission takes one too
        old_log = lau.repo / "code_snapshots" / QUICK / f"{old}-logs" / "ray-driver.log"
        assert "Metric Checks" in old_log.read_text()

        # the controller is reinstalled: its state is wiped, job ids restart
        stop_and_forget(cluster, env)
        # ... and while it is down, a launch and a cancel say so within seconds (issue 22 item 11)
        started = time.monotonic()
        proc = subprocess.Popen([str(LAUNCH), script_arg(QUICK)], cwd=lau.suite_dir, text=True,
                                env={**lau.env, "NRL_SLURM_RETRY": "0"}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        line, after = first_stderr_line(proc)
        assert line.startswith("[WARNING]: Slurm has not answered sbatch for 3 s") and after < 5, (line, after)
        out, err = proc.communicate(timeout=120)
        # exit 128 (spec sections 7 and 9): not a failing experiment, git bisect run aborts
        assert proc.returncode == 128 and "[ERROR]: cannot reach Slurm: " in err and "SLURM_CONF" in err
        assert time.monotonic() - started < 60
        cancel = nrl_launch(lau, "cancel", "--slurm-retry", "0", QUICK)
        assert cancel.returncode == 128
        assert cancel.stderr.splitlines()[-1].startswith("[ERROR]: cannot reach Slurm: ")
        assert 'for the local cluster: eval "$(tools/local-slurm up | tail -n 1)"' in cancel.stderr  # the same hint
        start(env)

        # the relaunch's job gets the same id again; it never runs (cancelled while queued)
        partition(cluster, "down")
        proc = subprocess.Popen([str(LAUNCH), script_arg(QUICK)], cwd=lau.suite_dir, text=True,
                                env={**lau.env, "WATCH": "1", "WATCH_INTERVAL": "1", "MAX_STEPS": "2"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not lau.queued_names() and time.monotonic() < deadline:
            time.sleep(0.2)
        queued = cluster.run("squeue", "-h", "-o", "%i").stdout.split()
        assert queued == [old]
        lau.track(old)
        cluster.run("scancel", old, check=True)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, (out, err)
        assert f"[GENERAL FAIL]   {QUICK}" in out and "[METRIC PASS]" not in out  # WATCH
        assert re.search(rf"Submitted batch job {old}$", out, re.MULTILINE)

        watched = nrl_launch(lau, "watch", "--watch-interval", "1", QUICK)
        assert watched.returncode == 1 and f"[GENERAL FAIL]   {QUICK}" in watched.stdout, watched.stderr
        status = nrl_launch(lau, "status", "--format", "json", QUICK)
        [row] = json.loads(status.stdout)
        assert row["metric_checks"] != "PASS" and row["jobs"][0]["job_id"] == old
        assert "Metric Checks" in old_log.read_text()  # the earlier job's log is still there, and ignored
    finally:
        start(env)  # when the test failed while the controller was down
        partition(cluster, "up")
        lau.close()
