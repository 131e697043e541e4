"""The Slurm seam: SlurmClient against the recording FakeSlurm runner, and the
default runner against real processes."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping, Sequence

import pytest

from nrl_launch import errors
from nrl_launch.errors import SlurmError, SlurmRejected, SlurmUnreachable, UsageProblem
from nrl_launch.settings import SLURM_TIMEOUT
from nrl_launch.slurm.client import Completed, JobInfo, SlurmClient, job_ids, parse_answer, run_command
from nrl_launch.slurm.failures import failure
from testkit import Call, FakeSlurm

ENV = {"PATH": os.environ["PATH"], "SLURM_CONF": "/etc/slurm/test.conf", "HOME": "/home/u"}


def answer(stdout: str = "", stderr: str = "", code: int = 0):
    """A FakeSlurm ``answers`` entry that always says this."""
    def reply(call: Call) -> Completed:
        return Completed(code, stdout, stderr)

    return reply


def test_submit_runs_sbatch_with_the_job_environment_on_top(fake_slurm: FakeSlurm) -> None:
    client = fake_slurm.client(ENV)
    result = client.submit(["--nodes=1", "ray.sub"], cwd="/snap", job_env={"COMMAND": "uv run x.sh", "HOME": "/job"})
    assert (result.job_id, result.text) == ("1001", "Submitted batch job 1001")
    [call] = fake_slurm.calls
    assert call.argv == ("sbatch", "--nodes=1", "ray.sub") and call.cwd == "/snap"
    assert call.env == {**ENV, "COMMAND": "uv run x.sh", "HOME": "/job"}  # the job's value wins
    assert client.environ == ENV  # the client's own environment is untouched


@pytest.mark.parametrize(
    ("stdout", "job_id"),
    [
        ("Submitted batch job 42\n", "42"),
        ("Submitted batch job 42 on cluster gpu\n", "42"),
        ("sbatch: warning: something\nSubmitted batch job 7\n", "7"),
    ],
)
def test_job_id_comes_from_sbatchs_answer(stdout: str, job_id: str) -> None:
    assert parse_answer(Completed(0, stdout, "")).job_id == job_id


@pytest.mark.parametrize("stdout", ["", "Submitted batch job\n", "Submitted batch job 12a\n", "job 12 submitted\n"])
def test_answer_without_a_job_id_is_an_error(stdout: str) -> None:
    client = FakeSlurm(answers={"sbatch": answer(stdout, stderr="sbatch: note\n")}).client(ENV)
    # sbatch exited 0: a job may be queued, so the outcome is uncertain
    with pytest.raises(errors.SlurmUncertain, match="sbatch answered without a job id") as info:
        client.submit(["ray.sub"], cwd="/", job_env={})
    assert f"stdout: {stdout.strip()!r}; stderr: 'sbatch: note'" in str(info.value)  # both streams


@pytest.mark.parametrize(
    ("stdout", "stderr", "job_id", "text"),
    [
        ("Submitted batch job 42\n", "", "42", "Submitted batch job 42"),
        ("", "Submitted batch job 42\n", "42", "Submitted batch job 42"),  # a site wrapper's way
        ("wrapper: ok\n", "note\nSubmitted batch job 43 on cluster gpu\n", "43",
         "Submitted batch job 43 on cluster gpu"),
        ("Submitted batch job 44\n", "Submitted batch job 45\n", "44", "Submitted batch job 44"),  # stdout first
    ],
)
def test_job_id_on_stdout_or_else_stderr(stdout: str, stderr: str, job_id: str, text: str) -> None:
    client = FakeSlurm(answers={"sbatch": answer(stdout, stderr)}).client(ENV)
    result = client.submit(["ray.sub"], cwd="/", job_env={})
    assert (result.job_id, result.text) == (job_id, text)  # the text is printed on stdout


UNREACHABLE = 'is SLURM_CONF set? for the local cluster: eval "$(tools/local-slurm up | tail -n 1)"'
NO_CONFIG = ("sbatch: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host\n"
             "sbatch: error: fetch_config: DNS SRV lookup failed\n"
             "sbatch: error: _establish_config_source: failed to fetch config\n"
             "sbatch: fatal: Could not establish a configuration source\n")
NO_CONTROLLER = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n"
# SLURM_CONF naming a missing file (Slurm 22.05, after a minute of retries)
NO_CONFIG_FILE = ("sbatch: error: s_p_parse_file: cannot stat file /tmp/nope.conf: No such file or directory, retrying "
                  "in 1sec up to 60sec\nsbatch: error: ClusterName needs to be specified\n"
                  "sbatch: fatal: Unable to process configuration file\n")


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (NO_CONFIG, "no Slurm configuration found (Could not establish a configuration source)"),
        (NO_CONTROLLER, "Unable to contact slurm controller (connect failure)"),
        (NO_CONFIG_FILE, "the Slurm configuration cannot be read (Unable to process configuration file)"),
    ],
)
@pytest.mark.parametrize("test_only", [True, False])
def test_no_slurm_to_talk_to_is_one_clear_line(stderr: str, reason: str, test_only: bool) -> None:
    client = FakeSlurm(answers={"sbatch": answer(stderr=stderr, code=1)}).client(ENV)
    ask = client.test_only if test_only else client.submit
    with pytest.raises(SlurmUnreachable) as info:
        ask(["ray.sub"], cwd="/", job_env={})
    said = str(info.value)
    assert said.startswith(f"cannot reach Slurm: {reason}; {UNREACHABLE}")
    # a controller that may come back is tried again (a test submission, not a real one); no configuration is final
    if stderr == NO_CONTROLLER and test_only:
        assert re.search(r" \(tried \d+ times over \d+ s; NRL_SLURM_RETRY=60\)$", said)
    else:
        assert said == f"cannot reach Slurm: {reason}; {UNREACHABLE}"


def test_a_rejection_is_still_a_rejection() -> None:
    client = FakeSlurm(answers={"sbatch": answer(stderr="sbatch: error: Invalid account\n", code=1)}).client(ENV)
    with pytest.raises(SlurmRejected) as info:
        client.test_only(["ray.sub"], cwd="/", job_env={})
    assert not isinstance(info.value, SlurmUnreachable)


def test_sbatch_failure_shows_slurms_reason() -> None:
    client = FakeSlurm(answers={"sbatch": answer(stderr="sbatch: error: Invalid account\n", code=1)}).client(ENV)
    with pytest.raises(SlurmError, match="sbatch failed: sbatch: error: Invalid account"):
        client.submit(["ray.sub"], cwd="/", job_env={})


def test_test_only_asks_without_queueing(fake_slurm: FakeSlurm) -> None:
    fake_slurm.client(ENV).test_only(["--nodes=2", "ray.sub"], cwd="/snap", job_env={"A": "1"})
    assert fake_slurm.calls[0].argv == ("sbatch", "--test-only", "--nodes=2", "ray.sub")
    assert fake_slurm.jobs == {}
    fake_slurm.reject = "Requested node configuration is not available"
    with pytest.raises(SlurmRejected, match="Requested node configuration is not available"):
        fake_slurm.client(ENV).test_only(["ray.sub"], cwd="/snap", job_env={})


def test_queued_filters_ids_and_asks_once(fake_slurm: FakeSlurm) -> None:
    fake_slurm.add_job("5", "RUNNING")
    fake_slurm.add_job("6", "PENDING")
    fake_slurm.add_job("7", "COMPLETED")
    client = fake_slurm.client(ENV)
    assert client.queued(["5", "7", "8", "x; rm -rf /", "6"]) == {"5", "6"}
    assert [c.argv for c in fake_slurm.calls] == [("squeue", "--me", "-h", "-o", "%i|%T|%r|%N")]
    assert client.queued(["not-an-id"]) == set()
    assert len(fake_slurm.calls) == 1  # nothing to ask about: Slurm is not asked


def test_queries_ignore_the_users_squeue_sacct_sinfo_defaults(fake_slurm: FakeSlurm) -> None:
    # SQUEUE_STATES=R would hide a PENDING job: WATCH would take it for finished
    fake_slurm.add_job("5", "PENDING", nodes="n[1-2]")
    defaults = {"SQUEUE_STATES": "R", "SQUEUE_PARTITION": "other", "SACCT_FORMAT": "JobID", "SINFO_FORMAT": "%N"}
    client = fake_slurm.client({**ENV, **defaults, "KEEP": "me"})
    assert client.queued(["5"]) == {"5"}
    client.jobs(["5", "6"])
    client.unhealthy_nodes("n[1-2]")
    client.submit(["ray.sub"], cwd="/snap", job_env={"HF_HOME": "/hf"})
    programs = {c.argv[0]: c.env for c in fake_slurm.calls}
    assert set(programs) >= {"squeue", "sacct", "sinfo", "sbatch"}
    for program in ("squeue", "sacct", "sinfo"):
        assert not set(programs[program]) & set(defaults) and programs[program]["KEEP"] == "me"
    assert {name: programs["sbatch"][name] for name in defaults} == defaults  # the job's environment is untouched


@pytest.mark.parametrize("export", ["NONE", "HOME,PATH"])
def test_sbatch_never_gets_sbatch_export(fake_slurm: FakeSlurm, export: str) -> None:
    # the contract: the job's environment is the launcher's plus the job's variables (sbatch's default, ALL)
    client = fake_slurm.client({**ENV, "SBATCH_EXPORT": export})
    client.test_only(["ray.sub"], cwd="/snap", job_env={"COMMAND": "x"})
    client.submit(["ray.sub"], cwd="/snap", job_env={"COMMAND": "x"})
    assert [("SBATCH_EXPORT" in c.env, c.env["COMMAND"]) for c in fake_slurm.calls] == [(False, "x"), (False, "x")]


def test_queued_raises_when_squeue_fails() -> None:
    with pytest.raises(SlurmUnreachable, match="cannot reach Slurm: Unable to contact slurm controller"):
        FakeSlurm(down=True).client(ENV, retry_for=0).queued(["1"])
    failing = FakeSlurm(answers={"squeue": answer(stderr="squeue: error: Invalid user\n", code=1)})
    with pytest.raises(SlurmError, match="squeue failed: squeue: error: Invalid user"):
        failing.client(ENV).queued(["1"])  # never "finished" by mistake


def test_states_ask_squeue_then_accounting_then_scontrol(fake_slurm: FakeSlurm) -> None:
    fake_slurm.add_job("10", "RUNNING")
    fake_slurm.add_job("11", "COMPLETED")
    fake_slurm.add_job("12", "FAILED")
    states = fake_slurm.client(ENV).states(["12", "10", "11", "99"])
    assert states == {"10": "RUNNING", "11": "COMPLETED", "12": "FAILED"}  # 99 is unknown to every source
    # one call of each, whatever the number of jobs (one scontrol per job took 31 s for 5,000 jobs)
    assert [c.argv for c in fake_slurm.calls] == [
        ("squeue", "-h", "-o", "%i|%T|%r|%N", "-j", "12,10,11,99"),
        ("sacct", "-n", "-X", "-P", "-o", "JobID,State,ExitCode,NodeList,Reason", "-j", "12,11,99"),  # left the queue
        ("scontrol", "show", "job", "-o")]  # every job the controller holds, in one answer


def test_one_unknown_job_is_asked_about_alone(fake_slurm: FakeSlurm) -> None:
    fake_slurm.add_job("11", "COMPLETED")
    assert fake_slurm.client(ENV).states(["11"]) == {"11": "COMPLETED"}
    assert fake_slurm.calls[-1].argv == ("scontrol", "show", "job", "-o", "11")


def test_jobs_of_a_thousand_experiments_cost_three_calls() -> None:
    fake = FakeSlurm(accounting=False)
    for number in range(5000):
        fake.add_job(str(number), "PENDING" if number % 2 else "COMPLETED")
    states = fake.client(ENV).states([str(n) for n in range(5000)])
    assert len(states) == 5000 and states["4"] == "COMPLETED" and states["5"] == "PENDING"
    assert [c.argv[0] for c in fake.calls] == ["squeue", "sacct", "scontrol"]


def test_states_use_accounting_when_it_answers() -> None:
    fake = FakeSlurm(accounting=True)
    fake.add_job("3", "CANCELLED")
    assert fake.client(ENV).states(["3"]) == {"3": "CANCELLED"}
    assert [c.argv[0] for c in fake.calls] == ["squeue", "sacct"]


def test_sacct_state_keeps_its_first_word() -> None:
    client = FakeSlurm(answers={"sacct": answer("4|CANCELLED by 0|0:15|n2|None\n"), "squeue": answer("")}).client(ENV)
    assert client.jobs(["4"]) == {"4": JobInfo("4", "CANCELLED", "", "0:15", "n2")}


SCONTROL_LINE = ("JobId=9 JobName=acct:exp UserId=root(0) GroupId=root(0) Priority=1 JobState=NODE_FAIL "
                 "Reason=NodeDown Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 ExitCode=0:9 "
                 "RunTime=00:00:12 NodeList=n[1-2] BatchHost=n1 NumNodes=2\n")


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"squeue": answer("9|PENDING|Resources|\n")}, JobInfo("9", "PENDING", "Resources", "", "")),
        ({"squeue": answer("9|RUNNING|None|n[1-2]\n")}, JobInfo("9", "RUNNING", "", "", "n[1-2]")),
        ({"squeue": answer(""), "scontrol": answer(SCONTROL_LINE)},
         JobInfo("9", "NODE_FAIL", "NodeDown", "0:9", "n[1-2]")),
        ({"squeue": answer(""), "sacct": answer("9|PREEMPTED|0:0|n3|None\n")},
         JobInfo("9", "PREEMPTED", "", "0:0", "n3")),
        ({"squeue": answer(""), "sacct": answer("9|PENDING|0:0|None assigned|Dependency\n")},
         JobInfo("9", "PENDING", "Dependency", "0:0", "")),
    ],
)
def test_jobs_read_state_reason_exit_code_and_nodes(answers: dict, expected: JobInfo) -> None:
    assert FakeSlurm(answers=answers).client(ENV).jobs(["9"]) == {"9": expected}


def test_reachable(fake_slurm: FakeSlurm, tmp_path) -> None:
    sbatch = tmp_path / "sbatch"
    sbatch.write_text("#!/bin/sh\n")
    sbatch.chmod(0o755)
    env = {**ENV, "PATH": str(tmp_path)}
    assert fake_slurm.client(env).reachable()
    assert not FakeSlurm(down=True).client(env).reachable()
    assert not fake_slurm.client({**ENV, "PATH": str(tmp_path / "none")}).reachable()  # no client installed


class Raising:
    """A runner that fails the way the default runner does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __call__(self, argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str], timeout: float) -> Completed:
        raise self.error


# ---- every failure of a Slurm command: one classification (slurm/failures.py)

SBATCH = ("sbatch", "--nodes=1", "ray.sub")
TEST_ONLY = ("sbatch", "--test-only", "--nodes=1", "ray.sub")
SQUEUE = ("squeue", "--me", "-h", "-o", "%i|%T|%r|%N")
SCANCEL = ("scancel", "5", "6")
REPLY_LOST = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n"


@pytest.mark.parametrize(
    ("argv", "outcome", "kind", "message"),
    [
        # no Slurm to talk to, whatever the command
        (SBATCH, Completed(1, "", NO_CONFIG), SlurmUnreachable, "cannot reach Slurm: no Slurm configuration found "
         f"(Could not establish a configuration source); {UNREACHABLE}"),
        (TEST_ONLY, Completed(1, "", NO_CONTROLLER), SlurmUnreachable,
         f"cannot reach Slurm: Unable to contact slurm controller (connect failure); {UNREACHABLE}"),
        (SQUEUE, Completed(1, "", "squeue: error: Unable to contact slurm controller (connect failure)\n"),
         SlurmUnreachable, f"cannot reach Slurm: Unable to contact slurm controller (connect failure); {UNREACHABLE}"),
        (SCANCEL, Completed(1, "", NO_CONFIG_FILE.replace("sbatch", "scancel")), SlurmUnreachable,
         "cannot reach Slurm: the Slurm configuration cannot be read (Unable to process configuration file); "
         f"{UNREACHABLE}"),
        (SBATCH, FileNotFoundError("sbatch"), SlurmUnreachable,
         "sbatch not found on PATH: is the Slurm client installed (or SLURM_CONF set)?"),
        # Slurm's refusal of a test submission
        (TEST_ONLY, Completed(1, "", "sbatch: error: Invalid account\n"), SlurmRejected,
         "sbatch: error: Invalid account"),
        # it may have acted without saying so
        (SBATCH, TimeoutError("late"), errors.SlurmUncertain,
         "sbatch did not answer within 7 s (set NRL_SLURM_TIMEOUT to wait longer)"),
        (SBATCH, Completed(1, "", REPLY_LOST), errors.SlurmUncertain,
         "sbatch failed, but Slurm may have done it all the same: " + REPLY_LOST.strip()),
        (SCANCEL, Completed(1, "", "scancel: error: Zero Bytes were transmitted or received\n"), errors.SlurmUncertain,
         "scancel failed, but Slurm may have done it all the same: scancel: error: Zero Bytes were transmitted or "
         "received"),
        # a plain failure, with Slurm's reason: a query or a test submission changes nothing
        (SBATCH, Completed(1, "", "sbatch: error: Invalid account\n"), SlurmError,
         "sbatch failed: sbatch: error: Invalid account"),
        (TEST_ONLY, Completed(1, "", REPLY_LOST), SlurmError, "sbatch failed: " + REPLY_LOST.strip()),
        (SQUEUE, Completed(1, "", "squeue: error: Socket timed out on send/recv operation\n"), SlurmError,
         "squeue failed: squeue: error: Socket timed out on send/recv operation"),
        (SCANCEL, Completed(1, "only on stdout\n", ""), SlurmError, "scancel failed: only on stdout"),
        (SQUEUE, Completed(3, "", " \n"), SlurmError, "squeue failed: exit status 3"),
        (SBATCH, PermissionError("denied"), SlurmError, "could not run sbatch: denied"),
    ],
)
def test_every_failure_is_classified_in_one_place(argv: tuple[str, ...], outcome: Completed | OSError,
                                                  kind: type[SlurmError], message: str) -> None:
    error = failure(argv, outcome, 7)
    assert type(error) is kind
    assert str(error) == message


NO_SLURM = "squeue: error: Unable to contact slurm controller (connect failure)\n"


@pytest.mark.parametrize(
    ("ask", "plain"),
    [
        (lambda c: c.submit(["ray.sub"], cwd="/", job_env={}), SlurmError),
        (lambda c: c.test_only(["ray.sub"], cwd="/", job_env={}), SlurmRejected),
        (lambda c: c.queue(["5"]), SlurmError),
        (lambda c: c.cancel(["5"]), SlurmError),
        (lambda c: c.unhealthy_nodes("n[1-2]"), SlurmError),
        (lambda c: c.jobs(["5"]), None),  # a job query that fails: the job is unknown to it
    ],
)
def test_every_command_fails_through_the_classification(ask, plain: type[SlurmError] | None) -> None:
    programs = ("sbatch", "squeue", "scancel", "sinfo", "sacct", "scontrol")
    down = FakeSlurm(answers={name: answer(stderr=NO_SLURM, code=1) for name in programs})
    with pytest.raises(SlurmUnreachable):
        ask(down.client(ENV))
    refusing = FakeSlurm(answers={name: answer(stderr="error: Invalid job id specified\n", code=1)
                                  for name in programs})
    if plain is None:
        assert ask(refusing.client(ENV)) == {}
        assert [c.argv[0] for c in refusing.calls] == ["squeue", "sacct", "scontrol"]
    else:
        with pytest.raises(plain) as info:
            ask(refusing.client(ENV))
        assert type(info.value) is plain and "Invalid job id specified" in str(info.value)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (FileNotFoundError("sbatch"), "sbatch not found on PATH: is the Slurm client installed"),
        (TimeoutError("late"), "sbatch did not answer within 7 s (set NRL_SLURM_TIMEOUT to wait longer)"),
        (PermissionError("denied"), "could not run sbatch: denied"),
    ],
)
def test_runner_failures_become_slurm_errors(error: Exception, message: str) -> None:
    client = SlurmClient(ENV, Raising(error), timeout=7)
    with pytest.raises(SlurmError) as info:
        client.submit(["ray.sub"], cwd="/", job_env={})
    assert message in str(info.value)
    # a killed sbatch may have queued the job; one that never started did not
    assert isinstance(info.value, errors.SlurmUncertain) == isinstance(error, TimeoutError)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 120.0), ("", 120.0), ("  ", 120.0), ("30", 30.0), ("0.5", 0.5)],
)
def test_timeout_setting(raw: str | None, expected: float) -> None:
    assert SLURM_TIMEOUT.read(raw) == expected
    environ = {} if raw is None else {"NRL_SLURM_TIMEOUT": raw}
    assert SlurmClient(environ).timeout == expected


@pytest.mark.parametrize("raw", ["0", "-5", "soon", "inf", "nan"])
def test_bad_timeout_is_a_usage_problem(raw: str) -> None:
    with pytest.raises(UsageProblem, match="NRL_SLURM_TIMEOUT"):
        SlurmClient({"NRL_SLURM_TIMEOUT": raw})


def test_job_ids_are_distinct_digits_in_the_order_given() -> None:
    assert job_ids(["10", "9", "9", "", "1a", "-3", " 4", "٣", 11]) == ["10", "9", "11"]


# ---- the default runner, on real processes

def test_run_command_captures_both_streams_and_the_status(tmp_path) -> None:
    code = ("import os,sys; print(os.getcwd(), flush=True); print(os.environ['X'], file=sys.stderr);"
            " sys.stdout.buffer.write(b'caf\\xe9\\n'); sys.exit(3)")
    done = run_command([sys.executable, "-c", code],
                       cwd=str(tmp_path), env={"X": "from env"}, timeout=30)
    assert done.returncode == 3
    assert done.stdout.splitlines() == [str(tmp_path), "caf\ufffd"]  # a bad byte does not lose the rest
    assert done.stderr == "from env\n"


def test_run_command_kills_at_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run_command([sys.executable, "-c", "import time; time.sleep(60)"], cwd=None, env={}, timeout=0.5)
    assert time.monotonic() - started < 30


def test_run_command_missing_program() -> None:
    with pytest.raises(FileNotFoundError):
        run_command(["/nonexistent/sbatch"], cwd=None, env={}, timeout=5)


def test_the_fake_slurm_on_path_answers_as_the_one_in_process(slurm_on_path, tmp_path) -> None:
    # one model: the same calls get the same answers, the queue kept between processes
    (tmp_path / "x.sub").write_text("#!/bin/bash\n")
    calls = [("sbatch", "--test-only", "x.sub"), ("sbatch", "x.sub"), ("sbatch", "x.sub"),
             ("squeue", "--me", "-h", "-o", "%i|%T|%r|%N"), ("scancel", "1001"),
             ("squeue", "-h", "-o", "%i|%T|%r|%N", "-j", "1001,1002"), ("scontrol", "show", "job", "-o", "1001"),
             ("sacct", "-n", "-X", "-P", "-j", "1001"), ("sinfo", "-h", "-N", "-n", "n[1-2]", "-o", "%N|%T")]
    env = {"PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"],
           "FAKE_SQUEUE_POLLS": "100", "FAKE_SBATCH_FAIL_AT": "2"}  # jobs stay queued, as in process
    in_process = FakeSlurm(fail_at=2)
    for argv in calls:
        on_path = run_command(argv, cwd=str(tmp_path), env=env, timeout=30)
        assert on_path == in_process(argv, cwd=str(tmp_path), env=env, timeout=30), argv
    assert [c["prog"] for c in slurm_on_path.calls()] == [argv[0] for argv in calls]


# ---- transient failures: tried again, with backoff, within a budget and a deadline

SOCKET = "squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation\n"


@pytest.mark.parametrize(
    ("argv", "outcome", "transient"),
    [
        (SQUEUE, Completed(1, "", SOCKET), True),
        (SQUEUE, Completed(1, "", "squeue: error: Unable to contact slurm controller (connect failure)\n"), True),
        (SBATCH, Completed(1, "", "sbatch: error: Batch job submission failed: Resource temporarily unavailable\n"),
         True),
        (TEST_ONLY, Completed(1, "", REPLY_LOST), True),  # the pre-flight never calls a timeout a rejection
        (SBATCH, Completed(1, "", REPLY_LOST), True),
        (SCANCEL, Completed(1, "", "scancel: error: Connection reset by peer\n"), True),
        (SBATCH, TimeoutError("late"), True),
        (SQUEUE, Completed(1, "", "squeue: error: slurm_receive_msg: Zero Bytes were transmitted or received\n"), True),
        # final: Slurm's refusals, no configuration, no client
        (TEST_ONLY, Completed(1, "", "sbatch: error: Invalid account or account/partition combination\n"), False),
        (SBATCH, Completed(1, "", "sbatch: error: Batch job submission failed: Invalid partition name specified\n"),
         False),
        (SQUEUE, Completed(1, "", "squeue: error: Invalid user: nobody\n"), False),
        (SBATCH, Completed(1, "", NO_CONFIG), False),
        (SBATCH, Completed(1, "", NO_CONFIG_FILE), False),
        (SBATCH, FileNotFoundError("sbatch"), False),
        (SBATCH, PermissionError("denied"), False),
    ],
)
def test_transient_or_final(argv: tuple[str, ...], outcome: Completed | OSError, transient: bool) -> None:
    error = failure(argv, outcome, 7)
    assert error.transient is transient
    assert not (transient and isinstance(error, SlurmRejected))


ANSWERED = Completed(0, "", "")


def flaky(times: int, said: str = SOCKET, then: Completed = ANSWERED):
    """An answer that fails ``times`` times with ``said``, then gives ``then``."""
    left = [times]

    def reply(call: Call) -> Completed:
        if left[0] > 0:
            left[0] -= 1
            return Completed(1, "", said)
        return then

    return reply


def test_a_query_that_lost_its_reply_is_tried_again_with_growing_delays() -> None:
    fake = FakeSlurm(answers={"squeue": flaky(3, then=Completed(0, "5|RUNNING|None|n1\n", ""))})
    heard: list[str] = []
    assert fake.client(ENV, notify=heard.append).queued(["5"]) == {"5"}
    assert len(fake.calls) == 4
    first, second, third = fake.slept
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0 and 2.0 <= third <= 4.0  # doubling, each in its upper half
    assert len(heard) == 3 and all(line.startswith("[WARNING]: squeue failed, which may not happen again (")
                                   and "Socket timed out" in line and "NRL_SLURM_RETRY=60" in line for line in heard)


def test_backoff_doubles_to_a_cap_with_jitter() -> None:
    import random

    from nrl_launch.slurm.client import backoff

    delays = backoff(random.Random(1), first=1.0, cap=8.0)
    drawn = [next(delays) for _ in range(7)]
    for delay, top in zip(drawn, [1, 2, 4, 8, 8, 8, 8], strict=True):
        assert top / 2 <= delay <= top
    assert len(set(drawn)) == 7  # jittered: launches that failed together do not retry together


def test_a_final_failure_is_never_tried_again() -> None:
    fake = FakeSlurm(answers={"squeue": flaky(5, "squeue: error: Invalid user: nobody\n")})
    with pytest.raises(SlurmError, match="Invalid user"):
        fake.client(ENV).queued(["5"])
    assert len(fake.calls) == 1 and fake.slept == []


def test_retrying_stops_when_the_budget_is_spent() -> None:
    fake = FakeSlurm(answers={"squeue": flaky(1000)})
    with pytest.raises(SlurmError) as info:
        fake.client(ENV, retry_for=10).queued(["5"])
    assert sum(fake.slept) <= 10 and len(fake.calls) >= 3
    assert info.value.transient and re.search(r"\(tried \d+ times over \d+ s; NRL_SLURM_RETRY=10\)$", str(info.value))
    none = FakeSlurm(answers={"squeue": flaky(1000)})
    with pytest.raises(SlurmError):
        none.client(ENV, retry_for=0).queued(["5"])  # NRL_SLURM_RETRY=0: never tried again
    assert len(none.calls) == 1


def test_a_submission_is_tried_once_by_the_client() -> None:
    # sbatch may have queued the job: trying again is slurm.submit's business (it looks first)
    fake = FakeSlurm(answers={"sbatch": flaky(1, REPLY_LOST, Completed(0, "Submitted batch job 5\n", ""))})
    with pytest.raises(errors.SlurmUncertain) as info:
        fake.client(ENV).submit(["ray.sub"], cwd="/", job_env={})
    assert info.value.transient and len(fake.calls) == 1


def test_test_only_and_scancel_are_tried_again() -> None:
    fake = FakeSlurm(answers={"sbatch": flaky(2, REPLY_LOST, Completed(0, "", "sbatch: Job 3 to start\n")),
                              "scancel": flaky(1, "scancel: error: Socket timed out on send/recv operation\n")})
    client = fake.client(ENV)
    client.test_only(["ray.sub"], cwd="/", job_env={})
    client.cancel(["5"])
    assert [c.argv[0] for c in fake.calls] == ["sbatch"] * 3 + ["scancel"] * 2


def test_a_deadline_bounds_each_call_and_the_retries() -> None:
    seen: list[float] = []
    fake = FakeSlurm()

    def slow_squeue(call: Call) -> Completed:
        return Completed(1, "", SOCKET)

    fake.answers["squeue"] = slow_squeue
    client = fake.client(ENV, timeout=120, retry_for=600)
    original = fake.__call__

    def recording(argv, *, cwd, env, timeout, executable=None):
        seen.append(timeout)
        fake.clock += 4  # each call takes 4 s
        return original(argv, cwd=cwd, env=env, timeout=timeout)

    client.runner = recording
    with pytest.raises(SlurmError):
        client.until(fake.clock + 10).queued(["5"])
    assert seen[0] == 10 and all(t <= 10 for t in seen)  # never more than what is left (at least MIN_CALL)
    assert fake.clock <= 10 + 2 + 4  # ended by the deadline, give or take one short call
    assert client.deadline is None  # until() made a bounded copy


def test_a_slow_answer_is_announced_within_seconds() -> None:
    heard: list[str] = []

    def slow(argv, *, cwd, env, timeout, executable=None):
        time.sleep(0.5)
        return Completed(0, "", "")

    client = SlurmClient(ENV, slow, timeout=60, notify=heard.append, slow_after=0.1)
    client.queued(["5"])
    client.queued(["5"])  # said once, not at every slow call
    assert len(heard) == 1
    assert heard[0].startswith("[WARNING]: Slurm has not answered squeue for 0.1 s: the controller may be busy or "
                               "down; waiting (at most 60 s, NRL_SLURM_TIMEOUT)")


def test_the_launchers_commands_come_from_the_launchers_path(tmp_path, slurm_on_path) -> None:
    # EXTRA_ENV='PATH=/opt/bin:$PATH' sets the job's PATH (literally), not the launcher's
    client = SlurmClient({**ENV, "PATH": os.environ["PATH"], "FAKE_SLURM_DIR": os.environ["FAKE_SLURM_DIR"]})
    (tmp_path / "x.sub").write_text("#!/bin/bash\n")
    job_path = f"/opt/bin:$PATH:{os.path.dirname(sys.executable)}"  # the fake sbatch's python3 is found there
    answer_ = client.submit(["x.sub"], cwd=str(tmp_path), job_env={"PATH": job_path})
    assert answer_.job_id == "1001"
    [call] = slurm_on_path.submissions()
    assert call["env"]["PATH"] == job_path  # the job's environment is the job's
    nowhere = SlurmClient({**ENV, "PATH": str(tmp_path / "no-bin")})
    with pytest.raises(SlurmUnreachable, match="sbatch not found on PATH"):
        nowhere.submit(["x.sub"], cwd=str(tmp_path), job_env={"PATH": os.environ["PATH"]})


def test_run_command_runs_the_executable_given(tmp_path) -> None:
    done = run_command(["sbatch", "-c", "import sys; print(sys.argv[0])"], cwd=None, env={"PATH": "/nonexistent"},
                       timeout=30, executable=sys.executable)
    assert done.returncode == 0 and done.stdout.strip() == "-c"


def test_named_lists_the_jobs_of_a_name_with_their_output(fake_slurm: FakeSlurm) -> None:
    client = fake_slurm.client(ENV)
    client.submit(["--job-name=acct:exp", "--output=slurm-1-%j-exp-1.2.out", "x.sub"], cwd="/snap", job_env={})
    client.submit(["--job-name=acct:other", "--output=slurm-1-%j-other-1.2.out", "x.sub"], cwd="/snap", job_env={})
    fake_slurm.finish("1001")  # ended, but the controller still knows it
    assert client.named("acct:exp") == [("1001", "/snap/slurm-1-%j-exp-1.2.out")]
    assert fake_slurm.calls[-1].argv == ("squeue", "--me", "-h", "-t", "all", "-n", "acct:exp", "-O",
                                         "JobID:0|,StdOut:0")
    client.submit(["--job-name=a,b:x|y", "--output=o-%j.out", "x.sub"], cwd="/s", job_env={})
    assert client.named("a,b:x|y") == [("1003", "/s/o-%j.out")]  # -n would split the name at its comma


def test_many_jobs_are_looked_up_in_the_users_whole_queue() -> None:
    fake = FakeSlurm()
    for number in range(150):
        fake.add_job(str(number), "PENDING")
    states = fake.client(ENV).states([str(n) for n in range(150)] + ["999"])
    assert len(states) == 150
    assert fake.calls[0].argv == ("squeue", "-h", "-o", "%i|%T|%r|%N", "--me")  # not a -j list of 151 ids
