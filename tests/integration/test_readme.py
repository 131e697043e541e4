"""The README's first session runs as written, on the local cluster.

The shell block after ``<!-- walkthrough -->`` in README.md is run with
``bash -e`` from the root of a fresh copy of the repository (recipes,
examples, ``ray.sub`` and ``tools/``, committed), as a newcomer would type it:
cluster, a DRYRUN=1 estimate of the nightly suite, a launch followed to its
verdict, ``nrl-launch status``, ``continue.sh`` and ``nrl-launch watch``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from testkit import REPO, Launcher, git, no_traceback

pytestmark = pytest.mark.slurm

EXPERIMENT = "sft-qwen2.5-1.5b-1n4g-fsdp2tp1-quick"


def walkthrough() -> str:
    """The README's walkthrough block."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)```", text, re.S)
    assert match, "README.md has no walkthrough block"
    return match.group(1)


def test_the_readme_first_session_works_as_written(local_slurm, tmp_path: Path, request) -> None:
    lau = Launcher(local_slurm, tmp_path, "readme")
    request.addfinalizer(lau.close)
    (lau.repo / "tools").mkdir(exist_ok=True)
    for name in ("launch", "local-slurm", "code_snapshot.sh"):
        shutil.copy2(REPO / "tools" / name, lau.repo / "tools" / name)
    shutil.copytree(REPO / "tools" / "nrl_launch", lau.repo / "tools" / "nrl_launch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    git(lau.repo, "add", "-A")
    git(lau.repo, "commit", "-q", "-m", "the launcher")
    # the user's shell: no launch variables of the test session (the block sets its own)
    env = {k: v for k, v in lau.env.items() if k not in ("STEPS_PER_RUN", "MAX_STEPS", "CONTAINER", "ACCOUNT",
                                                         "PARTITION", "SLURM_CONF")}
    env["LOCAL_SLURM_STATE"] = str(local_slurm.state_dir)  # the test session's cluster: `up` is a no-op
    done = subprocess.run(["bash", "-e", "-c", walkthrough()], cwd=lau.repo, env=env, capture_output=True,
                          text=True, timeout=600)
    no_traceback(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(re.fullmatch(r"\[INFO\]: Total GPU hours: \d+", line) for line in lines)  # the estimate
    assert lines.count(f"[METRIC PASS]    {EXPERIMENT}") == 2  # the launch, then the watch after continue.sh
    # the status row (a long name may be cut in the middle to fit 120 columns)
    assert re.search(rf"^{re.escape(EXPERIMENT[:12])}\S*\s+\w{{12}}\s+no\s+2\s.*\s4/4\s+PASS\s", done.stdout,
                     re.M), done.stdout
    assert re.search(r"^Submitted batch job \d+$", done.stdout, re.M)
