"""ray.sub: where the driver log goes, and the node check of multi-node jobs.

The first part runs ray.sub with bash outside Slurm (the variables Slurm
would set are set by hand; for the node check, ``srun``/``scontrol`` stand-ins
on PATH answer like Slurm would): no cluster needed.  The second part submits
it to the session cluster (3 emulated nodes by default).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testkit import RAY_SUB, LocalSlurm, SlurmJob

JOB_TIMEOUT_S = 120


def _bare_env(**extra: str) -> dict[str, str]:
    """Only what a batch job would surely have, plus ``extra``."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "CONTAINER": ""}
    env.update(extra)
    return env


def _run_ray_sub(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(RAY_SUB)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def _log_folders(*roots: Path) -> list[Path]:
    return sorted(p for root in roots if root.is_dir() for p in root.glob("*-logs"))


# --------------------------------------------------------------------------
# log layout (bash, no cluster)
# --------------------------------------------------------------------------

@pytest.mark.cluster_free
@pytest.mark.parametrize("base_log_dir, restarts, expected", [
    (None, None, "{submit}/123-logs"),
    (None, "0", "{submit}/123-logs"),
    ("", "0", "{submit}/123-logs"),  # set but empty: the snapshot
    (None, "1", "{submit}/123-1-logs"),
    (None, "12", "{submit}/123-12-logs"),
    ("{base}", None, "{base}/123-logs"),
    ("{base}", "3", "{base}/123-3-logs"),
])
def test_driver_log_folder(tmp_path: Path, base_log_dir: str | None, restarts: str | None, expected: str) -> None:
    submit, base = tmp_path / "snapshot", tmp_path / "deep" / "base"  # base: made with mkdir -p
    submit.mkdir()
    env = _bare_env(SLURM_SUBMIT_DIR=str(submit), SLURM_JOB_ID="123",
                    COMMAND='echo "COMMAND ran in $PWD"')
    if base_log_dir is not None:
        env["BASE_LOG_DIR"] = base_log_dir.format(base=base)
    if restarts is not None:
        env["SLURM_RESTART_COUNT"] = restarts
    res = _run_ray_sub(tmp_path, env)
    assert res.returncode == 0, res.stderr
    folder = Path(expected.format(submit=submit, base=base))
    assert _log_folders(submit, base) == [folder]
    log = (folder / "ray-driver.log").read_text()
    assert f"COMMAND ran in {submit}" in log.splitlines(), log
    assert f"[ray.sub] job 123 (restart {int(restarts or 0)})" in log, log
    assert "[ray.sub] nodes: 1 " in log and "node check" not in log, log


@pytest.mark.cluster_free
@pytest.mark.parametrize("extra, message", [
    ({"SLURM_RESTART_COUNT": "one"}, "SLURM_RESTART_COUNT='one' is not a number"),
    ({"SLURM_RESTART_COUNT": "-1"}, "SLURM_RESTART_COUNT='-1' is not a number"),
    ({"NODE_CHECK_TIMEOUT": "0"}, "NODE_CHECK_TIMEOUT='0' is not a whole number of seconds"),
    ({"NODE_CHECK_TIMEOUT": "1.5"}, "NODE_CHECK_TIMEOUT='1.5' is not a whole number of seconds"),
    ({"COMMAND": ""}, "COMMAND is empty"),
])
def test_bad_input_exits_2_without_running_command(tmp_path: Path, extra: dict[str, str], message: str) -> None:
    env = _bare_env(SLURM_SUBMIT_DIR=str(tmp_path), SLURM_JOB_ID="7",
                    **{"COMMAND": f"touch {tmp_path}/ran", **extra})
    res = _run_ray_sub(tmp_path, env)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr, res.stderr
    assert not (tmp_path / "ran").exists()


# A stand-in srun prints the node names listed in $FAKE_SRUN_ANSWER (one per
# line, as the tasks would), then sleeps $FAKE_SRUN_SLEEP and exits
# $FAKE_SRUN_RC; scontrol expands node[1-2] like Slurm does.
FAKE_SRUN = """#!/bin/bash
printf '%s\\n' $FAKE_SRUN_ANSWER
sleep "${FAKE_SRUN_SLEEP:-0}"
exit "${FAKE_SRUN_RC:-0}"
"""
FAKE_SCONTROL = """#!/bin/bash
[[ "$1 $2 $3" == "show hostnames node[1-2]" ]] || exit 1
printf 'node1\\nnode2\\n'
"""


@pytest.mark.cluster_free
@pytest.mark.parametrize("answer, rc, sleep, verdict", [
    ("node2 node1", 0, 0, "[ray.sub] node check: all 2 nodes answered in "),
    ("node1", 1, 0, "node check FAILED after "),
    ("", 1, 0, "node check FAILED after "),
    ("node1 node2", 1, 0, "no answer from (every node answered, but srun failed)"),
    ("node1", 0, 30, "(timed out after 1s): no answer from node2"),
])
def test_node_check_decision(tmp_path: Path, answer: str, rc: int, sleep: int, verdict: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = _bare_env(SLURM_SUBMIT_DIR=str(tmp_path), SLURM_JOB_ID="9", SLURM_JOB_NUM_NODES="2",
                    SLURM_JOB_NODELIST="node[1-2]", NODE_CHECK_TIMEOUT="1",
                    COMMAND=f"touch {tmp_path}/ran", FAKE_SRUN_ANSWER=answer,
                    FAKE_SRUN_RC=str(rc), FAKE_SRUN_SLEEP=str(sleep))
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    res = _run_ray_sub(tmp_path, env)
    log = (tmp_path / "9-logs" / "ray-driver.log").read_text()
    assert "[ray.sub] nodes: 2 (node[1-2])" in log, log
    assert verdict in log, log
    passed = rc == 0 and sleep == 0
    assert (tmp_path / "ran").exists() == passed, log
    assert res.returncode == (0 if passed else 75), log
    if not passed:
        missing = sorted({"node1", "node2"} - set(answer.split()))
        if missing:
            assert f"no answer from {' '.join(missing)} " in log, log
        assert "not running COMMAND" in log and "COMMAND exited" not in log, log


# --------------------------------------------------------------------------
# on the cluster
# --------------------------------------------------------------------------

def _submit(cluster: LocalSlurm, tmp_path: Path, env_extra: dict[str, str], *sbatch_args: str) -> str:
    env = cluster.env(CONTAINER="", **env_extra)
    for name in ("SLURM_SUBMIT_DIR", "BASE_LOG_DIR", "NODE_CHECK_TIMEOUT", "SLURM_RESTART_COUNT"):
        if name not in env_extra:
            env.pop(name, None)
    return cluster.sbatch("--account=x", "--gres=gpu:8", "--output", str(tmp_path / "slurm-%j.out"),
                          *sbatch_args, str(RAY_SUB), cwd=tmp_path, env=env)


def _expand(cluster: LocalSlurm, nodelist: str) -> list[str]:
    res = cluster.run("scontrol", "show", "hostnames", nodelist, check=True)
    return list(res.stdout.split())


def _wait_all_idle(cluster: LocalSlurm, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (states := cluster.node_states()) and set(states.values()) != {"idle"}:
        if time.monotonic() > deadline:
            pytest.fail(f"nodes not idle after {timeout}s: {states}")
        time.sleep(0.2)


_ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED")


def _wait_for_attempt(cluster: LocalSlurm, job: str, restarts: int) -> SlurmJob:
    """The job's state once its attempt number ``restarts`` has ended."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        info = cluster.job_state(job)
        if (info is not None and info.fields.get("Restarts") == str(restarts)
                and info.state not in _ACTIVE_STATES):
            return info
        assert time.monotonic() < deadline, f"attempt {restarts} of job {job} did not end: {info}"
        time.sleep(0.2)


def test_two_node_job_checks_every_node_then_runs_command_once(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    job = _submit(local_slurm, tmp_path,
                  {"COMMAND": f'echo "driver on $SLURMD_NODENAME" >> {tmp_path}/ran'},
                  "--nodes=2")
    info = local_slurm.finished(job, timeout=JOB_TIMEOUT_S)
    assert info.state == "COMPLETED" and info.exit_code == 0, info
    nodelist = info.fields["NodeList"]
    nodes = _expand(local_slurm, nodelist)
    assert len(nodes) == 2 and set(nodes) <= set(local_slurm.nodes()), nodes
    log = (tmp_path / f"{job}-logs" / "ray-driver.log").read_text()
    lines = log.splitlines()
    assert f"[ray.sub] nodes: 2 ({nodelist})" in lines, log
    check = [i for i, line in enumerate(lines) if line.startswith("[ray.sub] node check")]
    assert len(check) == 1, log
    m = re.fullmatch(r"\[ray\.sub\] node check: all 2 nodes answered in \d+\.\ds: (.*)", lines[check[0]])
    assert m and m.group(1) == " ".join(nodes), log
    # COMMAND ran once, on the batch node, after the check
    assert (tmp_path / "ran").read_text().splitlines() == [f"driver on {info.fields['BatchHost']}"]
    assert check[0] < next(i for i, line in enumerate(lines) if "running COMMAND" in line), log


def test_unreachable_node_fails_the_job_without_running_command(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    nodes = local_slurm.nodes()
    batch_node, lost_node = nodes[0], nodes[-1]
    _wait_all_idle(local_slurm)  # the job must start at once, before Slurm notices
    # The node's slurmd dies; slurmctld still thinks the node is idle (it
    # would notice only minutes later, through its pings) and allocates it.
    os.kill(local_slurm.slurmd_pid(lost_node), signal.SIGKILL)
    try:
        job = _submit(local_slurm, tmp_path, {"COMMAND": f"touch {tmp_path}/ran"},
                      "--nodes=2", f"--nodelist={batch_node},{lost_node}")
        log = tmp_path / f"{job}-logs" / "ray-driver.log"
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while "exiting with status" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, f"ray.sub did not give up: {log}"
            time.sleep(0.2)
    finally:
        # restarts the slurmd (the job can only end once the node answers)
        # and leaves every node idle for the tests that follow
        local_slurm.up()
    info = local_slurm.finished(job, timeout=JOB_TIMEOUT_S)
    text = log.read_text()
    assert info.state == "FAILED" and info.exit_code == 75, (info, text)
    assert _expand(local_slurm, info.fields["NodeList"]) == [batch_node, lost_node], info.fields
    assert f"[ray.sub] nodes: 2 ({info.fields['NodeList']})" in text.splitlines(), text
    assert re.search(rf"^\[ray\.sub\] node check FAILED after [\d.]+s \(srun exit \d+\): "
                     rf"no answer from {lost_node} \(answered: {batch_node}\); not running COMMAND$",
                     text, re.M), text
    assert "COMMAND exited" not in text, text
    assert not (tmp_path / "ran").exists()
    assert local_slurm.node_states() == dict.fromkeys(nodes, "idle")


def test_base_log_dir_takes_the_driver_log(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    base = tmp_path / "central" / "logs"
    job = _submit(local_slurm, tmp_path, {"COMMAND": "echo into-base", "BASE_LOG_DIR": str(base)})
    info = local_slurm.finished(job, timeout=JOB_TIMEOUT_S)
    assert info.state == "COMPLETED", info
    assert _log_folders(tmp_path, base) == [base / f"{job}-logs"]
    assert "into-base" in (base / f"{job}-logs" / "ray-driver.log").read_text().splitlines()


def test_requeued_job_logs_each_attempt_separately(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    command = ('if (( ${SLURM_RESTART_COUNT:-0} >= 1 )); then echo "second attempt passes"; '
               'else echo "first attempt fails"; exit 1; fi')
    job = _submit(local_slurm, tmp_path, {"COMMAND": command})
    first = local_slurm.finished(job, timeout=JOB_TIMEOUT_S)
    assert first.state == "FAILED" and first.exit_code == 1, first
    # JobRequeue defaults to 1, so a batch job may be requeued without
    # sbatch --requeue.  Slurm then holds it back 2 min; 2 s is enough: a
    # relaunch within the second in which the node revoked the first
    # attempt's credential is killed ("Job credential revoked").
    for args in (("requeue", job), ("update", f"jobid={job}", "starttime=now+2")):
        res = local_slurm.run("scontrol", *args)
        assert res.returncode == 0, res.stderr
    second = _wait_for_attempt(local_slurm, job, 1)
    assert second.state == "COMPLETED" and second.exit_code == 0, second.fields
    assert _log_folders(tmp_path) == [tmp_path / f"{job}-1-logs", tmp_path / f"{job}-logs"]
    logs = {name: (tmp_path / name / "ray-driver.log").read_text().splitlines()
            for name in (f"{job}-logs", f"{job}-1-logs")}
    first_log, second_log = logs[f"{job}-logs"], logs[f"{job}-1-logs"]
    assert "first attempt fails" in first_log and "second attempt passes" not in first_log
    assert "second attempt passes" in second_log and "first attempt fails" not in second_log
    assert first_log[0].startswith(f"[ray.sub] job {job} (restart 0) ")
    assert second_log[0].startswith(f"[ray.sub] job {job} (restart 1) ")
