"""The process boundary of the Slurm client: the *runner* that runs one
program to completion, and what it answers (:class:`Completed`).

The default runner is :func:`run_command` (:func:`subprocess.run`); tests hand
the client a recording fake instead (``testkit.FakeSlurm``), the way
pypa/build stores one typed subprocess runner and httpx has one transport seam.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple


class Completed(NamedTuple):
    """What a finished command said: exit status and decoded output."""

    returncode: int
    stdout: str
    stderr: str


if TYPE_CHECKING:  # only the type checker needs the protocol class
    from typing import Protocol

    class Runner(Protocol):
        """Runs one command to completion.

        Raises ``FileNotFoundError`` when the program does not exist, another
        ``OSError`` when it cannot be started, and ``TimeoutError`` when it did
        not finish within ``timeout`` seconds (the runner kills it). ``executable``,
        when given, is the program to run (``argv[0]`` is then only its name).
        """

        def __call__(self, argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str],
                     timeout: float, executable: str | None = None) -> Completed: ...


def run_command(argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str], timeout: float,
                executable: str | None = None) -> Completed:
    """The default runner: :func:`subprocess.run`, output captured and decoded. ``executable``:
    the program to run instead of looking ``argv[0]`` up on the PATH of ``env`` (the client
    gives it when ``env`` is a job's environment with another PATH).

    Output is decoded leniently: a stray non-UTF-8 byte in Slurm's answer must
    not cost the job id in the same answer.
    """
    import subprocess  # not on the DRYRUN=1 path, which never runs a command

    try:
        proc = subprocess.run(list(argv), cwd=cwd, env=dict(env), capture_output=True, timeout=timeout, check=False,
                              executable=executable)
    except subprocess.TimeoutExpired as e:
        raise TimeoutError(f"{argv[0]} did not finish within {timeout:g} s") from e
    return Completed(proc.returncode, _decode(proc.stdout), _decode(proc.stderr))


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")
