"""Fixtures for end-to-end tests against a real local Slurm cluster.

The cluster is one ``tools/local-slurm`` starts (Slurm 22.05 or 24.11 +
MUNGE, partition ``local``, emulated nodes ``node1..nodeN`` each advertising
``gpu:8``).  The session fixture ``local_slurm`` never uses a cluster the
shell points at (``LOCAL_SLURM_STATE``, ``SLURM_CONF``: the user's): it
brings up

* the cluster ``NRL_TEST_SLURM_STATE`` names, when set (``tools/run-tests``
  starts one per Slurm version and names it; it takes it down itself), or
* a cluster of its own in a temporary state folder on free ports, which it
  takes down at the end,

of ``LOCAL_SLURM_NODES`` nodes (default 3: a retry after a node failure must
be able to avoid the failed job's nodes) and Slurm ``NRL_TEST_SLURM_VERSION``
(default 22.05), and points ``SLURM_CONF`` and ``PATH`` at it for the session.

Without Slurm (``up`` fails and this machine has no ``sbatch``) the
end-to-end tests are skipped on a developer's machine but FAIL in CI (``CI``
set to ``true`` or ``1``): a CI job that quietly skips them proves nothing.

Every test collected under ``tests/integration`` gets the ``slurm`` marker
(declared in setup.cfg), so ``pytest -m "not slurm"`` skips them all --
except tests marked ``cluster_free``, which need no cluster.  The tests that
depend on the Slurm version (:data:`VERSION_DEPENDENT`) also get the
``slurm_version_dependent`` marker: ``tools/run-tests`` runs them on every
version of its matrix, everything else once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import (
    LOCAL_SLURM,
    RAY_SUB,
    SYSTEM_PATH,
    UP_TIMEOUT_S,
    LocalSlurm,
    cluster_node_count,
    cluster_verdict,
    parse_export_line,
    private_env,
    session_slurm_version,
)

_HERE = Path(__file__).resolve().parent

# The end-to-end modules whose tests depend on what Slurm does and prints
# (module: why); their tests that need a cluster run on every Slurm version.
# Not here: test_readme.py (the README as typed: its commands start the
# default 22.05), test_bisect_e2e.py (git bisect driving launches; the Slurm
# side of a launch is test_launch_e2e's) and test_run_tests.py (tools/run-tests
# itself, which runs both versions).
VERSION_DEPENDENT = {
    "test_local_slurm.py": "the cluster: daemons, nodes, srun steps, gres, singleton order, --test-only, --segment",
    "test_launch_e2e.py": "sbatch options and its --test-only pre-flight, singleton chains, job states read back",
    "test_watch_e2e.py": "WATCH reads squeue/scontrol states and exit codes",
    "test_requeue_e2e.py": "a requeue: SLURM_RESTART_COUNT, the job's states while it is held and restarted",
    "test_steer_e2e.py": "a node failure (NODE_FAIL), retries with --exclude, scancel, squeue while following logs",
    "test_ray_sub.py": "ray.sub's srun node check, a requeued job's attempts",
    "test_multinode_recipes.py": "--segment: refused by 22.05, honoured by 24.11",
}
# Tests whose rejection is Slurm 22.05's refusal of --segment (a 2-node recipe
# sets SEGMENT_SIZE): they run on 22.05 only, and are skipped on another
# version.  (With a rejection every version makes they would run on all.)
ONLY_ON_22_05 = (
    "test_launch_e2e.py::test_rejected_request_stops_the_whole_launch",
    "test_launch_e2e.py::test_dryrun_2_runs_the_preflight",
)


def pytest_configure(config: pytest.Config) -> None:
    # harmless if setup.cfg already declares them; needed if run with another ini
    config.addinivalue_line(
        "markers", "slurm: needs a reachable Slurm cluster (tools/local-slurm up)"
    )
    config.addinivalue_line(
        "markers", "cluster_free: a test under tests/integration that needs no Slurm cluster"
    )
    config.addinivalue_line(
        "markers", "slurm_version_dependent: runs on every Slurm version of tools/run-tests' matrix"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    version = session_slurm_version(os.environ)
    for item in items:
        path = Path(str(getattr(item, "path", item.fspath))).resolve()
        if _HERE not in path.parents or item.get_closest_marker("cluster_free") is not None:
            continue
        if item.get_closest_marker("slurm") is None:
            item.add_marker(pytest.mark.slurm)
        if f"{path.name}::{getattr(item, 'originalname', item.name)}" in ONLY_ON_22_05:
            if version != "22.05":
                reason = f"needs Slurm 22.05's refusal of --segment (this is {version})"
                item.add_marker(pytest.mark.skip(reason=reason))
        elif path.name in VERSION_DEPENDENT:
            item.add_marker(pytest.mark.slurm_version_dependent)


def _up(state: Path, version: str, nodes: str) -> tuple[bool, str, str]:
    """``tools/local-slurm up`` of the test cluster: (ok, its stdout, stdout+stderr)."""
    args = [str(LOCAL_SLURM), "--state", str(state), "up", "--nodes", nodes, "--slurm", version]
    try:
        res = subprocess.run(args, capture_output=True, text=True, env=private_env(state), timeout=UP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, "", f"{type(exc).__name__}: {exc}"
    return res.returncode == 0, res.stdout, (res.stdout + res.stderr).strip()


def _down(state: Path) -> None:
    subprocess.run([str(LOCAL_SLURM), "--state", str(state), "down"], capture_output=True, text=True,
                   env=private_env(state), timeout=120)


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    """A running local Slurm of ``LOCAL_SLURM_NODES`` (default 3) nodes and
    version ``NRL_TEST_SLURM_VERSION`` (default 22.05), with SLURM_CONF and
    PATH pointing at it for the session."""
    named = os.environ.get("NRL_TEST_SLURM_STATE", "").strip()
    # short: the munge socket's path is limited to 108 bytes
    state = Path(named) if named else tmp_path_factory.mktemp("slurm") / "st"
    version = session_slurm_version(os.environ)
    up_ok, stdout, up_out = _up(state, version, cluster_node_count(os.environ))
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    parsed = parse_export_line(last) if up_ok else None
    sbatch_found = (parsed is not None and (parsed[1] / "sbatch").exists()) or bool(
        shutil.which("sbatch", path=SYSTEM_PATH))
    tail = "\n".join(up_out.splitlines()[-15:])
    action, reason = cluster_verdict(up_ok, sbatch_found, tail, os.environ)
    if action != "run" and not named:
        _down(state)
    if action == "skip":
        pytest.skip(reason)
    if action == "fail":
        pytest.fail(reason, pytrace=False)
    if parsed is None:
        if not named:
            _down(state)
        pytest.fail(f"tools/local-slurm up: last stdout line is not "
                    f"'export SLURM_CONF=... PATH=...:\"$PATH\"': {last!r}", pytrace=False)
    conf, bin_dir = parsed

    cluster = LocalSlurm(state_dir=state, slurm_conf=conf, bin_dir=bin_dir, version=version,
                         started_here=not named)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", str(conf))
            mp.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
            yield cluster
    finally:
        if cluster.started_here:
            _down(state)


@pytest.fixture(scope="session")
def ray_sub() -> Path:
    """Path of the repository's default batch script."""
    return RAY_SUB
