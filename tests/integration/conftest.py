"""Fixtures for end-to-end tests against a real single-node Slurm cluster.

The cluster is the one ``tools/local-slurm`` starts (Slurm 22.05 + MUNGE,
partition ``local``, one node advertising ``gpu:8``).  The session fixture
``local_slurm`` runs ``tools/local-slurm up`` -- idempotent, so it is cheap
when CI already brought the cluster up -- points ``SLURM_CONF`` at it for the
session, and stops it again at the end only if this session started it (set
``LOCAL_SLURM_KEEP=1`` to leave it running).

Every test collected under ``tests/integration`` gets the ``slurm`` marker
(declared in setup.cfg), so ``pytest -m "not slurm"`` skips them all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_SLURM = REPO_ROOT / "tools" / "local-slurm"
RAY_SUB = REPO_ROOT / "ray.sub"
_HERE = Path(__file__).resolve().parent

# generous: the first `up` on a fresh machine apt-installs Slurm and MUNGE
UP_TIMEOUT_S = 900
_EXPORT_RE = re.compile(r"^export SLURM_CONF=(\S+)\s*$")


def pytest_configure(config: pytest.Config) -> None:
    # harmless if setup.cfg already declares it; needed if run with another ini
    config.addinivalue_line(
        "markers", "slurm: needs a reachable Slurm cluster (tools/local-slurm up)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for item in items:
        path = Path(str(getattr(item, "path", item.fspath))).resolve()
        if _HERE in path.parents and item.get_closest_marker("slurm") is None:
            item.add_marker(pytest.mark.slurm)


@dataclass(frozen=True)
class JobInfo:
    """Final (or current) state of one job: ``state`` e.g. COMPLETED/FAILED,
    ``exit_code`` and ``signal`` from Slurm's ``ExitCode=code:signal``."""

    job_id: str
    state: str
    exit_code: int | None
    signal: int | None
    source: str  # "scontrol" or "jobcomp"
    fields: dict = field(default_factory=dict, repr=False, compare=False)

    def __str__(self) -> str:
        return self.state


def _parse_fields(text: str) -> dict:
    """``Key=Value`` pairs of a one-line scontrol/jobcomp record (values that
    contain spaces are truncated; JobState/ExitCode never do)."""
    out = {}
    for tok in text.split():
        key, sep, value = tok.partition("=")
        if sep and key and key not in out:
            out[key] = value
    return out


def _job_info(job_id: str, fields: dict, source: str) -> JobInfo:
    state = fields.get("JobState", "UNKNOWN")
    code = sig = None
    m = re.fullmatch(r"(\d+):(\d+)", fields.get("ExitCode", ""))
    if m:
        code, sig = int(m.group(1)), int(m.group(2))
    return JobInfo(job_id, state, code, sig, source, fields)


@dataclass
class LocalSlurm:
    state_dir: Path
    slurm_conf: Path
    partition: str = "local"
    started_here: bool = False

    @property
    def jobcomp_file(self) -> Path:
        try:
            for line in self.slurm_conf.read_text().splitlines():
                if line.strip().startswith("JobCompLoc="):
                    return Path(line.split("=", 1)[1].strip())
        except OSError:
            pass
        return self.state_dir / "log" / "jobcomp.txt"

    def env(self, **extra: str) -> dict:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.slurm_conf)
        env.update(extra)
        return env

    def run(self, *args: str, check: bool = False, timeout: float = 60, **kw):
        """Run a Slurm client command (text mode, output captured)."""
        kw.setdefault("env", self.env())
        return subprocess.run(
            list(args), capture_output=True, text=True, check=check,
            timeout=timeout, **kw,
        )

    def sbatch(self, *args: str, cwd: str | Path | None = None,
               env: dict | None = None) -> str:
        """``sbatch --parsable <args>``; returns the job id (fails the test on error)."""
        res = self.run("sbatch", "--parsable", *args, cwd=cwd,
                       env=env if env is not None else self.env())
        if res.returncode != 0:
            pytest.fail(f"sbatch {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout.strip().split(";")[0]

    def job_state(self, job_id: str | int) -> JobInfo | None:
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
                      timeout: float = 60, poll: float = 0.2) -> dict:
        """Poll squeue until none of ``job_ids`` is pending/running/completing.
        Returns {job_id: JobInfo}; raises TimeoutError after ``timeout`` s."""
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


def _daemons_up(env: dict) -> bool:
    try:
        res = subprocess.run([str(LOCAL_SLURM), "status"], capture_output=True,
                             text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


@pytest.fixture(scope="session")
def local_slurm():
    """A running single-node Slurm (tools/local-slurm up) with SLURM_CONF set."""
    env = dict(os.environ)
    was_up = _daemons_up(env)
    try:
        res = subprocess.run([str(LOCAL_SLURM), "up"], capture_output=True,
                             text=True, env=env, timeout=UP_TIMEOUT_S)
        up_ok, up_out = res.returncode == 0, (res.stdout + res.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        up_ok, up_out, res = False, f"{type(exc).__name__}: {exc}", None

    if not up_ok:
        tail = "\n".join(up_out.splitlines()[-15:])
        if shutil.which("sbatch") is None:
            pytest.skip(
                "sbatch not found: run tools/local-slurm up "
                f"(it failed here: {tail or 'no output'})",
            )
        pytest.fail(f"tools/local-slurm up failed:\n{tail}", pytrace=False)

    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    m = _EXPORT_RE.match(last)
    if not m:
        pytest.fail(f"tools/local-slurm up: last stdout line is not "
                    f"'export SLURM_CONF=...': {last!r}", pytrace=False)
    conf = Path(m.group(1))
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch not found on PATH although tools/local-slurm up "
                    "succeeded: run tools/local-slurm up and check PATH")

    cluster = LocalSlurm(state_dir=conf.parent, slurm_conf=conf,
                         started_here=not was_up)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(conf))
        yield cluster
    if cluster.started_here and os.environ.get("LOCAL_SLURM_KEEP") != "1":
        subprocess.run([str(LOCAL_SLURM), "--state", str(cluster.state_dir), "down"],
                       capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def ray_sub() -> Path:
    """Path of the repository's default batch script."""
    return RAY_SUB
