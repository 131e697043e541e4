"""The contract's stdout lines (spec section 2): one home for each format.

Tools around the launcher parse these lines, so they are built here and
nowhere else.
"""

from __future__ import annotations

import os

from nrl_launch.plan import Experiment, Submission


def info_line(exp: Experiment) -> str:
    """``[INFO]: <gpu_hours> GPUhrs to run <script>``."""
    return f"[INFO]: {exp.config.gpu_hours} GPUhrs to run {exp.script}"


def total_line(total: int) -> str:
    """The last stdout line of every launch without WATCH."""
    return f"[INFO]: Total GPU hours: {total}"


def dry_run_line(exp: Experiment) -> str:
    """DRYRUN=1: nothing is made or submitted for this script."""
    return f"[DRY_RUN]: Skipping creation of snapshot and submission of {exp.script}."


def submitting_line(sub: Submission, exp: Experiment) -> str:
    """``Submitting <i>/<N> job with <nodes> nodes for <script basename>``."""
    return f"Submitting {sub.run_label} job with {sub.num_nodes} nodes for {os.path.basename(exp.script)}"


def skip_submission_line(exp: Experiment, snapshot_dir: str) -> str:
    """DRYRUN=2: the snapshot is made, the run is not submitted."""
    return (f"[DRY_RUN]: Skipping submission of {exp.script}. Find the snapshot at {snapshot_dir} "
            "and manually launch with 'bash continue.sh'")
