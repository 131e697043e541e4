"""Every 2-node recipe of the nightly suite, launched through ``tools/launch``
on the local multi-node cluster with WATCH, reaches ``[METRIC PASS]``.

The recipes run for real (the CPU stand-in trainer) with ``STEPS_PER_RUN=1
MAX_STEPS=2``: two chained runs each.  The recipes set ``SEGMENT_SIZE``, so
the launcher passes ``--segment=N`` (Slurm 23.02+):

* on Slurm 24.11 they run as written: the real sbatch gets ``--segment``
  (its pre-flight and every submission), and the test finds it in the
  ``continue.sh`` the launcher wrote, which repeats the last submission;
* Slurm 22.05 refuses the option, so there an ``sbatch`` first on PATH records
  its arguments and hands them to the real sbatch without ``--segment``; the
  test checks the recorded arguments, so what the launcher asked for is still
  verified.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from testkit import Launcher, LocalSlurm, config_value, read_runs_log, verdict_blocks

REPO_ROOT = Path(__file__).resolve().parents[2]
NIGHTLY = REPO_ROOT / "tests" / "test_suites" / "nightly.txt"
STEPS_PER_RUN, MAX_STEPS = 1, 2
NUM_RUNS = 2

SBATCH_SHIM = """#!/bin/bash
# Test stand-in: record the arguments (one call per line, NUL-separated
# words), drop --segment (unknown to Slurm 22.05), run the real sbatch.
printf '%s\\0' "$@" >> {record}
printf '\\n' >> {record}
args=()
skip=0
for a in "$@"; do
    if (( skip )); then skip=0; continue; fi
    case "$a" in
        --segment=*) ;;
        --segment) skip=1 ;;
        *) args+=("$a") ;;
    esac
done
exec {real} "${{args[@]}}"
"""


def two_node_recipes() -> list[str]:
    """Names of the ``*-2n8g-*`` recipes listed in nightly.txt."""
    names = []
    for line in NIGHTLY.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "-2n8g-" in line:
            names.append(Path(line).stem)
    return names


def _recorded_calls(record: Path) -> list[list[str]]:
    calls = []
    for line in record.read_bytes().split(b"\n"):
        if line:
            calls.append([w.decode() for w in line.split(b"\0") if w])
    return calls


@pytest.fixture
def sbatch_shim(local_slurm: LocalSlurm, tmp_path: Path) -> tuple[Path, Path] | None:
    """(folder to put first on PATH, file the shim records into), or None
    when the cluster knows ``--segment``: then the launcher talks to the real sbatch."""
    if local_slurm.has_segment:
        return None
    real = shutil.which("sbatch")
    assert real, "sbatch not on PATH"
    bin_dir, record = tmp_path / "shim-bin", tmp_path / "sbatch-calls"
    bin_dir.mkdir()
    shim = bin_dir / "sbatch"
    shim.write_text(SBATCH_SHIM.format(record=record, real=real))
    shim.chmod(0o755)
    return bin_dir, record


@pytest.mark.cluster_free
def test_nightly_has_two_node_recipes() -> None:
    # guards the test below against passing on an empty list
    assert len(two_node_recipes()) >= 2, two_node_recipes()


def test_two_node_recipes_pass_through_the_launcher(local_slurm: LocalSlurm, tmp_path: Path,
                                                    sbatch_shim: tuple[Path, Path] | None,
                                                    request: pytest.FixtureRequest) -> None:
    names = two_node_recipes()
    lau = Launcher(local_slurm, tmp_path / "l", request.node.name)
    request.addfinalizer(lau.close)
    path = lau.env["PATH"] if sbatch_shim is None else f"{sbatch_shim[0]}:{lau.env['PATH']}"
    run = lau.run(*names, timeout=300, WATCH="1", WATCH_INTERVAL="1",
                  STEPS_PER_RUN=str(STEPS_PER_RUN), MAX_STEPS=str(MAX_STEPS), PATH=path)
    assert run.returncode == 0, run.describe()
    assert "Traceback" not in run.stderr, run.stderr

    blocks = verdict_blocks(run.lines)
    assert [head for head, _ in blocks] == [f"[METRIC PASS]    {n}" for n in names], run.describe()

    for name in names:
        recipe = lau.suite_dir / "llm" / f"{name}.sh"
        jobs = run.jobs_of(name)
        assert len(jobs) == NUM_RUNS, run.describe()
        for i in range(1, NUM_RUNS + 1):
            assert f"Submitting {i}/{NUM_RUNS} job with 2 nodes for {name}.sh" in run.lines
        for job in jobs:
            info = local_slurm.job_state(job)
            assert info is not None and info.state == "COMPLETED", (job, info)
            assert info.fields.get("NumNodes") == "2", info.fields
            log = run.driver_log(name, job).read_text()
            assert re.search(r"^\[ray\.sub\] node check: all 2 nodes answered in ", log, re.M), log
        rows = read_runs_log(run.exp_dir(name) / "runs.log")
        assert [(r[2], r[3], r[4]) for r in rows] == [(jobs[0], 1, 1), (jobs[1], 2, 2)], rows

        # what the launcher asked sbatch for
        segment = f"--segment={config_value(recipe, 'SEGMENT_SIZE')}"
        if sbatch_shim is None:  # the real sbatch took it: continue.sh repeats the last submission
            options = [line.strip().rstrip(" \\") for line in
                       (run.snapshot(name) / "continue.sh").read_text().splitlines()]
            assert "--nodes=2" in options and segment in options, options
            continue
        calls = [c for c in _recorded_calls(sbatch_shim[1]) if any(name in w for w in c)]
        assert len(calls) >= NUM_RUNS, calls  # pre-flight and submissions alike
        for call in calls:
            assert "--nodes=2" in call and segment in call, call
