"""What every test session shares: the selection of tools/run-tests' Slurm version matrix.

``tools/run-tests`` runs pytest once per Slurm version; on every version after
the first it sets ``NRL_TEST_VERSION_DEPENDENT_ONLY=1``, and only the tests
marked ``slurm_version_dependent`` (tests/integration/conftest.py marks them)
run again: the rest ran on the first version already.
"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(trylast=True)  # after tests/integration/conftest.py has marked its tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("NRL_TEST_VERSION_DEPENDENT_ONLY", "0") != "1":
        return
    keep = [item for item in items if item.get_closest_marker("slurm_version_dependent") is not None]
    dropped = [item for item in items if item.get_closest_marker("slurm_version_dependent") is None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
