"""Differential property test: the CONFIG evaluator against real bash.

For generated blocks (the supported grammar and its near misses) and
environments, our evaluator must give exactly bash's value for every
assignment, or reject the block with a ConfigError; never a different value,
never another exception. ``benchmarks/fuzz_config.py`` runs the same check
for long runs. The strategies live in ``tests/bash_strategies.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from bash_strategies import BASH, Case, cases, check_case, check_count_case, count_cases

pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

# Small and reproducible for CI; the benchmark script does the long runs.
CI_SETTINGS = settings(
    max_examples=500,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@CI_SETTINGS
@given(cases)
def test_block_values_match_bash_or_are_rejected(case: Case) -> None:
    outcome = check_case(case)
    assert outcome.kind in ("agreed", "rejected"), outcome.detail


@CI_SETTINGS
@given(count_cases)
def test_counts_match_bash_arithmetic_or_are_rejected(case: Case) -> None:
    outcome = check_count_case(case)
    assert outcome.kind in ("agreed", "rejected"), outcome.detail
