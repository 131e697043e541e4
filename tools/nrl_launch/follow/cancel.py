"""``nrl-launch cancel``: stop every queued or running job of some experiments.

The jobs are the ones each experiment's manifest records (the launcher's,
``continue.sh``'s and the retries' runs). Slurm is asked once which of them
are still queued (``squeue --me``) and one ``scancel`` cancels them all. Every
experiment that had jobs cancelled gets a cancellation entry in its manifest
(``cancelled: '<ids>'`` without ``job_id``: readers of runs skip it, and
``continue.sh`` counts only ``- job_id:`` lines, so a later ``continue.sh``
still works and numbers its run as before). Cancelling again finds nothing
queued, cancels and records nothing: the command is idempotent. Every name is
checked before anything is cancelled. From asking Slurm to recording, the
command holds the experiments' locks, so no launch, ``continue.sh`` or retry
of them can queue a run in between that would escape the cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from nrl_launch.errors import SlurmError, SnapshotError
from nrl_launch.experiment.folder import ExperimentDir, SnapshotRoot, locked
from nrl_launch.slurm.client import SlurmClient, job_ids

Emit = Callable[[str], None]


@dataclass(frozen=True)
class CancelPlan:
    """One experiment: its folder, the jobs it recorded and those still queued."""

    experiment: str
    folder: ExperimentDir
    recorded: tuple[str, ...]  # every job id of its runs, submission order
    queued: tuple[str, ...]  # those still queued or running


def run_cancel(snapshots: SnapshotRoot, names: Sequence[str], slurm: SlurmClient, *, dry: bool, out: Emit,
               err: Emit) -> None:
    """``nrl-launch cancel`` (``dry``: ``--dry-run``): SnapshotError for an unknown experiment,
    SlurmError when Slurm cannot say what is queued; nothing is cancelled then."""
    folders = []
    for name in dict.fromkeys(names):
        try:
            folders.append(snapshots.find(name))
        except SnapshotError as e:
            raise SnapshotError(f"{e}: nothing was cancelled") from e
    if dry:
        dry_run(plan_cancel(folders, slurm), out=out)
        return
    with locked(folders, err):
        cancel(plan_cancel(folders, slurm), slurm, out=out, err=err)


def plan_cancel(folders: Iterable[ExperimentDir], slurm: SlurmClient) -> list[CancelPlan]:
    """What cancelling the experiments of ``folders`` means now."""
    recorded = {folder: tuple(job_ids(run.job_id for run in folder.manifest.runs)) for folder in folders}
    queue = slurm.queue([i for ids in recorded.values() for i in ids])
    return [CancelPlan(folder.name, folder, ids, tuple(i for i in ids if i in queue))
            for folder, ids in recorded.items()]


def cancel(plans: Sequence[CancelPlan], slurm: SlurmClient, *, out: Emit, err: Emit) -> None:
    """One ``scancel`` of every queued job of ``plans``; record and report each experiment's
    (the caller holds the experiments' locks)."""
    ids = [i for plan in plans for i in plan.queued]
    if ids:
        try:
            slurm.cancel(ids)
        except SlurmError:
            # a job that ended meanwhile may make scancel complain: what matters is what is left
            left = slurm.queue(ids)
            if left:
                raise
    for plan in plans:
        if not plan.queued:
            out(nothing_line(plan))
            continue
        try:
            plan.folder.record_cancellation(plan.queued)
        except SnapshotError as e:
            err(f"[WARNING]: {plan.experiment}: its jobs are cancelled, but the manifest could not record it: {e}")
        out(f"[INFO]: {plan.experiment}: cancelled {_jobs(plan.queued)}: {' '.join(plan.queued)}")


def dry_run(plans: Sequence[CancelPlan], *, out: Emit) -> None:
    """``--dry-run``: what :func:`cancel` would do, doing nothing."""
    for plan in plans:
        if plan.queued:
            out(f"[DRY_RUN]: {plan.experiment}: would cancel {_jobs(plan.queued)}: {' '.join(plan.queued)}")
        else:
            out(nothing_line(plan))
    ids = [i for plan in plans for i in plan.queued]
    if ids:
        out(f"[DRY_RUN]: would run: scancel {' '.join(ids)}")


def nothing_line(plan: CancelPlan) -> str:
    """The line of an experiment with nothing left to cancel."""
    if not plan.recorded:
        return f"[INFO]: {plan.experiment}: nothing to cancel (no job recorded)"
    return (f"[INFO]: {plan.experiment}: nothing to cancel (none of its {_jobs(plan.recorded)} is queued or "
            "running)")


def _jobs(ids: Sequence[str]) -> str:
    return f"{len(ids)} job{'s' * (len(ids) != 1)}"
