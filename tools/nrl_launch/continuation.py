"""Rendering ``continue.sh``: one more run of an experiment, in plain bash.

The script must work without Python (a login node may not have our
environment), from any directory, and read like something a person would
write. Every value is ``shlex.quote``d.
"""

from __future__ import annotations

import shlex

from nrl_launch.manifest import MANIFEST_NAME
from nrl_launch.plan import Submission


def _yaml_quote(text: str) -> str:
    """``text`` as a YAML single-quoted scalar."""
    return "'" + text.replace("'", "''") + "'"


def _continued(words: list[str]) -> str:
    """One shell word per line, continuation lines indented, for reading."""
    return " \\\n    ".join(words)


def render_continue_script(sub: Submission, *, script: str, version: str) -> str:
    """The text of ``continue.sh`` for the experiment of ``sub``.

    ``sub`` is the launcher's last run of the experiment; the script submits
    exactly that again, so Slurm's singleton dependency chains it behind any
    run of the same job name that is still queued or running.
    """
    q = shlex.quote
    exports = "\n".join(f"export {name}={q(value)}" for name, value in sub.env)
    added = {name for name, _ in sub.env}
    pinned = "\n".join(f"export {name}={q(value)}" if value is not None else f"unset {name}"
                       for name, value in sub.config_env if name not in added) or "# (none)"
    sbatch_words = _continued(["sbatch", *(q(word) for word in sub.argv)])
    log_dir = dict(sub.env).get("BASE_LOG_DIR")
    # The manifest line is YAML (single-quoted scalar) inside a shell word.
    log_entry = f" \\\n        {q('  base_log_dir: ' + _yaml_quote(log_dir))}" if log_dir else ""
    return f"""#!/usr/bin/env bash
# continue.sh: submit ONE more run of experiment {sub.experiment}.
#
# It repeats the launcher's run {sub.run_label} of {script} (nrl_launch {version})
# with the same sbatch options and job environment. The run is chained behind
# any run of this experiment still queued or running: same job name and
# --dependency=singleton. The recipe resumes from its last checkpoint and
# exits early once MAX_STEPS is reached.
#
# Needs only bash and the Slurm client; run it from any directory.
set -euo pipefail

SNAPSHOT_DIR={q(sub.cwd)}
cd "$SNAPSHOT_DIR"

# What the recipe's CONFIG block read from the launcher's environment, pinned
# so that this run plans the same steps and resources as the launcher's runs.
{pinned}

# Added to your environment for the job, as the launcher did.
{exports}

answer=$({sbatch_words})
printf '%s\\n' "$answer"

job_id=$(printf '%s\\n' "$answer" | sed -n 's/^Submitted batch job \\([0-9][0-9]*\\).*/\\1/p' | head -n 1)
if [ -z "$job_id" ]; then
    echo "[ERROR]: sbatch answered without a job id: $answer" >&2
    exit 1
fi

# Record the run in the snapshot's manifest, as the launcher does.
manifest="$SNAPSHOT_DIR/{MANIFEST_NAME}"
if [ -w "$manifest" ]; then
    run=$(( $(grep -c '^- job_id:' "$manifest" || true) + 1 ))
    printf '%s\\n' "- job_id: '$job_id'" \\
        "  submitted_at: '$(date -u +%Y-%m-%dT%H:%M:%SZ)'" \\
        "  run: $run/{sub.total}" \\
        "  via: continue.sh"{log_entry} >>"$manifest"
fi
"""
