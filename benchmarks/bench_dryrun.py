#!/usr/bin/env python3
"""Wall time of ``DRYRUN=1 tools/launch`` over 250 generated recipes.

Goal: under 100 ms on a 2-core machine. Prints the median and best of
several runs of the shim with the interpreter it finds on PATH (``python3``)
and with the real interpreter given directly (``NRL_LAUNCH_PYTHON``: version
managers such as pyenv put a shell script of their own in front of
``python3``, which costs tens of milliseconds before our code runs), next to
the bare interpreter start-up for reference, and checks that the DRYRUN=1
path imports neither GitPython nor simple-slurm.

    python3 benchmarks/bench_dryrun.py [--recipes 250] [--repeat 9] [--loops 10]
    python3 benchmarks/bench_dryrun.py --instructions [--checkout DIR]

``--instructions`` counts the instructions of one run under valgrind's
callgrind instead: the same count for the same code whatever else the machine
is doing, so two versions can be compared on a busy machine (``--checkout``
points at another checkout of the repository, e.g. a git worktree of an older
commit, whose ``tools/launch`` is counted instead).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = """#!/bin/bash
SCRIPT_DIR=$(cd -- "$(dirname -- "${{BASH_SOURCE[0]}}")" &>/dev/null && pwd)
# ===== BEGIN CONFIG =====
NUM_NODES="${{NUM_NODES:-{nodes}}}"
GPUS_PER_NODE={gpus}
STEPS_PER_RUN=40  # step_time ~ 95sec
MAX_STEPS={max_steps}
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=120
JOB_REAPER_COMMENT='{{"Reaper":{{"exemptIdleTimeMins":"120"}}}}'
# ===== END CONFIG =====
echo "training"
"""


def make_recipes(folder: Path, count: int) -> list[str]:
    """Write ``count`` recipes into ``folder``; return their relative paths."""
    (folder / "llm").mkdir(parents=True)
    names = []
    for i in range(count):
        nodes, gpus = 1 + i % 4, (8, 4)[i % 2]
        name = f"llm/grpo-model{i}-{nodes}n{gpus}g-fsdp2tp1.sh"
        (folder / name).write_text(RECIPE.format(nodes=nodes, gpus=gpus, max_steps=40 * (1 + i % 5)))
        names.append(name)
    return names


def timed(argv: list[str], cwd: Path, env: dict[str, str], loops: int) -> float:
    """Seconds per run of ``argv``, over ``loops`` runs started by one bash loop.

    A bash loop (output to /dev/null) keeps the harness's own cost out of the
    figure: starting each run from this Python process would add its fork.
    """
    check = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if check.returncode != 0:
        sys.exit(f"command failed: {check.stderr}")
    loop = f'for ((i = 0; i < {loops}; i++)); do "$@" >/dev/null 2>&1; done'
    start = time.perf_counter()
    subprocess.run(["bash", "-c", loop, "bench", *argv], cwd=cwd, env=env, check=True)
    return (time.perf_counter() - start) / loops


def instructions(launch: Path, scripts: list[str], folder: Path, env: dict[str, str]) -> int:
    """Instructions of one ``DRYRUN=1`` run of ``launch`` (valgrind --tool=callgrind)."""
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode != 0:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    argv = [str(launch), *scripts]
    first = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True)  # writes the .pyc files
    if first.returncode != 0:
        sys.exit(f"{launch} failed: {first.stderr[-2000:]}")
    out = folder / "callgrind.out"
    done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--trace-children=yes",
                           *argv], cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the run under valgrind failed: {done.stderr[-2000:]}")
    totals = [int(line.split()[1]) for line in out.read_text().splitlines() if line.startswith("summary:")]
    return sum(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=9, help="rounds (the median is reported)")
    parser.add_argument("--loops", type=int, default=10, help="runs per round")
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind instead")
    parser.add_argument("--checkout", type=Path, default=REPO, help="checkout whose tools/launch is measured")
    args = parser.parse_args()
    # Users' interpreters cache bytecode; some CI/agent shells disable it,
    # which would time compiling our modules from source on every start.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env = {**env, "DRYRUN": "1", "CONTAINER": "", "ACCOUNT": "", "PARTITION": "",
           "HF_HOME": "/hf", "HF_DATASETS_CACHE": "/hf/ds"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scripts = make_recipes(folder, args.recipes)
        if args.instructions:
            count = instructions(args.checkout / "tools" / "launch", scripts, folder,
                                 {**env, "NRL_LAUNCH_PYTHON": sys.executable})
            print(f"recipes: {args.recipes}, DRYRUN=1, one run of {args.checkout}/tools/launch: {count:,} instructions")
            return
        launch = [str(args.checkout / "tools" / "launch"), *scripts]
        direct_env = {**env, "NRL_LAUNCH_PYTHON": sys.executable}
        runs = {
            "tools/launch (python3 from PATH)": (launch, env),
            "tools/launch (NRL_LAUNCH_PYTHON=real interpreter)": (launch, direct_env),
            "python3 -c pass (PATH)": (["python3", "-c", "pass"], env),
            "real interpreter -c pass": ([sys.executable, "-c", "pass"], env),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for argv, run_env in runs.values():
            timed(argv, folder, run_env, 1)  # warm the page cache and .pyc files
        for _ in range(args.repeat):  # alternate, so load changes hit all alike
            for name, (argv, run_env) in runs.items():
                times[name].append(timed(argv, folder, run_env, args.loops))
        check = subprocess.run(
            [sys.executable, "-c", "import sys, runpy; sys.argv=['nrl-launch','launch',*sys.argv[1:]];\n"
             "try:\n runpy.run_module('nrl_launch', run_name='__main__')\nexcept SystemExit: pass\n"
             "print('heavy modules imported:', sorted(m for m in ('git', 'simple_slurm') if m in sys.modules), "
             "file=sys.stderr)",
             *scripts], cwd=folder, env={**env, "PYTHONPATH": str(REPO / "tools")}, capture_output=True, text=True)
    print(f"recipes: {args.recipes}, DRYRUN=1, {args.repeat} rounds of {args.loops} runs (time per run)")
    for name, values in times.items():
        print(f"{name:<52} median {statistics.median(values) * 1000:6.1f} ms   best round {min(values) * 1000:6.1f} ms")
    print(check.stderr.strip().splitlines()[-1])
    for name in list(times)[:2]:
        verdict = "MET" if statistics.median(times[name]) < 0.1 else "NOT MET"
        print(f"goal (median under 100 ms), {name}: {verdict}")


if __name__ == "__main__":
    main()
