#!/bin/bash
# DPO of Qwen2.5-1.5B, DTensor v2 TP1 with activation checkpointing (single run).
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" &>/dev/null && pwd)
source "$SCRIPT_DIR/common.env"

# ===== BEGIN CONFIG =====
NUM_NODES=1
STEPS_PER_RUN=${STEPS_PER_RUN:-20}
MAX_STEPS=${MAX_STEPS:-20}
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=20
# ===== END CONFIG =====

exit_if_max_steps_reached "$@"

# Train with the CPU stand-in trainer; extra arguments are config overrides.
run_recipe "$@"
