"""Rendering ``continue.sh``: one more run of an experiment, in plain bash.

The script must work without Python (a login node may not have our
environment), from any directory, and read like something a person would
write. Nothing derived from a file name or a value appears in it unquoted,
comments included: each such text is one ``shlex.quote``d word, and the
comments only name the variables that hold them.

The run it submits is number k = (runs recorded in the manifest) + 1 of the
experiment's chain: its manifest entry says ``run: 'k'`` and its ``--output``
file name ``...-<k>.<NUM_RUNS>.out``; every other word of the sbatch command
is the launcher's last run's. It takes the experiment's lock
(:mod:`nrl_launch.experiment.locks`) with ``flock(1)`` when installed, from numbering the
run to recording it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from nrl_launch.bashcfg.config import BASH_OWN_VARIABLES
from nrl_launch.errors import PlanError
from nrl_launch.experiment.joblogs import TOKEN_VARIABLE
from nrl_launch.experiment.locks import lock_path, waiting_line
from nrl_launch.experiment.manifest import MANIFEST_NAME, TIMESTAMP_FORMAT, entry_field_line
from nrl_launch.plan import LOG_DIR_VARIABLE, Submission, output_file, unset_for_job
from nrl_launch.slurm.client import SBATCH_EXPORT

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RUN_MARK = "\0"  # stands for the run number while splitting the --output word (never in a file name)


def _continued(words: list[str], indent: str = "") -> str:
    """One shell word per line, continuation lines indented, for reading."""
    return f" \\\n{indent}    ".join(words)


def _name(name: str) -> str:
    """``name`` if it is a shell variable name (PlanError otherwise: never reached
    through the launcher, which validates names, but the script must not break)."""
    if not _NAME_RE.match(name):
        raise PlanError(f"cannot write continue.sh: {name!r} is not a shell variable name")
    return name


def _pinned(sub: Submission) -> str:
    """``export``/``unset`` lines for what the CONFIG block read from the environment."""
    added = {name for name, _ in sub.env}
    lines = [f"export {_name(name)}={shlex.quote(value)}" if value is not None else f"unset {_name(name)}"
             for name, value in sub.config_env if name not in added and name not in BASH_OWN_VARIABLES]
    return "\n".join(lines) or "# (none)"


def _sbatch_words(sub: Submission) -> list[str]:
    """The launcher's sbatch words with the run number of ``--output`` left to ``$run``."""
    launcher_word = "--output=" + output_file(sub.stamp, sub.experiment, str(sub.index), sub.total)
    if sub.options.count(launcher_word) != 1:
        raise PlanError(f"cannot write continue.sh for {sub.experiment!r}: its runs have no --output option "
                        f"of the form {launcher_word!r}")
    head, tail = ("--output=" + output_file(sub.stamp, sub.experiment, _RUN_MARK, sub.total)).split(_RUN_MARK)
    output_word = f'{shlex.quote(head)}"$run"{shlex.quote(tail)}'
    return [output_word if word == launcher_word else shlex.quote(word) for word in sub.argv]


def _entry_fields(sub: Submission) -> str:
    """The constant fields of the run's manifest entry, as quoted printf arguments."""
    fields = [("via", "continue.sh")]
    log_dir = dict(sub.env).get(LOG_DIR_VARIABLE)
    if log_dir:
        fields.append(("base_log_dir", log_dir))
    return " \\\n    ".join(shlex.quote(entry_field_line(key, value)) for key, value in fields)


def render_continue_script(sub: Submission, *, script: str, version: str) -> str:
    """The text of ``continue.sh`` for the experiment of ``sub``.

    ``sub`` is the launcher's last run of the experiment; the script submits
    it again (as the next run of the chain), so Slurm's singleton dependency
    chains it behind any run of the same job name still queued or running.
    """
    sections = (_header(sub, script=script, version=version), _lock_section(sub), _numbering_section(),
                _submit_section(sub), _record_section(sub))
    return "\n".join(sections)


def _header(sub: Submission, *, script: str, version: str) -> str:
    """What the script is for, and the variables naming the experiment's files."""
    q = shlex.quote
    return f"""#!/usr/bin/env bash
# continue.sh: submit ONE more run of experiment EXPERIMENT, with the sbatch
# options and job environment of the launcher's last run (nrl_launch {version}).
# The run is chained behind any run of the experiment still queued or
# running: same job name and --dependency=singleton. The recipe resumes from
# its last checkpoint and exits early once MAX_STEPS is reached.
#
# The run is number <runs recorded in the manifest + 1> of the experiment's
# chain: its log file name and its manifest entry say so.
#
# Needs only bash and the Slurm client; run it from any directory.
set -euo pipefail

EXPERIMENT={q(sub.experiment)}
RECIPE={q(script)}
SNAPSHOT_DIR={q(sub.cwd)}
MANIFEST="$SNAPSHOT_DIR"/{q(MANIFEST_NAME)}
LOCK_FILE={q(str(lock_path(Path(sub.cwd))))}
cd "$SNAPSHOT_DIR"
"""


def _lock_section(sub: Submission) -> str:
    """Hold the experiment's lock (flock(1) when installed) until the script ends."""
    waiting = shlex.quote(waiting_line(sub.experiment, lock_path(Path(sub.cwd))))
    return f"""# One launch, continue.sh or code_snapshot.sh of EXPERIMENT at a time: hold
# its lock (released when this script ends). Without flock(1), go on unlocked.
if command -v flock >/dev/null 2>&1; then
    if ! {{ exec 9>>"$LOCK_FILE"; }} 2>/dev/null; then
        printf '%s\\n' "[ERROR]: cannot open the lock file $LOCK_FILE" >&2
        exit 1
    fi
    if ! flock -n 9; then
        printf '%s\\n' {waiting} >&2
        if ! flock 9; then  # a filesystem without locks
            printf '%s\\n' "[WARNING]: cannot lock $LOCK_FILE: going on without the lock" >&2
        fi
    fi
fi
"""


def _numbering_section() -> str:
    """Number this run: the runs recorded in the manifest + 1."""
    return """# This run's number in the chain of EXPERIMENT (RECIPE): the runs recorded so far + 1.
if [ ! -r "$MANIFEST" ]; then
    printf '%s\\n' "[ERROR]: cannot read $MANIFEST: without it this run cannot be numbered" >&2
    exit 1
fi
run=$(( $(grep -c '^- job_id:' "$MANIFEST" || true) + 1 ))
"""


def _environment_section(sub: Submission) -> str:
    """The pinned CONFIG-block inputs and the variables the launcher added for the job."""
    exports = "\n".join([*(f"export {_name(name)}={shlex.quote(value)}" for name, value in sub.env),
                         *(f"unset {name}" for name in (*unset_for_job(sub.env), SBATCH_EXPORT)),
                         f'export {TOKEN_VARIABLE}="$token"'])
    return f"""# What the recipe's CONFIG block read from the launcher's environment, pinned
# so that this run plans the same steps and resources as the launcher's runs.
{_pinned(sub)}

# Added to your environment for the job, as the launcher did, with this run's token.
{exports}
"""


def _submit_section(sub: Submission) -> str:
    """Run sbatch with the job's environment (in a subshell: this script's own commands keep your
    PATH), print its answer, and take the job id from it."""
    sbatch = _continued(['exec "$sbatch"', *_sbatch_words(sub)], "    ")
    return f"""# This run's token: its log folders carry it, so that watch and status never take the logs
# of an earlier job that had the same id (a controller handing ids out again) for this run's.
token=$(printf '%04x%04x%04x%04x' "$RANDOM" "$RANDOM" "$RANDOM" "$RANDOM")

# sbatch, like every command of this script, comes from your PATH (the job's may differ).
if ! sbatch=$(command -v sbatch); then
    printf '%s\\n' "[ERROR]: sbatch not found on PATH: is the Slurm client installed?" >&2
    exit 1
fi

# sbatch runs with the job's environment, set in this function's subshell only.
# (Not indented: a quoted value may hold a line break.)
submit_run() (
{_environment_section(sub)}
    {sbatch}
)
if ! answer=$(submit_run 2>&1); then
    printf '%s\\n' "[ERROR]: sbatch failed: $answer" >&2
    exit 1
fi
printf '%s\\n' "$answer"

job_id=
submitted='^Submitted batch job ([0-9]+)( on cluster [^ ]+)?$'
while IFS= read -r line; do
    if [[ $line =~ $submitted ]]; then
        job_id=${{BASH_REMATCH[1]}}
        break
    fi
done <<<"$answer"
if [ -z "$job_id" ]; then
    printf '%s\\n' "[ERROR]: sbatch answered without a job id (a job may be queued: check squeue --me)" >&2
    exit 1
fi
"""


def _record_section(sub: Submission) -> str:
    """Append the run's entry to the manifest, as the launcher does."""
    return f"""# Record the run in the snapshot's manifest, as the launcher does: one write
# at the end of the file, after a newline if its last line lacks one.
printf -v entry '%s\\n' "- job_id: '$job_id'" \\
    "  submitted_at: '$(date -u {shlex.quote('+' + TIMESTAMP_FORMAT)})'" \\
    "  run: '$run'" \\
    {_entry_fields(sub)} \\
    "  token: '$token'"
if [ -n "$(tail -c 1 "$MANIFEST")" ]; then
    entry=$'\\n'"$entry"
fi
if ! printf '%s' "$entry" >>"$MANIFEST"; then
    printf '%s\\n' "[WARNING]: job $job_id is queued but could not be recorded in $MANIFEST" >&2
fi
"""
