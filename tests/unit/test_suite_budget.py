"""The nightly suite's GPU-hour budget, through the launcher's DRYRUN=1 path."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from click.testing import CliRunner

from nrl_launch.cli import main
from nrl_launch.lint import parse_suite

REPO = Path(__file__).resolve().parents[2]
SUITES = REPO / "tests" / "test_suites"
NIGHTLY_BUDGET = 200  # GPU-hours a nightly run of this repository may ask for


def suite_entries(name: str) -> list[str]:
    """The suite's scripts as users pass them from tests/test_suites/ (./llm/x.sh)."""
    text = (SUITES / f"{name}.txt").read_text()
    return ["./" + entry.removeprefix("tests/test_suites/") for _, entry in parse_suite(text)]


def test_nightly_fits_its_budget_through_dryrun1() -> None:
    env = {**os.environ, "DRYRUN": "1", "CONTAINER": "", "ACCOUNT": "", "PARTITION": "",
           "HF_HOME": "/hf", "HF_DATASETS_CACHE": "/hf/ds"}
    for name in ("STEPS_PER_RUN", "MAX_STEPS", "NUM_NODES"):  # the recipes' own defaults
        env.pop(name, None)
    entries = suite_entries("nightly")
    proc = subprocess.run([str(REPO / "tools" / "launch"), *entries], cwd=SUITES, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    per_script = [int(m.group(1)) for m in map(re.compile(r"^\[INFO\]: (\d+) GPUhrs to run ").match, lines) if m]
    assert len(per_script) == len(entries)
    total = int(re.fullmatch(r"\[INFO\]: Total GPU hours: (\d+)", lines[-1]).group(1))
    assert total == sum(per_script)
    assert total <= NIGHTLY_BUDGET, f"nightly needs {total} GPU-hours, over its budget of {NIGHTLY_BUDGET}"
    # lint's budget rule adds up the same numbers
    runner = CliRunner()
    assert runner.invoke(main, ["lint", "--root", str(REPO), "--budget", f"nightly={total}"]).exit_code == 0
    over = runner.invoke(main, ["lint", "--root", str(REPO), "--budget", f"nightly={total - 1}"])
    assert over.exit_code == 1 and f"needs {total} GPU-hours" in over.output
