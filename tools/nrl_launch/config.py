"""Reading a recipe's CONFIG block (spec section 3).

INTERFACE STUB — being implemented. Signatures below are the contract other
modules code against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

DEFAULT_GPUS_PER_NODE = 8


@dataclass(frozen=True)
class RecipeConfig:
    """The resources a recipe asks for, evaluated from its CONFIG block."""

    path: str  # the script path as the user typed it
    num_nodes: int
    gpus_per_node: int
    num_minutes: int
    num_runs: int
    segment_size: int | None
    job_reaper_comment: str | None
    values: Mapping[str, str]  # every assignment of the block, in order, evaluated
    num_runs_defaulted: bool  # NUM_RUNS was absent and was derived (caller warns)
    config_line: int  # line number of the BEGIN CONFIG marker

    @property
    def gpu_hours(self) -> int:
        """NUM_RUNS * NUM_NODES * GPUS_PER_NODE * NUM_MINUTES / 60, truncated."""
        return (self.num_runs * self.num_nodes * self.gpus_per_node * self.num_minutes) // 60


def evaluate_block(text: str, path: str, environ: Mapping[str, str]) -> tuple[dict[str, str], int]:
    """Evaluate the CONFIG block found in ``text``; return (assignments, marker line)."""
    raise NotImplementedError


def parse_recipe(text: str, path: str, environ: Mapping[str, str]) -> RecipeConfig:
    """Evaluate and validate a recipe's CONFIG block (pure: no file access)."""
    raise NotImplementedError


def read_recipe(path: str, environ: Mapping[str, str]) -> RecipeConfig:
    """Read ``path`` and return its validated RecipeConfig; ConfigError on problems."""
    raise NotImplementedError
