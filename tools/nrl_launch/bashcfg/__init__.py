"""The CONFIG block evaluator: bash's meaning for the assignment subset recipes use."""
