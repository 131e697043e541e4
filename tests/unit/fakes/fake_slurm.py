#!/usr/bin/env python3
"""A recording stand-in for sbatch/squeue/sacct/scontrol, for unit tests.

Installed under each command's name (symlinks) in a folder put first on PATH.
Every call is appended as one JSON line to $FAKE_SLURM_DIR/calls.jsonl with
its argv, working directory, full environment and (for sbatch) the batch
script's text. Answers look like Slurm's. Calls may run at once (concurrent
launches): the state files are changed under one lock. Knobs (environment
variables):

  FAKE_SBATCH_FAIL_AT=N      the N-th real submission fails (exit 1)
  FAKE_SBATCH_GARBAGE_AT=N   the N-th real submission exits 0 without a job id
  FAKE_SBATCH_NOISE=1        every real submission also prints a line with non-UTF-8 bytes
  FAKE_SBATCH_ID_ON_STDERR=1 real submissions print "Submitted batch job N" on stderr (some site wrappers)
  FAKE_SBATCH_REJECT="why"   sbatch --test-only rejects every request
  FAKE_SQUEUE_POLLS=N        squeue lists every submitted job for N calls, then none
  FAKE_SQUEUE_DOWN=N         the first N squeue calls fail as if Slurm were unreachable
  FAKE_JOB_STATES="1=RUNNING,2=COMPLETED"   states squeue/scontrol report
  FAKE_SLURM_DOWN=1          scontrol ping says the controller is down
  FAKE_DRIVER_LOG_<job id>="text"   the job "runs": sbatch writes that text to
                             <cwd>/<job id>-logs/ray-driver.log
"""

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_SLURM_DIR"])


@contextlib.contextmanager
def state_lock():
    """One fake Slurm command at a time changes the state files."""
    with open(STATE / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def bump(name: str) -> int:
    with state_lock():
        counter = STATE / name
        value = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(value))
    return value


def record(prog: str, args: list[str]) -> None:
    # The environment and argv as bytes-faithful text: a non-UTF-8 byte is
    # kept as its surrogate escape (json writes it as \udcXX).
    entry = {"prog": prog, "argv": args, "cwd": os.getcwd(), "env": dict(os.environ)}
    if prog == "sbatch" and args and os.path.isfile(args[-1]):
        entry["script"] = Path(args[-1]).read_text(errors="surrogateescape")
    with state_lock(), open(STATE / "calls.jsonl", "a") as log:
        log.write(json.dumps(entry) + "\n")


def submitted_ids() -> list[str]:
    path = STATE / "jobs"
    return path.read_text().split() if path.exists() else []


def sbatch(args: list[str]) -> int:
    if "--test-only" in args:
        reason = os.environ.get("FAKE_SBATCH_REJECT")
        if reason:
            print(f"sbatch: error: {reason}", file=sys.stderr)
            return 1
        print("sbatch: Job 999 to start at 2026-01-01T00:00:00 using 8 processors on nodes n1 in partition p",
              file=sys.stderr)
        return 0
    n = bump("submissions")
    if str(n) == os.environ.get("FAKE_SBATCH_FAIL_AT"):
        print("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
              file=sys.stderr)
        return 1
    if os.environ.get("FAKE_SBATCH_NOISE"):
        sys.stdout.flush()
        sys.stdout.buffer.write(b"sbatch: warning: \xff\xfe not UTF-8\n")
        sys.stdout.buffer.flush()
    if str(n) == os.environ.get("FAKE_SBATCH_GARBAGE_AT"):
        print("sbatch: something unexpected")
        return 0
    job_id = str(1000 + n)
    with state_lock(), open(STATE / "jobs", "a") as jobs:
        jobs.write(job_id + "\n")
    log_text = os.environ.get(f"FAKE_DRIVER_LOG_{job_id}")
    if log_text is not None:
        logs = Path.cwd() / f"{job_id}-logs"
        logs.mkdir(exist_ok=True)
        (logs / "ray-driver.log").write_text(log_text)
    answer = sys.stderr if os.environ.get("FAKE_SBATCH_ID_ON_STDERR") else sys.stdout
    print(f"Submitted batch job {job_id}", file=answer)
    return 0


def states() -> dict[str, str]:
    raw = os.environ.get("FAKE_JOB_STATES", "")
    return dict(item.split("=", 1) for item in raw.split(",") if "=" in item)


def squeue(args: list[str]) -> int:
    call = bump("squeue_calls")
    if call <= int(os.environ.get("FAKE_SQUEUE_DOWN", "0")):
        print("squeue: error: Unable to contact slurm controller (connect failure)", file=sys.stderr)
        return 1
    if "FAKE_JOB_STATES" in os.environ:
        for job_id, state in states().items():
            if state in ("PENDING", "RUNNING"):
                print(f"{job_id}|{state}|None|n1")
        return 0
    polls = int(os.environ.get("FAKE_SQUEUE_POLLS", "0"))
    if call - int(os.environ.get("FAKE_SQUEUE_DOWN", "0")) <= polls:
        for job_id in submitted_ids():
            print(f"{job_id}|RUNNING|None|n1")
    return 0


def scontrol(args: list[str]) -> int:
    if args == ["ping"]:
        if os.environ.get("FAKE_SLURM_DOWN"):
            print("Slurmctld(primary) at fake is DOWN")
            return 1
        print("Slurmctld(primary) at fake is UP")
        return 0
    job_id = args[-1]
    state = states().get(job_id)
    if state is None:
        print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
        return 1
    print(f"JobId={job_id} JobName=x JobState={state} Reason=None ExitCode=0:0 NodeList=n1")
    return 0


def main() -> int:
    prog = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    record(prog, args)
    handlers = {"sbatch": sbatch, "squeue": squeue, "scontrol": scontrol}
    if prog not in handlers:
        print(f"{prog}: error: Slurm accounting storage is disabled", file=sys.stderr)
        return 1
    return handlers[prog](args)


if __name__ == "__main__":
    sys.exit(main())
