"""Fixtures for end-to-end tests against a real local Slurm cluster.

The cluster is the one ``tools/local-slurm`` starts (Slurm 22.05 + MUNGE,
partition ``local``, emulated nodes ``node1..nodeN`` each advertising
``gpu:8``).  The session fixture ``local_slurm`` runs ``tools/local-slurm up``
with ``LOCAL_SLURM_NODES`` nodes (default 3: a retry after a node failure
must be able to avoid the failed job's nodes) -- idempotent, so it is cheap
when CI already brought the cluster up -- points ``SLURM_CONF`` at it for the
session, and stops it again at the end only if this session started it (set
``LOCAL_SLURM_KEEP=1`` to leave it running).

Without Slurm (``sbatch`` missing and ``up`` unable to install it) the
end-to-end tests are skipped on a developer's machine but FAIL in CI
(``CI`` set to ``true`` or ``1``): a CI job that quietly skips them proves
nothing.

Every test collected under ``tests/integration`` gets the ``slurm`` marker
(declared in setup.cfg), so ``pytest -m "not slurm"`` skips them all --
except tests marked ``cluster_free``, which need no cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import (
    EXPORT_RE,
    LOCAL_SLURM,
    RAY_SUB,
    UP_TIMEOUT_S,
    LocalSlurm,
    cluster_node_count,
    cluster_verdict,
    daemons_up,
)

_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    # harmless if setup.cfg already declares it; needed if run with another ini
    config.addinivalue_line(
        "markers", "slurm: needs a reachable Slurm cluster (tools/local-slurm up)"
    )
    config.addinivalue_line(
        "markers", "cluster_free: a test under tests/integration that needs no Slurm cluster"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(getattr(item, "path", item.fspath))).resolve()
        if (_HERE in path.parents and item.get_closest_marker("slurm") is None
                and item.get_closest_marker("cluster_free") is None):
            item.add_marker(pytest.mark.slurm)


@pytest.fixture(scope="session")
def local_slurm() -> Iterator[LocalSlurm]:
    """A running local Slurm of ``LOCAL_SLURM_NODES`` (default 3) nodes
    (tools/local-slurm up) with SLURM_CONF set."""
    env = dict(os.environ)
    env["LOCAL_SLURM_NODES"] = cluster_node_count(env)
    was_up = daemons_up(env)
    try:
        res = subprocess.run([str(LOCAL_SLURM), "up"], capture_output=True,
                             text=True, env=env, timeout=UP_TIMEOUT_S)
        up_ok, up_out = res.returncode == 0, (res.stdout + res.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        up_ok, up_out, res = False, f"{type(exc).__name__}: {exc}", None

    tail = "\n".join(up_out.splitlines()[-15:])
    action, reason = cluster_verdict(up_ok, shutil.which("sbatch") is not None, tail, env)
    if action == "skip":
        pytest.skip(reason)
    if action == "fail":
        pytest.fail(reason, pytrace=False)

    assert res is not None  # up_ok
    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    m = EXPORT_RE.match(last)
    if not m:
        pytest.fail(f"tools/local-slurm up: last stdout line is not "
                    f"'export SLURM_CONF=...': {last!r}", pytrace=False)
    conf = Path(m.group(1))

    cluster = LocalSlurm(state_dir=conf.parent, slurm_conf=conf,
                         started_here=not was_up)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(conf))
        yield cluster
    if cluster.started_here and os.environ.get("LOCAL_SLURM_KEEP") != "1":
        subprocess.run([str(LOCAL_SLURM), "--state", str(cluster.state_dir), "down"],
                       capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def ray_sub() -> Path:
    """Path of the repository's default batch script."""
    return RAY_SUB
