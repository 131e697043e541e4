"""One more run of an experiment, submitted the way ``continue.sh`` submits it.

A retry after an infrastructure failure (:mod:`nrl_launch.follow.retry`) is one more
run exactly like ``continue.sh``'s: run number k = (runs recorded) + 1 of the
chain, with the sbatch words, working directory and job environment of the
launcher's last run of the experiment -- its ``--output`` file named for run
k -- and what the CONFIG block read from the launcher's environment pinned,
chained behind the rest by the singleton dependency; plus ``--exclude`` for
failed nodes. Like ``continue.sh`` it holds the experiment's lock from
numbering the run to recording it.

Inside a launch, that submission is in memory. ``nrl-launch watch`` runs in
another process, days later perhaps, so the launcher also writes it as data
into the snapshot, beside ``continue.sh`` and from the same
:class:`~nrl_launch.plan.Submission`: ``<snapshot>/.nrl_launch.next-run.json``
(:meth:`ExperimentDir.write_continuation <nrl_launch.experiment.folder.ExperimentDir.write_continuation>`
writes both, :meth:`~nrl_launch.experiment.folder.ExperimentDir.next_run` reads it).
``continue.sh`` stays bash for people (it is never parsed back); this file is
what the launcher reads. A snapshot launched before this file existed has no
record to retry from, and WATCH says so instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrl_launch.bashcfg.config import BASH_OWN_VARIABLES
from nrl_launch.errors import SnapshotError
from nrl_launch.experiment.atomic import replace_file
from nrl_launch.experiment.joblogs import TOKEN_VARIABLE, new_token
from nrl_launch.plan import LOG_DIR_VARIABLE, Submission, output_file, unset_for_job
from nrl_launch.slurm.client import SbatchAnswer, SlurmClient
from nrl_launch.slurm.submit import submit_run

NEXT_RUN_NAME = ".nrl_launch.next-run.json"
FORMAT = 1  # bumped when the file's fields change meaning


@dataclass(frozen=True)
class NextRun:
    """What ``continue.sh`` of one experiment submits, as data."""

    experiment: str
    cwd: str  # the snapshot: sbatch runs there, and the manifest is there
    argv: tuple[str, ...]  # sbatch options, then the batch script
    env: tuple[tuple[str, str], ...]  # added to the environment for the job
    config_env: tuple[tuple[str, str | None], ...]  # CONFIG inputs pinned (None: unset)
    total: int  # NUM_RUNS of the launch
    stamp: str  # YYMMDD-HHMMSS of the launch, in the --output file name
    index: int  # the launcher's run that ``argv`` is (its --output names it)

    @classmethod
    def of(cls, sub: Submission) -> NextRun:
        """The run ``continue.sh`` rendered from ``sub`` (the launcher's last run) submits."""
        return cls(sub.experiment, sub.cwd, sub.argv, sub.env, sub.config_env, sub.total, sub.stamp, sub.index)

    @property
    def base_log_dir(self) -> str | None:
        """BASE_LOG_DIR of the job, when the launch set it."""
        return dict(self.env).get(LOG_DIR_VARIABLE) or None

    def sbatch_args(self, run: int, exclude: str = "") -> tuple[str, ...]:
        """The sbatch arguments of run number ``run``: the --output file named for it, as
        continue.sh names it, and ``--exclude=<exclude>`` before the batch script when given."""
        this = self.output_option(run)
        words = [this if word == self.output_option(self.index) else word for word in self.argv]
        if exclude:
            words.insert(len(words) - 1, f"--exclude={exclude}")
        return tuple(words)

    def output_option(self, run: int) -> str:
        """``--output=slurm-<stamp>-%j-<experiment>-<run>.<NUM_RUNS>.out``: run ``run``'s log file."""
        return "--output=" + output_file(self.stamp, self.experiment, str(run), self.total)

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment sbatch runs with: ``environ`` with the CONFIG inputs pinned as
        ``continue.sh`` pins them (``export``/``unset``, never bash's own variables), then
        the job's variables."""
        env = dict(environ)
        added = {name for name, _ in self.env}
        for name, value in self.config_env:
            if name in added or name in BASH_OWN_VARIABLES:
                continue
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        env.update(self.env)
        for name in unset_for_job(self.env):
            env.pop(name, None)
        return env


def submit(slurm: SlurmClient, run: NextRun, number: int, exclude: str = "", *,
           known: Collection[str] = ()) -> SbatchAnswer:
    """``sbatch`` run ``number`` of the experiment with a new token (the answer holds it), tried
    again after a transient failure without queueing it twice (``known``: the experiment's
    recorded jobs; :func:`nrl_launch.slurm.submit.submit_run`). SlurmError when sbatch refuses
    or fails for good."""
    token = new_token()
    return submit_run(slurm, run.sbatch_args(number, exclude), cwd=run.cwd, job_env={TOKEN_VARIABLE: token},
                      environ=run.environment(slurm.environ), known=known, token=token)


# ---------------------------------------------------------------- the file in the snapshot


def save_next_run(folder: Path, run: NextRun) -> Path:
    """Write ``run`` into the snapshot ``folder`` (atomically); SnapshotError on failure."""
    path = folder / NEXT_RUN_NAME
    data = {"format": FORMAT, "experiment": run.experiment, "cwd": run.cwd, "argv": list(run.argv),
            "env": [list(pair) for pair in run.env], "config_env": [list(pair) for pair in run.config_env],
            "total": run.total, "stamp": run.stamp, "index": run.index}
    # ensure_ascii: a value holding a non-UTF-8 byte (a surrogate escape) survives as \udcXX
    replace_file(path, (json.dumps(data, indent=1) + "\n").encode("ascii"))
    return path


def load_next_run(folder: Path) -> NextRun:
    """The run recorded in the snapshot ``folder``; SnapshotError saying why when there is none to use."""
    path = folder / NEXT_RUN_NAME
    try:
        data = json.loads(path.read_text(encoding="ascii"))
    except FileNotFoundError as e:
        raise SnapshotError(f"{path} does not exist (a launch by an older nrl-launch, or DRYRUN=1): "
                            "no submission to repeat; 'bash continue.sh' submits one more run by hand") from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SnapshotError(f"cannot read {path}: {e}") from e
    try:
        return _from_data(data)
    except (KeyError, TypeError, ValueError) as e:
        raise SnapshotError(f"{path}: not a submission record of this nrl-launch ({e})") from e


def _from_data(data: Any) -> NextRun:
    """A NextRun from the file's JSON, every field checked (TypeError/ValueError otherwise)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"format {data.get('format') if isinstance(data, dict) else None!r}, expected {FORMAT}")
    argv = _strings(data["argv"])
    if not argv:
        raise ValueError("argv is empty")
    total, index = _count(data, "total"), _count(data, "index")
    env = tuple((name, value) for name, value in (_pair(p) for p in data["env"]) if value is not None)
    if len(env) != len(data["env"]):
        raise ValueError("env holds a null value")
    run = NextRun(_string(data["experiment"]), _string(data["cwd"]), argv, env,
                  tuple(_pair(p) for p in data["config_env"]), total, _string(data["stamp"]), index)
    if argv.count(run.output_option(index)) != 1:
        raise ValueError(f"argv does not hold {run.output_option(index)!r} once")
    return run


def _count(data: dict[str, Any], key: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} {value!r} is not a positive whole number")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _strings(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise TypeError(f"{values!r} is not a list")
    return tuple(_string(v) for v in values)


def _pair(value: Any) -> tuple[str, str | None]:
    if not isinstance(value, list) or len(value) != 2:
        raise TypeError(f"{value!r} is not a [name, value] pair")
    name, text = value
    return _string(name), None if text is None else _string(text)
