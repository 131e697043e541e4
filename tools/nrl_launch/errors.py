"""The launcher's exception hierarchy.

Library code raises these; only the click layer turns them into messages and
exit codes. ``UsageProblem`` subclasses mean "the caller asked for something
invalid" (exit 2), the others mean "the launch could not be done" (exit 1).
"""

from __future__ import annotations


class LauncherError(Exception):
    """Base class of every error the launcher reports to its user."""


class UsageProblem(LauncherError):
    """Invalid invocation: a missing or malformed environment variable/option."""


class ConfigError(LauncherError):
    """A recipe's CONFIG block is missing, malformed or incomplete.

    ``path`` and ``line`` locate the problem; ``str()`` starts with them.
    """

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class GitError(LauncherError):
    """The repository or a script's tracking state does not allow a launch."""


class SnapshotError(LauncherError):
    """The code snapshot could not be created."""


class SlurmError(LauncherError):
    """A Slurm client command failed or answered something unexpected."""
