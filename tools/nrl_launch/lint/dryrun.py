"""``--exec-dryrun``: run recipe scripts with ``TEST_DRYRUN=1`` and report the failures.

This executes the repository's own scripts (``bash <script>`` from the
repository root, the caller's environment plus ``TEST_DRYRUN=1``), so it is
opt-in. Scripts run in parallel (``jobs`` at a time); one that has not ended
after ``timeout`` seconds is killed together with everything it started (it
runs in a session of its own) and reported as timed out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

_TAIL_LINES = 3  # of the script's output, quoted in a failure message


@dataclass(frozen=True)
class DryrunOptions:
    """How to run the dry runs."""

    jobs: int = 0  # 0: one per CPU
    timeout: float = 60.0  # seconds per script


def dryrun_failures(root: str, scripts: Sequence[str], options: DryrunOptions,
                    environ: Mapping[str, str]) -> dict[str, str]:
    """Run each repo-relative script; returns script -> what went wrong, for the failures."""
    jobs = options.jobs or os.cpu_count() or 1
    env = {**environ, "TEST_DRYRUN": "1"}
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(scripts) or 1))) as pool:
        outcomes = pool.map(lambda rel: _run(root, rel, options.timeout, env), scripts)
        return {rel: problem for rel, problem in zip(scripts, outcomes, strict=True) if problem is not None}


def _run(root: str, rel: str, timeout: float, env: Mapping[str, str]) -> str | None:
    """None when ``TEST_DRYRUN=1 bash <rel>`` exits 0 in time, else why not."""
    try:
        process = subprocess.Popen(["bash", os.path.join(root, rel)], cwd=root, env=dict(env),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    except OSError as exc:
        return f"TEST_DRYRUN=1 bash {rel} could not start: {exc.strerror or exc}"
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_session(process)
        return f"TEST_DRYRUN=1 bash {rel} did not finish within {timeout:g} s (killed)"
    if process.returncode == 0:
        return None
    tail = [line.strip() for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    said = f": {' | '.join(tail[-_TAIL_LINES:])}" if tail else " (no output)"
    code = process.returncode
    ended = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    return f"TEST_DRYRUN=1 bash {rel} {ended}{said}"


def _kill_session(process: subprocess.Popen[bytes]) -> None:
    """Kill the script and whatever it started (its own session), then reap it."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a descendant left the session and holds the pipe open
        if process.stdout is not None:
            process.stdout.close()
        process.wait()
