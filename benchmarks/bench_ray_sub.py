"""Wall time of ``ray.sub`` itself (from its start to its exit) with a
trivial COMMAND, to see what the log layout and the node check cost.

    python3 benchmarks/bench_ray_sub.py [--baseline OLD_RAY_SUB] [--runs 30]
    SLURM_CONF=... python3 benchmarks/bench_ray_sub.py --cluster [--jobs 5] [--baseline ...]

Without ``--cluster``: runs ``bash ray.sub`` outside Slurm as a one-node job
(the variables Slurm would set are set by hand), ``--runs`` times.  With
``--cluster``: submits ``--jobs`` one-node and two-node jobs to the cluster
``SLURM_CONF`` names (e.g. ``tools/local-slurm up --nodes 3``), each
timing ``bash ray.sub`` inside the batch job, one after the other.  Prints
the median and range in milliseconds, for this repository's ``ray.sub`` and
for ``--baseline`` (e.g. ``git show HEAD~1:ray.sub > /tmp/old.sub``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

RAY_SUB = Path(__file__).resolve().parents[1] / "ray.sub"

# The batch job: time the batch script, print "RAYSUB <start> <end>".
TIMER = """#!/bin/bash
start=$EPOCHREALTIME
COMMAND=true CONTAINER= bash {script} >/dev/null 2>&1
echo "RAYSUB $start $EPOCHREALTIME"
"""


def local_times(script: Path, runs: int) -> list[float]:
    """Milliseconds of ``runs`` runs of ``bash script`` as a one-node job."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PATH": os.environ["PATH"], "HOME": tmp, "SLURM_SUBMIT_DIR": tmp, "SLURM_JOB_ID": "1",
               "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "node1", "COMMAND": "true",
               "CONTAINER": ""}
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(["bash", str(script)], env=env, cwd=tmp, check=True, capture_output=True)
            times.append((time.perf_counter() - start) * 1000)
    return times


def cluster_times(script: Path, nodes: int, jobs: int) -> list[float]:
    """Milliseconds of ``bash script`` inside ``jobs`` batch jobs of ``nodes`` nodes."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        timer = Path(tmp) / "timer.sh"
        timer.write_text(TIMER.format(script=script))
        for i in range(jobs):
            out = Path(tmp) / f"out-{i}.txt"
            subprocess.run(["sbatch", "--wait", "--parsable", f"--nodes={nodes}", "--exclusive",
                            "--output", str(out), str(timer)],
                           cwd=tmp, check=True, capture_output=True, timeout=300)
            line = next(x for x in out.read_text().splitlines() if x.startswith("RAYSUB "))
            _, start, end = line.split()
            times.append((float(end.replace(",", ".")) - float(start.replace(",", "."))) * 1000)
    return times


def report(label: str, times: list[float]) -> None:
    print(f"{label:<44} median {statistics.median(times):8.1f} ms   "
          f"range {min(times):.1f}-{max(times):.1f} ms   (n={len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another ray.sub to compare with")
    parser.add_argument("--runs", type=int, default=30, help="local runs per script")
    parser.add_argument("--cluster", action="store_true", help="time jobs on the SLURM_CONF cluster")
    parser.add_argument("--jobs", type=int, default=5, help="jobs per script and node count")
    args = parser.parse_args()
    scripts = [("ray.sub", RAY_SUB)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    for label, script in scripts:
        if args.cluster:
            for nodes in (1, 2):
                report(f"{label}, {nodes}-node job on the cluster", cluster_times(script, nodes, args.jobs))
        else:
            report(f"{label}, one-node, outside Slurm", local_times(script, args.runs))


if __name__ == "__main__":
    main()
