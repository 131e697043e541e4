"""One launch as the manifests record it: its plan, and finishing it when it was cut short.

A launch (one command: its experiments, one launch id and stamp) records in
each experiment's manifest its *plan* -- how many runs, the launch's id and
stamp, a digest of what the runs submit -- before its first ``sbatch``, and
every run it queues names the launch. A launch cut short -- sbatch failing for
good, Ctrl-C, SIGKILL, a lost machine -- leaves the plans of some experiments
*open*: fewer runs recorded than planned (:attr:`Manifest.open_launch`). The
same command run again then finishes that launch: an experiment whose plan is
open gets only its missing runs, with the launch's own stamp (so their
``--output`` files are the launch's), after adopting any run the cut-short
launch had queued without recording it (found in the queue by its job name and
``--output`` file, :mod:`nrl_launch.slurm.submit`); an experiment that launch
completed gets nothing; an experiment the command names that the launch never
planned gets all its runs.

"The same command" is the same experiments in the same snapshot root whose
runs would submit the same thing: the same sbatch words, job environment and
pinned CONFIG inputs (the digest; NUM_RUNS is part of it). A launch that would
submit something else for an experiment whose open launch has runs queued is
refused (finish it as it was, or close it with ``nrl-launch cancel``); an open
launch with no run queued is simply replaced. When no experiment of the
command has an open launch, the bash launcher's behaviour holds: running the
command again submits NUM_RUNS more runs of each.

Each launcher run's token (:mod:`nrl_launch.experiment.joblogs`) is derived
from the launch's id and the run's number, so the launch that finishes
another one records the token of a run it adopts.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nrl_launch.errors import PlanError
from nrl_launch.experiment.manifest import Manifest, Plan, PlannedLaunch, Run
from nrl_launch.experiment.rerun import NextRun
from nrl_launch.plan import Submission

SHOWN = 40  # characters of a value shown in a message about changed pins


def new_launch_id(stamp: str) -> str:
    """A new launch's id: its stamp and a random part (two launches may share a second)."""
    return f"{stamp}-{secrets.token_hex(3)}"


def run_token(launch: str, index: int) -> str:
    """The token of run ``index`` of launch ``launch``: 16 hex digits, the same in every process."""
    return hashlib.sha256(f"{launch}/{index}".encode("utf-8", "surrogateescape")).hexdigest()[:16]


def plan_digest(submissions: Sequence[Submission]) -> str:
    """What the runs submit -- sbatch words, working folder, job environment, pinned CONFIG
    inputs -- as 16 hex digits: equal for the same command, whatever its time."""
    data = [[list(sub.argv), sub.cwd, [list(pair) for pair in sub.env], [list(pair) for pair in sub.config_env]]
            for sub in submissions]
    text = json.dumps(data, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True)
class Chain:
    """What this launch submits for one experiment: ``todo`` (every run of a new launch, or the
    runs an open launch lacks) under ``plan``; ``earlier``: the open launch's runs already queued."""

    plan: Plan
    submissions: tuple[Submission, ...]  # every run of the plan (with its stamp)
    todo: tuple[Submission, ...]
    earlier: tuple[Run, ...] = ()
    finishing: bool = False  # this launch finishes one that was cut short: its plan is recorded already


def finished_launches(recorded: Sequence[Manifest | None]) -> set[str]:
    """The launches a command finishes: those open in the manifest of one of its experiments."""
    return {state.plan.launch for manifest in recorded if manifest is not None
            for state in [manifest.open_launch] if state is not None}


def decide(recorded: Manifest | None, submissions: tuple[Submission, ...],
           rebuild: Callable[[str], tuple[Submission, ...]], *, stamp: str, launch: str, finishing: set[str],
           where: str) -> Chain:
    """This command's chain for an experiment whose manifest is ``recorded`` (None: a new snapshot),
    planned as ``submissions`` with this command's ``stamp`` and ``launch`` id; ``rebuild(stamp)``
    plans the same runs with another launch's stamp; ``finishing``: the launches this command
    finishes (:func:`finished_launches`). PlanError (about ``where``) when an open launch with runs
    queued would be finished with other runs than it planned."""
    latest = recorded.latest_plan if recorded is not None else None
    if latest is not None and latest.open:
        theirs = rebuild(latest.plan.stamp)
        if plan_digest(theirs) == latest.plan.digest and len(theirs) == latest.plan.runs:
            todo = tuple(sub for sub in theirs if sub.index in latest.missing)
            return Chain(latest.plan, theirs, todo, latest.queued, finishing=True)
        if latest.queued:
            raise PlanError(refusal(latest, theirs), where=where)
    elif latest is not None and not latest.closed and latest.plan.launch in finishing:
        # complete in the launch this command finishes: nothing more of it
        return Chain(latest.plan, rebuild(latest.plan.stamp), (), latest.queued, finishing=True)
    plan = Plan(len(submissions), launch, stamp, plan_digest(submissions))
    return Chain(plan, submissions, submissions)


def refusal(open_launch: PlannedLaunch, now: Sequence[Submission]) -> str:
    """Why a launch does not finish the open launch it would duplicate, and the ways out."""
    plan = open_launch.plan
    what = (f"NUM_RUNS was {plan.runs}, is now {len(now)}" if len(now) != plan.runs else
            "its sbatch options, job environment or the inputs its CONFIG block read differ")
    queued = " ".join(run.job_id for run in open_launch.queued)
    experiment = now[0].experiment if now else "the experiment"
    return (f"the latest launch of {experiment} (planned {plan.at or 'earlier'}) was cut short with "
            f"{len(open_launch.queued)} of {plan.runs} runs queued (jobs {queued}), and this launch would submit "
            f"other runs ({what}): run it as it was to finish that launch, or close it first with "
            f"'nrl-launch cancel {experiment}' and launch again")


def pin_changes(before: NextRun, after: Submission) -> list[str]:
    """What ``continue.sh`` pins differently once written for ``after`` (the launcher's last run of
    this launch) instead of ``before`` (the run it repeats now): ``NAME (was X, now Y)``, one
    per variable of the CONFIG inputs or the job's environment."""
    changes = []
    for old, new in ((dict(before.config_env), dict(after.config_env)), (dict(before.env), dict(after.env))):
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                changes.append(f"{name} (was {_shown(old.get(name))}, now {_shown(new.get(name))})")
    return changes


def _shown(value: str | None) -> str:
    if value is None:
        return "unset"
    text = repr(value) if value != value.strip() or not value else value
    return text if len(text) <= SHOWN else text[:SHOWN - 1] + "…"
