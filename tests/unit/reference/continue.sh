#!/usr/bin/env bash
# continue.sh: submit ONE more run of experiment grpo-x-1n8g-megatron.
#
# It repeats the launcher's run 2/2 of tests/test_suites/llm/grpo-x-1n8g-megatron.sh (nrl_launch 1.2.3)
# with the same sbatch options and job environment. The run is chained behind
# any run of this experiment still queued or running: same job name and
# --dependency=singleton. The recipe resumes from its last checkpoint and
# exits early once MAX_STEPS is reached.
#
# Needs only bash and the Slurm client; run it from any directory.
set -euo pipefail

SNAPSHOT_DIR='/snap shots/grpo-x-1n8g-megatron'
cd "$SNAPSHOT_DIR"

# What the recipe's CONFIG block read from the launcher's environment, pinned
# so that this run plans the same steps and resources as the launcher's runs.
export MAX_STEPS=6
export STEPS_PER_RUN=2
unset NUM_NODES

# Added to your environment for the job, as the launcher did.
export FOO='a '"'"'quoted'"'"' $value'
export HF_HOME=/hf
export MOUNTS='/snap shots/x:/snap shots/x'
export COMMAND='uv run tests/x.sh logger.wandb.name=x '"'"'a b=c'"'"''

answer=$(sbatch \
    --nodes=1 \
    --account=acct \
    --job-name=acct:grpo-x-1n8g-megatron \
    --partition=batch \
    --time=0:30:0 \
    --gres=gpu:8 \
    '--comment={"Reaper": "it'"'"'s long"}' \
    --output=slurm-261129-010203-%j-grpo-x-1n8g-megatron-2.2.out \
    --dependency=singleton \
    ray.sub)
printf '%s\n' "$answer"

job_id=$(printf '%s\n' "$answer" | sed -n 's/^Submitted batch job \([0-9][0-9]*\).*/\1/p' | head -n 1)
if [ -z "$job_id" ]; then
    echo "[ERROR]: sbatch answered without a job id: $answer" >&2
    exit 1
fi

# Record the run in the snapshot's manifest, as the launcher does.
manifest="$SNAPSHOT_DIR/.nrl_launch.yaml"
if [ -w "$manifest" ]; then
    run=$(( $(grep -c '^- job_id:' "$manifest" || true) + 1 ))
    printf '%s\n' "- job_id: '$job_id'" \
        "  submitted_at: '$(date -u +%Y-%m-%dT%H:%M:%SZ)'" \
        "  run: $run/2" \
        "  via: continue.sh" >>"$manifest"
fi
