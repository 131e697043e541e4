"""The local Slurm cluster (tools/local-slurm) as the end-to-end tests drive it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testkit.repos import REPO

# ---------------------------------------------------------------- the local Slurm cluster (tools/local-slurm)

LOCAL_SLURM = REPO / "tools" / "local-slurm"
RAY_SUB = REPO / "ray.sub"

# generous: the first `up` on a fresh machine apt-installs Slurm and MUNGE
# (22.05) or makes the root folder with debootstrap (24.11)
UP_TIMEOUT_S = 900
DEFAULT_TEST_NODES = 3
DEFAULT_SLURM_VERSION = "22.05"  # tools/local-slurm's, and the README's
# tools/local-slurm's variables that name a cluster: a test's own cluster gets
# its own, whatever the shell that started the tests points at
CLUSTER_VARS = ("LOCAL_SLURM_STATE", "LOCAL_SLURM_PORT", "LOCAL_SLURM_VERSION", "LOCAL_SLURM_NODES", "SLURM_CONF")
# where a machine's own Slurm is (tools/local-slurm's SYSTEM_PATH)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def parse_export_line(line: str) -> tuple[Path, Path] | None:
    """``(SLURM_CONF, folder of the client commands)`` from the last line of
    ``tools/local-slurm up``, ``export SLURM_CONF=<conf> PATH=<bin>:"$PATH"``;
    None for any other line."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if len(words) != 3 or words[0] != "export":
        return None
    conf, path = words[1], words[2]
    if not (conf.startswith("SLURM_CONF=") and path.startswith("PATH=") and path.endswith(":$PATH")):
        return None
    conf, bin_dir = conf.removeprefix("SLURM_CONF="), path.removeprefix("PATH=").removesuffix(":$PATH")
    if not (conf and bin_dir):
        return None
    return Path(conf), Path(bin_dir)


def session_slurm_version(env: Mapping[str, str]) -> str:
    """The Slurm version of the test session's cluster: ``NRL_TEST_SLURM_VERSION``
    (tools/run-tests sets it for each version of its matrix), else 22.05."""
    return env.get("NRL_TEST_SLURM_VERSION", "").strip() or DEFAULT_SLURM_VERSION


def private_env(state: Path, **extra: str) -> dict[str, str]:
    """The environment of ``tools/local-slurm`` for a cluster of a test's own
    in ``state``, on free ports: nothing of the cluster the shell points at."""
    env = {k: v for k, v in os.environ.items() if k not in CLUSTER_VARS}
    env.update(LOCAL_SLURM_STATE=str(state), LOCAL_SLURM_PORT="auto")
    env.update(extra)
    return env


def slurm_required(env: Mapping[str, str]) -> bool:
    """True when a missing Slurm must fail the run instead of skipping it:
    in CI, i.e. ``CI`` is ``true`` (any case) or ``1``."""
    return env.get("CI", "").strip().lower() in ("true", "1")


def cluster_verdict(up_ok: bool, sbatch_found: bool, up_tail: str,
                    env: Mapping[str, str]) -> tuple[str, str]:
    """What the session does after ``tools/local-slurm up``: ``("run", "")``,
    or ``("skip" | "fail", reason)``.  A failed ``up`` with Slurm installed
    is a broken cluster: always a failure.  No ``sbatch`` at all is a
    machine without Slurm: skipped, except in CI (:func:`slurm_required`)."""
    if up_ok and sbatch_found:
        return "run", ""
    if up_ok:
        reason = ("sbatch not found on PATH although tools/local-slurm up "
                  "succeeded: run tools/local-slurm up and check PATH")
    elif sbatch_found:
        return "fail", f"tools/local-slurm up failed:\n{up_tail}"
    else:
        reason = f"sbatch not found: run tools/local-slurm up (it failed here: {up_tail or 'no output'})"
    if slurm_required(env):
        return "fail", f"{reason} (CI={env.get('CI')}: a missing Slurm fails the run in CI)"
    return "skip", reason


def cluster_node_count(env: Mapping[str, str]) -> str:
    """Node count for the test cluster: ``LOCAL_SLURM_NODES`` when set and
    non-empty (tools/local-slurm validates it), else 3."""
    return env.get("LOCAL_SLURM_NODES", "").strip() or str(DEFAULT_TEST_NODES)


@dataclass(frozen=True)
class SlurmJob:
    """Final (or current) state of one job: ``state`` e.g. COMPLETED/FAILED,
    ``exit_code`` and ``signal`` from Slurm's ``ExitCode=code:signal``."""

    job_id: str
    state: str
    exit_code: int | None
    signal: int | None
    source: str  # "scontrol" or "jobcomp"
    fields: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __str__(self) -> str:
        return self.state


def _parse_fields(text: str) -> dict[str, str]:
    """``Key=Value`` pairs of a one-line scontrol/jobcomp record (values that
    contain spaces are truncated; JobState/ExitCode never do)."""
    out = {}
    for tok in text.split():
        key, sep, value = tok.partition("=")
        if sep and key and key not in out:
            out[key] = value
    return out


def _job_info(job_id: str, fields: dict[str, str], source: str) -> SlurmJob:
    state = fields.get("JobState", "UNKNOWN")
    code = sig = None
    m = re.fullmatch(r"(\d+):(\d+)", fields.get("ExitCode", ""))
    if m:
        code, sig = int(m.group(1)), int(m.group(2))
    return SlurmJob(job_id, state, code, sig, source, fields)


@dataclass
class LocalSlurm:
    state_dir: Path
    slurm_conf: Path
    bin_dir: Path | None = None  # its client commands (first on PATH in env())
    version: str = DEFAULT_SLURM_VERSION
    partition: str = "local"
    started_here: bool = False

    @property
    def has_segment(self) -> bool:
        """Does this Slurm know ``--segment`` (23.02 and newer)?"""
        return self.version != "22.05"

    def nodes(self) -> list[str]:
        """Names of the cluster's nodes, in order (node1, node2, ...)."""
        res = self.run("sinfo", "-h", "-N", "-p", self.partition, "-o", "%N", check=True)
        return sorted(set(res.stdout.split()), key=lambda n: (len(n), n))

    def node_states(self) -> dict[str, str]:
        """{node: state} as sinfo shows it (``idle``, ``down*``, ...)."""
        res = self.run("sinfo", "-h", "-N", "-p", self.partition, "-o", "%N %T", check=True)
        return dict(line.split() for line in res.stdout.splitlines() if line.strip())

    def slurmd_pid(self, node: str) -> int:
        """Pid of the slurmd emulating ``node`` (from its pid file)."""
        return int((self.state_dir / "run" / f"slurmd-{node}.pid").read_text().strip())

    def up(self) -> None:
        """``tools/local-slurm up`` on this cluster, keeping its node count:
        restarts a missing daemon, resumes DOWN nodes, waits until all are
        idle (fails the test if it cannot)."""
        env = {k: v for k, v in os.environ.items() if k not in CLUSTER_VARS}
        res = subprocess.run([str(LOCAL_SLURM), "--state", str(self.state_dir), "up"],
                             capture_output=True, text=True, env=env, timeout=120)
        if res.returncode != 0:
            pytest.fail(f"tools/local-slurm up failed:\n{res.stderr}", pytrace=False)

    @property
    def jobcomp_file(self) -> Path:
        try:
            for line in self.slurm_conf.read_text().splitlines():
                if line.strip().startswith("JobCompLoc="):
                    return Path(line.split("=", 1)[1].strip())
        except OSError:
            pass
        return self.state_dir / "log" / "jobcomp.txt"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a command of this cluster: SLURM_CONF, and its
        client commands first on PATH (as ``up``'s export line sets them)."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.slurm_conf)
        if self.bin_dir is not None and not env.get("PATH", "").startswith(f"{self.bin_dir}:"):
            env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '')}"
        env.update(extra)
        return env

    def run(self, *args: str, check: bool = False, timeout: float = 60,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (text mode, output captured)."""
        kw.setdefault("env", self.env())
        return subprocess.run(
            list(args), capture_output=True, text=True, check=check,
            timeout=timeout, **kw,
        )

    def sbatch(self, *args: str, cwd: str | Path | None = None,
               env: dict[str, str] | None = None) -> str:
        """``sbatch --parsable <args>``; returns the job id (fails the test on error)."""
        res = self.run("sbatch", "--parsable", *args, cwd=cwd,
                       env=env if env is not None else self.env())
        if res.returncode != 0:
            pytest.fail(f"sbatch {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout.strip().split(";")[0]

    def job_state(self, job_id: str | int) -> SlurmJob | None:
        """State of a job from ``scontrol show job`` (kept 1 h after the end,
        MinJobAge=3600), falling back to the jobcomp file; None if unknown."""
        job_id = str(job_id)
        res = self.run("scontrol", "show", "job", "-o", job_id)
        if res.returncode == 0 and res.stdout.strip():
            return _job_info(job_id, _parse_fields(res.stdout), "scontrol")
        try:
            lines = self.jobcomp_file.read_text().splitlines()
        except OSError:
            return None
        for line in reversed(lines):  # job ids restart if the state folder was wiped
            if line.startswith(f"JobId={job_id} "):
                return _job_info(job_id, _parse_fields(line), "jobcomp")
        return None

    def wait_for_jobs(self, job_ids: Iterable[str | int] | str | int,
                      timeout: float = 60, poll: float = 0.2) -> dict[str, SlurmJob | None]:
        """Poll squeue until none of ``job_ids`` is pending/running/completing.
        Returns {job_id: SlurmJob}; raises TimeoutError after ``timeout`` s."""
        if isinstance(job_ids, (str, int)):
            job_ids = [job_ids]
        wanted = {str(j) for j in job_ids}
        deadline = time.monotonic() + timeout
        while True:
            res = self.run("squeue", "-h", "-o", "%i")
            if res.returncode == 0:
                alive = wanted & set(res.stdout.split())
                if not alive:
                    break
            if time.monotonic() > deadline:
                queue = self.run("squeue", "-o", "%i %j %T %r").stdout
                raise TimeoutError(
                    f"jobs still queued after {timeout}s: {sorted(wanted)}\n{queue}"
                )
            time.sleep(poll)
        return {j: self.job_state(j) for j in sorted(wanted, key=lambda s: (len(s), s))}


    def finished(self, job_id: str, timeout: float = 60) -> SlurmJob:
        """Wait for one job to leave the queue; its final state (fails the
        test when Slurm no longer knows the job)."""
        info = self.wait_for_jobs([job_id], timeout=timeout)[str(job_id)]
        if info is None:
            pytest.fail(f"job {job_id} left the queue but Slurm has no record of it")
        return info
