"""continue.sh rendering: compared with a reference file, and checked by bash."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nrl_launch.continuation import render_continue_script
from nrl_launch.plan import Submission

REFERENCE = Path(__file__).parent / "reference" / "continue.sh"
SUBMISSION = Submission(
    experiment="grpo-x-1n8g-megatron",
    index=2,
    total=2,
    num_nodes=1,
    options=("--nodes=1", "--account=acct", "--job-name=acct:grpo-x-1n8g-megatron", "--partition=batch",
             "--time=0:30:0", "--gres=gpu:8", '--comment={"Reaper": "it\'s long"}',
             "--output=slurm-261129-010203-%j-grpo-x-1n8g-megatron-2.2.out", "--dependency=singleton"),
    batch_script="ray.sub",
    cwd="/snap shots/grpo-x-1n8g-megatron",
    env=(("FOO", "a 'quoted' $value"), ("HF_HOME", "/hf"), ("MOUNTS", "/snap shots/x:/snap shots/x"),
         ("COMMAND", "uv run tests/x.sh logger.wandb.name=x 'a b=c'")),
    config_env=(("MAX_STEPS", "6"), ("STEPS_PER_RUN", "2"), ("NUM_NODES", None), ("HF_HOME", "/ignored")),
)


def test_matches_reference_file() -> None:
    text = render_continue_script(SUBMISSION, script="tests/test_suites/llm/grpo-x-1n8g-megatron.sh", version="1.2.3")
    if os.environ.get("UPDATE_REFERENCE") == "1":  # regenerate after an intended change
        REFERENCE.write_text(text)
    assert text == REFERENCE.read_text()


def test_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(REFERENCE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("value", ["plain", "with space", "it's", '"dq"', "$HOME", "`cmd`", "a\nb", "back\\slash", ""])
def test_exported_values_survive_bash_exactly(tmp_path: Path, value: str) -> None:
    sub = Submission("e", 1, 1, 1, ("--nodes=1",), "ray.sub", str(tmp_path), (("VALUE", value),))
    script = render_continue_script(sub, script="x.sh", version="0")
    # Run only the part before sbatch: cd + exports, then print the value.
    head = script.split("answer=$(")[0] + 'printf %s "$VALUE"\n'
    proc = subprocess.run(["bash", "-c", head], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == value
