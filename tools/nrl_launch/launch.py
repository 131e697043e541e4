"""The launch: read every script's plan, then hand the effects to the pipeline.

``DRYRUN=1`` ends here: it prints GPU-hours from the CONFIG blocks alone.
Everything that needs git, the filesystem or Slurm lives in
:mod:`nrl_launch.pipeline`, loaded by :func:`_load_pipeline` — the one
import that the DRYRUN=1 path never makes (a test checks it). Output goes
through the ``out`` (stdout lines) and ``err`` (stderr lines) callbacks: this
module never prints by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nrl_launch.errors import Interrupted, LauncherError, PlanError
from nrl_launch.lines import dry_run_line, info_line, total_line
from nrl_launch.plan import Experiment, duplicates, plan_experiments, total_gpu_hours
from nrl_launch.settings import DryRun, LaunchSettings

if TYPE_CHECKING:  # pathlib and the pipeline cost the DRYRUN=1 path time it does not need
    from collections.abc import Mapping
    from pathlib import Path

    from nrl_launch.follow.verdict import Verdict
    from nrl_launch.pipeline import Pipeline
    from nrl_launch.slurm.client import SlurmClient

Emit = Callable[[str], None]
# Given a snapshot folder, a ``progress(done, total)`` callback for its copy (or None).
ProgressFactory = Callable[["Path"], "Callable[[int, int], None] | None"]


@dataclass(frozen=True)
class LaunchResult:
    """What a launch did: GPU-hours, submitted jobs and (with WATCH) verdicts."""

    total_gpu_hours: int
    jobs: dict[str, list[str]] = field(default_factory=dict)  # experiment -> job ids
    verdicts: tuple[Verdict, ...] = ()

    @property
    def failed(self) -> bool:
        """True when WATCH judged any experiment failed."""
        return any(v.failed for v in self.verdicts)


def _warn(experiments: Sequence[Experiment], err: Emit) -> None:
    for exp in experiments:
        if exp.config.num_runs_defaulted:
            err(f"[WARNING]: {exp.script}: NUM_RUNS is not set in the CONFIG block; using {exp.config.num_runs}")
        for count in exp.config.non_decimal:  # e.g. NUM_NODES=010: bash arithmetic reads 8
            err(f"[WARNING]: {exp.script}:{count.line}: {count.describe()}")
    for name, scripts in duplicates(experiments).items():
        err(f"[WARNING]: experiment {name!r} is given {len(scripts)} times ({', '.join(scripts)}): its GPU-hours "
            "are counted each time, as the bash launcher did; a launch that snapshots refuses it")


def dry_run(experiments: Sequence[Experiment], out: Emit) -> LaunchResult:
    """DRYRUN=1: GPU-hours only; no git, no snapshot, no Slurm."""
    for exp in experiments:
        out(info_line(exp))
        out(dry_run_line(exp))
    total = total_gpu_hours(experiments)
    out(total_line(total))
    return LaunchResult(total)


def _load_pipeline() -> type[Pipeline]:
    """Import what a launch needs beyond DRYRUN=1, as one clear error if broken."""
    try:
        from nrl_launch.pipeline import Pipeline
    except ImportError as e:  # GitPython fails at import when git is not on PATH
        from pathlib import Path  # only here: the DRYRUN=1 path imports as little as it can

        root = Path(__file__).resolve().parents[2]  # the checkout: its tools/install sets everything up
        raise LauncherError(f"cannot launch: {e}. Install git and the package's dependencies "
                            f"({root}/tools/install); DRYRUN=1 works without them") from e
    return Pipeline


def launch(scripts: Sequence[str], settings: LaunchSettings, *, environ: Mapping[str, str], slurm: SlurmClient | None,
           out: Emit, err: Emit, wait: Callable[[float], None] | None = None,
           progress: ProgressFactory | None = None, interactive: bool = False) -> LaunchResult:
    """Run one launch as spec sections 2-8 describe; raise LauncherError on any problem.

    ``environ`` is what the CONFIG blocks may read; ``slurm`` runs every
    Slurm command (None for DRYRUN=1, which asks Slurm nothing); ``wait``
    sleeps between WATCH polls.
    """
    try:
        experiments = plan_experiments(scripts, environ, allow_duplicates=settings.dryrun is DryRun.GPU_HOURS)
        _warn(experiments, err)
        if settings.dryrun is DryRun.GPU_HOURS:
            return dry_run(experiments, out)
        if slurm is None:
            raise PlanError("this launch submits jobs: it needs a Slurm client (only DRYRUN=1 does without)")
        pipeline = _load_pipeline()(settings, slurm, out=out, err=err, progress=progress)
        launched = pipeline.launch(experiments)
    except KeyboardInterrupt as e:
        # Ctrl-C once submitting began is the pipeline's SubmissionInterrupted, naming what is queued
        raise Interrupted("interrupted before anything was submitted: nothing was submitted") from e
    total = total_gpu_hours(experiments)
    out(total_line(total))  # CI parses it: the last line unless WATCH follows
    watching = settings.watch and settings.dryrun is DryRun.OFF
    verdicts = pipeline.watch(launched, wait, interactive) if watching else []
    if not watching:
        for line in pipeline.next_steps(launched):
            err(line)
    return LaunchResult(total, launched.jobs, tuple(verdicts))
