"""Benchmark: nrl_launch snapshots vs the old launcher's rsync, per launch.

Builds a synthetic git repository (~2,000 tracked files, ~30 MB, one
submodule) in a temporary folder, then, alternating in one run, times

  (a) rsync  -- per experiment: ``rsync -a --files-from=<(git ls-files
      --recurse-submodules) . DEST`` through ``bash -c`` (the old launcher);
  (b) ours   -- list_tracked_files once + a fresh SnapshotBatch + ensure()
      for each experiment (manifest included);

for N = 1 and N = 20 experiments, and prints the median times and the median
of the per-repetition ratios ours/rsync.

Usage: python benchmarks/bench_snapshot.py [--reps 7] [--mode auto] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from nrl_launch.experiment.gitrepo import list_tracked_files  # noqa: E402
from nrl_launch.experiment.snapshot import SnapshotBatch  # noqa: E402

GIT = ["git", "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main",
       "-c", "user.name=bench", "-c", "user.email=bench@example.com"]


def run_git(cwd: Path, *args: str) -> None:
    """Run a git command quietly, failing loudly."""
    subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True)


def fill(root: Path, count: int, total_bytes: int, rng: random.Random) -> None:
    """Write ``count`` files of skewed sizes summing to about ``total_bytes``."""
    weights = [rng.paretovariate(1.2) for _ in range(count)]
    scale = total_bytes / sum(weights)
    for i, weight in enumerate(weights):
        rel = Path(f"pkg{i % 17}/mod{i % 5}/file{i}.{'sh' if i % 50 == 0 else 'py'}")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(max(1, int(weight * scale))))
        if i % 50 == 0:
            path.chmod(0o755)


def build_repo(base: Path) -> Path:
    """A repository of ~2,000 files / ~30 MB with a ~100-file submodule."""
    rng = random.Random(1234)
    sub = base / "origin-sub"
    sub.mkdir()
    run_git(sub, "init", "-q")
    fill(sub, 100, 2_000_000, rng)
    run_git(sub, "add", "-A")
    run_git(sub, "commit", "-q", "-m", "sub")
    top = base / "repo"
    top.mkdir()
    run_git(top, "init", "-q")
    fill(top, 1_900, 28_000_000, rng)
    os.symlink("pkg0/mod0/file0.sh", top / "entry.sh")
    run_git(top, "add", "-A")
    run_git(top, "submodule", "add", "-q", str(sub), "third_party/sub")
    run_git(top, "commit", "-q", "-m", "synthetic tree")
    return top


def time_rsync(src: Path, dests: list[Path]) -> float:
    """Seconds for the old launcher's per-experiment rsync."""
    start = time.perf_counter()
    for dest in dests:
        script = 'rsync -a --files-from=<(git ls-files --recurse-submodules) . "$1"'
        subprocess.run(["bash", "-c", script, "bash", str(dest)], cwd=src, check=True)
    return time.perf_counter() - start


def time_ours(src: Path, dests: list[Path], mode: str) -> float:
    """Seconds for listing once and snapshotting every experiment with one batch."""
    start = time.perf_counter()
    batch = SnapshotBatch(src, list_tracked_files(src), mode=mode)
    for dest in dests:
        batch.ensure(dest, manifest={"experiment": dest.name, "runs": []})
    return time.perf_counter() - start


def clear(folder: Path) -> None:
    """Remove and recreate ``folder``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def main() -> None:
    """Build the repository, run the alternating measurements, print results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--mode", default="auto", choices=("auto", "copy", "link"))
    parser.add_argument("--sizes", default="1,20")
    parser.add_argument("--dir", default=None, help="work folder (default: a temp dir)")
    args = parser.parse_args()
    if shutil.which("rsync") is None:  # the old launcher's copy tool is what we compare against
        print("bench_snapshot.py needs rsync on PATH to time the old launcher's copy: install it "
              "(e.g. apt-get install rsync, dnf install rsync or brew install rsync)", file=sys.stderr)
        sys.exit(1)
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-snapshot-", dir=args.dir))
    try:
        src = build_repo(work)
        files = list_tracked_files(src)
        size = sum(os.lstat(src / f).st_size for f in files)
        print(f"repository: {len(files)} tracked files, {size / 1e6:.1f} MB, in {work}")
        print(f"machine: {os.cpu_count()} CPUs; mode={args.mode}; reps={args.reps}")
        sizes = [int(n) for n in args.sizes.split(",")]
        times: dict[tuple[str, int], list[float]] = {}
        ratios: dict[int, list[float]] = {n: [] for n in sizes}
        out = work / "out"
        for rep in range(args.reps):
            for n in sizes:
                measured = {}
                order = ("rsync", "ours") if rep % 2 == 0 else ("ours", "rsync")
                for name in order:
                    clear(out)
                    dests = [out / f"exp{i}" for i in range(n)]
                    if name == "rsync":
                        measured[name] = time_rsync(src, dests)
                    else:
                        measured[name] = time_ours(src, dests, args.mode)
                    times.setdefault((name, n), []).append(measured[name])
                ratios[n].append(measured["ours"] / measured["rsync"])
        print(f"{'N':>3} {'rsync median s':>15} {'ours median s':>14} {'ratio ours/rsync (median)':>26}")
        for n in sizes:
            print(f"{n:>3} {statistics.median(times[('rsync', n)]):>15.3f} "
                  f"{statistics.median(times[('ours', n)]):>14.3f} {statistics.median(ratios[n]):>26.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
