"""Recording WATCH's verdicts in the history database, once they are final.

The launch's WATCH and ``nrl-launch watch`` hand a :class:`HistoryRecorder`
to their watcher, which calls :meth:`HistoryRecorder.record` with the
verdicts it just printed. The rows are the report's
(:func:`nrl_launch.report.collect.experiment_result`) with WATCH's own
verdict, so the history says what WATCH said. Recording never changes a
watch's outcome: a database that cannot take the rows is one warning on
stderr.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence

from nrl_launch.errors import LauncherError
from nrl_launch.experiment.folder import ExperimentDir
from nrl_launch.experiment.joblogs import TrackedExperiment
from nrl_launch.follow.verdict import Verdict
from nrl_launch.report import history
from nrl_launch.report.collect import ask_spans, experiment_result
from nrl_launch.slurm.client import SlurmClient

Emit = Callable[[str], None]


class HistoryRecorder:
    """Records the verdicts of the experiments a watch followed (the watcher's ``recorder``)."""

    def __init__(self, folder_of: Callable[[str], ExperimentDir], slurm: SlurmClient, err: Emit,
                 database: str | None = None) -> None:
        self.folder_of = folder_of
        self.slurm = slurm
        self.err = err
        self.database = history.database_path(slurm.environ, database)

    def record(self, experiments: Sequence[TrackedExperiment], verdicts: Sequence[Verdict]) -> None:
        """Record each experiment's row with its verdict; a failure is a warning on stderr."""
        if self.database is None:  # NRL_REPORT_DB set empty: no history
            return
        try:
            folders = [self.folder_of(exp.name) for exp in experiments]
            spans, _ = ask_spans(self.slurm, folders)
            now = time.time()
            rows = [experiment_result(folder, spans, now=now, verdict=verdict)
                    for folder, verdict in zip(folders, verdicts, strict=True)]
            history.record(self.database, rows, now)
        except (LauncherError, OSError, sqlite3.Error) as e:  # never the watch's outcome
            self.err(f"[WARNING]: the verdicts were not recorded in the history database {self.database}: {e}")


def recorder_for(folders: Mapping[str, ExperimentDir] | Callable[[str], ExperimentDir], slurm: SlurmClient,
                 err: Emit) -> HistoryRecorder:
    """The recorder of a watch over these experiments' folders (by name)."""
    folder_of = folders.__getitem__ if isinstance(folders, Mapping) else folders
    return HistoryRecorder(folder_of, slurm, err)
