"""Settings of every test session (unit and end-to-end).

WATCH, ``nrl-launch watch`` and ``nrl-launch report`` record their verdicts in
the results history, by default in the user's own state folder
(``~/.local/state/nrl-launch``): the tests' watches record in a database of
the session's tmp folder instead. A test about the history names its own
(``NRL_REPORT_DB`` or ``--db``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def history_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``NRL_REPORT_DB`` in the session's tmp folder, for the launcher processes tests start too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NRL_REPORT_DB", str(tmp_path_factory.mktemp("history") / "history.sqlite3"))
        yield
