"""tools/local-slurm's two Slurm versions: 22.05 (this machine's) and 24.11 (Debian 13's, in a root folder).

Each test runs clusters of its own (temporary state folders, free ports) of
the version it names, whatever the session's version; ``local_slurm`` is asked
for only so that a machine without Slurm skips them (and CI fails).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from testkit import LOCAL_SLURM, SYSTEM_PATH, LocalSlurm, parse_export_line, private_env

pytestmark = pytest.mark.slurm

ROOT_MARK = "etc/nrl-local-slurm-root"


def local_slurm_cmd(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LOCAL_SLURM), *args], capture_output=True, text=True, env=env, timeout=timeout)


def default_root() -> Path:
    return Path("/var/cache/nrl-local-slurm/slurm-24.11")


def test_a_cluster_switches_versions_and_each_runs_its_own_slurm(local_slurm: LocalSlurm,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    del local_slurm  # (the session's cluster only gates the test: skip without Slurm)
    base = tmp_path_factory.mktemp("sw")
    state, work = base / "st", base / "work"
    work.mkdir()
    env = private_env(state)
    root_was_made = (default_root() / ROOT_MARK).is_file()
    try:
        old = local_slurm_cmd(env, "up", "--slurm", "22.05")
        assert old.returncode == 0, old.stderr
        conf, bin_dir = parse_export_line(old.stdout.splitlines()[-1]) or (None, None)
        assert conf and bin_dir, old.stdout
        cluster = LocalSlurm(state_dir=state, slurm_conf=conf, bin_dir=bin_dir, version="22.05")
        job = cluster.sbatch("--output=/dev/null", "--wrap", "sleep 600", cwd=work)

        new = local_slurm_cmd(env, "up", "--slurm", "24.11", "--nodes", "2")
        assert new.returncode == 0, new.stderr
        assert "switching: the running cluster is Slurm 22.05, wanted: 24.11" in new.stderr, new.stderr
        if root_was_made:  # made once, then reused
            assert "making the Slurm 24.11 root folder" not in new.stderr, new.stderr
        assert new.stdout.splitlines()[-1] == old.stdout.splitlines()[-1]  # the same state folder, conf and bin/
        cluster.version = "24.11"
        # its job was cancelled (jobcomp says so), and 24.11 starts afresh without 22.05's job state
        gone = cluster.job_state(job)
        assert gone is not None and (gone.state, gone.source) == ("CANCELLED", "jobcomp"), gone

        # A job runs inside the root folder: its sbatch, srun and python3 are
        # 24.11's and Debian 13's, even with a virtual environment of the host
        # first on the submitter's PATH (the TaskProlog leaves it out).
        venv = base / "venv"
        (venv / "bin").mkdir(parents=True)
        (venv / "pyvenv.cfg").write_text("home = /nowhere\n")
        (venv / "bin" / "python3").symlink_to("/nowhere/python3")
        script = work / "job.sh"
        script.write_text("#!/bin/bash\nsbatch --version\nsrun -N2 printenv SLURMD_NODENAME | sort\n"
                          "python3 -c 'import sys, yaml; print(sys.version_info[:2] >= (3, 13))'\n"
                          'echo "VIRTUAL_ENV=${VIRTUAL_ENV-unset}"\n')
        submit_env = cluster.env(PATH=f"{venv / 'bin'}:{cluster.env()['PATH']}", VIRTUAL_ENV=str(venv))
        inner = cluster.sbatch("-N2", "--segment=2", f"--output={work}/out-%j.txt", str(script), cwd=work,
                               env=submit_env)
        info = cluster.finished(inner, timeout=120)
        out = (work / f"out-{inner}.txt").read_text()
        assert info.state == "COMPLETED", (info, out)
        assert out.splitlines()[0].startswith("slurm-wlm 24.11."), out
        assert out.splitlines()[1:] == ["node1", "node2", "True", "VIRTUAL_ENV=unset"], out

        # stopped, it comes back as it was: 24.11, the same port
        port = re.search(r"^SlurmctldPort=(\d+)$", conf.read_text(), re.M)
        assert local_slurm_cmd(env, "down").returncode == 0
        again = local_slurm_cmd({k: v for k, v in env.items() if k != "LOCAL_SLURM_PORT"}, "up")
        assert again.returncode == 0, again.stderr
        assert "(Slurm 24.11, partition 'local'" in again.stderr, again.stderr
        assert port and f"port {port.group(1)})" in again.stderr, again.stderr
    finally:
        down = local_slurm_cmd(env, "down")
    assert down.returncode == 0, down.stderr
    pgrep = subprocess.run(["pgrep", "-a", "-f", str(state)], capture_output=True, text=True)
    assert pgrep.stdout == "", pgrep.stdout
    # the 24.11 binds lived in the daemons' own mount namespaces: nothing to unmount, nothing left
    assert str(default_root()) not in Path("/proc/self/mountinfo").read_text()


needs_debootstrap = pytest.mark.skipif(not shutil.which("debootstrap", path=SYSTEM_PATH),
                                       reason="debootstrap is not installed")


def fake_incomplete_root(cache: Path) -> tuple[Path, Path]:
    """(a root folder that looks done but has no completion mark, a partial one left by a killed build)."""
    root, partial = cache / "slurm-24.11", cache / "slurm-24.11.partial"
    for folder in (root, partial):
        for prog in ("usr/sbin/slurmctld", "usr/sbin/slurmd", "usr/sbin/munged", "usr/bin/sbatch",
                     "usr/bin/python3", "usr/bin/env"):
            (folder / prog).parent.mkdir(parents=True, exist_ok=True)
            (folder / prog).write_text("#!/bin/sh\nexit 0\n")
            (folder / prog).chmod(0o755)
    return root, partial


@needs_debootstrap
def test_an_incomplete_root_folder_is_never_used(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    del local_slurm
    cache = tmp_path / "cache"
    root, partial = fake_incomplete_root(cache)
    # a mirror that does not answer: the build fails at once
    env = private_env(tmp_path / "st", LOCAL_SLURM_CACHE=str(cache), LOCAL_SLURM_MIRROR="http://127.0.0.1:9/debian")
    res = local_slurm_cmd(env, "up", "--slurm", "24.11", timeout=300)
    assert res.returncode == 1 and res.stdout == "false\n", res.stdout
    assert f"{root} is incomplete: making it again" in res.stderr, res.stderr
    assert "debootstrap of Debian 13 (trixie) from http://127.0.0.1:9/debian failed" in res.stderr, res.stderr
    assert not root.exists(), "an incomplete root folder was kept"
    assert not (partial / "usr" / "sbin" / "slurmctld").exists(), "the partial folder of a killed build was reused"
    assert not (tmp_path / "st" / "run").exists() or not list((tmp_path / "st" / "run").iterdir())


@needs_debootstrap
def test_a_root_folder_with_mounts_inside_is_not_deleted_through_them(local_slurm: LocalSlurm,
                                                                      tmp_path: Path) -> None:
    del local_slurm
    cache = tmp_path / "cache"
    root, _ = fake_incomplete_root(cache)
    (root / "tmp").mkdir()
    env = private_env(tmp_path / "st", LOCAL_SLURM_CACHE=str(cache), LOCAL_SLURM_MIRROR="http://127.0.0.1:9/debian")
    # in a mount namespace of the test's own: a tmpfs inside the root folder
    script = (f'mount -t tmpfs none {root}/tmp && echo precious > {root}/tmp/file && '
              f'{LOCAL_SLURM} up --slurm 24.11; echo "rc=$?"; cat {root}/tmp/file')
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.stdout.splitlines()[-3:] == ["false", "rc=1", "precious"], res.stdout + res.stderr
    assert f"{root} has mounts inside ({root}/tmp): unmount them first" in res.stderr, res.stderr
    assert (root / "usr" / "sbin" / "slurmctld").exists()  # nothing deleted


@pytest.mark.parametrize("binds, message", [
    ("/usr", "cannot show /usr inside the Slurm 24.11 root folder"),
    ("/etc/ssl", "cannot show /etc/ssl inside the Slurm 24.11 root folder"),
    ("relative/folder", "LOCAL_SLURM_BINDS: 'relative/folder' is not an absolute path of a folder"),
    ("/nonexistent-folder", "LOCAL_SLURM_BINDS: '/nonexistent-folder' is not an absolute path of a folder"),
])
def test_a_bad_bind_is_refused_before_anything_is_done(local_slurm: LocalSlurm, tmp_path: Path, binds: str,
                                                       message: str) -> None:
    del local_slurm
    state = tmp_path / "st"
    res = local_slurm_cmd(private_env(state, LOCAL_SLURM_BINDS=binds), "up", "--slurm", "24.11", timeout=120)
    assert res.returncode == 1 and res.stdout == "false\n", res.stdout
    assert message in res.stderr, res.stderr
    assert not state.exists()
