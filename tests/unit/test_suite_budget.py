"""GPU-hours three ways, and the nightly budget.

The reference is bash, as the bash launcher computed it (``testkit.bash_gpu_hours``:
``eval`` the CONFIG block, then the formula in bash arithmetic).
``DRYRUN=1 tools/launch`` and ``nrl-launch lint``'s suite totals must print
the same numbers, and the nightly suite must fit the budget that
``[tool.nrl-launch.lint.suites.nightly]`` in pyproject.toml gives it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from lintkit import script, write

from nrl_launch import lint
from testkit import bash_gpu_hours, run_cli

REPO = Path(__file__).resolve().parents[2]
SUITES = REPO / "tests" / "test_suites"

# $1: a suite file -> its scripts as users pass them from tests/test_suites/ (README)
BASH_ENTRIES = r"""printf '%s\n' $(grep -v '^#' "$1" | sed 's|^tests/test_suites/|./|')"""


def bash(program: str, *args: str | Path) -> str:
    """stdout of ``bash -c program`` in an empty environment."""
    done = subprocess.run(["env", "-i", "bash", "-c", program, "bash", *map(str, args)], capture_output=True,
                          text=True, check=True)
    return done.stdout


def dryrun(scripts: list[str], cwd: Path) -> tuple[list[int], int]:
    """Per-script and total GPU-hours as ``DRYRUN=1 tools/launch`` prints them."""
    env = {**os.environ, "DRYRUN": "1", "CONTAINER": "", "ACCOUNT": "", "PARTITION": "",
           "HF_HOME": "/hf", "HF_DATASETS_CACHE": "/hf/ds"}
    for name in ("STEPS_PER_RUN", "MAX_STEPS", "NUM_NODES", "GPUS_PER_NODE", "NUM_RUNS", "NUM_MINUTES"):
        env.pop(name, None)  # the recipes' own defaults
    proc = subprocess.run([str(REPO / "tools" / "launch"), *scripts], cwd=cwd, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    per_script = [int(m.group(1)) for line in lines if (m := re.match(r"\[INFO\]: (\d+) GPUhrs to run ", line))]
    total = re.fullmatch(r"\[INFO\]: Total GPU hours: (\d+)", lines[-1])
    assert total is not None, lines
    return per_script, int(total.group(1))


def test_nightly_hours_agree_three_ways_and_fit_the_budget() -> None:
    entries = bash(BASH_ENTRIES, SUITES / "nightly.txt").split()
    assert entries and all(e.startswith("./") and e.endswith(".sh") for e in entries)
    by_bash = [bash_gpu_hours(SUITES / entry) for entry in entries]

    per_script, total = dryrun(entries, SUITES)
    assert per_script == by_bash
    assert total == sum(by_bash)

    report = lint.run_lint(REPO)
    nightly, = (h for h in report.suite_hours if h.name == "nightly")
    assert (nightly.hours, nightly.uncounted) == (sum(by_bash), 0)
    budget = next(s.budget for s in lint.load_config(REPO).suites or () if s.name == "nightly")
    assert budget is not None and nightly.budget == budget
    assert sum(by_bash) <= budget, f"nightly needs {sum(by_bash)} GPU-hours, over its budget of {budget}"

    assert run_cli("lint", "--root", str(REPO), "--budget", f"nightly={total}").exit_code == 0
    over = run_cli("lint", "--root", str(REPO), "--budget", f"nightly={total - 1}")
    assert over.exit_code == 1 and f"needs {total} GPU-hours" in over.output


# CONFIG blocks whose arithmetic is easy to get wrong
BLOCKS = {
    "truncates": ("NUM_NODES=1", "GPUS_PER_NODE=1", "NUM_RUNS=1", "NUM_MINUTES=59"),
    "product first": ("NUM_NODES=3", "GPUS_PER_NODE=4", "NUM_RUNS=1", "NUM_MINUTES=25"),
    "default gpus": ("NUM_NODES=2", "NUM_RUNS=3", "NUM_MINUTES=45"),
    "rounded-up runs": ('NUM_NODES="${NUM_NODES:-2}"', "STEPS_PER_RUN=${STEPS_PER_RUN:-30}",
                        "MAX_STEPS=${MAX_STEPS:-100}",
                        "NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up",
                        "NUM_MINUTES=100"),
    "gb200": ("NUM_NODES=4", "GPUS_PER_NODE=4", "NUM_RUNS=$((2 * 3))", "NUM_MINUTES=${NUM_MINUTES:-155}"),
}


@pytest.mark.parametrize("case", sorted(BLOCKS))
def test_launcher_and_lint_compute_bashs_hours(tmp_path: Path, case: str) -> None:
    rel = "tests/test_suites/llm/sft-model-1n8g-fsdp2tp1.sh"
    path = write(tmp_path, rel, script(*BLOCKS[case]), mode=0o755)
    write(tmp_path, "tests/test_suites/nightly.txt", rel + "\n")
    expected = bash_gpu_hours(path)
    assert dryrun([str(path)], tmp_path) == ([expected], expected)
    nightly, = lint.run_lint(tmp_path).suite_hours
    assert nightly.hours == expected
