"""Bisecting with the launcher (spec section 9), for real.

A repository that carries the launcher in its own ``tools/`` gets a history of
five commits; the third one breaks a metric check of a recipe. ``git bisect
run`` drives a script that does what the team's bisect helper does: copy
``tools/`` to an untracked ``tools.bisect/``, make a dirty edit to the tracked
recipe, and run ``bash tools.bisect/launch <recipe>`` with ``WATCH=1`` and
``CODE_SNAPSHOT_DIRNAME=code_snapshots_bisect/<%h-%f>``. Bisect reads only the
exit status, so it must find the third commit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from testkit import QUICK, REPO, Launcher, git, no_traceback

pytestmark = pytest.mark.slurm

RECIPE = f"tests/test_suites/llm/{QUICK}.sh"
RECIPE_YAML = f"examples/configs/recipes/llm/{QUICK}.yaml"
MARKER_VERSION = "0.1.0+bisect-copy"  # proves which copy of the package ran

BISECT_SCRIPT = """#!/bin/bash
# What the team's bisect helper does at each step.
set -u
cd "$REPO" || exit 125
rm -rf tools.bisect && cp -r tools tools.bisect
sed -i 's/^MAX_STEPS=.*/MAX_STEPS=2  # bisect: one short run/' "$RECIPE"   # a dirty tracked edit
export CODE_SNAPSHOT_DIRNAME="code_snapshots_bisect/$(git log -1 --format=%h-%f)"
WATCH=1 WATCH_INTERVAL=1 bash tools.bisect/launch "$RECIPE"
status=$?
git checkout -q -- "$RECIPE"
exit $status
"""


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def history(repo: Path) -> list[str]:
    """Five commits on top of the copy; the third breaks the recipe's metric check."""
    shutil.copy2(REPO / "tools" / "launch", repo / "tools" / "launch")
    shutil.copytree(REPO / "tools" / "nrl_launch", repo / "tools" / "nrl_launch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = repo / "tools" / "nrl_launch" / "__init__.py"
    init.write_text(re.sub(r'__version__ = ".*"', f'__version__ = "{MARKER_VERSION}"', init.read_text()))
    commits = [commit_all(repo, "Add the launcher")]
    (repo / "NOTES.md").write_text("notes\n")
    commits.append(commit_all(repo, "Add notes"))
    with open(repo / RECIPE_YAML, "a") as handle:
        handle.write("checks:\n  train/accuracy:\n    min: 2\n")  # no model reaches accuracy 2
    commits.append(commit_all(repo, "Tighten the accuracy check"))
    (repo / "NOTES.md").write_text("more notes\n")
    commits.append(commit_all(repo, "Extend the notes"))
    (repo / "examples" / "README.txt").write_text("examples\n")
    commits.append(commit_all(repo, "Describe the examples"))
    return commits


def test_git_bisect_run_finds_the_commit_that_breaks_a_metric(local_slurm, tmp_path: Path, request) -> None:
    lau = Launcher(local_slurm, tmp_path, "bisect")
    request.addfinalizer(lau.close)
    (lau.repo / "tools").mkdir()
    commits = history(lau.repo)
    script = tmp_path / "bisect-step.sh"
    script.write_text(BISECT_SCRIPT)
    env = {**lau.env, "REPO": str(lau.repo), "RECIPE": RECIPE}
    git(lau.repo, "bisect", "start", commits[-1], commits[0])
    done = subprocess.run(["git", "bisect", "run", "bash", str(script)], cwd=lau.repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    no_traceback(done.stdout + done.stderr)
    assert f"{commits[2]} is the first bad commit" in done.stdout, done.stdout

    snapshots = sorted((lau.repo / "code_snapshots_bisect").iterdir())
    assert len(snapshots) >= 2, done.stdout  # bisect tested at least two commits
    for folder in snapshots:  # one snapshot per tested commit, named after it
        short = folder.name.split("-", 1)[0]
        assert any(c.startswith(short) for c in commits[1:4]), folder
        snapshot = folder / QUICK
        manifest = yaml.safe_load((snapshot / ".nrl_launch.yaml").read_text())
        assert manifest["launcher_version"] == MARKER_VERSION  # the copied tools.bisect package ran
        assert "MAX_STEPS=2  # bisect" in (snapshot / RECIPE).read_text()  # with the dirty edit
        assert manifest["source"]["dirty_files"] == [RECIPE]
    # bisect left the tree as it found it, but for the untracked copies
    git(lau.repo, "bisect", "reset")
    assert git(lau.repo, "status", "--porcelain", "--untracked-files=no") == ""
