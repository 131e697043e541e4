"""Real processes of the launcher: start, finish, read, and hold its locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from testkit.repos import BASE_ENV, REPO, SCRUBBED_ENV

# ---------------------------------------------------------------- real processes


def launcher_env(**extra: str) -> dict[str, str]:
    """The environment of a launcher process: this one's (fake Slurm on PATH
    included) without the developer's launcher variables, plus BASE_ENV, this
    checkout's package on PYTHONPATH and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(BASE_ENV)
    env.update(PYTHONPATH=str(REPO / "tools"), **extra)
    return env


def start_nrl_launch(*args: str, cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """``python -m nrl_launch ARGS`` (this checkout's package) as a separate process."""
    return subprocess.Popen([sys.executable, "-m", "nrl_launch", *args], cwd=cwd, env=dict(env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    """Wait for ``proc``: (exit status, stdout, stderr); kill it and fail after ``timeout``."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} did not finish within {timeout} s (deadlock?)\n{out}\n{err}")
    return proc.returncode, out, err


def next_stderr_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The next line ``proc`` writes on stderr ("" if it ends or says nothing in time)."""
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    return proc.stderr.readline() if ready else ""


@contextlib.contextmanager
def holding_lock(snapshot_dir: Path) -> Iterator[Path]:
    """Hold the experiment lock of ``snapshot_dir`` in this process, as another
    launch would; yields the lock file's path (where docs/snapshots.md says)."""
    lock = snapshot_dir.parent / f".{snapshot_dir.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield lock


def wait_for_file(path: Path, timeout: float = 30) -> None:
    """Poll until ``path`` exists (a process said it is ready)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.01)




def table_cell(table: list[str], row: int, column: str) -> str:
    """The text of ``column`` in line ``row`` of a ``nrl-launch status`` table (a column starts where its
    header does)."""
    header = table[0]
    start = header.index(column)
    following = [header.index(name) for name in header.split() if header.index(name) > start]
    return table[row][start:min(following, default=None)].strip()


def run_cli(*args: str, env: Mapping[str, str | None] | None = None, slurm: Any = None,
            **invoke: Any) -> Any:
    """``nrl-launch ARGS`` in process through click: the launcher's variables exactly ``env``
    (the developer's own CONTAINER, DRYRUN, WATCH… hidden), Slurm through ``slurm`` (a
    :class:`testkit.slurm.FakeSlurm`, on its virtual clock) when given. The click ``Result``."""
    from click.testing import CliRunner

    from nrl_launch.cli import CliContext, main
    from testkit.repos import launch_env

    return CliRunner().invoke(main, list(args), env=launch_env(env),
                              obj=CliContext(slurm, (slurm.sleep, slurm.now)) if slurm is not None else None,
                              **{"prog_name": "nrl-launch", **invoke})
