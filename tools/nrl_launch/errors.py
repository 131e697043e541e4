"""The launcher's exception hierarchy.

Library code raises these with the facts as attributes (which file, which
line, which experiment, which jobs are already queued); ``str()`` renders
them, and only the click layer turns them into ``[ERROR]: …`` lines and exit
codes. Code that knows more context adds it with :meth:`LauncherError.about`
instead of wrapping the message in a new string.

Exit statuses (spec sections 7 and 9; ``cli._report`` reads ``exit_code``):
``UsageProblem`` and ``EnvironmentProblem`` 2 (the caller asked for something
invalid, or the environment does not fit the repository); ``SlurmUnreachable``
128 (no Slurm to ask: the bisect helper's "cannot test here", which makes
``git bisect run`` stop instead of marking the commit bad); an interrupt 130;
every other class 1 ("the launch could not be done").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class LauncherError(Exception):
    """Base class of every error the launcher reports to its user.

    ``where`` names what the problem is about (a script as the user typed it,
    ``file:line``, a snapshot folder); it is rendered before the message.
    """

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def about(self, where: str) -> LauncherError:
        """Name what the error is about, unless a more precise place is known."""
        if self.where is None:
            self.where = where
        return self

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class UsageProblem(LauncherError):
    """Invalid invocation: a missing or malformed environment variable/option."""

    exit_code = 2


class EnvironmentProblem(LauncherError):
    """The environment or an option does not fit where the command runs (a CODE_SNAPSHOT_DIRNAME
    that git tracks, a BATCH_SCRIPT that is not there, a command run outside any repository):
    exit 2, as an invalid invocation, found before anything is made."""

    exit_code = 2


class ConfigError(LauncherError):
    """A recipe's CONFIG block is missing, malformed or incomplete.

    ``path`` and ``line`` locate the problem; ``str()`` starts with them.
    """

    def __init__(self, path: str, line: int | None, message: str) -> None:
        super().__init__(message, where=f"{path}:{line}" if line is not None else path)
        self.path = path
        self.line = line


class PlanError(LauncherError):
    """The launch as asked cannot be planned (the same experiment twice, a
    batch script the snapshot would not hold, no script at all)."""


class GitError(LauncherError):
    """The repository or a script's tracking state does not allow a launch."""


class SnapshotError(LauncherError):
    """A snapshot, its manifest or its continue.sh could not be made or read."""


class SlurmError(LauncherError):
    """A Slurm client command failed or answered something unexpected.

    ``transient``: the failure may not happen again (a busy or restarting
    controller, a lost reply, a timeout): worth trying again, unlike a refusal.
    """

    def __init__(self, message: str, *, where: str | None = None, transient: bool = False) -> None:
        super().__init__(message, where=where)
        self.transient = transient


class SlurmUnreachable(SlurmError):
    """No Slurm to talk to: the client is missing, has no configuration, or
    the controller does not answer. Exit 128 (spec section 9): the commit under
    test is not bad, it cannot be tested here."""

    exit_code = 128


def gave_up(what: str, failing_for: float, error: SlurmError, resume: str) -> SlurmUnreachable:
    """The one error of every give-up (WATCH, ``nrl-launch watch``, ``logs --follow``): what
    stopped, for how long Slurm was silent and why, the command that resumes; exit 128 (spec
    section 7: watching ended without verdicts because Slurm could not be reached)."""
    return SlurmUnreachable(f"gave up {what}: Slurm has not answered for {failing_for:.0f} s ({error}). "
                            f"Resume with: {resume}")


class SlurmRejected(SlurmError):
    """``sbatch --test-only`` says Slurm would refuse a submission."""


class SlurmUncertain(SlurmError):
    """A Slurm command may have done what it was asked without saying so: it
    timed out, was interrupted, or sbatch succeeded with no job id in its
    answer. A submission that ends this way may have queued a job."""


class SubmissionStopped(LauncherError):
    """Submitting stopped half-way (sbatch failed, timed out, or Ctrl-C).

    ``queued`` maps each experiment to the job ids already queued, so the
    message can say exactly what to cancel; ``certain`` is False when the
    last sbatch may or may not have queued a job (a timeout).
    """

    def __init__(self, cause: str, queued: Mapping[str, Sequence[str]], *, certain: bool = True) -> None:
        super().__init__(cause)
        self.queued = {name: list(ids) for name, ids in queued.items()}
        self.certain = certain

    def __str__(self) -> str:
        done = [f"{name}: {', '.join(ids)}" for name, ids in self.queued.items() if ids]
        if not done:
            summary = "Nothing was submitted." if self.certain else "No job is known to be queued (check squeue --me)."
        else:
            all_ids = " ".join(i for ids in self.queued.values() for i in ids)
            summary = f"Already submitted (still queued; cancel with 'scancel {all_ids}'): " + "; ".join(done)
            if not self.certain:
                summary += " — and possibly one more: check squeue --me"
        return f"{super().__str__()}. {summary}"

    @property
    def exit_code(self) -> int:  # type: ignore[override]  # an instance's, from its cause
        """128 when Slurm stopped answering half-way (the commit cannot be tested here), else 1."""
        return SlurmUnreachable.exit_code if isinstance(self.__cause__, SlurmUnreachable) else 1


class SubmissionInterrupted(SubmissionStopped):
    """Submitting stopped by Ctrl-C: exit 130, as a shell reports SIGINT (``git bisect run``
    reads 1 as "bad commit", 128 and above as "stop bisecting")."""

    exit_code = 130


class Interrupted(LauncherError):
    """Ctrl-C: what is still queued and how to resume (exit 130, as a shell reports SIGINT)."""

    exit_code = 130
