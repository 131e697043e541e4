"""Where the values of a CONFIG block came from, to explain an error (issue 22 item 8).

A block that failed is evaluated again with :class:`TracingScope`, which follows which of the
caller's environment variables each value came from; an error caused by one of them then says so
(``NUM_NODES='abc' comes from the environment``) instead of only blaming the recipe's line. A
good block never loads this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nrl_launch.bashcfg.config import _Scope as Scope
from nrl_launch.errors import ConfigError


class TracingScope(Scope):
    """A scope that also follows which environment variables each value came from (through
    ``${NAME:-…}``, or an earlier assignment that read one), so that an error caused by a value
    of the caller's environment says so. Used only to explain an error: a block that failed is
    evaluated again with it, so a good block pays nothing for the bookkeeping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(environ)
        self.taint: dict[str, frozenset[str]] = {}  # the environment variables a value came from
        self.reads: set[str] = set()  # those read since the last assignment (by the line being expanded)

    def lookup(self, name: str) -> str | None:
        """As :meth:`Scope.lookup`, noting where the value came from."""
        value = super().lookup(name)
        if name in self.values:
            self.reads.update(self.taint.get(name, ()))
        elif value is not None:
            self.reads.add(name)
        return value

    def assign(self, name: str, value: str, lineno: int) -> None:
        """As :meth:`Scope.assign`; the value came from what the line read."""
        super().assign(name, value, lineno)
        self.taint[name] = frozenset(self.reads)
        self.reads = set()

    def blame(self, error: ConfigError, names: Iterable[str]) -> ConfigError:
        """``error``, saying which of its values came from the caller's environment (the block
        variables ``names`` read them, or the failing line did): fixing the recipe would not help."""
        reads = sorted(self.reads.union(*(self.taint.get(name, ()) for name in names)))
        if not reads:
            return error
        shown = ", ".join(f"{name}={self.read_env[name]!r}" for name in reads)
        verb, them = ("comes", "it") if len(reads) == 1 else ("come", "them")
        return ConfigError(error.path, error.line, f"{error.message} ({shown} {verb} from the environment: unset "
                                                   f"or fix {them})")
