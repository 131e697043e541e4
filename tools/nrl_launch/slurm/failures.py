"""What a failed Slurm command means: the one function that classifies it.

Every Slurm command the client runs that does not succeed, whether it exited
non-zero or could not be run or finished at all, becomes one error here, of
one of four classes (``errors.py``):

* :class:`SlurmUnreachable`: there is no Slurm to talk to (no client, no
  configuration, a controller that takes no connection); nothing was done.
* :class:`SlurmUncertain`: the command may have done what it was asked
  without saying so: it was killed at the timeout, or a command that acts
  (sbatch, scancel) lost the controller's reply. A submission that ends this
  way may have queued a job.
* :class:`SlurmRejected`: ``sbatch --test-only`` says Slurm would refuse the
  submission.
* :class:`SlurmError`: any other failure, with Slurm's own reason.

Orthogonal to the class, every error says whether it is *transient*
(``SlurmError.transient``): a failure that may not happen again when the
command is tried a little later -- a reply lost on a busy controller ("Socket
timed out on send/recv operation"), a controller that is restarting ("Unable to
contact slurm controller"), "Resource temporarily unavailable", a connection
cut, a command killed at its timeout. A *final* error (a refusal: invalid
account, partition or option; no Slurm configuration at all; no client
installed) is never worth trying again. The client retries transient failures
(:mod:`nrl_launch.slurm.client`); a submission whose failure is transient is
reconciled with the queue before it is tried again
(:mod:`nrl_launch.slurm.submit`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nrl_launch.errors import SlurmError, SlurmRejected, SlurmUncertain, SlurmUnreachable
from nrl_launch.settings import SLURM_TIMEOUT
from nrl_launch.slurm.runner import Completed

# How the Slurm client says that there is no Slurm to talk to, and the short
# reason the launcher gives for each. Without a slurm.conf (and no DNS SRV
# record) every command ends with "fatal: Could not establish a configuration
# source" after some "resolve_ctls_from_dns_srv" lines; with a controller that
# is down, "Unable to contact slurm controller (connect failure)".
_UNREACHABLE = (
    (re.compile(r"Could not establish a configuration source|resolve_ctls_from_dns_srv"),
     "no Slurm configuration found (Could not establish a configuration source)"),
    (re.compile(r"Unable to contact slurm controller(?: \([^)\n]*\))?", re.IGNORECASE), None),
    # SLURM_CONF naming a file that is not there (or not readable): after a minute of retries
    (re.compile(r"Unable to process configuration file"),
     "the Slurm configuration cannot be read (Unable to process configuration file)"),
)
LOCAL_CLUSTER_HINT = 'eval "$(tools/local-slurm up | tail -n 1)"'
# The request reached the controller but its reply did not come back (an overloaded
# controller): a job may have been queued, or cancelled, all the same.
_REPLY_LOST = re.compile(r"Socket timed out on send/recv operation|Zero Bytes were transmitted or received")
_ACTING = frozenset({"sbatch", "scancel"})  # the commands that change something when they succeed
# What Slurm says when trying again later may work: the controller was busy, restarting, or the
# connection to it was cut. Anything else a command says is taken as final (Slurm's refusal).
_TRANSIENT = re.compile(
    r"Socket timed out on send/recv operation|Zero Bytes were transmitted or received|"
    r"Unable to contact slurm controller|Resource temporarily unavailable|Connection reset by peer|"
    r"Connection refused|Connection timed out|Transport endpoint is not connected|Broken pipe|"
    r"Communication connection failure|Slurm backup controller in standby mode|Interrupted system call|"
    r"Slurmctld is busy|Too many open files",
    re.IGNORECASE)


def failure(argv: Sequence[str], outcome: Completed | OSError, timeout: float) -> SlurmError:
    """The error for a Slurm command ``argv`` that did not succeed: its non-zero
    answer, or the runner's ``OSError`` (``TimeoutError`` after ``timeout`` seconds).
    Its ``transient`` flag says whether trying again may work."""
    program = argv[0]
    if isinstance(outcome, FileNotFoundError):
        return SlurmUnreachable(f"{program} not found on PATH: is the Slurm client installed (or SLURM_CONF set)?")
    if isinstance(outcome, TimeoutError):  # killed at the timeout: whether it acted is unknown
        return SlurmUncertain(f"{program} did not answer within {timeout:g} s (set {SLURM_TIMEOUT.envvar} to wait "
                              "longer)", transient=True)
    if isinstance(outcome, OSError):
        return SlurmError(f"could not run {program}: {outcome}")
    said = outcome.stderr.strip() or outcome.stdout.strip() or f"exit status {outcome.returncode}"
    transient = transient_answer(said)
    reason = unreachable_reason(outcome)
    if reason is not None:
        return SlurmUnreachable(unreachable_message(reason), transient=transient)
    test_only = tuple(argv[:2]) == ("sbatch", "--test-only")
    if _REPLY_LOST.search(said) and program in _ACTING and not test_only:
        # the controller's answer was lost: it did not refuse, and it may have done it
        return SlurmUncertain(f"{program} failed, but Slurm may have done it all the same: {said}", transient=True)
    if test_only and not transient:
        return SlurmRejected(said)
    return SlurmError(f"{program} failed: {said}", transient=transient)


def transient_answer(said: str) -> bool:
    """True when what a failed Slurm command said means that trying again later may work."""
    return _TRANSIENT.search(said) is not None


def unreachable_reason(proc: Completed) -> str | None:
    """The short reason when a failed command says there is no Slurm to talk to, else None."""
    text = f"{proc.stderr}\n{proc.stdout}"
    for pattern, reason in _UNREACHABLE:
        match = pattern.search(text)
        if match is not None:
            return reason or match.group(0)
    return None


def unreachable_message(reason: str) -> str:
    """The one line the launcher says when it cannot reach Slurm."""
    return f"cannot reach Slurm: {reason}; is SLURM_CONF set? for the local cluster: {LOCAL_CLUSTER_HINT}"
