"""Tests of the local Slurm cluster (tools/local-slurm) and the session
fixture's policy, on the session's Slurm version (tools/run-tests runs this
module on each version of its matrix).

Most tests use the session cluster (``local_slurm``: LOCAL_SLURM_NODES nodes,
default 3).  The node-count tests run a private cluster of their own, of the
session's version, in a temporary state folder on free ports
(``LOCAL_SLURM_PORT=auto``), and take it down again.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from testkit import (
    LOCAL_SLURM,
    LocalSlurm,
    cluster_node_count,
    cluster_verdict,
    parse_export_line,
    private_env,
    session_slurm_version,
)


def _node_names(count: int) -> list[str]:
    return [f"node{k}" for k in range(1, count + 1)]


def _local_slurm(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LOCAL_SLURM), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _private_env(state: Path, **extra: str) -> dict[str, str]:
    """A private cluster of the session's Slurm version in ``state``, on free ports."""
    return private_env(state, **{"LOCAL_SLURM_VERSION": session_slurm_version(os.environ), **extra})


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (containers whose PID 1
    does not reap leave the daemons' double-fork zombies behind)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pid_files(state: Path) -> dict[str, int]:
    return {p.name: int(p.read_text().strip()) for p in sorted((state / "run").glob("*.pid"))}


pytestmark = pytest.mark.slurm


# --------------------------------------------------------------------------
# the session cluster
# --------------------------------------------------------------------------

def test_session_cluster_has_the_configured_nodes_all_idle(local_slurm: LocalSlurm) -> None:
    names = _node_names(int(cluster_node_count(os.environ)))
    assert local_slurm.nodes() == names
    assert local_slurm.node_states() == dict.fromkeys(names, "idle")


def test_srun_runs_one_task_on_each_emulated_node(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    names = local_slurm.nodes()
    n = len(names)
    res = local_slurm.run(
        "srun", f"--nodes={n}", f"--ntasks={n}", "--gres=gpu:8", "--account=x",
        "bash", "-c", 'echo "$SLURMD_NODENAME $CUDA_VISIBLE_DEVICES"', cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    rows = sorted(line.split() for line in res.stdout.splitlines())
    # one task per node, and every node has its own 8 (fake) GPUs
    assert rows == [[name, "0,1,2,3,4,5,6,7"] for name in names], res.stdout


def test_gres_gpu8_visible_without_gpus(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    job = local_slurm.sbatch(
        "--wrap", 'echo "CVD=$CUDA_VISIBLE_DEVICES"',
        "--gres=gpu:8", "--account=x", f"--partition={local_slurm.partition}",
        "--output", str(tmp_path / "out-%j.txt"),
        cwd=tmp_path,
    )
    info = local_slurm.finished(job, timeout=30)
    out = (tmp_path / f"out-{job}.txt").read_text()
    assert "CVD=0,1,2,3,4,5,6,7" in out.split(), out
    assert info.state == "COMPLETED" and info.exit_code == 0, info


def test_singleton_jobs_run_in_submission_order(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    stamps = tmp_path / "stamps.txt"
    ids = []
    # the first one fails: singleton (unlike afterok) still releases the next
    for name, rc in (("first", 1), ("second", 0)):
        script = (f'echo "{name} start $(date +%s.%N)" >> {stamps}; sleep 1; '
                  f'echo "{name} end $(date +%s.%N)" >> {stamps}; exit {rc}')
        ids.append(local_slurm.sbatch(
            "--dependency=singleton", "--job-name=smoke:singleton",
            "--output", str(tmp_path / "out-%j.txt"), "--wrap", script,
            cwd=tmp_path,
        ))
    states = local_slurm.wait_for_jobs(ids, timeout=40)
    events = [line.split() for line in stamps.read_text().splitlines()]
    assert [(e[0], e[1]) for e in events] == [
        ("first", "start"), ("first", "end"), ("second", "start"), ("second", "end"),
    ], events
    t = {(e[0], e[1]): float(e[2]) for e in events}
    assert t[("second", "start")] >= t[("first", "end")]
    first, second = states[ids[0]], states[ids[1]]
    assert first is not None and first.state == "FAILED" and first.exit_code == 1, first
    assert second is not None and second.state == "COMPLETED", second


def test_ray_sub_logs_driver_and_keeps_exit_status(local_slurm: LocalSlurm, tmp_path: Path, ray_sub: Path) -> None:
    env = local_slurm.env(
        COMMAND='uv run bash -c "echo hi; exit 3"',
        CONTAINER="",
        MOUNTS=f"{tmp_path}:{tmp_path}",
        HF_HOME=str(tmp_path / "hf"),
        HF_DATASETS_CACHE=str(tmp_path / "hf" / "datasets"),
        GPUS_PER_NODE="8",
    )
    env.pop("SLURM_SUBMIT_DIR", None)
    job = local_slurm.sbatch(
        "--gres=gpu:8", "--account=x", "--comment=smoke",
        "--output", str(tmp_path / "slurm-%j.out"), str(ray_sub),
        cwd=tmp_path, env=env,
    )
    info = local_slurm.finished(job, timeout=30)
    log = tmp_path / f"{job}-logs" / "ray-driver.log"
    assert log.is_file(), sorted(p.name for p in tmp_path.iterdir())
    text = log.read_text()
    assert "hi" in text.splitlines(), text
    assert "running COMMAND directly" in text
    assert info is not None and info.exit_code == 3, info
    assert info.state == "FAILED", info
    # the job output gets the same lines through tee
    assert "hi" in (tmp_path / f"slurm-{job}.out").read_text().splitlines()


def test_sbatch_test_only(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    ok = local_slurm.run(
        "sbatch", "--test-only", "--gres=gpu:8", "--exclusive", "--account=x",
        f"--partition={local_slurm.partition}", "--dependency=singleton",
        "--job-name=a:b", "--wrap", "true", cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    segment = local_slurm.run(
        "sbatch", "--test-only", "--nodes=2", "--segment=2", "--wrap", "true", cwd=tmp_path,
    )
    if local_slurm.has_segment:  # 23.02 and newer
        assert segment.returncode == 0, segment.stderr
    else:
        assert segment.returncode != 0
        assert "unrecognized option '--segment=2'" in segment.stderr, segment.stderr


def test_the_export_line_points_at_the_clusters_own_commands(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    # what `eval "$(tools/local-slurm up | tail -n 1)"` gives a shell: this
    # cluster's SLURM_CONF, and sbatch of this cluster's version first on PATH
    status = _local_slurm(_private_env(local_slurm.state_dir), "status")
    line = status.stdout.splitlines()[-1]
    assert parse_export_line(line) == (local_slurm.slurm_conf, local_slurm.bin_dir), line
    assert f"slurm: {local_slurm.version}" in status.stdout.splitlines(), status.stdout
    # a shell that knows nothing of the cluster yet
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d != str(local_slurm.bin_dir))
    env = {**{k: v for k, v in os.environ.items() if k != "SLURM_CONF"}, "PATH": path}
    shell = subprocess.run(["bash", "-c", 'eval "$1"; command -v sbatch; sbatch --version; squeue -h -o %P', "-",
                            line], capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env)
    assert shell.returncode == 0, shell.stderr
    found, version = shell.stdout.splitlines()[:2]
    assert found == f"{local_slurm.bin_dir}/sbatch"
    assert version.startswith(f"slurm-wlm {local_slurm.version}."), version


# --------------------------------------------------------------------------
# node count: up --nodes N, reconfiguring, down
# --------------------------------------------------------------------------

def _assert_cluster_of(cluster: LocalSlurm, state: Path, count: int) -> None:
    names = _node_names(count)
    assert cluster.node_states() == dict.fromkeys(names, "idle")
    res = cluster.run("srun", f"-N{count}", f"-n{count}", "printenv", "SLURMD_NODENAME",
                      cwd=state)
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split()) == names, res.stdout
    # nothing of an earlier node list is left: pid files, spools, devices
    assert [p for p in _pid_files(state) if p.startswith("slurmd")] == [
        f"slurmd-{n}.pid" for n in names]
    assert sorted(p.name for p in (state / "slurmd").iterdir()) == names
    assert sorted(p.name for p in (state / "dev").iterdir()) == names
    assert sorted(p.name for p in (state / "dev" / names[-1]).iterdir()) == [
        f"gpu{i}" for i in range(8)]


def test_up_changes_the_node_count_and_down_stops_every_daemon(tmp_path_factory: pytest.TempPathFactory) -> None:
    state = tmp_path_factory.mktemp("ls") / "st"  # short: the munge socket path is limited
    env = _private_env(state)
    version = session_slurm_version(os.environ)
    cluster = LocalSlurm(state_dir=state, slurm_conf=state / "slurm.conf", bin_dir=state / "bin", version=version)
    export = f'export SLURM_CONF={state}/slurm.conf PATH={state}/bin:"$PATH"'
    seen: dict[str, int] = {}
    try:
        for step, (count, how) in enumerate(((2, "flag"), (3, "env"), (2, "flag"))):
            if how == "flag":
                res = _local_slurm(env, "up", "--nodes", str(count))
            else:
                res = _local_slurm({**env, "LOCAL_SLURM_NODES": str(count)}, "up")
            assert res.returncode == 0, res.stderr
            assert res.stdout.splitlines()[-1] == export, res.stdout
            _assert_cluster_of(cluster, state, count)
            seen.update({f"{name}@{step}": pid for name, pid in _pid_files(state).items()})

        # same count again: nothing restarted; no count given: the running one stays
        before = _pid_files(state)
        for args in (("up", "--nodes", "2"), ("up",)):
            again = _local_slurm(env, *args)
            assert again.returncode == 0 and again.stdout.splitlines()[-1] == export, again.stderr
            assert "already running" in again.stderr, again.stderr
            assert _pid_files(state) == before
        status = _local_slurm(env, "status")
        assert status.returncode == 0, status.stdout
        assert re.findall(r"^slurmd:(\S+)\s+up ", status.stdout, re.M) == _node_names(2)
        assert f"slurm: {version}" in status.stdout.splitlines(), status.stdout
        # the port it picked (LOCAL_SLURM_PORT=auto) stays when 'up' comes again
        port = re.search(r"^SlurmctldPort=(\d+)$", (state / "slurm.conf").read_text(), re.M)
        assert port and 10000 <= int(port.group(1)) < 32000, port
    finally:
        down = _local_slurm(env, "down")
    assert down.returncode == 0, down.stderr
    # munged, slurmctld and the slurmds, recorded under each of the three layouts
    assert len(seen) == sum(2 + count for count in (2, 3, 2)), seen
    assert [name for name, pid in seen.items() if _alive(pid)] == []
    assert _pid_files(state) == {}
    # no process at all still names this state folder (-f $CONF, --key-file=...)
    pgrep = subprocess.run(["pgrep", "-a", "-f", str(state)], capture_output=True, text=True)
    assert pgrep.returncode == 1 and pgrep.stdout == "", pgrep.stdout
    # and nothing is left mounted (24.11's binds live in the daemons' own mount namespaces)
    assert str(state) not in Path("/proc/self/mountinfo").read_text()


def _assert_failed_up(env: dict[str, str], args: tuple[str, ...], message: str) -> None:
    """``tools/local-slurm *args`` fails with ``message``, prints only
    ``false`` on stdout, creates nothing, and the README's
    ``eval "$(tools/local-slurm up | tail -n 1)" && ...`` stops."""
    state = Path(env["LOCAL_SLURM_STATE"])
    res = _local_slurm(env, *args)
    assert res.returncode == 1, res.stdout
    assert res.stdout == "false\n", res.stdout
    assert message in res.stderr, res.stderr
    assert not state.exists(), "a rejected 'up' left a state folder"
    quoted = " ".join(f"'{a}'" for a in args)
    idiom = subprocess.run(
        ["bash", "-c", f'eval "$({LOCAL_SLURM} {quoted} | tail -n 1)" && echo WENT-ON'],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert idiom.returncode != 0 and "WENT-ON" not in idiom.stdout, idiom.stdout


@pytest.mark.cluster_free
@pytest.mark.parametrize("args, extra_env, message", [
    (("up", "--nodes", "0"), {}, "node count must be a whole number from 1 to 64 (got '0')"),
    (("up", "--nodes=two"), {}, "node count must be a whole number from 1 to 64 (got 'two')"),
    (("up",), {"LOCAL_SLURM_NODES": "65"}, "node count must be a whole number from 1 to 64 (got '65')"),
    (("up", "--nodes", "99999999999999999999"), {}, "node count must be a whole number from 1 to 64"),
    (("--nodes", "2", "up", "--bogus"), {}, "unknown argument '--bogus'"),
    (("up", "status"), {}, "only one command allowed"),
    (("up",), {"LOCAL_SLURM_GPUS": "0"}, "LOCAL_SLURM_GPUS must be a whole number from 1 to 64"),
    (("up",), {"LOCAL_SLURM_PORT": "65500"}, "LOCAL_SLURM_PORT must be 'auto' or a port number below 65471"),
    (("up",), {"LOCAL_SLURM_PORT": "any"}, "LOCAL_SLURM_PORT must be 'auto' or a port number below 65471"),
    (("up", "--slurm", "23.02"), {}, "Slurm version must be one of: 22.05 24.11 (got '23.02')"),
    (("up",), {"LOCAL_SLURM_VERSION": "24"}, "Slurm version must be one of: 22.05 24.11 (got '24')"),
    (("up", "--slurm"), {}, "--slurm needs a version"),
    (("up",), {"LOCAL_SLURM_TIMEOUT": "soon"}, "LOCAL_SLURM_TIMEOUT must be a whole number of seconds"),
])
def test_bad_up_arguments_print_false_last_so_eval_stops(tmp_path: Path, args: tuple[str, ...],
                                                         extra_env: dict[str, str], message: str) -> None:
    _assert_failed_up(_private_env(tmp_path / "st", **extra_env), args, message)


def test_up_on_a_busy_port_prints_false_last_so_eval_stops(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    busy = re.search(r"^SlurmctldPort=(\d+)$", local_slurm.slurm_conf.read_text(), re.M)
    assert busy, "no SlurmctldPort in the session cluster's slurm.conf"
    env = _private_env(tmp_path / "st", LOCAL_SLURM_PORT=busy.group(1))
    _assert_failed_up(env, ("up", "--nodes", "2"), f"port {busy.group(1)} is already in use")


@pytest.mark.cluster_free
@pytest.mark.parametrize("command", ["down", "status"])
@pytest.mark.parametrize("option", ["--nodes", "--slurm"])
def test_nodes_and_slurm_options_are_only_for_up(tmp_path: Path, command: str, option: str) -> None:
    value = "2" if option == "--nodes" else "24.11"
    res = _local_slurm(_private_env(tmp_path / "st"), command, option, value)
    assert res.returncode == 1 and res.stdout == "", res.stdout
    assert f"{option} only applies to 'up'" in res.stderr, res.stderr


# --------------------------------------------------------------------------
# the session fixture: skip or fail without Slurm
# --------------------------------------------------------------------------

@pytest.mark.cluster_free
@pytest.mark.parametrize("up_ok, sbatch_found, ci, action", [
    (True, True, None, "run"),
    (True, True, "true", "run"),
    # no Slurm at all: skipped on a laptop ...
    (False, False, None, "skip"),
    (False, False, "", "skip"),
    (False, False, "0", "skip"),
    (False, False, "false", "skip"),
    # ... a failure in CI
    (False, False, "true", "fail"),
    (False, False, "TRUE", "fail"),
    (False, False, "1", "fail"),
    (True, False, None, "skip"),
    (True, False, "1", "fail"),
    # Slurm installed but the cluster does not come up: always a failure
    (False, True, None, "fail"),
    (False, True, "true", "fail"),
])
def test_cluster_verdict_fails_in_ci_instead_of_skipping(up_ok: bool, sbatch_found: bool, ci: str | None,
                                                         action: str) -> None:
    env = {} if ci is None else {"CI": ci}
    got, reason = cluster_verdict(up_ok, sbatch_found, "munged: boom", env)
    assert got == action
    if action == "run":
        assert reason == ""
    else:
        assert reason  # the message names the cause
    if not up_ok:
        assert "munged: boom" in reason
    if action == "fail" and not sbatch_found:
        assert f"CI={ci}" in reason


@pytest.mark.cluster_free
@pytest.mark.parametrize("value, expected", [(None, "3"), ("", "3"), (" 2 ", "2"), ("5", "5")])
def test_session_node_count(value: str | None, expected: str) -> None:
    env = {} if value is None else {"LOCAL_SLURM_NODES": value}
    assert cluster_node_count(env) == expected


@pytest.mark.cluster_free
@pytest.mark.parametrize("state", ["/tmp/st", "/tmp/a state/it's"])
def test_the_export_line_is_what_bash_evaluates(state: str) -> None:
    # the line as tools/local-slurm prints it (printf %q), evaluated by bash and read by the tests alike
    script = ('printf \'export SLURM_CONF=%q PATH=%q:"$PATH"\\n\' "$1/slurm.conf" "$1/bin" > "$2"; '
              'eval "$(cat "$2")"; printf "%s\\n" "$SLURM_CONF" "${PATH%%:*}"')
    with tempfile.NamedTemporaryFile("r") as line_file:
        shell = subprocess.run(["bash", "-c", script, "-", state, line_file.name], capture_output=True, text=True,
                               check=True)
        line = line_file.read().rstrip("\n")
    assert shell.stdout.splitlines() == [f"{state}/slurm.conf", f"{state}/bin"]
    assert parse_export_line(line) == (Path(state) / "slurm.conf", Path(state) / "bin")


@pytest.mark.cluster_free
@pytest.mark.parametrize("line", [
    "false",
    "",
    "export SLURM_CONF=/tmp/st/slurm.conf",  # the line before the client commands went on PATH
    'export SLURM_CONF=/tmp/st/slurm.conf PATH=/tmp/st/bin',
    'export PATH=/tmp/st/bin:"$PATH" SLURM_CONF=/tmp/st/slurm.conf',
    'export SLURM_CONF=/tmp/st/slurm.conf PATH=/tmp/st/bin:"$PATH" X=1',
    "export SLURM_CONF='/tmp/st",
])
def test_other_lines_are_not_export_lines(line: str) -> None:
    assert parse_export_line(line) is None
