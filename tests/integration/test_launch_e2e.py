"""End-to-end tests of ``tools/launch`` against the local single-node Slurm.

Every test runs the launcher the way people do -- ``tools/launch ./llm/x.sh``
from ``tests/test_suites`` of a git checkout -- against a fresh copy of this
repository's launch-relevant files (``ray.sub``, ``tests/test_suites``,
``examples``, ``.gitignore``) committed into a new git repository under the
test's temporary folder. The recipes run for real (the CPU stand-in trainer)
with ``STEPS_PER_RUN=2 MAX_STEPS=6``, i.e. three chained runs each.

Assertions are about what a user sees: the contract's stdout lines, exit
status, jobs in the queue, the experiment's ``runs.log``, the driver logs and
the snapshot's ``continue.sh`` and manifest (see ../shared/LAUNCHER_SPEC.md).

Every test gets its own ``SLURM_JOB_SUFFIX`` so singleton chains of different
tests never wait on each other, and every job a test submitted (found by id
and by that suffix) is cancelled when it ends, pass or fail.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from testkit import git

pytestmark = pytest.mark.slurm

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCH = REPO_ROOT / "tools" / "launch"

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

# Variables of the developer's shell that would change what a launch or a
# recipe does; the tests set the ones they need explicitly.
_SCRUBBED_ENV = (
    "DRYRUN", "WATCH", "WATCH_INTERVAL", "EXTRA_ENV", "MOUNTS", "IS_RELEASE",
    "EXCLUDE_GRES", "SLURM_JOB_SUFFIX", "EXTRA_SCRIPT_ARGS", "SANDBOX_CONTAINER",
    "SANDBOX_COMMAND", "SANDBOX_ENV_VARS", "CODE_SNAPSHOT_DIRNAME", "SNAPSHOT_MODE",
    "BATCH_SCRIPT", "NRL_FORCE_FAILING_CHECK", "TEST_DRYRUN", "NUM_NODES",
    "GPUS_PER_NODE", "SEGMENT_SIZE", "NUM_MINUTES", "NUM_RUNS", "CUDA_VISIBLE_DEVICES",
    "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_JOB_NAME", "SLURM_SUBMIT_DIR",
)
_SUBMITTED_RE = re.compile(r"^Submitted batch job (\d+)$", re.MULTILINE)
_STAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]"
JOB_TIMEOUT_S = 180  # generous: other sessions may share the (exclusive) node

# A batch script that only records the job's environment (NUL separated).
ENV_DUMP_SUB = """#!/bin/bash
# e2e test batch script: write the job's environment next to the snapshot.
env -0 > "$SLURM_SUBMIT_DIR/$SLURM_JOB_ID-env.bin"
"""


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _source_files() -> list[str]:
    """Files of COPIED_PATHS that git does not ignore (no per-experiment
    output folders, no __pycache__), as they are in the working tree."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *COPIED_PATHS],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return sorted({p for p in out.split("\0") if p and os.path.lexists(REPO_ROOT / p)})


def make_repo(dest: Path, extra_files: dict[str, str] | None = None) -> Path:
    """A new git repository at ``dest`` holding a copy of the launch-relevant
    files (plus ``extra_files``), everything committed."""
    dest.mkdir(parents=True)
    for rel in _source_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target, follow_symlinks=False)
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
            m = _SUBMITTED_RE.match(line)
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
        self.repo = make_repo(base / "repo", extra_files)
        self.suffix = f"-{re.sub(r'[^A-Za-z0-9]+', '-', tag)[-40:].strip('-')}-{secrets.token_hex(3)}"
        self.submitted: list[str] = []
        hf = base / "hf"
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
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
                        _SUBMITTED_RE.findall(res.stdout))
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


@pytest.fixture
def launcher(local_slurm, tmp_path, request):
    """A private repository copy + launcher runner for one test."""
    lau = Launcher(local_slurm, tmp_path, request.node.name)
    request.addfinalizer(lau.close)
    return lau


@pytest.fixture
def launcher_factory(local_slurm, tmp_path, request):
    """Like ``launcher`` but with extra committed files: ``make(extra_files)``."""
    made = []

    def make(extra_files: dict[str, str] | None = None, tag: str = "") -> Launcher:
        lau = Launcher(local_slurm, tmp_path / f"l{len(made)}", request.node.name + tag, extra_files)
        made.append(lau)
        return lau

    yield make
    for lau in made:
        lau.close()


def _module_launcher(local_slurm, tmp_path_factory, request, tag: str) -> Launcher:
    lau = Launcher(local_slurm, tmp_path_factory.mktemp(tag), tag)
    request.addfinalizer(lau.close)
    return lau


def wait_all(cluster, job_ids, timeout: float = JOB_TIMEOUT_S) -> dict:
    return cluster.wait_for_jobs(job_ids, timeout=timeout)


def read_runs_log(path: Path) -> list[tuple[float, float, str, int, int]]:
    """``<start> <end> <job id> <first step> <last step>`` lines."""
    rows = []
    for line in path.read_text().splitlines():
        start, end, job, first, last = line.split()
        rows.append((float(start), float(end), job, int(first), int(last)))
    return rows


def expected_gpu_hours(repo: Path, name: str, num_runs: int = NUM_RUNS) -> int:
    kind = "vlm" if name.startswith("vlm_") else "llm"
    recipe = repo / "tests" / "test_suites" / kind / f"{name}.sh"
    text = recipe.read_text()
    gpus = int(m.group(1)) if (m := re.search(r"^GPUS_PER_NODE=(\d+)", text, re.M)) else 8
    return num_runs * 1 * gpus * config_value(recipe, "NUM_MINUTES") // 60


def verdict_blocks(lines: list[str]) -> list[tuple[str, list[str]]]:
    """``[METRIC …]``/``[GENERAL FAIL]`` headers with their indented lines."""
    blocks: list[tuple[str, list[str]]] = []
    for line in lines:
        if re.match(r"^\[(METRIC PASS|METRIC FAIL|GENERAL FAIL)\]", line):
            blocks.append((line, []))
        elif blocks and line.startswith("    "):
            blocks[-1][1].append(line)
    return blocks


def manifest_runs(snapshot: Path) -> list[dict]:
    return yaml.safe_load((snapshot / ".nrl_launch.yaml").read_text()).get("runs") or []


# --------------------------------------------------------------------------
# 1. two recipes, NUM_RUNS=3, no WATCH; then continue.sh
# --------------------------------------------------------------------------

CHAIN_RECIPES = (SFT, VLM_SFT)


@pytest.fixture(scope="module")
def chain_launch(local_slurm, tmp_path_factory, request):
    """Launch two recipes (3 chained runs each) and wait for all six jobs."""
    lau = _module_launcher(local_slurm, tmp_path_factory, request, "chain")
    run = lau.run(*CHAIN_RECIPES)
    states = wait_all(local_slurm, run.job_ids) if run.returncode == 0 else {}
    return lau, run, states


def test_launch_prints_contract_lines_and_submits_every_run(chain_launch):
    lau, run, _ = chain_launch
    assert run.returncode == 0, run.describe()
    no_traceback(run.stderr)

    expected: list[str | re.Pattern] = []
    for name, script in zip(CHAIN_RECIPES, run.scripts, strict=True):
        expected.append(f"[INFO]: {expected_gpu_hours(lau.repo, name)} GPUhrs to run {script}")
        for i in range(1, NUM_RUNS + 1):
            expected.append(f"Submitting {i}/{NUM_RUNS} job with 1 nodes for {name}.sh")
            expected.append(_SUBMITTED_RE)
    total = sum(expected_gpu_hours(lau.repo, n) for n in CHAIN_RECIPES)
    expected.append(f"[INFO]: Total GPU hours: {total}")

    assert len(run.lines) == len(expected), run.describe()
    for got, want in zip(run.lines, expected, strict=True):
        if isinstance(want, re.Pattern):
            assert want.fullmatch(got), (got, run.describe())
        else:
            assert got == want, run.describe()

    ids = [int(j) for j in run.job_ids]
    assert len(ids) == 2 * NUM_RUNS and ids == sorted(ids) and len(set(ids)) == len(ids), ids


def test_chained_runs_resume_in_order_and_reach_max_steps(chain_launch, local_slurm):
    lau, run, states = chain_launch
    assert run.returncode == 0, run.describe()
    for job_id, info in states.items():
        assert info is not None and info.state == "COMPLETED", (job_id, info)

    for name in CHAIN_RECIPES:
        job_ids = run.jobs_of(name)
        assert len(job_ids) == NUM_RUNS, run.describe()
        rows = read_runs_log(run.exp_dir(name) / "runs.log")
        assert [r[2] for r in rows] == job_ids, rows
        for before, after in itertools.pairwise(rows):
            assert after[0] >= before[1], f"{name}: runs overlap: {before} / {after}"
        assert [(r[3], r[4]) for r in rows] == [(1, 2), (3, 4), (5, 6)], rows

        for job_id in job_ids:
            assert run.driver_log(name, job_id).is_file(), (name, job_id)
        last_log = run.driver_log(name, job_ids[-1]).read_text()
        assert "Metric Checks" in last_log, last_log
        checks = last_log.split("Metric Checks", 1)[1]
        assert "[PASS]" in checks and "[FAIL]" not in checks, last_log

        # the manifest records the launcher's runs, in order
        runs = manifest_runs(run.snapshot(name))
        assert [(r["job_id"], r["via"]) for r in runs] == [(j, "launcher") for j in job_ids], runs
        # and the job names form one singleton chain per experiment
        for job_id in job_ids:
            assert local_slurm.job_state(job_id).fields.get("JobName") == f"acct:{name}{run.suffix}"


@pytest.fixture(scope="module")
def continued(chain_launch, local_slurm, tmp_path_factory):
    """Run the first experiment's continue.sh from an unrelated folder, with
    a minimal environment, and wait for the job it submits."""
    lau, run, _ = chain_launch
    assert run.returncode == 0, run.describe()
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = {"PATH": os.environ["PATH"], "HOME": str(elsewhere),
           "SLURM_CONF": str(local_slurm.slurm_conf)}
    script = run.snapshot(SFT) / "continue.sh"
    res = subprocess.run(["bash", str(script)], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=60)
    job_ids = _SUBMITTED_RE.findall(res.stdout)
    lau.track(*job_ids)
    states = wait_all(local_slurm, job_ids) if job_ids else {}
    return run, res, job_ids, states


def test_continue_sh_submits_one_more_chained_run(continued, local_slurm):
    run, res, job_ids, states = continued
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert len(job_ids) == 1 and res.stdout.strip() == f"Submitted batch job {job_ids[0]}", res.stdout
    job = job_ids[0]
    assert int(job) > max(int(j) for j in run.job_ids)
    assert states[job] is not None and states[job].state == "COMPLETED", states
    assert states[job].fields.get("JobName") == f"acct:{SFT}{run.suffix}"
    assert run.driver_log(SFT, job).is_file()

    runs = manifest_runs(run.snapshot(SFT))
    assert runs[-1]["job_id"] == job and runs[-1]["via"] == "continue.sh", runs
    assert len(runs) == NUM_RUNS + 1, runs


def test_continue_sh_run_after_the_end_exits_early(continued):
    run, res, job_ids, _ = continued
    assert res.returncode == 0 and len(job_ids) == 1, (res.stdout, res.stderr)
    log = run.driver_log(SFT, job_ids[0]).read_text()
    assert f"MAX_STEPS={MAX_STEPS} reached" in log and "exiting early" in log, log
    assert "Metric Checks" in log and "[PASS]" in log.split("Metric Checks")[-1], log
    rows = read_runs_log(run.exp_dir(SFT) / "runs.log")
    assert len(rows) == NUM_RUNS and max(r[4] for r in rows) == MAX_STEPS, rows


# --------------------------------------------------------------------------
# 2./3. WATCH
# --------------------------------------------------------------------------

WATCH_RECIPES = (QUICK, DPO_1N)


@pytest.fixture(scope="module")
def watched_launch(local_slurm, tmp_path_factory, request):
    lau = _module_launcher(local_slurm, tmp_path_factory, request, "watch")
    run = lau.run(*WATCH_RECIPES, WATCH="1", WATCH_INTERVAL="1")
    return lau, run


def test_watch_follows_jobs_and_prints_pass_verdicts(watched_launch):
    lau, run = watched_launch
    assert run.returncode == 0, run.describe()
    no_traceback(run.stderr)
    assert len(run.job_ids) == 2 * NUM_RUNS, run.describe()
    # WATCH returned only once every job had left the queue
    assert lau.queued_names() == []

    lines = run.lines
    total = sum(expected_gpu_hours(lau.repo, n) for n in WATCH_RECIPES)
    assert lines[-1] == f"[INFO]: Total GPU hours: {total}", run.describe()
    last_submitted = max(i for i, line in enumerate(lines) if _SUBMITTED_RE.fullmatch(line))
    tail = lines[last_submitted + 1:-1]
    blocks = verdict_blocks(tail)
    assert [head for head, _ in blocks] == [f"[METRIC PASS]    {n}" for n in WATCH_RECIPES], run.describe()
    # nothing but the verdict blocks between the last submission and the total
    assert len(tail) == len(blocks) + sum(len(body) for _, body in blocks), run.describe()
    for head, body in blocks:
        assert any(re.match(r"^    \[PASS\] \S+@6 = ", line) for line in body), (head, body)
        assert not any("[FAIL]" in line for line in body), (head, body)

    finished = [j for line in run.stderr.splitlines()
                if (m := re.match(rf"^{_STAMP} Finished jobs: (.*)$", line)) for j in m.group(1).split()]
    assert sorted(finished, key=int) == sorted(run.job_ids, key=int), run.stderr
    remaining = [line for line in run.stderr.splitlines() if re.match(rf"^{_STAMP} Remaining: \d+$", line)]
    assert remaining and remaining[-1].endswith("Remaining: 0"), run.stderr


def test_watch_verdict_lists_only_metric_lines(watched_launch):
    _, run = watched_launch
    assert run.returncode == 0, run.describe()
    blocks = verdict_blocks(run.lines)
    assert len(blocks) == len(WATCH_RECIPES), run.describe()
    for head, body in blocks:
        assert body and all(re.match(r"^    \[(PASS|FAIL)\] ", line) for line in body), (head, body)


@pytest.mark.parametrize("how", [
    pytest.param({"NRL_FORCE_FAILING_CHECK": "1"}, id="NRL_FORCE_FAILING_CHECK"),
    pytest.param({"EXTRA_SCRIPT_ARGS": "checks.train/accuracy.min=2"}, id="EXTRA_SCRIPT_ARGS"),
])
def test_watch_reports_metric_fail_and_exits_1(launcher, local_slurm, how):
    run = launcher.run(GRPO_LONG, WATCH="1", WATCH_INTERVAL="1", **how)
    assert run.returncode == 1, run.describe()
    no_traceback(run.stderr)
    assert len(run.job_ids) == NUM_RUNS, run.describe()
    assert launcher.queued_names() == []
    blocks = verdict_blocks(run.lines)
    assert [head for head, _ in blocks] == [f"[METRIC FAIL]    {GRPO_LONG}"], run.describe()
    body = blocks[0][1]
    assert any(re.match(r"^    \[FAIL\] train/accuracy@6 = .* > 2", line) for line in body), body
    # the failing check is the last run's (the one reaching MAX_STEPS) exit status
    states = {j: local_slurm.job_state(j) for j in run.job_ids}
    assert [states[j].state for j in run.job_ids] == ["COMPLETED", "COMPLETED", "FAILED"], states


@pytest.mark.parametrize("how", [
    pytest.param({"NRL_FORCE_FAILING_CHECK": "1"}, id="NRL_FORCE_FAILING_CHECK"),
    pytest.param({"EXTRA_SCRIPT_ARGS": "checks.train/accuracy.min=2"}, id="EXTRA_SCRIPT_ARGS"),
])
def test_relaunch_after_the_end_keeps_the_failing_verdict(launcher, how):
    """Relaunching a finished experiment (snapshot reused, every run exits
    early at MAX_STEPS) judges the same checks as the launch that trained."""
    one_run = {"STEPS_PER_RUN": str(MAX_STEPS), "WATCH": "1", "WATCH_INTERVAL": "1", **how}
    first = launcher.run(DPO_1N, **one_run)
    assert first.returncode == 1 and f"[METRIC FAIL]    {DPO_1N}" in first.lines, first.describe()

    again = launcher.run(DPO_1N, **one_run)
    assert "Using existing code snapshot" in again.stderr, again.describe()
    assert len(again.job_ids) == 1, again.describe()
    log = again.driver_log(DPO_1N, again.job_ids[0]).read_text()
    assert "exiting early" in log, log
    assert again.returncode == 1, again.describe()
    blocks = verdict_blocks(again.lines)
    assert [head for head, _ in blocks] == [f"[METRIC FAIL]    {DPO_1N}"], again.describe()


# --------------------------------------------------------------------------
# 4. job name, gres, EXTRA_ENV as seen by Slurm and inside the job
# --------------------------------------------------------------------------

OPTION_RECIPES = (GRPO_LONG, QUICK)
EXTRA_ENV = 'FOO=bar BAZ="two words"'


def _read_env_dump(path: Path) -> dict[str, str]:
    env = {}
    for item in path.read_bytes().decode().split("\0"):
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    return env


@pytest.mark.parametrize("exclude_gres", [False, True], ids=["gres", "EXCLUDE_GRES"])
def test_job_name_gres_and_extra_env_reach_the_job(launcher_factory, local_slurm, exclude_gres):
    lau = launcher_factory({"env-dump.sub": ENV_DUMP_SUB})
    extra = {"BATCH_SCRIPT": "env-dump.sub", "EXTRA_ENV": EXTRA_ENV,
             "STEPS_PER_RUN": str(MAX_STEPS)}  # one run per recipe is enough here
    if exclude_gres:
        extra["EXCLUDE_GRES"] = "1"
    run = lau.run(*OPTION_RECIPES, **extra)
    assert run.returncode == 0, run.describe()
    assert len(run.job_ids) == len(OPTION_RECIPES), run.describe()
    states = wait_all(local_slurm, run.job_ids)

    for name in OPTION_RECIPES:
        (job,) = run.jobs_of(name)
        info = states[job]
        assert info is not None and info.state == "COMPLETED", info
        shown = local_slurm.run("scontrol", "show", "job", "-o", job).stdout
        assert f" JobName=acct:{name}{run.suffix} " in f" {shown} ", shown
        gres_fields = " ".join(f"{k}={v}" for k, v in info.fields.items()
                               if k in ("TRES", "TresPerNode", "TresPerJob", "TresPerTask", "Gres"))
        gpus = 4 if name == QUICK else 8
        if exclude_gres:
            assert "gpu" not in gres_fields, shown
        else:
            assert re.search(rf"gres[:/]gpu[:=]{gpus}\b", gres_fields), shown

        dump = run.snapshot(name) / f"{job}-env.bin"
        assert dump.is_file(), sorted(p.name for p in run.snapshot(name).iterdir())
        env = _read_env_dump(dump)
        assert env.get("FOO") == "bar" and env.get("BAZ") == "two words", {
            k: env.get(k) for k in ("FOO", "BAZ")}
        assert env.get("SLURM_JOB_NAME") == f"acct:{name}{run.suffix}"
        assert env.get("HF_HOME") == run.env["HF_HOME"]
        assert env.get("GPUS_PER_NODE") == str(gpus)
        if exclude_gres:
            assert "CUDA_VISIBLE_DEVICES" not in env, env.get("CUDA_VISIBLE_DEVICES")
        else:
            assert env.get("CUDA_VISIBLE_DEVICES") == ",".join(str(i) for i in range(gpus))
        if name == GRPO_LONG:  # JOB_REAPER_COMMENT -> --comment
            # (read from the raw line: the helper's fields stop at a space)
            assert (' Comment={"Reaper":{"exemptIdleTimeMins":"120",'
                    '"reason":"long rollouts"}} ') in shown, shown


# --------------------------------------------------------------------------
# 5./6. pre-flight and DRYRUN=2
# --------------------------------------------------------------------------

def _assert_slurm_rejection(lau: Launcher, run: LaunchRun) -> None:
    assert run.returncode == 1, run.describe()
    no_traceback(run.stderr)
    errors = [line for line in run.stderr.splitlines() if line.startswith("[ERROR]:")]
    assert len(errors) == 1, run.stderr
    assert DPO_2N in errors[0], run.stderr
    assert "segment" in run.stderr, run.stderr  # Slurm's own reason
    assert "Submitted batch job" not in run.stdout, run.describe()
    assert "Total GPU hours" not in run.stdout, run.describe()
    assert lau.queued_names() == [], "jobs of a rejected launch are queued"
    assert lau.job_names() == {}, "a rejected launch submitted jobs"


def test_rejected_request_stops_the_whole_launch(launcher):
    # the valid recipe comes first: nothing of it may be queued either
    run = launcher.run(SFT, DPO_2N)
    _assert_slurm_rejection(launcher, run)


def test_dryrun_2_snapshots_without_submitting(launcher):
    run = launcher.run(SFT, VLM_SFT, DRYRUN="2")
    assert run.returncode == 0, run.describe()
    no_traceback(run.stderr)
    expected = []
    for name, script in zip((SFT, VLM_SFT), run.scripts, strict=True):
        snap = run.snapshot(name)
        expected.append(f"[INFO]: {expected_gpu_hours(launcher.repo, name)} GPUhrs to run {script}")
        for i in range(1, NUM_RUNS + 1):
            expected.append(f"Submitting {i}/{NUM_RUNS} job with 1 nodes for {name}.sh")
            expected.append(f"[DRY_RUN]: Skipping submission of {script}. Find the snapshot at "
                            f"{snap} and manually launch with 'bash continue.sh'")
        assert (snap / "ray.sub").is_file()
        assert (snap / "tests" / "test_suites" / script).is_file()
        cont = snap / "continue.sh"
        assert cont.is_file() and os.access(cont, os.X_OK), cont
        syntax = subprocess.run(["bash", "-n", str(cont)], capture_output=True, text=True)
        assert syntax.returncode == 0, syntax.stderr
    total = sum(expected_gpu_hours(launcher.repo, n) for n in (SFT, VLM_SFT))
    expected.append(f"[INFO]: Total GPU hours: {total}")
    assert run.lines == expected, run.describe()
    assert launcher.queued_names() == []
    assert launcher.job_names() == {}


def test_dryrun_2_runs_the_preflight(launcher):
    """DRYRUN=2 with a reachable controller asks Slurm (--test-only) too and
    warns about a rejection; it submits nothing, so the plan still succeeds."""
    run = launcher.run(SFT, DPO_2N, DRYRUN="2")
    assert run.returncode == 0, run.describe()
    no_traceback(run.stderr)
    warnings = [line for line in run.stderr.splitlines() if line.startswith("[WARNING]: pre-flight:")]
    assert len(warnings) == 1 and DPO_2N in warnings[0] and "segment" in run.stderr, run.stderr
    assert "Submitted batch job" not in run.stdout, run.describe()
    assert lau_nothing_submitted(launcher)


def lau_nothing_submitted(lau: Launcher) -> bool:
    return lau.queued_names() == [] and lau.job_names() == {}
