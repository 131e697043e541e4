"""WATCH on the local cluster, compared with a golden file of its whole stdout.

Two experiments of 3 chained runs each: one passes, one fails a metric check
(its recipe exports NRL_FORCE_FAILING_CHECK=1, committed in the test's copy of
the repository). The launch's stdout is normalised (timestamps, job ids, the
repository path) and compared with ``reference/watch_pass_and_fail.out``. The
lines of the polls depend on how fast the jobs run, so they are replaced by one
``<polls>`` line in the comparison and checked on their own: every line has
the contract's form, the counts add up, and every job is reported finished once.

Set ``UPDATE_GOLDEN=1`` to rewrite the golden file from a run (then review it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from testkit import DPO_1N, QUICK, SUBMITTED_RE, Launcher, LaunchRun, no_traceback

pytestmark = pytest.mark.slurm

GOLDEN = Path(__file__).parent / "reference" / "watch_pass_and_fail.out"
_STAMP_RE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_POLL_RE = re.compile(r"\[<ts>\] \[WATCH\]: (?:Finished jobs: (<job \d+>(?: <job \d+>)*)|Remaining: (\d+))")


def failing_copy(recipe: Path) -> str:
    """The recipe's text with a check that cannot pass (train/accuracy > 2)."""
    text = recipe.read_text()
    end = "# ===== END CONFIG =====\n"
    assert end in text, recipe
    return text.replace(end, end + "export NRL_FORCE_FAILING_CHECK=1  # e2e: this experiment must FAIL\n", 1)


def normalise(run: LaunchRun) -> tuple[list[str], list[str]]:
    """(stdout with the poll lines replaced by ``<polls>``, the poll lines), both normalised."""
    numbers = {job: f"<job {i}>" for i, job in enumerate(SUBMITTED_RE.findall(run.stdout), start=1)}

    def job(match: re.Match[str]) -> str:
        return numbers[match.group()]

    lines = []
    for line in run.lines:
        line = _STAMP_RE.sub("<ts>", line.replace(str(run.repo), "<repo>"))
        # job ids where the contract puts them: sbatch's answer, the WATCH lists, log folders
        line = re.sub(r"(?<=^Submitted batch job )\d+$", job, line)
        if re.match(r"\[<ts>\] \[WATCH\]: (Tracking \d+ jobs|Finished jobs):", line):
            head, _, ids = line.rpartition(": ")
            line = head + ": " + re.sub(r"\d+", job, ids)
        line = re.sub(r"(?<=/)\d+(?=(?:-\d+)?-logs/)", job, line)
        lines.append(line)
    start = lines.index("[<ts>] [WATCH]: Polling every 1s. Press Enter to refresh immediately.") + 1
    end = lines.index("[<ts>] [WATCH]: All tracked jobs have finished.")
    return lines[:start] + ["<polls>"] + lines[end:], lines[start:end]


def check_polls(polls: list[str], jobs: list[str]) -> None:
    """The poll lines: ``Finished jobs`` only when some did, ``Remaining`` after every poll."""
    remaining, finished, previous = len(jobs), [], None
    for line in polls:
        match = _POLL_RE.fullmatch(line)
        assert match, line
        if match.group(1):
            assert previous != "finished", polls  # at most one Finished line per poll
            finished += match.group(1).split(" <")
            previous = "finished"
        else:
            count = len(jobs) - len(finished)
            assert int(match.group(2)) == count <= remaining, polls
            remaining, previous = count, "remaining"
    assert polls[-1] == "[<ts>] [WATCH]: Remaining: 0", polls
    assert len(finished) == len(jobs)


def test_watch_output_of_a_pass_and_a_fail(local_slurm, tmp_path: Path, request) -> None:
    recipe = Path("tests/test_suites/llm") / f"{DPO_1N}.sh"
    lau = Launcher(local_slurm, tmp_path, "golden",
                   {str(recipe): failing_copy(Path(__file__).resolve().parents[2] / recipe)})
    request.addfinalizer(lau.close)
    run = lau.run(QUICK, DPO_1N, WATCH="1", WATCH_INTERVAL="1")
    assert run.returncode == 1, run.describe()
    no_traceback(run.stderr)
    got, polls = normalise(run)
    check_polls(polls, run.job_ids)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text("\n".join(got) + "\n")
    assert got == GOLDEN.read_text().splitlines(), run.describe()
