#!/usr/bin/env bash
# continue.sh: submit ONE more run of experiment EXPERIMENT, with the sbatch
# options and job environment of the launcher's last run (nrl_launch 1.2.3).
# The run is chained behind any run of the experiment still queued or
# running: same job name and --dependency=singleton. The recipe resumes from
# its last checkpoint and exits early once MAX_STEPS is reached.
#
# The run is number <runs recorded in the manifest + 1> of the experiment's
# chain: its log file name and its manifest entry say so.
#
# Needs only bash and the Slurm client; run it from any directory.
set -euo pipefail

EXPERIMENT=grpo-x-1n8g-megatron
RECIPE=tests/test_suites/llm/grpo-x-1n8g-megatron.sh
SNAPSHOT_DIR='/snap shots/grpo-x-1n8g-megatron'
MANIFEST="$SNAPSHOT_DIR"/.nrl_launch.yaml
LOCK_FILE='/snap shots/.grpo-x-1n8g-megatron.lock'
cd "$SNAPSHOT_DIR"

# One launch, continue.sh or code_snapshot.sh of EXPERIMENT at a time: hold
# its lock (released when this script ends). Without flock(1), go on unlocked.
if command -v flock >/dev/null 2>&1; then
    if ! { exec 9>>"$LOCK_FILE"; } 2>/dev/null; then
        printf '%s\n' "[ERROR]: cannot open the lock file $LOCK_FILE" >&2
        exit 1
    fi
    if ! flock -n 9; then
        printf '%s\n' '[INFO]: waiting for another launch, continue.sh or code_snapshot.sh of experiment grpo-x-1n8g-megatron to finish with its snapshot (lock /snap shots/.grpo-x-1n8g-megatron.lock)' >&2
        if ! flock 9; then  # a filesystem without locks
            printf '%s\n' "[WARNING]: cannot lock $LOCK_FILE: going on without the lock" >&2
        fi
    fi
fi

# This run's number in the chain of EXPERIMENT (RECIPE): the runs recorded so far + 1.
if [ ! -r "$MANIFEST" ]; then
    printf '%s\n' "[ERROR]: cannot read $MANIFEST: without it this run cannot be numbered" >&2
    exit 1
fi
run=$(( $(grep -c '^- job_id:' "$MANIFEST" || true) + 1 ))

# This run's token: its log folders carry it, so that watch and status never take the logs
# of an earlier job that had the same id (a controller handing ids out again) for this run's.
token=$(printf '%04x%04x%04x%04x' "$RANDOM" "$RANDOM" "$RANDOM" "$RANDOM")

# sbatch, like every command of this script, comes from your PATH (the job's may differ).
if ! sbatch=$(command -v sbatch); then
    printf '%s\n' "[ERROR]: sbatch not found on PATH: is the Slurm client installed?" >&2
    exit 1
fi

# sbatch runs with the job's environment, set in this function's subshell only.
# (Not indented: a quoted value may hold a line break.)
submit_run() (
# What the recipe's CONFIG block read from the launcher's environment, pinned
# so that this run plans the same steps and resources as the launcher's runs.
export MAX_STEPS=6
export STEPS_PER_RUN=2
unset NUM_NODES
export BASH_ENV=/x

# Added to your environment for the job, as the launcher did, with this run's token.
export FOO='a '"'"'quoted'"'"' $value'
export HF_HOME=/hf
export MOUNTS='/snap shots/x:/snap shots/x'
export BASE_LOG_DIR='/logs/it'"'"'s here'
export COMMAND='uv run tests/x.sh logger.wandb.name=x '"'"'a b=c'"'"''
unset SBATCH_EXPORT
export NRL_RUN_TOKEN="$token"

    exec "$sbatch" \
        --nodes=1 \
        --account=acct \
        --job-name=acct:grpo-x-1n8g-megatron \
        --partition=batch \
        --time=0:30:0 \
        --gres=gpu:8 \
        '--comment={"Reaper": "it'"'"'s long"}' \
        --output=slurm-261129-010203-%j-grpo-x-1n8g-megatron-"$run".2.out \
        --dependency=singleton \
        ray.sub
)
if ! answer=$(submit_run 2>&1); then
    printf '%s\n' "[ERROR]: sbatch failed: $answer" >&2
    exit 1
fi
printf '%s\n' "$answer"

job_id=
submitted='^Submitted batch job ([0-9]+)( on cluster [^ ]+)?$'
while IFS= read -r line; do
    if [[ $line =~ $submitted ]]; then
        job_id=${BASH_REMATCH[1]}
        break
    fi
done <<<"$answer"
if [ -z "$job_id" ]; then
    printf '%s\n' "[ERROR]: sbatch answered without a job id (a job may be queued: check squeue --me)" >&2
    exit 1
fi

# Record the run in the snapshot's manifest, as the launcher does: one write
# at the end of the file, after a newline if its last line lacks one.
printf -v entry '%s\n' "- job_id: '$job_id'" \
    "  submitted_at: '$(date -u +%Y-%m-%dT%H:%M:%S+00:00)'" \
    "  run: '$run'" \
    '  via: "continue.sh"' \
    '  base_log_dir: "/logs/it'"'"'s here"' \
    "  token: '$token'"
if [ -n "$(tail -c 1 "$MANIFEST")" ]; then
    entry=$'\n'"$entry"
fi
if ! printf '%s' "$entry" >>"$MANIFEST"; then
    printf '%s\n' "[WARNING]: job $job_id is queued but could not be recorded in $MANIFEST" >&2
fi
