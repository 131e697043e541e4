"""The progress line of a snapshot copy (``nrl-launch snapshot`` and a launch):
shown on a terminal only, and only once the copy has taken longer than its
delay. The terminal is a real pseudo-terminal standing in for stderr."""

from __future__ import annotations

import contextlib
import io
import os
import re
import select
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nrl_launch.cli import SnapshotProgress, _snapshot_progress

ESCAPE_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SHOW_CURSOR = "\x1b[?25h"


@contextlib.contextmanager
def terminal_stderr() -> Iterator[Callable[[], str]]:
    """sys.stderr on the slave side of a pseudo-terminal for the ``with`` block (set in the test itself:
    pytest puts its own stderr back after a fixture's setup); yields what the terminal was shown so far."""
    master, slave = os.openpty()
    stream = io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), write_through=True)

    def shown() -> str:
        # the kernel hands what was written over to the master side a moment later, and in pieces:
        # read until nothing more comes for a while
        chunks = []
        while select.select([master], [], [], 0.3)[0]:
            chunks.append(os.read(master, 1 << 16))
        return b"".join(chunks).decode()

    try:
        with stream, contextlib.redirect_stderr(stream):
            yield shown
    finally:
        os.close(master)


def frames(shown: str) -> list[str]:
    """The successive states of the progress line, without the terminal's control sequences."""
    return [ESCAPE_RE.sub("", part).rstrip() for part in shown.split("\r") if ESCAPE_RE.sub("", part).strip()]


def test_a_slow_copy_shows_its_progress_on_a_terminal() -> None:
    progress = SnapshotProgress("snapshot exp-x", delay=0.05)
    with terminal_stderr() as terminal:
        progress(0, 4)
        time.sleep(0.1)  # the copy takes longer than the delay
        for done in (1, 3, 4):
            progress(done, 4)
        raw = terminal()
    # the finished bar ends its line and shows the cursor again: what stderr says next starts on a line of its own
    assert raw.endswith("\n") and raw.rstrip("\r\n").endswith(SHOW_CURSOR)
    shown = frames(raw)
    assert [re.sub(r"\s+", " ", line) for line in shown] == [
        "snapshot exp-x [------------------------------------] 0%",
        "snapshot exp-x [#########---------------------------] 25%",
        "snapshot exp-x [###########################---------] 75%",
        "snapshot exp-x [####################################] 100%",
    ]


@pytest.mark.parametrize("calls", [
    [(0, 4), (1, 4), (4, 4)],  # done within the delay
    [(4, 4)],  # a link batch: done at once
])
def test_a_fast_copy_shows_nothing(calls: list[tuple[int, int]]) -> None:
    progress = SnapshotProgress("snapshot exp-x")
    with terminal_stderr() as terminal:
        for done, total in calls:
            progress(done, total)
        assert terminal() == ""


def test_the_copy_done_after_the_delay_shows_nothing_either() -> None:
    progress = SnapshotProgress("snapshot exp-x", delay=0.05)
    time.sleep(0.1)
    with terminal_stderr() as terminal:
        progress(4, 4)
        assert terminal() == ""


def test_the_progress_is_shown_on_a_terminal_only(tmp_path: Path) -> None:
    with terminal_stderr():
        progress = _snapshot_progress(tmp_path / "code_snapshots" / "exp-x")
    assert isinstance(progress, SnapshotProgress)
    assert progress.label == "snapshot exp-x" and progress.delay == 1.0
    with open(tmp_path / "stderr.log", "w") as log, contextlib.redirect_stderr(log):  # CI: stderr to a file
        assert _snapshot_progress(tmp_path / "code_snapshots" / "exp-x") is None
