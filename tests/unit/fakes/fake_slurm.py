#!/usr/bin/env python3
"""sbatch, squeue, sacct, scontrol, sinfo and scancel for tests that run real processes.

Installed under each command's name (symlinks, ``testkit.SlurmOnPath``) in a
folder put first on PATH. Every call runs the test kit's one model of Slurm
(``tests/testkit/slurm.py``: ``FakeSlurm``), its queue kept in
$FAKE_SLURM_DIR/queue.json, and is recorded as one JSON line in
$FAKE_SLURM_DIR/calls.jsonl (argv, working directory, full environment and,
for sbatch, the batch script's text). The knobs (FAKE_* variables) are listed
in that module, above ``on_path_model``.
"""

import importlib.util
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]
# The model and the launcher's Completed; the kit's model is loaded by its path, without the
# rest of the kit (pytest and all): this runs at every fake Slurm call.
sys.path.insert(0, str(TESTS.parent / "tools"))
spec = importlib.util.spec_from_file_location("fake_slurm_model", TESTS / "testkit" / "slurm.py")
model = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = model
spec.loader.exec_module(model)

if __name__ == "__main__":
    sys.exit(model.serve_on_path(os.path.basename(sys.argv[0]), sys.argv[1:], Path(os.environ["FAKE_SLURM_DIR"])))
