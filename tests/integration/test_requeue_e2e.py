"""A job Slurm requeues is judged by all of its attempts (spec section 8), on the local cluster.

The recipe's first attempt announces itself and hangs (as a job on a node that
is about to fail); the test requeues it with ``scontrol requeue``; the second
attempt trains and passes its checks. WATCH, following the launch, must report
``[METRIC PASS]`` from the ``<id>-1-logs`` folder, and ``nrl-launch status``
must agree. Logs go under ``BASE_LOG_DIR`` to check that folder is honoured too.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from nrl_launch.experiment.manifest import read_manifest
from testkit import LAUNCH, QUICK, Launcher, no_traceback, script_arg

pytestmark = pytest.mark.slurm

RECIPE = Path("tests/test_suites/llm") / f"{QUICK}.sh"
FIRST_ATTEMPT_HANGS = """
if [[ "${SLURM_RESTART_COUNT:-0}" == 0 ]]; then
    touch "$REQUEUE_MARKER"   # the test requeues the job now
    sleep 300
fi
"""


def requeue_ready(recipe: Path) -> str:
    """The recipe's text with a first attempt that waits to be requeued."""
    text = recipe.read_text()
    end = "# ===== END CONFIG =====\n"
    return text.replace(end, end + FIRST_ATTEMPT_HANGS, 1)


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate(timeout=10) if proc.poll() is not None else ("", "")
            pytest.fail(f"the first attempt never started:\n{out}\n{err}")
        time.sleep(0.2)


def test_a_requeued_job_whose_second_attempt_passes_is_a_pass(local_slurm, tmp_path: Path, request) -> None:
    repo_root = Path(__file__).resolve().parents[2]
    lau = Launcher(local_slurm, tmp_path, "requeue", {str(RECIPE): requeue_ready(repo_root / RECIPE)})
    request.addfinalizer(lau.close)
    marker = tmp_path / "first-attempt-started"
    logs = tmp_path / "joblogs"
    env = {**lau.env, "STEPS_PER_RUN": "2", "MAX_STEPS": "2", "WATCH": "1", "WATCH_INTERVAL": "1",
           "BASE_LOG_DIR": str(logs), "EXTRA_ENV": f"REQUEUE_MARKER={marker}"}
    proc = subprocess.Popen([str(LAUNCH), script_arg(QUICK)], cwd=lau.suite_dir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(marker, proc)
        [job] = [run.job_id for run in read_manifest(lau.repo / "code_snapshots" / QUICK).runs]
        lau.track(job)
        # Slurm holds a requeued job back for a while; let it start again at once
        for args in (("requeue", job), ("update", f"jobid={job}", "starttime=now+2")):
            done = local_slurm.run("scontrol", *args)
            assert done.returncode == 0, done.stderr
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    no_traceback(err)
    assert proc.returncode == 0, out + err
    lines = out.splitlines()
    assert f"[METRIC PASS]    {QUICK}" in lines, out
    evidence = [line for line in lines if line.startswith(str(logs))]
    assert evidence and all(line.startswith(f"{logs}/{job}-1-logs/ray-driver.log") for line in evidence), out
    assert (logs / f"{job}-logs" / "ray-driver.log").is_file()  # the first attempt's log, read and passed over
    status = subprocess.run(["nrl-launch", "status", "--format", "json", QUICK], cwd=lau.repo, text=True,
                            capture_output=True, env={**os.environ, "SLURM_CONF": str(local_slurm.slurm_conf)})
    assert status.returncode == 0, status.stderr
    assert '"metric_checks": "PASS"' in status.stdout
