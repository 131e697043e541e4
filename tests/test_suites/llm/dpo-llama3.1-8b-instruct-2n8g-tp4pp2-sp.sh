#!/bin/bash
# DPO of Llama-3.1-8B-Instruct on 2 nodes, Megatron TP4 PP2 with sequence parallelism.
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" &>/dev/null && pwd)
source "$SCRIPT_DIR/common.env"

# ===== BEGIN CONFIG =====
NUM_NODES=2
SEGMENT_SIZE=2  # both nodes on one network segment
STEPS_PER_RUN=${STEPS_PER_RUN:-25}
MAX_STEPS=${MAX_STEPS:-50}
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=45
# ===== END CONFIG =====

exit_if_max_steps_reached "$@"

# Train with the CPU stand-in trainer; extra arguments are config overrides.
run_recipe "$@"
