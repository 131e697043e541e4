"""The README's commands run as written, on the local cluster.

* Its first command -- install, bring up the local Slurm, launch the main
  job to its verdict -- runs as typed in a fresh copy of this checkout, with
  ``PATH`` set so that ``python3`` is Debian's own ``/usr/bin/python3``
  (which refuses ``pip install``, PEP 668), on a cluster of its own
  (``LOCAL_SLURM_STATE``/``LOCAL_SLURM_PORT`` in its environment: the
  command's text is the README's).
* Its test command is what CI runs (``.ci/run``).
* The shell block after ``<!-- walkthrough -->`` is run with ``bash -e``
  from the root of a fresh copy of the repository (recipes, examples,
  ``ray.sub`` and ``tools/``, committed), as a newcomer would type it:
  cluster, a DRYRUN=1 estimate of the nightly suite, a launch followed to its
  verdict, ``nrl-launch status``, ``continue.sh`` and ``nrl-launch watch``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from testkit import LOCAL_SLURM, REPO, SYSTEM_PATH, Launcher, git, no_traceback, private_env

pytestmark = pytest.mark.slurm

EXPERIMENT = "sft-qwen2.5-1.5b-1n4g-fsdp2tp1-quick"
MAIN_JOB = "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.v2"
DEBIAN_PYTHON = Path("/usr/bin/python3")


def readme_commands() -> list[str]:
    """The README's two commands (set up and run the main job; run every
    test): its indented lines before the first ``---``."""
    head = (REPO / "README.md").read_text().split("\n---\n", 1)[0]
    return [line[4:] for line in head.splitlines() if line.startswith("    ") and line.strip()]


def fresh_copy(dest: Path) -> Path:
    """A new git repository at ``dest`` holding this checkout's files as a
    clone would (what git does not ignore, as in the working tree), committed."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True, timeout=60).stdout
    for rel in sorted({p for p in listed.split("\0") if p and os.path.lexists(REPO / p)}):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel, follow_symlinks=False)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "a fresh clone")
    return dest


@pytest.mark.cluster_free
def test_the_readme_has_its_two_commands_and_ci_runs_the_test_command() -> None:
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert "tools/launch tests/test_suites/llm/" in commands[0]
    assert commands[1].endswith("tools/run-tests"), commands[1]
    ci_lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))]
    assert ci_lines == [commands[1]], ci_lines


@pytest.mark.skipif(not (DEBIAN_PYTHON.is_file() and list(Path("/usr/lib").glob("python3.*/EXTERNALLY-MANAGED"))),
                    reason="no Debian python3 that refuses pip installs (PEP 668) on this machine")
def test_the_readme_first_command_works_with_debians_own_python(tmp_path_factory: pytest.TempPathFactory,
                                                                 request: pytest.FixtureRequest) -> None:
    base = tmp_path_factory.mktemp("rd")
    repo = fresh_copy(base / "repo")
    state, bin_dir = base / "st", base / "bin"
    env = {k: v for k, v in private_env(state).items()
           if not k.startswith(("PYENV", "VIRTUAL_ENV", "NRL_", "PYTHON", "PIP_"))}
    # python3 is Debian's; nrl-launch's link goes to a folder of the test's (on PATH)
    env.update(PATH=f"{bin_dir}:{SYSTEM_PATH}", NRL_INSTALL_BIN_DIR=str(bin_dir), PIP_DISABLE_PIP_VERSION_CHECK="1")
    found = subprocess.run(["bash", "-c", "command -v python3"], env=env, capture_output=True, text=True)
    assert found.stdout.strip() in (str(DEBIAN_PYTHON), "/bin/python3"), found.stdout
    request.addfinalizer(lambda: subprocess.run([str(LOCAL_SLURM), "--state", str(state), "down"], env=env,
                                                capture_output=True, timeout=120))

    done = subprocess.run(["bash", "-c", readme_commands()[0]], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=1200)
    no_traceback(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    lines = done.stdout.splitlines()
    assert f"[METRIC PASS]    {MAIN_JOB}" in lines, done.stdout[-3000:]
    assert lines[-1] == "[INFO]: All tests passed. Exiting with status 0.", done.stdout[-3000:]
    # the checkout's own environment, made by Debian's python3 ...
    cfg = (repo / ".venv" / "pyvenv.cfg").read_text()
    assert re.search(r"^home = /(usr/)?bin$", cfg, re.M), cfg
    # ... and nrl-launch on PATH: it runs that environment's package (here, of this copy)
    assert (bin_dir / "nrl-launch").resolve() == (repo / ".venv" / "bin" / "nrl-launch").resolve()
    status = subprocess.run(["bash", "-c", 'eval "$(tools/local-slurm status | tail -n 1)" && '
                             f"nrl-launch status --format json {MAIN_JOB}"],
                            cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert MAIN_JOB in status.stdout and str(repo) in status.stdout, status.stdout


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
    # the status row: the whole name (never cut), commit, not dirty, 2 runs, steps, WATCH's verdict
    assert re.search(rf"^{re.escape(EXPERIMENT)}\s+\w{{12}}\s+no\s+2\s.*\s4/4\s+METRIC PASS\s", done.stdout,
                     re.M), done.stdout
    assert re.search(r"^Submitted batch job \d+$", done.stdout, re.M)
