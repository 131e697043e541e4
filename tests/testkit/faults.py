"""Faults of a real controller, on a real local Slurm: an ``sbatch`` that fails now and then (some
failures after really queueing the job), a slow one, and a census of what a launch queued.

Used by the end-to-end tests of faults (tests/integration/test_controller_faults.py) and by
``benchmarks/bench_scale.py``; needs nothing but the standard library and PyYAML.
"""

from __future__ import annotations

import collections
import os
import shlex
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

REPLY_LOST = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"

# Every FLAKY_EVERY-th call (test-only ones included) fails as a busy controller's lost reply; the
# 1st, 3rd, 5th... of those after the real sbatch queued the job. Calls are counted under a lock:
# a launch runs several sbatch at once.
_FLAKY = """#!/bin/bash
# sbatch as a busy controller answers it: see testkit/faults.py
real={real}
counter={counter}
n=$(flock "$counter.lock" bash -c \
    'n=$(( $(cat "$1" 2>/dev/null || echo 0) + 1 )); echo "$n" >"$1"; echo "$n"' _ "$counter")
sleep {delay}
if (( {every} > 0 && n % {every} == 0 )); then
    if (( (n / {every}) % 2 == 1 )); then
        "$real" "$@" >/dev/null 2>&1
    fi
    echo {lost} >&2
    exit 1
fi
exec "$real" "$@"
"""


def install_sbatch(folder: Path, *, every: int = 0, delay: float = 0.0) -> Path:
    """Write an ``sbatch`` into ``folder`` (to put first on PATH) that runs the real one (found on
    PATH now) after ``delay`` seconds, failing every ``every``-th call (0: never) as above; the folder."""
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True, check=True).stdout
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "sbatch"
    wrapper.write_text(_FLAKY.format(real=shlex.quote(real.strip()), counter=shlex.quote(str(folder / "calls")),
                                     every=every, delay=delay, lost=shlex.quote(REPLY_LOST)))
    wrapper.chmod(0o755)
    return folder


def sbatch_calls(folder: Path) -> int:
    """How many times the wrapper in ``folder`` was called."""
    try:
        return int((folder / "calls").read_text())
    except (OSError, ValueError):
        return 0


@dataclass(frozen=True)
class Census:
    """What the controller holds of some experiments' jobs, against what their manifests record."""

    expected: int  # runs planned
    queued: int  # jobs the controller holds under their job names
    per_experiment: dict[str, int]  # experiment -> jobs
    duplicates: int  # jobs beyond the first of the same run (the same --output file)
    unrecorded: int  # jobs no manifest records

    def line(self) -> str:
        """One line for a report."""
        return (f"queued {self.queued} / expected {self.expected}, duplicates {self.duplicates}, "
                f"unrecorded {self.unrecorded}")

    @property
    def exact(self) -> bool:
        """Every run queued exactly once and recorded."""
        return self.queued == self.expected and not self.duplicates and not self.unrecorded


def census(env: Mapping[str, str], snapshots: Path, names: Iterable[str], job_name: str, runs: int) -> Census:
    """The census of experiments ``names`` (snapshots under ``snapshots``: jobs submitted from
    elsewhere are another launch's) whose jobs are named ``job_name.format(name)``, each planned
    with ``runs`` runs."""
    names = list(names)
    by_name = {job_name.format(name): name for name in names}
    answer = subprocess.run(["squeue", "--me", "-h", "-t", "all", "-O", "JobID:0|,Name:0|,StdOut:0"], env=dict(env),
                            capture_output=True, text=True, check=True, timeout=120).stdout
    jobs: dict[str, tuple[str, str]] = {}
    for line in answer.splitlines():
        job_id, name, stdout = line.strip().split("|", 2)
        if name in by_name and stdout.startswith(f"{snapshots / by_name[name]}/"):
            jobs[job_id] = (by_name[name], os.path.basename(stdout))
    per_experiment = collections.Counter(experiment for experiment, _ in jobs.values())
    outputs = collections.Counter(jobs.values())
    recorded = {str(run["job_id"]) for name in names for run in _runs(snapshots / name) if "job_id" in run}
    return Census(expected=len(names) * runs, queued=len(jobs), per_experiment=dict(per_experiment),
                  duplicates=sum(count - 1 for count in outputs.values()),
                  unrecorded=sum(1 for job_id in jobs if job_id not in recorded))


def _runs(snapshot: Path) -> list[dict[str, object]]:
    try:
        data = yaml.load((snapshot / ".nrl_launch.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader",
                                                                                      yaml.SafeLoader))
    except OSError:
        return []
    return list(data.get("runs") or [])
