"""``tools/run-tests`` never touches a cluster it did not start.

"The user's cluster" is started here as the README's first command starts
one (``tools/local-slurm up``: one node, Slurm 22.05), in a state folder and on
ports of this test's own, with a job RUNNING on it; the shell that runs
``tools/run-tests`` points at it as the user's would (``SLURM_CONF`` and its
commands on ``PATH`` from ``up``'s export line, ``LOCAL_SLURM_STATE`` and
``LOCAL_SLURM_PORT`` exported).  ``tools/run-tests`` then runs its cluster
part (``NRL_RUN_TESTS_STATIC=0``: no ruff/mypy) with one quick end-to-end test,
on every Slurm version of its matrix; afterwards the user's cluster has the
same node count, daemons, config, and the job is still RUNNING.  Ctrl-C in
the middle takes its clusters down as well.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit import LOCAL_SLURM, REPO, LocalSlurm, parse_export_line, private_env

pytestmark = pytest.mark.slurm

RUN_TESTS = REPO / "tools" / "run-tests"
# quick, needs a cluster, and runs on every version of the matrix
QUICK_TEST = "tests/integration/test_local_slurm.py::test_session_cluster_has_the_configured_nodes_all_idle"
CLUSTER_RE = re.compile(r"^\[run-tests\] Slurm (\S+) test cluster: state folder (\S+), port (\d+)$", re.M)


@pytest.fixture(scope="module")
def users_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalSlurm, dict[str, str]]]:
    """(the user's cluster with a job RUNNING, the environment of the user's shell)."""
    state = tmp_path_factory.mktemp("user") / "st"
    env = private_env(state)
    up = subprocess.run([str(LOCAL_SLURM), "up"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        parsed = parse_export_line(up.stdout.splitlines()[-1])
        assert parsed is not None, up.stdout
        conf, bin_dir = parsed
        cluster = LocalSlurm(state_dir=state, slurm_conf=conf, bin_dir=bin_dir)
        port = re.search(r"^SlurmctldPort=(\d+)$", conf.read_text(), re.M)
        assert port, conf.read_text()
        shell = {**env, "SLURM_CONF": str(conf), "PATH": f"{bin_dir}:{env['PATH']}",
                 "LOCAL_SLURM_PORT": port.group(1), "NRL_RUN_TESTS_STATIC": "0"}
        job = cluster.sbatch("--job-name=users-job", "--output=/dev/null", "--wrap", "sleep 900",
                             cwd=state, env=shell)
        deadline = time.monotonic() + 60
        while (info := cluster.job_state(job)) is None or info.state != "RUNNING":
            assert time.monotonic() < deadline, f"the user's job did not start: {info}"
            time.sleep(0.2)
        yield cluster, {**shell, "USERS_JOB": job}
    finally:
        subprocess.run([str(LOCAL_SLURM), "down"], env=env, capture_output=True, timeout=120)


@dataclass(frozen=True)
class ClusterView:
    """What must not change: nodes and their states, the job, the daemons, the config."""

    nodes: dict[str, str]
    job: tuple[str, str | None] | None
    daemons: dict[str, str]
    config: str


def snapshot_of(cluster: LocalSlurm, shell: dict[str, str]) -> ClusterView:
    job = cluster.job_state(shell["USERS_JOB"])
    run = cluster.state_dir / "run"
    return ClusterView(cluster.node_states(), (job.state, job.fields.get("NodeList")) if job else None,
                       {p.name: p.read_text() for p in sorted(run.glob("*.pid"))}, cluster.slurm_conf.read_text())


def assert_gone(states: list[str]) -> None:
    """No process of these state folders runs, and nothing of them is mounted."""
    for state in states:
        pgrep = subprocess.run(["pgrep", "-a", "-f", state], capture_output=True, text=True)
        assert pgrep.stdout == "", pgrep.stdout
        assert state not in Path("/proc/self/mountinfo").read_text()


def test_run_tests_leaves_the_users_cluster_and_its_job_alone(users_cluster: tuple[LocalSlurm, dict[str, str]],
                                                              tmp_path: Path) -> None:
    cluster, shell = users_cluster
    before = snapshot_of(cluster, shell)
    assert list(before.nodes) == ["node1"] and before.job == ("RUNNING", "node1"), before
    done = subprocess.run([str(RUN_TESTS), f"--basetemp={tmp_path / 'bt'}", "-q", QUICK_TEST], cwd=tmp_path,
                          env=shell, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    clusters = CLUSTER_RE.findall(done.stderr)
    assert [version for version, _, _ in clusters] == ["22.05", "24.11"], done.stderr
    assert done.stdout.count("1 passed") == 2, done.stdout  # the test ran on each version
    ports = {int(port) for _, _, port in clusters}
    assert shell["LOCAL_SLURM_PORT"] not in {str(p) for p in ports}
    assert snapshot_of(cluster, shell) == before
    # its own clusters came and went: nothing left running, their state folders deleted
    assert_gone([state for _, state, _ in clusters])
    assert not any(Path(state).exists() for _, state, _ in clusters)


def test_ctrl_c_takes_run_tests_clusters_down(users_cluster: tuple[LocalSlurm, dict[str, str]],
                                              tmp_path: Path) -> None:
    cluster, shell = users_cluster
    before = snapshot_of(cluster, shell)
    proc = subprocess.Popen([str(RUN_TESTS), f"--basetemp={tmp_path / 'bt'}", "-q", QUICK_TEST], cwd=tmp_path,
                            env=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal's job
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # until the tests start: every cluster is up then
        seen.append(line)
        if line.startswith("[run-tests] every test, on Slurm"):
            break
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    rest = proc.communicate(timeout=300)[1]
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    clusters = CLUSTER_RE.findall(stderr)
    assert len(clusters) == 2, stderr
    assert_gone([state for _, state, _ in clusters])
    assert not any(Path(state).exists() for _, state, _ in clusters)
    assert snapshot_of(cluster, shell) == before
