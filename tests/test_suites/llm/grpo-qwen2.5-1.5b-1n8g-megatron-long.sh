#!/bin/bash
# Long GRPO run of Qwen2.5-1.5B with the Megatron backend (4 chained runs).
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" &>/dev/null && pwd)
source "$SCRIPT_DIR/common.env"

# ===== BEGIN CONFIG =====
NUM_NODES=1
STEPS_PER_RUN=${STEPS_PER_RUN:-25}
MAX_STEPS=${MAX_STEPS:-100}
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=120
JOB_REAPER_COMMENT='{"Reaper":{"exemptIdleTimeMins":"120","reason":"long rollouts"}}'
# ===== END CONFIG =====

exit_if_max_steps_reached "$@"

# Train with the CPU stand-in trainer; extra arguments are config overrides.
run_recipe "$@"
