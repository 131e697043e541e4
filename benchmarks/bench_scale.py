#!/usr/bin/env python3
"""A nightly's scale on a real controller: launch, faults, a killed launch, status.

On a local Slurm of its own (``tools/local-slurm``: one node, partition DOWN so
that jobs queue but never run, MaxJobCount raised), in a generated repository
of ``--experiments`` recipes of ``--runs`` runs each:

* **floor**: the same submissions as a plain sequential bash loop of
  ``sbatch --parsable`` (the options, working folders and job environments of
  a ``DRYRUN=2`` launch), the physical floor on this controller;
* **launch**: ``tools/launch`` of the suite, snapshots and pre-flight included;
  floor and launch alternate ``--reps`` times (the machine's load drifts),
  printing each pair's ratio and their median (goal: at most 1.0);
* **faults**: the same launch with an ``sbatch`` first on PATH that fails every
  10th call, half of those after really queueing the job; prints queued /
  expected / duplicates / unrecorded (goal: exact) and the exit status (goal 0);
* **kill**: the launch SIGKILLed once half of its jobs are queued, then run
  again as typed; the same counts (goal: exact);
* **status**: ``nrl-launch status`` over ``--status-experiments`` experiments of
  ``--runs`` runs each, launched for it (goal: under 1 s).

    python3 benchmarks/bench_scale.py [--experiments 200] [--runs 5] [--status-experiments 1000] [--reps 3]
                                      [--state DIR] [--port N] [--phases launch,faults,kill,status] [--keep]

The repositories hold the recipes and ``ray.sub`` (each snapshot holds them all:
a repository of more files costs every launch more, the floor nothing).

The cluster is made in ``--state`` (default /tmp/nrl-slurm-bench, port 6850)
and taken down at the end unless ``--keep`` or it was already running; each
phase starts on a controller restarted with its job state wiped (a controller
holding more jobs answers more slowly). Never point it at a cluster that runs
other work: it forgets every job.
Needs root (tools/local-slurm) and the test extra (``tests/testkit/faults.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from testkit.cluster import parse_export_line  # noqa: E402  (after the path above)
from testkit.faults import census, install_sbatch  # noqa: E402

LAUNCH = REPO / "tools" / "launch"
LOCAL_SLURM = REPO / "tools" / "local-slurm"
ACCOUNT = "bench"
RECIPE = """#!/bin/bash
# ===== BEGIN CONFIG =====
NUM_NODES=1
GPUS_PER_NODE=8
NUM_RUNS={runs}
NUM_MINUTES=30
# ===== END CONFIG =====
echo "recipe {name}"
"""


def sh(*argv: str, env: dict[str, str], cwd: Path | None = None, check: bool = True) -> str:
    done = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def cluster_up(state: Path, port: int) -> tuple[dict[str, str], bool]:
    """The environment of a bench cluster (SLURM_CONF set), and whether this run started it."""
    env = {**os.environ, "LOCAL_SLURM_STATE": str(state), "LOCAL_SLURM_PORT": str(port),
           "LOCAL_SLURM_NODES": "1", "LOCAL_SLURM_MAX_JOBS": "200000", "LOCAL_SLURM_VERSION": "22.05"}
    running = subprocess.run([str(LOCAL_SLURM), "status"], env=env, capture_output=True).returncode == 0
    last = sh(str(LOCAL_SLURM), "up", env=env).strip().splitlines()[-1]
    parsed = parse_export_line(last)
    if parsed is None:
        sys.exit(f"tools/local-slurm up: {last}")
    env["SLURM_CONF"], env["PATH"] = str(parsed[0]), f"{parsed[1]}:{env['PATH']}"
    sh("scontrol", "update", "partition=local", "state=down", env=env)
    return env, not running


def fresh_controller(env: dict[str, str], state: Path) -> None:
    """Restart the controller with no job in memory, partition DOWN: every phase starts from the same
    state (a controller answers more slowly the more jobs it holds, cancelled ones included)."""
    sh(str(LOCAL_SLURM), "down", env=env)
    for path in (state / "ctld").iterdir():
        if path.is_file():
            path.unlink()
        else:
            shutil.rmtree(path)
    sh(str(LOCAL_SLURM), "up", env=env)
    sh("scontrol", "update", "partition=local", "state=down", env=env)


def make_repo(root: Path, count: int, runs: int) -> list[str]:
    """A git repository with ray.sub and ``count`` recipes; their paths in a suite file's order."""
    suite = root / "tests" / "test_suites"
    (suite / "llm").mkdir(parents=True)
    shutil.copy2(REPO / "ray.sub", root / "ray.sub")
    (root / ".gitignore").write_text("/code_snapshots*/\n")
    names = [f"tests/test_suites/llm/bench-{n:04d}-1n8g.sh" for n in range(count)]
    for name in names:
        (root / name).write_text(RECIPE.format(runs=runs, name=name))
    (suite / "bench.txt").write_text("\n".join(names) + "\n")
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@e", "commit", "-qm", "bench recipes"]):
        subprocess.run(["git", *argv], cwd=root, check=True)
    return names


def launch_env(cluster: dict[str, str], dirname: str, **extra: str) -> dict[str, str]:
    env = {**cluster, "CONTAINER": "", "ACCOUNT": ACCOUNT, "PARTITION": "local", "HF_HOME": "/tmp/hf",
           "HF_DATASETS_CACHE": "/tmp/hf/datasets", "CODE_SNAPSHOT_DIRNAME": dirname}
    for name in ("DRYRUN", "WATCH", "SLURM_JOB_SUFFIX", "BASE_LOG_DIR", "EXTRA_ENV"):
        env.pop(name, None)
    env.update(extra)
    return env


def launch(repo: Path, env: dict[str, str]) -> tuple[int, float, str]:
    """``tools/launch`` of the bench suite: (exit status, seconds, stderr)."""
    start = time.perf_counter()
    done = subprocess.run([str(LAUNCH), "tests/test_suites/bench.txt"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=3600)
    return done.returncode, time.perf_counter() - start, done.stderr


def experiments(names: list[str]) -> list[str]:
    return [Path(name).stem for name in names]


def floor(repo: Path, cluster: dict[str, str], names: list[str], runs: int, dirname: str) -> float:
    """Seconds of a sequential bash loop of the launch's sbatch --parsable submissions."""
    env = launch_env(cluster, dirname, DRYRUN="2")
    code, _, err = launch(repo, env)
    if code != 0:
        sys.exit(f"DRYRUN=2 launch failed: {err}")
    lines = ["set -e"]
    for name in experiments(names):
        record = json.loads((repo / dirname / name / ".nrl_launch.next-run.json").read_text())
        lines.append(f"cd {shlex.quote(record['cwd'])}")
        lines.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in record["env"]))
        last = "--output=" + f"slurm-{record['stamp']}-%j-{name}-{record['index']}.{record['total']}.out"
        for run in range(1, runs + 1):
            argv = [f"--output=slurm-{record['stamp']}-%j-{name}-{run}.{record['total']}.out" if w == last else w
                    for w in record["argv"]]
            lines.append("sbatch --parsable " + " ".join(shlex.quote(w) for w in argv) + " >/dev/null")
    script = repo / "floor.sh"
    script.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    sh("bash", str(script), env=cluster)
    return time.perf_counter() - start


def kill_half_way(repo: Path, env: dict[str, str], names: list[str], runs: int) -> int:
    """Start the launch, SIGKILL it once half of its jobs are queued; how many were queued then."""
    proc = subprocess.Popen([str(LAUNCH), "tests/test_suites/bench.txt"], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wanted = len(names) * runs // 2
    queued = 0
    while proc.poll() is None:
        out = subprocess.run(["squeue", "--me", "-h", "-o", "%i"], env=env, capture_output=True,  # queued ones
                             text=True).stdout
        queued = len(out.split())
        if queued >= wanted:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    return queued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--status-experiments", type=int, default=1000)
    parser.add_argument("--state", type=Path, default=Path("/tmp/nrl-slurm-bench"))
    parser.add_argument("--port", type=int, default=6850)
    parser.add_argument("--reps", type=int, default=3, help="floor/launch pairs (default 3)")
    parser.add_argument("--phases", default="launch,faults,kill,status")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument("--workdir", type=Path, default=None, help="make the repository here and keep it "
                        "(default: a temporary folder, removed)")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    cluster, started = cluster_up(args.state, args.port)
    job_name = ACCOUNT + ":{}"
    try:
        with tempfile.TemporaryDirectory(prefix="nrl-bench-scale-") as scratch:
            tmp = args.workdir or Path(scratch)
            repo = Path(tmp) / "repo"
            bench = make_repo(repo, args.experiments, args.runs)
            total = len(bench) * args.runs
            print(f"{len(bench)} experiments x {args.runs} runs = {total} submissions; Slurm "
                  f"{sh('sinfo', '--version', env=cluster).split()[-1]}, partition DOWN (jobs never start)")
            if "launch" in phases:
                ratios = []
                for rep in range(args.reps):
                    fresh_controller(cluster, args.state)
                    seconds = floor(repo, cluster, bench, args.runs, f"code_snapshots_floor{rep}")
                    fresh_controller(cluster, args.state)
                    dirname = f"code_snapshots_launch{rep}"
                    code, took, err = launch(repo, launch_env(cluster, dirname))
                    check = census(cluster, repo / dirname, experiments(bench), job_name, args.runs)
                    ratios.append(took / seconds)
                    print(f"floor {seconds:.2f} s ({seconds / total * 1000:.1f} ms a submission); launch: exit {code}, "
                          f"{took:.2f} s (snapshots, pre-flight, submissions), ratio {took / seconds:.2f}; "
                          f"{check.line()}", flush=True)
                print(f"launch/floor: median ratio {statistics.median(ratios):.2f} of {len(ratios)} (goal <= 1.0)")
            if "faults" in phases:
                fresh_controller(cluster, args.state)
                wrapper = install_sbatch(Path(tmp) / "flaky", every=10)
                env = launch_env(cluster, "code_snapshots_faults", PATH=f"{wrapper}:{cluster['PATH']}")
                code, took, err = launch(repo, env)
                check = census(cluster, repo / "code_snapshots_faults", experiments(bench), job_name, args.runs)
                adopted = err.count("had queued job")
                print(f"faults: every 10th sbatch fails (half after queueing): exit {code}, {took:.2f} s; "
                      f"{check.line()}; {adopted} adopted after a lost reply", flush=True)
            if "kill" in phases:
                fresh_controller(cluster, args.state)
                env = launch_env(cluster, "code_snapshots_kill")
                at = kill_half_way(repo, env, bench, args.runs)
                code, took, err = launch(repo, env)
                check = census(cluster, repo / "code_snapshots_kill", experiments(bench), job_name, args.runs)
                print(f"kill: SIGKILL with {at} jobs queued, then the same command: exit {code}, {took:.2f} s; "
                      f"{check.line()}", flush=True)
            if "status" in phases:
                fresh_controller(cluster, args.state)
                repo = Path(tmp) / "status-repo"
                make_repo(repo, args.status_experiments, args.runs)
                env = launch_env(cluster, "code_snapshots_status")
                code, took, err = launch(repo, env)
                if code != 0:
                    sys.exit(f"status launch failed: {err}")
                times = []
                for _ in range(5):
                    start = time.perf_counter()
                    done = subprocess.run([sys.executable, "-m", "nrl_launch", "status"], cwd=repo, capture_output=True,
                                          env={**env, "PYTHONPATH": str(REPO / "tools")}, text=True)
                    times.append(time.perf_counter() - start)
                    if done.returncode != 0:
                        sys.exit(f"status failed: {done.stderr}")
                rows = len(done.stdout.splitlines()) - 2  # header and summary
                median, best = statistics.median(times), min(times)
                print(f"status: {rows} experiments x {args.runs} runs (launched in {took:.1f} s): first "
                      f"{times[0]:.2f} s, median {median:.2f} s, best {best:.2f} s (goal < 1 s)")
            fresh_controller(cluster, args.state)  # none of the bench's jobs is left
    finally:
        if started and not args.keep:
            subprocess.run([str(LOCAL_SLURM), "down"], env=cluster, capture_output=True)


if __name__ == "__main__":
    main()
