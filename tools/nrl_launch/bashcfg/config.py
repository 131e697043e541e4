"""Reading a recipe's CONFIG block (spec section 3).

A recipe keeps its resource request between ``# ===== BEGIN CONFIG =====`` and
``# ===== END CONFIG =====``. The block is *evaluated* here, never executed:
every non-comment line must be one ``NAME=word`` assignment, and ``word`` is
expanded with bash's rules for a small subset that cannot have side effects
(quoting, ``$NAME``, ``${NAME}``, ``${NAME:-word}``, ``${NAME-word}`` and
``$(( … ))``). Anything that could run a command or touch a file is rejected
with a ConfigError naming the file, the line and the construct. So is every
construct whose bash meaning this module does not reproduce exactly: a value
is either bash's value or an error, never a third thing.

Layers, each in its module:

* here, the block (its markers, its lines, their characters), ``_Scope``,
  which resolves names (the block's assignments, then the environment) and
  refuses bash's own variables (``BASH_OWN_VARIABLES``), and ``_Counts``,
  which reads the resource counts as bash arithmetic reads them;
* :mod:`nrl_launch.bashcfg.words`: ``Expander`` walks one assignment line and
  expands its value word;
* :mod:`nrl_launch.bashcfg.arith`: the text of a ``$(( … ))``, with bash's grammar,
  operator precedence and 64-bit wraparound.

Nothing is cached between calls: each call sees only its own block and the
``environ`` mapping it was given (the old bash tool leaked variables from one
recipe into the next).

Rejected although bash gives them a meaning (an error is always acceptable, a
different value never is): special parameters (``$#``, ``$?``, ``$0``…,
also as ``${…}``); ``$'…'`` wherever bash decodes it and ``$"…"`` wherever
bash translates it (everywhere but inside a plain ``"…"``, where the ``$`` is
a literal: the translation depends on the locale and, inside a double-quoted
``${…}``, on bash's ``extquote`` option); inside a double-quoted
``${NAME-word}``, single quotes around anything but plain text; reading or assigning bash's own variables
(``BASH_OWN_VARIABLES``); control characters and non-UTF-8 bytes in the
block, a UTF-8 BOM at the start of the file; more than ``arith.MAX_DEPTH`` levels
of nesting; a second CONFIG block. Resource counts must be single positive
integer constants (in any of bash's bases) within ``_COUNT_LIMITS``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn

from nrl_launch.bashcfg.arith import CONSTANT_RE, INT64_MAX, ArithProblem, NameProblem, base_name, parse_number
from nrl_launch.bashcfg.words import Expander, not_allowed
from nrl_launch.errors import ConfigError

DEFAULT_GPUS_PER_NODE = 8

# Variables bash gives a value of its own (or gives meaning only inside a
# shell), so a CONFIG block can neither read them from the launcher's
# environment (bash's value differs: RANDOM, PPID, LINENO, or bash fills in
# one the environment lacks: UID, PATH) nor assign them (bash refuses the
# read-only ones and changes its behaviour for the others: IFS, OPTIND…).
#
# Source, man bash, section "Shell Variables":
# * every variable under "The following variables are set by the shell";
# * those under "The following variables are used by the shell" that bash
#   assigns by itself: a default (HISTFILE, HISTFILESIZE, HISTSIZE, IFS,
#   MAILCHECK, OPTERR, PATH, PS1, PS2, PS4, SHELL), automatically (COLUMNS and
#   LINES with checkwinsize) or when it enters posix mode (POSIXLY_CORRECT);
# * TERM, which bash sets to "dumb" when the environment lacks it (bash's
#   variables.c; ``env -i bash -c 'declare -p'`` shows it, the manual does not).
BASH_OWN_VARIABLES = frozenset((
    # set by the shell
    "_", "BASH", "BASHOPTS", "BASHPID", "BASH_ALIASES", "BASH_ARGC", "BASH_ARGV", "BASH_ARGV0",
    "BASH_CMDS", "BASH_COMMAND", "BASH_EXECUTION_STRING", "BASH_LINENO", "BASH_LOADABLES_PATH",
    "BASH_REMATCH", "BASH_SOURCE", "BASH_SUBSHELL", "BASH_VERSINFO", "BASH_VERSION", "COMP_CWORD",
    "COMP_KEY", "COMP_LINE", "COMP_POINT", "COMP_TYPE", "COMP_WORDBREAKS", "COMP_WORDS", "COPROC",
    "DIRSTACK", "EPOCHREALTIME", "EPOCHSECONDS", "EUID", "FUNCNAME", "GROUPS", "HISTCMD",
    "HOSTNAME", "HOSTTYPE", "LINENO", "MACHTYPE", "MAPFILE", "OLDPWD", "OPTARG", "OPTIND", "OSTYPE",
    "PIPESTATUS", "PPID", "PWD", "RANDOM", "READLINE_ARGUMENT", "READLINE_LINE", "READLINE_MARK",
    "READLINE_POINT", "REPLY", "SECONDS", "SHELLOPTS", "SHLVL", "SRANDOM", "UID",
    # used by the shell, which assigns them itself
    "COLUMNS", "HISTFILE", "HISTFILESIZE", "HISTSIZE", "IFS", "LINES", "MAILCHECK", "OPTERR",
    "PATH", "POSIXLY_CORRECT", "PS1", "PS2", "PS4", "SHELL",
    # set when unset (not in the manual)
    "TERM",
))

# Those of them bash makes read-only: ``export UID=…`` is an error in bash,
# so such a name can't be handed to a job (EXTRA_ENV) through continue.sh.
BASH_READONLY_VARIABLES = frozenset(("BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS", "UID"))

# Upper sanity bounds of the resource counts (None: only bash's 64-bit limit).
# No real cluster exceeds them; a bigger value is a typo that would otherwise
# print an absurd GPU-hour figure with exit status 0.
_COUNT_LIMITS: Mapping[str, int | None] = {
    "NUM_NODES": 100_000,
    "GPUS_PER_NODE": 1_024,
    "NUM_MINUTES": 525_600,  # a year
    "NUM_RUNS": 10_000,
    "SEGMENT_SIZE": None,  # bounded by NUM_NODES, which it must divide
    "MAX_STEPS": None,
    "STEPS_PER_RUN": None,
}


class NonDecimalCount(NamedTuple):
    """A count written other than in plain decimal (``NUM_NODES=010``).

    Bash arithmetic, which the old launcher used for GPU-hours, reads it in
    its base; so does this module. The launcher warns about each one.
    """

    name: str
    written: str  # the value as the block gives it, e.g. "010"
    line: int  # file line of the assignment
    value: int  # what bash arithmetic reads, e.g. 8

    def describe(self) -> str:
        """One sentence for a warning, e.g. ``NUM_NODES=010 is read as 8 (octal), …``."""
        return (
            f"{self.name}={self.written} is read as {self.value} ({base_name(self.written)}), "
            "as bash arithmetic does"
        )


@dataclass(frozen=True)
class RecipeConfig:
    """The resources a recipe asks for, evaluated from its CONFIG block."""

    path: str  # the script path as the user typed it
    num_nodes: int
    gpus_per_node: int
    num_minutes: int
    num_runs: int
    segment_size: int | None
    job_reaper_comment: str | None
    values: Mapping[str, str]  # every assignment of the block, in order, evaluated
    num_runs_defaulted: bool  # NUM_RUNS was absent and was derived (caller warns)
    config_line: int  # line number of the BEGIN CONFIG marker
    # Environment variables the block read (e.g. MAX_STEPS in ${MAX_STEPS:-40}),
    # None for those unset: continue.sh pins them so a later run sees the same.
    environment: Mapping[str, str | None] = field(default_factory=dict)
    # File line of each name's last assignment in the block (for messages).
    assignment_lines: Mapping[str, int] = field(default_factory=dict)
    # Counts used above that were written in another base (caller warns).
    non_decimal: tuple[NonDecimalCount, ...] = ()

    @property
    def gpu_hours(self) -> int:
        """NUM_RUNS * NUM_NODES * GPUS_PER_NODE * NUM_MINUTES / 60, truncated."""
        return (self.num_runs * self.num_nodes * self.gpus_per_node * self.num_minutes) // 60



_BEGIN_RE = re.compile(r"^# =+ BEGIN CONFIG =+", re.M)
_END_RE = re.compile(r"^# =+ END CONFIG =+", re.M)

# Shown when a recipe has no block. It must itself pass validation, so unlike
# the spec's illustration its SEGMENT_SIZE divides its NUM_NODES.
_TEMPLATE_BLOCK = """\
# ===== BEGIN CONFIG =====
NUM_NODES=1
GPUS_PER_NODE=8          # optional, default 8
STEPS_PER_RUN=60
MAX_STEPS=120
NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up
NUM_MINUTES=240
SEGMENT_SIZE=1           # optional; must divide NUM_NODES
JOB_REAPER_COMMENT='{"k":"v"}'   # optional; becomes --comment
# ===== END CONFIG =====
"""



# --------------------------------------------------------------------------
# Lines of the block
# --------------------------------------------------------------------------

_ASSIGN_RE = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)=")
# NAME=value with nothing to expand, optionally followed by a comment.
_SIMPLE_ASSIGN_RE = re.compile(
    r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)=([^ \t\r\\'\"$`;|&<>()~]*)(?:[ \t]+(?:#.*)?)?"
)
_FIRST_WORD = r"[ \t]*([^ \t;|&<>()]*)"
_FUNCTION = r"[ \t]*[A-Za-z_][A-Za-z0-9_.:-]*[ \t]*\("
_ARRAY_ELEMENT = r"[A-Za-z_][A-Za-z0-9_]*\["
_APPEND = r"[A-Za-z_][A-Za-z0-9_]*\+="
_SPACED_ASSIGN = r"[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]+="
_DECLARATIONS = frozenset({"export", "local", "declare", "readonly", "typeset", "unset"})
_KEYWORDS = frozenset({
    "if", "then", "elif", "else", "fi", "for", "while", "until", "do", "done",
    "case", "esac", "select", "function", "time", "coproc", "{", "}", "!",
})


def _describe_non_assignment(line: str) -> str:
    """Explain why a block line that is not ``NAME=word`` is rejected."""
    stripped = line.lstrip(" \t")
    first = re.compile(_FIRST_WORD).match(line)
    assert first is not None  # the pattern matches any line
    word = first.group(1)
    if word in _DECLARATIONS:
        return not_allowed(f'"{word}"') + " (write a plain NAME=value assignment)"
    if word in _KEYWORDS:
        return not_allowed(f'shell keyword "{word}"')
    if word.startswith("[["):
        return not_allowed('test "[["')
    if word.startswith("[") or word == "test":
        return not_allowed(f'test command "{word}"')
    if stripped.startswith("(("):
        return not_allowed('arithmetic command "(( … ))"')
    if stripped[:1] in ("(", ")"):
        return not_allowed('subshell "( … )"')
    if stripped[:1] in (";", "|", "&", "<", ">"):
        return not_allowed(f'operator "{stripped[0]}" at the start of a line')
    if re.compile(_FUNCTION).match(line):
        return not_allowed(f'function definition "{word}()"')
    if re.compile(_ARRAY_ELEMENT).match(word):
        return not_allowed(f'array element assignment "{word.split("[")[0]}[…]="')
    if re.compile(_APPEND).match(word):
        return not_allowed(f'append assignment "{word.split("+=")[0]}+="')
    if "=" in word:
        name = word.split("=", 1)[0]
        return f'invalid variable name "{name}" in assignment "{word}"'
    if re.compile(_SPACED_ASSIGN).match(line):
        return f'"{stripped}" is a command, not an assignment: remove the blanks around "="'
    if "=" not in line:
        return (
            f'"{stripped}" is not an assignment: only NAME=value lines and comments '
            "are allowed in the CONFIG block"
        )
    return not_allowed(f'command "{word}"') + " (only NAME=value assignments are)"


_BOM = "\ufeff"
# Characters refused anywhere in the block: control characters other than
# the tab (bash uses \x01 and \x7f internally for quoting; a carriage return
# means CRLF line endings) and the surrogate escapes that stand for bytes
# that are not UTF-8 (read_recipe decodes with "surrogateescape").
_BAD_CHAR_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
_SURROGATE = "[\ud800-\udfff]"


def _line_of(text: str, pos: int) -> int:
    """The 1-based line number of position ``pos`` of ``text``."""
    return text.count("\n", 0, pos) + 1


def _missing_block(text: str, path: str) -> NoReturn:
    """Raise the error for a script without a BEGIN marker (with a template)."""
    stray = _END_RE.search(text)
    note = f" (line {_line_of(text, stray.start())} has an END marker but there is no BEGIN)" if stray else ""
    raise ConfigError(
        path,
        None,
        f"no CONFIG block found{note}. Put a block like this near the top of the "
        f"script; the launcher reads the job's resources from it:\n\n{_TEMPLATE_BLOCK}",
    )


def _find_block(text: str, path: str) -> tuple[int, list[str]]:
    """Return the BEGIN marker's line number and the lines between the markers."""
    if text.startswith(_BOM):
        raise ConfigError(
            path, 1,
            "the file starts with a UTF-8 byte order mark (BOM): bash reads it as part of the "
            'first line, so neither "#!" nor a marker there works as such; save the file without a BOM',
        )
    begin = _BEGIN_RE.search(text)
    if begin is None:
        _missing_block(text, path)
    begin_line = _line_of(text, begin.start())
    end = _END_RE.search(text, begin.end())
    if end is None:
        message = 'BEGIN CONFIG marker without a matching "# ===== END CONFIG =====" line'
        raise ConfigError(path, begin_line, message)
    _refuse_second_block(text, path, begin, end)
    body_start = text.index("\n", begin.start()) + 1
    body = text[body_start:end.start()]
    _check_characters(body, path, begin_line + 1)
    lines = body.split("\n")
    lines.pop()  # the (empty) text between the last newline and the END marker
    return begin_line, lines


def _refuse_second_block(text: str, path: str, begin: re.Match[str], end: re.Match[str]) -> None:
    """ConfigError for a BEGIN marker inside the block or after its END, naming both lines."""
    if text.find("BEGIN CONFIG", begin.end()) < 0:  # the usual case, found without a regex
        return
    inner = _BEGIN_RE.search(text, begin.end(), end.start())
    again = _BEGIN_RE.search(text, end.end())
    if inner is None and again is None:
        return
    begin_line, end_line = _line_of(text, begin.start()), _line_of(text, end.start())
    if inner is not None:
        message = (f"a second BEGIN CONFIG marker, inside the block that starts at line {begin_line} "
                   f"(its END is at line {end_line}): one block per script")
        raise ConfigError(path, _line_of(text, inner.start()), message)
    if again is not None:
        again_line = _line_of(text, again.start())
        message = (f"a second CONFIG block (BEGIN at line {again_line}) after the one of lines "
                   f"{begin_line}-{end_line}: one block per script")
        raise ConfigError(path, again_line, message)


def _check_characters(body: str, path: str, first_line: int) -> None:
    """Reject a control character or a non-UTF-8 byte in the block's lines."""
    bad = _BAD_CHAR_RE.search(body)
    if bad is None:
        return
    line = first_line + body.count("\n", 0, bad.start())
    char = bad.group()
    if char == "\r":
        message = "carriage return in the line (CRLF line endings): save the script with LF"
    elif 0xDC80 <= ord(char) <= 0xDCFF:  # how "surrogateescape" keeps a byte that is not UTF-8
        message = f"a byte that is not UTF-8 (0x{ord(char) - 0xDC00:02x}) in the CONFIG block: save the script as UTF-8"
    elif re.compile(_SURROGATE).match(char):
        message = f"a lone surrogate U+{ord(char):04X} in the CONFIG block"
    else:
        message = f"control character U+{ord(char):04X} in the CONFIG block"
    raise ConfigError(path, line, message)


def _own_variable(name: str, action: str) -> str:
    """Why the block cannot ``action`` ("read"/"assign") bash's own variable ``name``."""
    why = {
        "read": "its value in bash is not the launcher's environment's, so it cannot be evaluated here",
        "assign": "assigning it would change or break bash itself; use another name",
    }[action]
    return f'cannot {action} "{name}": bash sets this variable by itself (man bash, "Shell Variables"); {why}'


class _Scope:
    """The names one block sees: its assignments so far, then the environment."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.values: dict[str, str] = {}
        self.where: dict[str, int] = {}  # line of each name's last assignment
        self.read_env: dict[str, str | None] = {}  # environment reads, None if unset

    def lookup(self, name: str) -> str | None:
        """The value of ``name``, None when unset; NameProblem if it cannot be read."""
        if name in BASH_OWN_VARIABLES:
            raise NameProblem(_own_variable(name, "read"))
        if name in self.values:
            return self.values[name]
        value = self._environ.get(name)
        if value is not None and not value.isascii() and re.compile(_SURROGATE).search(value):
            raise NameProblem(
                f'the environment variable "{name}" is not valid UTF-8; set it to UTF-8 text'
            )
        self.read_env.setdefault(name, value)
        return value

    def assign(self, name: str, value: str, lineno: int) -> None:
        """Record ``name=value`` from line ``lineno``."""
        self.values[name] = value
        self.where[name] = lineno

    def blame(self, error: ConfigError, names: Iterable[str]) -> ConfigError:
        """``error`` as it is (:class:`~nrl_launch.bashcfg.tracing.TracingScope` says where its values came from)."""
        return error


def _evaluate(text: str, path: str, environ: Mapping[str, str], scope: _Scope | None = None) -> tuple[_Scope, int]:
    """Evaluate the block: (the scope holding its assignments, BEGIN line)."""
    begin_line, lines = _find_block(text, path)
    scope = _Scope(environ) if scope is None else scope
    try:
        for lineno, line in enumerate(lines, start=begin_line + 1):
            stripped = line.lstrip(" \t")
            if not stripped or stripped[0] == "#":
                continue
            simple = _SIMPLE_ASSIGN_RE.fullmatch(line)
            assign = simple or _ASSIGN_RE.match(line)
            if assign is None:
                raise ConfigError(path, lineno, _describe_non_assignment(line))
            name = assign.group(1)
            if name in BASH_OWN_VARIABLES:
                raise ConfigError(path, lineno, _own_variable(name, "assign"))
            # The fast path (nothing to expand) or the expander.
            value = simple.group(2) if simple else Expander(line, lineno, path, scope.lookup).value(assign.end())
            scope.assign(name, value, lineno)
    except ConfigError as e:  # what the failing line read from the environment, said (a tracing scope)
        raise scope.blame(e, ()) from None
    return scope, begin_line


def evaluate_block(text: str, path: str, environ: Mapping[str, str]) -> tuple[dict[str, str], int]:
    """Evaluate the CONFIG block found in ``text``; return (assignments, marker line).

    Assignments are evaluated in order, as bash would; names resolve to earlier
    assignments, then to ``environ`` (which is never modified). Raises
    ConfigError for a missing/unterminated block or any line that is not a
    plain assignment of the supported subset.
    """
    scope, begin_line = _evaluate(text, path, environ)
    return scope.values, begin_line


# --------------------------------------------------------------------------
# Validation: the resource counts
# --------------------------------------------------------------------------

_PLAIN_DECIMAL_RE = re.compile(r"[1-9][0-9]*")


def _as_written(written: str) -> str:
    """`` (written 0x10, hexadecimal)`` for a count not written in plain decimal, else ""."""
    if _PLAIN_DECIMAL_RE.fullmatch(written):
        return ""
    return f" (written {written}, {base_name(written)})"


class _Counts:
    """Reads the block's resource counts as bash arithmetic reads them.

    The old launcher computed ``$(( NUM_RUNS * NUM_NODES * GPUS_PER_NODE *
    NUM_MINUTES / 60 ))``, so ``NUM_NODES=010`` meant 8 nodes there. A count
    must be one positive integer constant in any of bash's bases; anything
    else (an expression, a blank, a sign), a constant bash would wrap, or a
    value beyond its bound in _COUNT_LIMITS is a ConfigError.
    """

    def __init__(self, scope: _Scope, path: str) -> None:
        self._scope = scope
        self._values = scope.values
        self._where = scope.where
        self._path = path
        self.non_decimal: list[NonDecimalCount] = []

    def get(self, name: str) -> int | None:
        """The count ``name`` is set to, None if the block does not set it."""
        if name not in self._values:
            return None
        written = self._values[name]
        value = self._constant(name, written)
        limit = _COUNT_LIMITS[name]
        if limit is not None and value > limit:
            self._fail(name, f"{name} is {value:,}{_as_written(written)}, more than {limit:,}, "
                             "which no real cluster allows")
        if not _PLAIN_DECIMAL_RE.fullmatch(written):
            self.non_decimal.append(NonDecimalCount(name, written, self._where[name], value))
        return value

    def required(self, name: str, begin_line: int) -> int:
        """The count ``name`` is set to; ConfigError at the BEGIN line if unset."""
        value = self.get(name)
        if value is None:
            message = f"{name} is required but the CONFIG block does not set it"
            raise ConfigError(self._path, begin_line, message)
        return value

    def derived_runs(self) -> int:
        """NUM_RUNS for a block without one: ⌈MAX_STEPS / STEPS_PER_RUN⌉ if both are set, else 1."""
        max_steps, steps = self.get("MAX_STEPS"), self.get("STEPS_PER_RUN")
        if max_steps is None or steps is None:
            return 1
        # Bash's round-up (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN; a
        # sum that bash would wrap is an error rather than a negative count.
        total = max_steps + steps - 1
        if total > INT64_MAX:
            self._fail("MAX_STEPS", "MAX_STEPS + STEPS_PER_RUN - 1 is beyond bash's 64-bit integers", "STEPS_PER_RUN")
        runs, limit = total // steps, _COUNT_LIMITS["NUM_RUNS"]
        if limit is not None and runs > limit:
            self._fail(
                "MAX_STEPS",
                f"NUM_RUNS is not set and MAX_STEPS / STEPS_PER_RUN gives {runs:,} runs, "
                f"more than {limit:,}, which no real cluster allows",
                "STEPS_PER_RUN",
            )
        return runs

    def _constant(self, name: str, written: str) -> int:
        """The positive integer constant ``written`` as bash arithmetic reads it."""
        if len(written) <= 18 and _PLAIN_DECIMAL_RE.fullmatch(written):
            return int(written)  # the common case: plain decimal, far below 2**63
        if not CONSTANT_RE.fullmatch(written):
            self._fail(name, f"{name} must be a positive integer, got {written!r}")
        try:
            value, wrapped = parse_number(written)
        except ArithProblem as problem:
            self._fail(name, f"{name} must be a positive integer, got {written!r} (bash arithmetic: {problem})")
        if wrapped:
            self._fail(name, f"{name} is {written}, beyond bash's 64-bit integers (bash arithmetic would wrap it)")
        if value <= 0:
            self._fail(name, f"{name} must be a positive integer, got {written!r}")
        return value

    def _fail(self, name: str, message: str, *also: str) -> NoReturn:
        """ConfigError at ``name``'s assignment, saying when its value (or ``also``'s) came from the environment."""
        raise self._scope.blame(ConfigError(self._path, self._where[name], message), (name, *also))


def parse_recipe(text: str, path: str, environ: Mapping[str, str]) -> RecipeConfig:
    """Evaluate and validate a recipe's CONFIG block (pure: no file access).

    NUM_NODES and NUM_MINUTES are required; GPUS_PER_NODE defaults to 8;
    NUM_RUNS defaults to ceil(MAX_STEPS / STEPS_PER_RUN) (or 1) with
    ``num_runs_defaulted`` set; SEGMENT_SIZE must divide NUM_NODES. Counts
    are read as bash arithmetic reads them (``010`` is 8, recorded in
    ``non_decimal``). An error caused by a value of ``environ`` says so.
    """
    try:
        return _parse_recipe(text, path, environ, _Scope(environ))
    except ConfigError as error:
        # Evaluated again, following where each value came from: the same error, explained.
        from nrl_launch.bashcfg.tracing import TracingScope  # not loaded by a block that is fine

        try:
            _parse_recipe(text, path, environ, TracingScope(environ))
        except ConfigError as explained:
            raise explained from None
        raise error  # pragma: no cover - evaluation is deterministic


def _parse_recipe(text: str, path: str, environ: Mapping[str, str], scope: _Scope) -> RecipeConfig:
    scope, begin_line = _evaluate(text, path, environ, scope)
    counts = _Counts(scope, path)
    num_nodes = counts.required("NUM_NODES", begin_line)
    num_minutes = counts.required("NUM_MINUTES", begin_line)
    gpus_per_node = counts.get("GPUS_PER_NODE") or DEFAULT_GPUS_PER_NODE
    num_runs = counts.get("NUM_RUNS")
    num_runs_defaulted = num_runs is None
    if num_runs is None:
        num_runs = counts.derived_runs()
    segment_size = counts.get("SEGMENT_SIZE")
    if segment_size is not None and num_nodes % segment_size:
        error = ConfigError(path, scope.where["SEGMENT_SIZE"],
                            f"SEGMENT_SIZE={segment_size} does not divide NUM_NODES={num_nodes}")
        raise scope.blame(error, ("SEGMENT_SIZE", "NUM_NODES"))
    return RecipeConfig(
        path=path,
        num_nodes=num_nodes,
        gpus_per_node=gpus_per_node,
        num_minutes=num_minutes,
        num_runs=num_runs,
        segment_size=segment_size,
        job_reaper_comment=scope.values.get("JOB_REAPER_COMMENT") or None,
        values=dict(scope.values),
        num_runs_defaulted=num_runs_defaulted,
        config_line=begin_line,
        environment=scope.read_env,
        assignment_lines=scope.where,
        non_decimal=tuple(counts.non_decimal),
    )


def read_recipe(path: str, environ: Mapping[str, str]) -> RecipeConfig:
    """Read ``path`` and return its validated RecipeConfig; ConfigError on problems.

    Bytes that are not UTF-8 are accepted outside the CONFIG block (bash does
    not care about them); inside it they are a ConfigError naming the line.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    # Binary read: the bytes bash sees (a CRLF file is reported, not hidden).
    return parse_recipe(data.decode("utf-8", errors="surrogateescape"), path, environ)
