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

Deciding what to do about a failure (retry it, wait, give up) builds on this
classification, here.
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


def failure(argv: Sequence[str], outcome: Completed | OSError, timeout: float) -> SlurmError:
    """The error for a Slurm command ``argv`` that did not succeed: its non-zero
    answer, or the runner's ``OSError`` (``TimeoutError`` after ``timeout`` seconds)."""
    program = argv[0]
    if isinstance(outcome, FileNotFoundError):
        return SlurmUnreachable(f"{program} not found on PATH: is the Slurm client installed (or SLURM_CONF set)?")
    if isinstance(outcome, TimeoutError):  # killed at the timeout: whether it acted is unknown
        return SlurmUncertain(f"{program} did not answer within {timeout:g} s (set {SLURM_TIMEOUT.envvar} to wait "
                              "longer)")
    if isinstance(outcome, OSError):
        return SlurmError(f"could not run {program}: {outcome}")
    reason = unreachable_reason(outcome)
    if reason is not None:
        return SlurmUnreachable(unreachable_message(reason))
    said = outcome.stderr.strip() or outcome.stdout.strip() or f"exit status {outcome.returncode}"
    test_only = tuple(argv[:2]) == ("sbatch", "--test-only")
    if _REPLY_LOST.search(said):  # the controller's answer was lost: it did not refuse
        if program in _ACTING and not test_only:
            return SlurmUncertain(f"{program} failed, but Slurm may have done it all the same: {said}")
    elif test_only:
        return SlurmRejected(said)
    return SlurmError(f"{program} failed: {said}")


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
