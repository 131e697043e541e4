"""What every test session shares.

* The selection of tools/run-tests' Slurm version matrix: ``tools/run-tests``
  runs pytest once per Slurm version; on every version after the first it sets
  ``NRL_TEST_VERSION_DEPENDENT_ONLY=1``, and only the tests marked
  ``slurm_version_dependent`` (tests/integration/conftest.py marks them) run
  again: the rest ran on the first version already.
* The results history: WATCH, ``nrl-launch watch`` and ``nrl-launch report``
  record their verdicts in it, by default in the user's own state folder
  (``~/.local/state/nrl-launch``): the tests' watches record in a database of
  the session's tmp folder instead. A test about the history names its own
  (``NRL_REPORT_DB`` or ``--db``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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


@pytest.fixture(autouse=True, scope="session")
def history_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``NRL_REPORT_DB`` in the session's tmp folder, for the launcher processes tests start too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NRL_REPORT_DB", str(tmp_path_factory.mktemp("history") / "history.sqlite3"))
        yield
