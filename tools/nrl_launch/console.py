"""The output of one command: the contract's lines on stdout, messages on
stderr, and what happens when stdout is gone.

Each command gets one :class:`Console` from the click layer's command class
(``cli.LauncherCommand``) and hands its methods to the library functions as
their ``out``/``err`` callbacks; the library never prints by itself.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from nrl_launch.errors import LauncherError


class Console:
    """Where one command's output goes.

    ``keep_going``: the command changes things (submits, cancels, records), so
    a stdout that can no longer be written (its reader closed the pipe, the
    disk is full, the shell closed it) must not stop it half-way: it goes on to
    its end with the rest of its output sent nowhere, says so once on stderr,
    and :meth:`check` fails it at the end (exit 1: its output is incomplete).
    Without ``keep_going`` the failed write's ``OSError`` ends the command.
    """

    def __init__(self, command: str, *, keep_going: bool = False) -> None:
        self.command = command
        self.keep_going = keep_going
        self.lost: str | None = None  # why stdout could not be written (the first reason)
        self.hint = ""  # added to the error about a lost stdout: where to see what the command did

    def out(self, line: str) -> None:
        """One line on stdout, flushed at once (tools read the lines as they come)."""
        # print() costs a fraction of click.echo, which counts when DRYRUN=1
        # prints two lines per recipe of a whole suite.
        try:
            if sys.stdout is None:  # closed by the shell (>&-): print() would drop the line without a word
                raise OSError(errno.EBADF, "stdout is closed")
            print(line, flush=True)
        except OSError as e:
            self._lose(e)

    def write(self, data: bytes) -> None:
        """Bytes on stdout as a file holds them (a log), flushed."""
        try:
            click.echo(data, nl=False)  # to the binary stream, flushed
        except OSError as e:
            self._lose(e)

    def err(self, line: str) -> None:
        """One line on stderr: diagnostics, progress, warnings."""
        click.echo(line, err=True)

    def check(self) -> None:
        """Fail the command, at its end, when part of its output could not be written."""
        if self.lost is not None:
            raise LauncherError(f"the {self.command} finished but its output could not be written to stdout "
                                f"({self.lost}){self.hint}")

    def _lose(self, error: OSError) -> None:
        if not self.keep_going:
            raise error
        if self.lost is None:
            self.lost = error.strerror or str(error)
            self.err(f"[WARNING]: cannot write to stdout ({self.lost}): the {self.command} goes on, "
                     "its output is lost")
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    """Send the rest of stdout nowhere, the unwritten buffer included (not again into the broken stream)."""
    try:
        fd = sys.stdout.fileno() if sys.stdout is not None else None
    except (OSError, ValueError):  # a stream without a file descriptor (io.UnsupportedOperation)
        fd = None
    if fd is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stands for stdout until the process ends)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
