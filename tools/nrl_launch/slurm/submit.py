"""One run's submission, tried again after a transient failure without ever queueing it twice.

``sbatch`` may fail *after* the controller queued the job: the reply was lost
("Socket timed out on send/recv operation"), sbatch was killed at its timeout,
or it exited 0 without a job id. Submitting again blindly would queue a
duplicate -- a second run of the chain burning a node. So before trying a
failed submission again, :func:`submit_run` asks the queue whether the failed
attempt queued the job, and *adopts* it when it did: the job becomes the
run's, reported with sbatch's own line ``Submitted batch job <id>`` (the line
tools parse) and recorded like any other.

A run's job is told from every other job without changing the sbatch options
the contract fixes (spec section 5): by its job name (``--job-name``) and its
``--output`` file, which names the launch (its stamp), the experiment and the
run (``-<i>.<NUM_RUNS>.out``), among the jobs the controller still holds
(``squeue --me -t all``: queued, or ended less than MinJobAge ago) that the
caller has not recorded yet (``known``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from nrl_launch.errors import SlurmError, SlurmUncertain
from nrl_launch.slurm.client import QueuedJob, SbatchAnswer, SlurmClient, Tries

Emit = Callable[[str], None]


def option(argv: Sequence[str], name: str) -> str:
    """The value of sbatch option ``--<name>=…`` in ``argv`` ("" when absent)."""
    prefix = f"--{name}="
    return next((word[len(prefix):] for word in argv if word.startswith(prefix)), "")


def is_run(job: QueuedJob, output: str) -> bool:
    """True when ``job``'s --output file is ``output`` (squeue shows ``%j`` as given, scontrol
    expands it: either way)."""
    shown = os.path.basename(job.stdout)
    return shown in (os.path.basename(output), os.path.basename(output.replace("%j", job.job_id)))


def adoptable(jobs: Iterable[QueuedJob], argv: Sequence[str], known: Collection[str]) -> list[QueuedJob]:
    """The jobs among ``jobs`` (one job name's) that are the run ``argv`` submits and that are not
    ``known`` (recorded already), oldest first."""
    output = option(argv, "output")
    if not output:
        return []
    found = [job for job in jobs if job.job_id not in known and is_run(job, output)]
    return sorted(found, key=lambda job: int(job.job_id))


def adopted_answer(job: QueuedJob, why: str, token: str) -> SbatchAnswer:
    """The answer of a run whose job a failed sbatch had queued: sbatch's own line for it."""
    return SbatchAnswer(job.job_id, f"Submitted batch job {job.job_id}", token, why)


def submit_run(client: SlurmClient, argv: Sequence[str], *, cwd: str, job_env: Mapping[str, str],
               environ: Mapping[str, str] | None = None, known: Collection[str] = (), token: str = "",
               say: Emit | None = None) -> SbatchAnswer:
    """``sbatch *argv`` for one run (see :meth:`SlurmClient.submit`), tried again after a transient
    failure for up to the client's ``NRL_SLURM_RETRY`` seconds -- after finding out whether the
    failed try queued the job, which is then adopted (``SbatchAnswer.adopted`` says why). A
    final failure, or one whose outcome cannot be told, is raised (SlurmUncertain when a job
    may be queued). ``token`` is the run's token (in ``job_env``), kept in the answer."""
    job_name = option(argv, "job-name")
    tries = Tries(client, "sbatch")
    while True:
        try:
            return client.submit(argv, cwd=cwd, job_env=job_env, environ=environ)._replace(token=token)
        except SlurmError as error:
            may_have_queued = isinstance(error, SlurmUncertain)
            if not may_have_queued and not error.transient:
                raise
            if may_have_queued and not job_name:
                raise  # nothing to look for: trying again could queue the run twice
            retrying = tries.again(error)  # waits first: the controller may still be writing the job down
            if not may_have_queued:
                if retrying:
                    continue
                raise
            found = _look(client.until(tries.end()), job_name, argv, known, error)
            if found:
                if len(found) > 1 and say is not None:
                    say(f"[WARNING]: jobs {' '.join(job.job_id for job in found)} all look like this run "
                        f"({option(argv, 'output')}): following {found[0].job_id}; the others are duplicates")
                return adopted_answer(found[0], f"sbatch failed ({error}) but had queued job {found[0].job_id}",
                                      token)
            if not retrying:
                raise


def _look(client: SlurmClient, job_name: str, argv: Sequence[str], known: Collection[str],
          error: SlurmError) -> list[QueuedJob]:
    """The jobs a failed try of ``argv`` may have queued; SlurmUncertain when the queue cannot say."""
    try:
        return adoptable(client.named(job_name), argv, known)
    except SlurmError as looking:
        raise SlurmUncertain(f"{error}; whether it queued the job cannot be told: {looking}") from error
