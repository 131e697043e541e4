"""Long differential runs of the CONFIG evaluator against real bash.

    python benchmarks/fuzz_config.py --examples 100000 [--seed 1] [--counts-share 0.2]

Generates blocks with the strategies of ``tests/bash_strategies.py`` (the
ones ``tests/unit/test_config_bash.py`` uses in CI), checks each with the
same function, and prints how many examples ran, how many agreed with bash,
how many were rejected (by reason class) and every disagreement, which must
be 0 (exit status 1 otherwise). Also prints the wall time.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests")]

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bash_strategies import Case, Outcome, cases, check_case, check_count_case, count_cases  # noqa: E402


def run(examples: int, random_seed: int, counts_share: float) -> int:
    """Run ``examples`` checks; print the tally; return the number of disagreements."""
    tally: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    disagreements: list[tuple[Case, Outcome]] = []
    # Each example is a block of values or a block of counts, in this share.
    kinds = st.floats(min_value=0, max_value=1).map(lambda x: x < counts_share)

    @seed(random_seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(kinds.flatmap(lambda counts: st.tuples(st.just(counts), count_cases if counts else cases)))
    def one(example: tuple[bool, Case]) -> None:
        counts, case = example
        outcome = check_count_case(case) if counts else check_case(case)
        tally["counts " if counts else "values "] += 1
        tally[outcome.kind] += 1
        if outcome.kind == "rejected":
            reasons[outcome.detail] += 1
        elif outcome.kind != "agreed":
            disagreements.append((case, outcome))

    started = time.perf_counter()
    one()
    elapsed = time.perf_counter() - started
    total = tally["agreed"] + tally["rejected"] + len(disagreements)
    print(f"examples run:   {total} ({tally['values ']} value blocks, {tally['counts ']} count blocks)")
    print(f"agreed:         {tally['agreed']}")
    print(f"rejected:       {tally['rejected']}")
    print(f"disagreements:  {len(disagreements)}")
    print(f"wall time:      {elapsed:.1f} s ({1000 * elapsed / max(total, 1):.2f} ms per example)")
    print("\nrejections by reason class:")
    for reason, count in reasons.most_common():
        print(f"  {count:7d}  {reason}")
    for case, outcome in disagreements:
        print(f"\nDISAGREEMENT: {outcome.detail}\n  lines: {list(case.lines)!r}\n  env:   {dict(case.env)!r}")
    return len(disagreements)


def main() -> int:
    """Parse the arguments, run, exit 1 on any disagreement."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10_000, help="number of generated blocks")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same blocks)")
    parser.add_argument("--counts-share", type=float, default=0.2,
                        help="share of examples that are count blocks checked through parse_recipe")
    args = parser.parse_args()
    return 1 if run(args.examples, args.seed, args.counts_share) else 0


if __name__ == "__main__":
    sys.exit(main())
