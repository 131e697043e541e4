"""One run's submission after a transient failure: reconciled with the queue, never queued twice."""

from __future__ import annotations

import os

import pytest

from nrl_launch.errors import SlurmError, SlurmUncertain
from nrl_launch.slurm.client import Completed, QueuedJob
from nrl_launch.slurm.submit import adoptable, is_run, submit_run
from testkit import Call, FakeSlurm

ENV = {"PATH": os.environ["PATH"], "HOME": "/home/u"}


def run_argv(run: int, total: int = 5, experiment: str = "exp") -> list[str]:
    """The sbatch words of run ``run`` of an experiment (the options that identify it)."""
    return ["--nodes=1", f"--job-name=acct:{experiment}",
            f"--output=slurm-261206-120000-%j-{experiment}-{run}.{total}.out", "--dependency=singleton", "ray.sub"]


def test_every_run_queued_once_when_every_third_sbatch_loses_its_reply() -> None:
    fake = FakeSlurm(flaky_every=3)  # half of those failures after queueing the job
    client = fake.client(ENV)
    heard: list[str] = []
    answers = [submit_run(client, run_argv(run), cwd="/snap", job_env={}, known=(), say=heard.append)
               for run in range(1, 11)]
    ids = [answer.job_id for answer in answers]
    assert len(set(ids)) == 10 and sorted(ids) == sorted(fake.jobs)  # every job is a run's: no duplicate
    runs = [job.option("output") for job in fake.jobs.values()]
    assert sorted(runs) == sorted(run_argv(run)[2].removeprefix("--output=") for run in range(1, 11))
    adopted = [answer for answer in answers if answer.adopted]
    assert adopted and all(a.text == f"Submitted batch job {a.job_id}" for a in adopted)  # sbatch's own line
    assert all("had queued job" in a.adopted and "Socket timed out" in a.adopted for a in adopted)
    assert fake.flaky_failures >= 3 and len(adopted) == (fake.flaky_failures + 1) // 2


def test_a_lost_reply_without_a_job_is_tried_again() -> None:
    fake = FakeSlurm(flaky_every=1)
    fake.flaky_failures = 1  # the next lost reply is one that never reached the controller
    calls = [0]
    original = fake._sbatch

    def then_fine(call: Call) -> Completed:
        calls[0] += 1
        if calls[0] == 1:
            return original(call)
        fake.flaky_every = 0
        return original(call)

    fake.answers["sbatch"] = then_fine
    answer = submit_run(fake.client(ENV), run_argv(1), cwd="/snap", job_env={})
    assert answer.job_id == "1001" and not answer.adopted and list(fake.jobs) == ["1001"]
    assert [c.argv[:2] for c in fake.calls] == [("sbatch", "--nodes=1"), ("squeue", "--me"), ("sbatch", "--nodes=1")]


def test_a_final_failure_is_raised_at_once() -> None:
    fake = FakeSlurm(fail_at=1)  # Invalid account
    with pytest.raises(SlurmError, match="Invalid account") as info:
        submit_run(fake.client(ENV), run_argv(1), cwd="/snap", job_env={})
    assert not isinstance(info.value, SlurmUncertain)
    assert [c.argv[0] for c in fake.calls] == ["sbatch"] and fake.slept == []


def test_an_answer_without_a_job_id_that_queued_is_adopted() -> None:
    fake = FakeSlurm()

    def queued_but_garbled(call: Call) -> Completed:
        fake._sbatch(call)
        return Completed(0, "sbatch: something unexpected\n", "")

    fake.answers["sbatch"] = queued_but_garbled
    answer = submit_run(fake.client(ENV), run_argv(2), cwd="/snap", job_env={}, token="t0k")
    assert (answer.job_id, answer.token) == ("1001", "t0k") and "without a job id" in answer.adopted
    assert len(fake.calls) == 2  # not tried again: the job was there


def test_an_answer_without_a_job_id_and_no_job_is_an_uncertain_error() -> None:
    fake = FakeSlurm(garbage_at=1)  # exit 0, no id, nothing queued
    with pytest.raises(SlurmUncertain, match="without a job id"):
        submit_run(fake.client(ENV), run_argv(1), cwd="/snap", job_env={})
    assert fake.jobs == {}


def test_when_the_queue_cannot_say_the_outcome_is_uncertain() -> None:
    fake = FakeSlurm(flaky_every=1, squeue_flaky=1000)
    with pytest.raises(SlurmUncertain, match="whether it queued the job cannot be told") as info:
        submit_run(fake.client(ENV, retry_for=5), run_argv(1), cwd="/snap", job_env={})
    assert "Socket timed out" in str(info.value)
    assert len(fake.jobs) == 1  # the first try had queued it: never a second


def test_jobs_already_recorded_are_never_adopted() -> None:
    fake = FakeSlurm()
    client = fake.client(ENV)
    old = client.submit(run_argv(1), cwd="/snap", job_env={})  # recorded by an earlier try of this launch
    fake.flaky_every, fake.flaky_failures = 1, 1  # the next sbatch loses its reply without queueing
    fake.answers["sbatch"] = _once_flaky(fake)
    answer = submit_run(client, run_argv(1), cwd="/snap", job_env={}, known={old.job_id})
    assert answer.job_id != old.job_id and not answer.adopted


def _once_flaky(fake: FakeSlurm):
    first = [True]
    original = fake._sbatch

    def reply(call: Call) -> Completed:
        if not first[0]:
            fake.flaky_every = 0
        first[0] = False
        return original(call)

    return reply


@pytest.mark.parametrize(
    ("stdout", "job_id", "matches"),
    [
        ("/snap/slurm-261206-120000-%j-exp-3.5.out", "7", True),  # squeue: %j as given
        ("/snap/slurm-261206-120000-7-exp-3.5.out", "7", True),  # scontrol: expanded
        ("/snap/slurm-261206-120000-8-exp-3.5.out", "7", False),  # another job's file
        ("/snap/slurm-261206-120000-%j-exp-3.50.out", "7", False),
        ("/snap/slurm-261206-120001-%j-exp-3.5.out", "7", False),  # another launch
        ("/snap/slurm-261206-120000-%j-exp-4.5.out", "7", False),  # another run
    ],
)
def test_a_run_is_told_by_its_output_file(stdout: str, job_id: str, matches: bool) -> None:
    assert is_run(QueuedJob(job_id, stdout), "slurm-261206-120000-%j-exp-3.5.out") is matches


def test_adoptable_leaves_out_known_jobs_and_sorts_by_id() -> None:
    jobs = [QueuedJob("12", "/s/slurm-261206-120000-%j-exp-1.5.out"),
            QueuedJob("9", "/s/slurm-261206-120000-9-exp-1.5.out"),
            QueuedJob("10", "/s/slurm-261206-120000-%j-exp-2.5.out")]
    assert [job.job_id for job in adoptable(jobs, run_argv(1), known=())] == ["9", "12"]
    assert [job.job_id for job in adoptable(jobs, run_argv(1), known={"9"})] == ["12"]
    assert adoptable(jobs, ["ray.sub"], known=()) == []  # no --output: nothing tells the run
