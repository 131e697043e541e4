"""Experiments you can steer, on the local multi-node cluster: a retry after a
node failure (MAX_RETRIES), ``nrl-launch cancel`` and ``nrl-launch logs --follow``.

Every test launches a 2-node recipe of its own (``GATE_RECIPE``, committed in
the test's copy of the repository: the suites' 2-node recipes set
SEGMENT_SIZE, which Slurm 22.05 refuses). Its runs wait at a gate -- until the
file ``$NRL_E2E_GATE`` exists -- so the test can act while a run is running,
then train with the CPU trainer as every recipe does.

The local cluster requeues a batch job whose node fails (Slurm's default
``JobRequeue=1``): the job would stay queued under its id and WATCH would
simply follow it. The launcher's retries are for clusters where such a job
ends ``NODE_FAIL`` (``JobRequeue=0``, or ``--no-requeue``); the retry test
sets sbatch's own ``SBATCH_NO_REQUEUE=1`` in the launcher's environment to
be one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from testkit import LAUNCH, REPO, STAMP, Launcher, LocalSlurm, finish, manifest_runs, no_traceback, script_arg

pytestmark = pytest.mark.slurm

NAME = "sft-qwen2.5-1.5b-2n8g-fsdp2tp1-gate"
RECIPE = f"tests/test_suites/llm/{NAME}.sh"
CONFIG = f"examples/configs/recipes/llm/{NAME}.yaml"
GATE_RECIPE = """#!/bin/bash
# e2e test recipe: 2 nodes; each run waits at a gate (the file $NRL_E2E_GATE) so
# that the test can down a node, cancel or follow while it runs, then trains.
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" &>/dev/null && pwd)
source "$SCRIPT_DIR/common.env"

# ===== BEGIN CONFIG =====
NUM_NODES=2
STEPS_PER_RUN=${STEPS_PER_RUN:-1}
MAX_STEPS=${MAX_STEPS:-1}
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=10
# ===== END CONFIG =====

exit_if_max_steps_reached "$@"
echo "gate: job ${SLURM_JOB_ID:-?} on ${SLURMD_NODENAME:-?} waits for ${NRL_E2E_GATE:?}"
for _ in $(seq 900); do [[ -e $NRL_E2E_GATE ]] && break; sleep 0.2; done
[[ -e $NRL_E2E_GATE ]] || { echo "gate: never opened"; exit 3; }
echo "gate: open"
run_recipe "$@"
"""
RUN_TIMEOUT_S = 240
RETRY_RE = re.compile(rf"^{STAMP} \[WATCH\]: Retrying {re.escape(NAME)} after NODE_FAIL on (\S+) \(1/1\): "
                      r"job (\d+)$", re.MULTILINE)


def gate_config() -> str:
    """The recipe's YAML: the quick SFT recipe's, on 2 nodes of 8 GPUs."""
    text = (REPO / "examples/configs/recipes/llm/sft-qwen2.5-1.5b-1n4g-fsdp2tp1-quick.yaml").read_text()
    data = yaml.safe_load(text)
    data["cluster"] = {"num_nodes": 2, "gpus_per_node": 8}
    data["logger"]["wandb"]["name"] = NAME
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def lau(local_slurm: LocalSlurm, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Launcher]:
    launcher = Launcher(local_slurm, tmp_path, request.node.name, {RECIPE: GATE_RECIPE, CONFIG: gate_config()})
    launcher.env["NRL_E2E_GATE"] = str(tmp_path / "gate")
    yield launcher
    launcher.close()


def gate(lau: Launcher) -> Path:
    return Path(lau.env["NRL_E2E_GATE"])


def snapshot(lau: Launcher) -> Path:
    return lau.repo / "code_snapshots" / NAME


def nrl_launch(lau: Launcher, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``nrl-launch ARGS`` of this checkout, run from the test's repository."""
    env = {**lau.env, "PYTHONPATH": str(REPO / "tools")}
    return subprocess.run([sys.executable, "-m", "nrl_launch", *args], cwd=lau.repo, env=env, capture_output=True,
                          text=True, timeout=timeout)


def start_launch(lau: Launcher, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(LAUNCH), script_arg(NAME)], cwd=lau.suite_dir, env={**lau.env, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def our_jobs(lau: Launcher) -> dict[str, tuple[str, str]]:
    """{job id: (state, nodes)} of the queued jobs of this test."""
    res = lau.cluster.run("squeue", "-h", "-o", "%i|%j|%T|%N")
    jobs = {}
    for line in res.stdout.splitlines():
        job_id, name, state, nodes = line.split("|")
        if name.endswith(lau.suffix):
            jobs[job_id] = (state, nodes)
    lau.track(*jobs)
    return jobs


def wait_for(what: str, check: Callable[[], object], timeout: float = 90) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def at_the_gate(lau: Launcher) -> str:
    """The id of the job of this test that is running and waiting at the gate."""
    def running() -> str | None:
        for job_id, (state, _) in our_jobs(lau).items():
            log = snapshot(lau) / f"{job_id}-logs" / "ray-driver.log"
            if state == "RUNNING" and log.is_file() and "gate: job" in log.read_text():
                return job_id
        return None

    return str(wait_for("a run waiting at the gate", running))


def hostnames(cluster: LocalSlurm, nodelist: str) -> list[str]:
    return cluster.run("scontrol", "show", "hostnames", nodelist, check=True).stdout.split()


# ---------------------------------------------------------------- retry after a node failure


@pytest.mark.parametrize("max_retries", [1, 0])
def test_a_node_failure_is_retried_on_the_other_nodes(lau: Launcher, local_slurm: LocalSlurm,
                                                      max_retries: int) -> None:
    proc = start_launch(lau, WATCH="1", WATCH_INTERVAL="1", MAX_RETRIES=str(max_retries), SBATCH_NO_REQUEUE="1",
                        STEPS_PER_RUN="2", MAX_STEPS="2")  # one run (its checks pass from step 2 on)
    lost = None
    try:
        first = at_the_gate(lau)
        info = local_slurm.job_state(first)
        assert info is not None
        nodes = hostnames(local_slurm, info.fields["NodeList"])
        lost = next(node for node in reversed(nodes) if node != info.fields["BatchHost"])
        local_slurm.run("scontrol", "update", f"nodename={lost}", "state=down", "reason=test", check=True)
        wait_for("the job to end NODE_FAIL",
                 lambda: (state := local_slurm.job_state(first)) is not None and state.state == "NODE_FAIL")
        gate(lau).touch()  # a retry may train now
        code, out, err = finish(proc, RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        if lost is not None:
            local_slurm.run("scontrol", "update", f"nodename={lost}", "state=resume")
    no_traceback(err)
    runs = manifest_runs(snapshot(lau))
    if max_retries == 0:
        assert code == 1, out + err
        assert "Retrying" not in out and len(runs) == 1 and list(lau.job_names()) == [first]
        assert re.search(rf"^\[(GENERAL|METRIC) FAIL\] +{re.escape(NAME)}$", out, re.MULTILINE), out
        assert out.splitlines()[-1] == "[INFO]: One or more tests failed. Exiting with status 1."
        return
    assert code == 0, out + err
    match = RETRY_RE.search(out)
    assert match, out
    failed_on, retry = match.groups()
    assert hostnames(local_slurm, failed_on) == nodes
    assert f"[METRIC PASS]    {NAME}" in out.splitlines(), out
    assert out.splitlines()[-1] == "[INFO]: All tests passed. Exiting with status 0."
    assert [(r["job_id"], r["via"]) for r in runs] == [(first, "launcher"), (retry, "retry")]
    assert (runs[1]["retry_of"], runs[1]["after"], runs[1]["exclude"]) == (first, "NODE_FAIL", lost)
    again = local_slurm.job_state(retry)
    assert again is not None and again.state == "COMPLETED", again
    assert again.fields["ExcNodeList"] == lost
    assert lost not in hostnames(local_slurm, again.fields["NodeList"])
    # the retry ran exactly the launcher's submission: same job name (chain), same snapshot
    assert again.fields["JobName"] == info.fields["JobName"]
    assert again.fields["WorkDir"] == info.fields["WorkDir"] == str(snapshot(lau))


# ---------------------------------------------------------------- cancel


def test_cancel_leaves_no_run_queued_and_status_says_so(lau: Launcher, local_slurm: LocalSlurm) -> None:
    launched = lau.run(NAME, STEPS_PER_RUN="1", MAX_STEPS="3")  # 3 chained runs; the gate stays shut
    assert launched.returncode == 0, launched.describe()
    ids = launched.job_ids
    assert len(ids) == 3
    at_the_gate(lau)
    assert sorted(our_jobs(lau)) == sorted(ids)
    cancelled = nrl_launch(lau, "cancel", NAME)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == f"[INFO]: {NAME}: cancelled 3 jobs: {' '.join(ids)}\n"
    wait_for("no job of the test in the queue", lambda: not our_jobs(lau))
    status = nrl_launch(lau, "status", "--format", "json", NAME)
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)
    assert [job["state"] for job in row["jobs"]] == ["CANCELLED"] * 3
    assert [c["jobs"] for c in row["cancellations"]] == [ids]
    table = nrl_launch(lau, "status", NAME).stdout.splitlines()
    assert table[1].endswith("cancelled 3 jobs"), table
    assert nrl_launch(lau, "cancel", NAME).stdout == (f"[INFO]: {NAME}: nothing to cancel (none of its 3 jobs is "
                                                      "queued or running)\n")
    # a later continue.sh still adds a run; cancelling again stops just that one
    shell = {**lau.env, "PATH": os.environ["PATH"]}
    continued = subprocess.run(["bash", str(snapshot(lau) / "continue.sh")], env=shell, capture_output=True,
                               text=True, timeout=60)
    assert continued.returncode == 0, continued.stderr
    [extra] = re.findall(r"^Submitted batch job (\d+)$", continued.stdout, re.MULTILINE)
    lau.track(extra)
    assert nrl_launch(lau, "cancel", NAME).stdout == f"[INFO]: {NAME}: cancelled 1 job: {extra}\n"
    wait_for("the continue.sh run to leave the queue", lambda: not our_jobs(lau))


# ---------------------------------------------------------------- logs --follow


def test_logs_follow_prints_both_runs_of_a_chain_in_order(lau: Launcher, local_slurm: LocalSlurm) -> None:
    launched = lau.run(NAME, STEPS_PER_RUN="1", MAX_STEPS="2")  # 2 chained runs
    assert launched.returncode == 0, launched.describe()
    first, second = launched.job_ids
    env = {**lau.env, "PYTHONPATH": str(REPO / "tools")}
    follow = subprocess.Popen([sys.executable, "-m", "nrl_launch", "logs", "--follow", "--interval", "0.2", NAME],
                              cwd=lau.repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        at_the_gate(lau)
        gate(lau).touch()
        out, err = follow.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0, err.decode()
    logs = [snapshot(lau) / f"{job}-logs" / "ray-driver.log" for job in (first, second)]
    assert out == logs[0].read_bytes() + logs[1].read_bytes()  # each run once, in order, as written
    assert b"Metric Checks" in logs[1].read_bytes()
    headers = [f"==> {log} (job {job}) <==" for log, job in zip(logs, (first, second), strict=True)]
    assert err.decode().splitlines() == headers
    assert not our_jobs(lau)  # it ended with the chain
