"""End-to-end helpers: a private copy of this repository launched on the local Slurm."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from nrl_launch.experiment.manifest import MANIFEST_NAME
from testkit.repos import REPO, SCRUBBED_ENV, bash_gpu_hours, git

# ---------------------------------------------------------------- end to end, on the local Slurm
#
# Each end-to-end test launches in a private git repository holding a copy of
# this repository's launch-relevant files, the way people type it:
# ``tools/launch ./llm/x.sh`` from ``tests/test_suites``.

LAUNCH = REPO / "tools" / "launch"

# The parts of this repository a launch needs (copied into each test's repo).
COPIED_PATHS = ("ray.sub", ".gitignore", "tests/test_suites", "examples")

# One-node recipes (the local cluster has a single node) ...
SFT = "sft-llama3.1-8b-instruct-1n8g-fsdp2tp1.v2"
VLM_SFT = "vlm_sft-qwen2.5-vl-3b-instruct-1n8g-dtensor2tp1"
QUICK = "sft-qwen2.5-1.5b-1n4g-fsdp2tp1-quick"  # GPUS_PER_NODE=4
DPO_1N = "dpo-qwen2.5-1.5b-1n8g-dtensor2tp1-actckpt"
GRPO_LONG = "grpo-qwen2.5-1.5b-1n8g-megatron-long"  # has JOB_REAPER_COMMENT
# ... and one Slurm 22.05 rejects (SEGMENT_SIZE=2 -> --segment=2, 2 nodes).
DPO_2N = "dpo-llama3.1-8b-instruct-2n8g-tp4pp2-sp"

STEPS_PER_RUN, MAX_STEPS, NUM_RUNS = 2, 6, 3
SUBMITTED_RE = re.compile(r"^Submitted batch job (\d+)$", re.MULTILINE)
STAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]"
JOB_TIMEOUT_S = 180  # generous: other sessions may share the (exclusive) node

def _launch_files() -> list[str]:
    """Files of COPIED_PATHS that git does not ignore (no per-experiment
    output folders, no __pycache__), as they are in the working tree."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *COPIED_PATHS],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return sorted({p for p in out.split("\0") if p and os.path.lexists(REPO / p)})


def copy_launch_repo(dest: Path, extra_files: dict[str, str] | None = None) -> Path:
    """A new git repository at ``dest`` holding a copy of the launch-relevant
    files (plus ``extra_files``), everything committed."""
    dest.mkdir(parents=True)
    for rel in _launch_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target, follow_symlinks=False)
    for rel, text in (extra_files or {}).items():
        (dest / rel).write_text(text)
        (dest / rel).chmod(0o755)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "e2e copy of the recipes")
    return dest


def script_arg(name: str) -> str:
    """The recipe path as typed from tests/test_suites."""
    return f"./{'vlm' if name.startswith('vlm_') else 'llm'}/{name}.sh"


def config_value(recipe: Path, key: str) -> int:
    m = re.search(rf"^{key}=(\d+)", recipe.read_text(), re.MULTILINE)
    assert m, f"{recipe}: no literal {key}= in the CONFIG block"
    return int(m.group(1))


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


@dataclass
class LaunchRun:
    """One finished ``tools/launch`` invocation."""

    repo: Path
    scripts: tuple[str, ...]
    env: dict
    returncode: int
    stdout: str
    stderr: str
    job_ids: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def suffix(self) -> str:
        return self.env["SLURM_JOB_SUFFIX"]

    def snapshot(self, name: str) -> Path:
        return self.repo / "code_snapshots" / name

    def exp_dir(self, name: str) -> Path:
        kind = "vlm" if name.startswith("vlm_") else "llm"
        return self.snapshot(name) / "tests" / "test_suites" / kind / name

    def jobs_of(self, name: str) -> list[str]:
        """Job ids printed after the ``Submitting`` lines of ``name``."""
        ids, current = [], None
        for line in self.lines:
            m = re.match(r"^Submitting \d+/\d+ job with \d+ nodes for (\S+)\.sh$", line)
            if m:
                current = m.group(1)
                continue
            m = SUBMITTED_RE.match(line)
            if m and current == name:
                ids.append(m.group(1))
        return ids

    def driver_log(self, name: str, job_id: str) -> Path:
        return self.snapshot(name) / f"{job_id}-logs" / "ray-driver.log"

    def describe(self) -> str:
        return (f"exit {self.returncode}\n--- stdout ---\n{self.stdout}"
                f"--- stderr ---\n{self.stderr}")


class Launcher:
    """Runs the launcher in a private copy of the repository and cleans up
    every job it (or a test through :meth:`track`) put in the queue."""

    def __init__(self, cluster, base: Path, tag: str, extra_files: dict[str, str] | None = None):
        self.cluster = cluster
        self.base = base
        self.repo = copy_launch_repo(base / "repo", extra_files)
        self.suffix = f"-{re.sub(r'[^A-Za-z0-9]+', '-', tag)[-40:].strip('-')}-{secrets.token_hex(3)}"
        self.submitted: list[str] = []
        hf = base / "hf"
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env.update(
            CONTAINER="", ACCOUNT="acct", PARTITION=cluster.partition,
            HF_HOME=str(hf), HF_DATASETS_CACHE=str(hf / "datasets"),
            STEPS_PER_RUN=str(STEPS_PER_RUN), MAX_STEPS=str(MAX_STEPS),
            SLURM_CONF=str(cluster.slurm_conf), SLURM_JOB_SUFFIX=self.suffix,
        )
        self.env = env

    @property
    def suite_dir(self) -> Path:
        return self.repo / "tests" / "test_suites"

    def run(self, *names: str, timeout: float = 240, **env_overrides: str) -> LaunchRun:
        scripts = tuple(script_arg(n) for n in names)
        env = {**self.env, **env_overrides}
        try:
            res = subprocess.run([str(LAUNCH), *scripts], cwd=self.suite_dir, env=env,
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"tools/launch {' '.join(scripts)} did not finish in {timeout}s:\n"
                        f"{e.stdout}\n{e.stderr}")
        run = LaunchRun(self.repo, scripts, env, res.returncode, res.stdout, res.stderr,
                        SUBMITTED_RE.findall(res.stdout))
        self.track(*run.job_ids)
        return run

    def track(self, *job_ids: str) -> None:
        self.submitted.extend(job_ids)

    def job_names(self) -> dict[str, str]:
        """Every job Slurm still remembers (queued or finished) whose name
        carries this launcher's suffix: {job id: name}."""
        res = self.cluster.run("scontrol", "-o", "show", "job")
        found = {}
        for line in res.stdout.splitlines():
            m = re.search(r"\bJobId=(\d+) JobName=(\S+)", line)
            if m and m.group(2).endswith(self.suffix):
                found[m.group(1)] = m.group(2)
        return found

    def queued_names(self) -> list[str]:
        """``squeue --me -h -o %j`` names carrying this launcher's suffix."""
        res = self.cluster.run("squeue", "--me", "-h", "-o", "%j")
        assert res.returncode == 0, res.stderr
        return [n for n in res.stdout.split() if n.endswith(self.suffix)]

    def close(self) -> None:
        res = self.cluster.run("squeue", "-h", "-o", "%i %j")
        ours = set(self.submitted)
        for line in res.stdout.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[1].endswith(self.suffix):
                ours.add(parts[0])
        if ours:
            self.cluster.run("scancel", *sorted(ours))


def wait_all(cluster, job_ids, timeout: float = JOB_TIMEOUT_S) -> dict:
    return cluster.wait_for_jobs(job_ids, timeout=timeout)


def read_runs_log(path: Path) -> list[tuple[float, float, str, int, int]]:
    """``<start> <end> <job id> <first step> <last step>`` lines."""
    rows = []
    for line in path.read_text().splitlines():
        start, end, job, first, last = line.split()
        rows.append((float(start), float(end), job, int(first), int(last)))
    return rows


def expected_gpu_hours(repo: Path, name: str) -> int:
    """What a launch of recipe ``name`` must print, its NUM_RUNS being the end-to-end ``NUM_RUNS``."""
    recipe = repo / "tests" / "test_suites" / script_arg(name)
    return bash_gpu_hours(recipe, STEPS_PER_RUN=str(STEPS_PER_RUN), MAX_STEPS=str(MAX_STEPS))


def verdict_blocks(lines: list[str]) -> list[tuple[str, list[str]]]:
    """WATCH's ``[WATCH]: Checking <exp>`` sections: (verdict line, evidence lines)."""
    blocks: list[tuple[str, list[str]]] = []
    index = 0
    while index < len(lines):
        if lines[index].startswith("[WATCH]: Checking ") and index + 1 < len(lines):
            blocks.append((lines[index + 1], []))
            index += 2
            continue
        if blocks and not lines[index].startswith("[INFO]: "):
            blocks[-1][1].append(lines[index])
        index += 1
    return blocks


def manifest_runs(snapshot: Path) -> list[dict]:
    """The runs a snapshot's manifest records (read as YAML, independently of the launcher): its
    entries with a ``job_id`` (a launch's plan and a cancellation have none)."""
    entries = yaml.safe_load((snapshot / MANIFEST_NAME).read_text()).get("runs") or []
    return [entry for entry in entries if "job_id" in entry]




