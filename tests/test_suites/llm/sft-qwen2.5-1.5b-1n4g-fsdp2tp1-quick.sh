#!/bin/bash
# Quick SFT smoke test of Qwen2.5-1.5B on half a node (4 GPUs).
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" &>/dev/null && pwd)
source "$SCRIPT_DIR/common.env"

# ===== BEGIN CONFIG =====
NUM_NODES="${NUM_NODES:-1}"  # the caller's environment may override
GPUS_PER_NODE=4
STEPS_PER_RUN=${STEPS_PER_RUN:-10}
MAX_STEPS=${MAX_STEPS:-20}
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=15
# ===== END CONFIG =====

exit_if_max_steps_reached "$@"

# Train with the CPU stand-in trainer; extra arguments are config overrides.
run_recipe "$@"
