"""Smoke tests of the local single-node Slurm cluster and ray.sub."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slurm


def test_gres_gpu8_visible_without_gpus(local_slurm, tmp_path):
    job = local_slurm.sbatch(
        "--wrap", 'echo "CVD=$CUDA_VISIBLE_DEVICES"',
        "--gres=gpu:8", "--account=x", f"--partition={local_slurm.partition}",
        "--output", str(tmp_path / "out-%j.txt"),
        cwd=tmp_path,
    )
    info = local_slurm.wait_for_jobs([job], timeout=30)[job]
    out = (tmp_path / f"out-{job}.txt").read_text()
    assert "CVD=0,1,2,3,4,5,6,7" in out.split(), out
    assert info.state == "COMPLETED" and info.exit_code == 0, info


def test_singleton_jobs_run_in_submission_order(local_slurm, tmp_path):
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
    assert states[ids[0]].state == "FAILED" and states[ids[0]].exit_code == 1
    assert states[ids[1]].state == "COMPLETED"


def test_ray_sub_logs_driver_and_keeps_exit_status(local_slurm, tmp_path, ray_sub):
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
    info = local_slurm.wait_for_jobs([job], timeout=30)[job]
    log = tmp_path / f"{job}-logs" / "ray-driver.log"
    assert log.is_file(), sorted(p.name for p in tmp_path.iterdir())
    text = log.read_text()
    assert "hi" in text.splitlines(), text
    assert "running COMMAND directly" in text
    assert info is not None and info.exit_code == 3, info
    assert info.state == "FAILED", info
    # the job output gets the same lines through tee
    assert "hi" in (tmp_path / f"slurm-{job}.out").read_text().splitlines()


def test_sbatch_test_only(local_slurm, tmp_path):
    ok = local_slurm.run(
        "sbatch", "--test-only", "--gres=gpu:8", "--exclusive", "--account=x",
        f"--partition={local_slurm.partition}", "--dependency=singleton",
        "--job-name=a:b", "--wrap", "true", cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    bad = local_slurm.run(
        "sbatch", "--test-only", "--segment=1", "--wrap", "true", cwd=tmp_path,
    )
    assert bad.returncode != 0
    assert "segment" in bad.stderr, bad.stderr
