"""Following submitted jobs: WATCH, verdicts, retries, status, cancel and logs."""
