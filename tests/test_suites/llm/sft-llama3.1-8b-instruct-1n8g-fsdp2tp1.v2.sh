#!/bin/bash
# SFT of Llama-3.1-8B-Instruct, FSDP2 without TP (v2: larger batch, 16 features).
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" &>/dev/null && pwd)
source "$SCRIPT_DIR/common.env"

# ===== BEGIN CONFIG =====
NUM_NODES=1
STEPS_PER_RUN=${STEPS_PER_RUN:-20}
MAX_STEPS=${MAX_STEPS:-40}
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=30
# ===== END CONFIG =====

exit_if_max_steps_reached "$@"

# Train with the CPU stand-in trainer; extra arguments are config overrides.
run_recipe "$@"
