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

Layers:

* ``_Expander`` walks one assignment line and expands its value word;
* ``_Arith`` evaluates the text of a ``$(( … ))`` with bash's grammar,
  operator precedence and 64-bit wraparound;
* ``_Scope`` resolves names (the block's assignments, then the environment)
  and refuses bash's own variables (``BASH_OWN_VARIABLES``);
* ``_Counts`` reads the resource counts as bash arithmetic reads them.

Nothing is cached between calls: each call sees only its own block and the
``environ`` mapping it was given (the old bash tool leaked variables from one
recipe into the next).

Rejected although bash gives them a meaning (an error is always acceptable, a
different value never is): special parameters (``$#``, ``$?``, ``$0``…,
also as ``${…}``); ``$'…'`` wherever bash decodes it; inside a double-quoted
``${NAME-word}``, single quotes around anything but plain text and ``$"``
inside a nested ``"…"``; reading or assigning bash's own variables
(``BASH_OWN_VARIABLES``); control characters and non-UTF-8 bytes in the
block, a UTF-8 BOM at the start of the file; more than ``_MAX_DEPTH`` levels
of nesting; a second CONFIG block. Resource counts must be single positive
integer constants (in any of bash's bases) within ``_COUNT_LIMITS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple, NoReturn

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
            f"{self.name}={self.written} is read as {self.value} ({_base_name(self.written)}), "
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


# Name -> value (None when unset); resolves block assignments, then environ.
_Lookup = Callable[[str], str | None]

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

# Nesting limit for parentheses, right-associative chains, variables whose
# value is itself an expression, and nested ${…}/"…" in a word. Bash allows
# 1024 levels of the variable kind and thousands of parentheses; this module
# recurses in Python, so it stops much earlier, well before Python's own
# recursion limit, with a ConfigError.
_MAX_DEPTH = 40


# --------------------------------------------------------------------------
# Arithmetic: bash's $(( … )) on signed 64-bit integers
# --------------------------------------------------------------------------

_MOD = 1 << 64
_SIGN_BIT = 1 << 63
_INT64_MAX = _SIGN_BIT - 1

# Patterns are compiled here when every evaluation uses them (``*_RE``) and
# kept as plain strings, compiled at first use through re's own cache, when
# only an unusual construct or an error message needs them: compiling them all
# at import would cost each DRYRUN=1 run a measurable share of its start-up.

_ARITH_NONBLANK_RE = re.compile(r"[^ \t\n]")
# Longest operators first so that "<<=" wins over "<<" over "<".
_ARITH_TOKEN_RE = re.compile(
    r"(?P<num>[0-9][0-9A-Za-z_@#]*)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><<=|>>=|\*\*|<<|>>|<=|>=|==|!=|&&|\|\||\+\+|--|[-+*/%&^|]="
    r"|[-+*/%<>=!~&^|?:(),])"
)
# One integer constant as bash arithmetic writes it (the "num" token above).
_CONSTANT_RE = re.compile(r"[0-9][0-9A-Za-z_@#]*")
_IDENT_AHEAD = r"[ \t\n]*[A-Za-z_]"
_ASSIGN_OPS = frozenset({"=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>=", "&=", "^=", "|="})
_SIMPLE_INT_RE = re.compile(r"[ \t\n]*[1-9][0-9]{0,17}[ \t\n]*")

# Binary operators below the ternary, with bash's precedence (higher binds
# tighter). "**" and the unary operators are handled separately.
_BINARY_PRECEDENCE = {
    "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5,
    "==": 6, "!=": 6, "<": 7, "<=": 7, ">": 7, ">=": 7,
    "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "%": 10,
}


class _ArithProblem(Exception):
    """An arithmetic error; the expander adds the file, line and expression."""


class _NameProblem(Exception):
    """A name the block must not read; the expander adds the file and line."""


class _Token(NamedTuple):
    """One token of an arithmetic expression."""

    kind: str  # "num", "name" or "op"
    text: str  # the token as written
    offset: int  # where it starts in the expression (for error messages)
    number: int = 0  # the value of a "num" token, already wrapped to 64 bits


def _wrap(value: int) -> int:
    """Reduce ``value`` to a signed 64-bit integer (bash's intmax_t wraps)."""
    value &= _MOD - 1
    return value - _MOD if value & _SIGN_BIT else value


def _digit_value(char: str, base: int) -> int:
    """Value of one digit of a ``base#n`` constant (bash's strlong)."""
    if "0" <= char <= "9":
        return ord(char) - 48
    if "a" <= char <= "z":
        return ord(char) - 87
    if "A" <= char <= "Z":
        # Above base 36 upper case letters are the digits 36..61.
        return ord(char) - (55 if base <= 36 else 29)
    if char == "@":
        return 62
    if char == "_":
        return 63
    return 99


def _parse_number(token: str) -> tuple[int, bool]:
    """Value of an integer constant: decimal, ``0x`` hex, ``0`` octal, ``base#n``.

    Returns (the value wrapped to 64 bits as bash computes it, whether the
    exact value was beyond 2**63 - 1, i.e. whether bash wrapped it).
    """
    base, index, found_base = 10, 0, False
    if token[0] == "0":
        if len(token) == 1:
            return 0, False
        if token[1] in "xX":
            base, index = 16, 2
        else:
            base, index = 8, 1
        found_base = True
    value, wrapped = 0, False
    while index < len(token):
        char = token[index]
        index += 1
        if char == "#":
            if found_base:
                raise _ArithProblem(f'invalid number "{token}"')
            if wrapped or not 2 <= value <= 64:
                raise _ArithProblem(f'invalid arithmetic base "{token}"')
            base, value, found_base = value, 0, True
            # Bash only checks that a digit character follows; its value is
            # checked below ("2#2" is "value too great for base").
            if index >= len(token) or _digit_value(token[index], 64) >= 64:
                raise _ArithProblem(f'invalid integer constant "{token}"')
            continue
        digit = _digit_value(char, base)
        if digit >= base:
            raise _ArithProblem(f'value too great for base "{token}"')
        # The exact value only grows, so it is beyond the limit exactly when
        # some step is (wrapping at each step equals wrapping at the end).
        exact = value * base + digit
        wrapped = wrapped or exact > _INT64_MAX
        value = _wrap(exact)
    return value, wrapped


def _base_name(constant: str) -> str:
    """How bash reads the base of ``constant``: "octal", "hexadecimal", "base 8"…"""
    if "#" in constant:
        return "base " + constant.split("#", 1)[0]
    if constant[:2] in ("0x", "0X"):
        return "hexadecimal"
    return "octal" if constant.startswith("0") and len(constant) > 1 else "decimal"


def _tokenize(text: str) -> list[_Token]:
    """Split an arithmetic expression into tokens; reject side effects."""
    tokens: list[_Token] = []
    pos = 0
    while True:
        start = _ARITH_NONBLANK_RE.search(text, pos)
        if start is None:
            return tokens
        pos = start.start()
        match = _ARITH_TOKEN_RE.match(text, pos)
        if match is None:
            raise _ArithProblem(
                f'syntax error: invalid arithmetic operator (error token is "{text[pos:]}")'
            )
        kind, token = match.lastgroup or "", match.group()
        if kind == "num":
            tokens.append(_Token(kind, token, pos, _parse_number(token)[0]))
        elif kind == "name":
            if text.startswith("[", match.end()):
                raise _ArithProblem(f'array subscript "{token}[…]" is not supported')
            tokens.append(_Token(kind, token, pos))
        elif token in _ASSIGN_OPS:
            raise _ArithProblem(f'assignment operator "{token}" is not allowed')
        elif token in ("++", "--"):
            # Bash reads "++"/"--" as increment/decrement after a name or
            # before one; otherwise as two unary operators (so --5 is 5).
            after_name = bool(tokens) and tokens[-1].kind == "name"
            if after_name or re.compile(_IDENT_AHEAD).match(text, match.end()):
                raise _ArithProblem(f'increment/decrement "{token}" is not allowed')
            tokens.append(_Token("op", token[0], pos))
            pos += 1
            continue
        else:
            tokens.append(_Token(kind, token, pos))
        pos = match.end()


@lru_cache(maxsize=512)
def _cached_tokens(text: str) -> tuple[_Token, ...]:
    """Tokens of an expression; suites repeat the same few expressions."""
    return tuple(_tokenize(text))


def _apply_binary(op: str, left: int, right: int, live: bool) -> int:
    """``left op right`` with bash's C semantics on int64."""
    if op in ("/", "%"):
        if right == 0:
            if live:
                raise _ArithProblem("division by 0")
            return 0  # a branch that is not evaluated (after && || ?:)
        # C division truncates toward zero; the remainder follows the dividend.
        quotient = abs(left) // abs(right)
        if (left < 0) != (right < 0):
            quotient = -quotient
        return _wrap(quotient if op == "/" else left - right * quotient)
    if op == "+":
        return _wrap(left + right)
    if op == "-":
        return _wrap(left - right)
    if op == "*":
        return _wrap(left * right)
    if op == "<<":
        return _wrap(left << (right & 63))  # x86-64 masks the shift count
    if op == ">>":
        return left >> (right & 63)
    if op == "&":
        return left & right
    if op == "|":
        return left | right
    if op == "^":
        return left ^ right
    comparisons = {
        "<": left < right, "<=": left <= right, ">": left > right,
        ">=": left >= right, "==": left == right, "!=": left != right,
    }
    return int(comparisons[op])


class _Arith:
    """Recursive-descent evaluator for one bash arithmetic expression.

    ``live`` is False inside the branch that bash does not evaluate (right of
    a short-circuiting ``&&``/``||``, the unused side of ``?:``): there names
    read as 0 and division by zero is not an error, as in bash.
    """

    def __init__(self, text: str, lookup: _Lookup, depth: int) -> None:
        self._text = text
        self._tokens = _cached_tokens(text)
        self._pos = 0
        self._lookup = lookup
        self._depth = depth

    def evaluate(self) -> int:
        """Value of the whole expression (an empty expression is 0)."""
        if not self._tokens:
            return 0
        value = self._comma(True)
        if self._pos < len(self._tokens):
            rest = self._text[self._tokens[self._pos].offset:]
            raise _ArithProblem(f'syntax error in expression (error token is "{rest}")')
        return value

    def _peek(self) -> str | None:
        """The operator at the cursor, or None (end, number or name)."""
        if self._pos < len(self._tokens):
            token = self._tokens[self._pos]
            if token.kind == "op":
                return token.text
        return None

    def _nest(self) -> None:
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise _ArithProblem(f"expression nested too deeply (more than {_MAX_DEPTH} levels)")

    def _comma(self, live: bool) -> int:
        value = self._conditional(live)
        while self._peek() == ",":
            self._pos += 1
            value = self._conditional(live)
        return value

    def _conditional(self, live: bool) -> int:
        condition = self._binary(1, live)
        if self._peek() != "?":
            return condition
        self._pos += 1
        if self._pos >= len(self._tokens) or self._peek() == ":":
            raise _ArithProblem("expression expected after '?'")
        self._nest()
        # As in bash: the middle is a full comma expression, the last operand
        # another conditional (so ?: is right-associative).
        when_true = self._comma(live and condition != 0)
        if self._peek() != ":":
            raise _ArithProblem("`:' expected for conditional expression")
        self._pos += 1
        if self._pos >= len(self._tokens):
            raise _ArithProblem("expression expected after ':'")
        when_false = self._conditional(live and condition == 0)
        self._depth -= 1
        return when_true if condition else when_false

    def _binary(self, min_precedence: int, live: bool) -> int:
        """Precedence climbing over the left-associative binary operators."""
        left = self._power(live)
        while True:
            op = self._peek()
            precedence = _BINARY_PRECEDENCE.get(op or "")
            if op is None or precedence is None or precedence < min_precedence:
                return left
            self._pos += 1
            if op == "&&":
                right = self._binary(precedence + 1, live and left != 0)
                left = int(left != 0 and right != 0)
            elif op == "||":
                right = self._binary(precedence + 1, live and left == 0)
                left = int(left != 0 or right != 0)
            else:
                right = self._binary(precedence + 1, live)
                left = _apply_binary(op, left, right, live)

    def _power(self, live: bool) -> int:
        # Bash parses the operands of ** as unary expressions, so -2**2 is
        # (-2)**2 = 4; ** itself is right-associative.
        base = self._unary(live)
        if self._peek() != "**":
            return base
        self._pos += 1
        self._nest()
        exponent = self._power(live)
        self._depth -= 1
        if exponent < 0:  # bash reports this even in unevaluated branches
            raise _ArithProblem("exponent less than 0")
        return _wrap(pow(base, exponent, _MOD))

    def _unary(self, live: bool) -> int:
        ops: list[str] = []
        while self._peek() in ("!", "~", "-", "+"):
            ops.append(self._tokens[self._pos].text)
            self._pos += 1
        value = self._primary(live)
        for op in reversed(ops):  # the innermost operator applies first
            if op == "-":
                value = _wrap(-value)
            elif op == "~":
                value = ~value
            elif op == "!":
                value = int(value == 0)
        return value

    def _primary(self, live: bool) -> int:
        if self._pos >= len(self._tokens):
            raise _ArithProblem("syntax error: operand expected")
        token = self._tokens[self._pos]
        if token.kind == "num":
            self._pos += 1
            return token.number
        if token.kind == "name":
            self._pos += 1
            return self._variable(token.text) if live else 0
        if token.text == "(":
            self._pos += 1
            self._nest()
            inner = self._comma(live)
            if self._peek() != ")":
                raise _ArithProblem("missing `)'")
            self._pos += 1
            self._depth -= 1
            return inner
        raise _ArithProblem(
            f'syntax error: operand expected (error token is "{self._text[token.offset:]}")'
        )

    def _variable(self, name: str) -> int:
        """A name's value; an unset/empty name is 0, any other value an expression."""
        text = self._lookup(name)
        if not text:
            return 0
        if _SIMPLE_INT_RE.fullmatch(text):  # the common case, no recursion needed
            return int(text)
        if self._depth >= _MAX_DEPTH:
            raise _ArithProblem(f'expression recursion level exceeded (evaluating "{name}")')
        return _Arith(text, self._lookup, self._depth + 1).evaluate()


# Results of earlier evaluations: expression -> [(names read in order with their
# values, result)]. A suite repeats the same few expressions with the same few
# values (NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))).
_ARITH_RESULTS: dict[str, list[tuple[tuple[tuple[str, str | None], ...], int]]] = {}
_ARITH_RESULTS_PER_TEXT = 16


def _evaluate_arithmetic(text: str, lookup: _Lookup) -> int:
    """Evaluate bash arithmetic ``text``; raises _ArithProblem on errors.

    An earlier result is reused when the names it read, looked up again in the
    same order, still have the same values: evaluation is deterministic, so it
    would read exactly those names and compute the same value. (The lookups
    are repeated, so their effects — an error for bash's own variables, the
    record of what the block read from the environment — happen as before.)
    """
    for reads, result in _ARITH_RESULTS.get(text, ()):
        if all(lookup(name) == value for name, value in reads):
            return result
    seen: list[tuple[str, str | None]] = []

    def recording(name: str) -> str | None:
        value = lookup(name)
        seen.append((name, value))
        return value

    result = _Arith(text, recording, 0).evaluate()
    entries = _ARITH_RESULTS.setdefault(text, [])
    if len(entries) < _ARITH_RESULTS_PER_TEXT:
        entries.append((tuple(seen), result))
    return result


# --------------------------------------------------------------------------
# Words: expanding the value of one NAME=word line
# --------------------------------------------------------------------------

# Expansion modes of _Expander._word. Bash's rules differ in each; those of
# the last two were found by comparing with bash 5.2 (tests/unit/
# test_config_bash.py keeps checking them).
_TOP = 0  # the unquoted value word itself
_BRACE = 1  # unquoted default word of ${NAME:-word}
_DQ_BRACE = 2  # default word of a ${NAME:-word} inside double quotes (or $(( )))
_DQUOTE = 3  # inside "…"
_ARITH = 4  # the text between $(( and ))
_DQ_BRACE_DQ = 5  # a "…" inside a _DQ_BRACE word: "${U-"\b"}" is "b"

_QUOTED_MODES = frozenset({_DQ_BRACE, _DQUOTE, _ARITH, _DQ_BRACE_DQ})

# Runs of characters that a mode copies verbatim (everything else is handled
# one character at a time by _word). Braces are never paired: the first
# unquoted "}" ends a ${…}, so ${Y-{}} is "v}" when Y=v.
_PLAIN_RE = {
    _TOP: re.compile(r"[^ \t\\'\"$`;|&<>()~:]+"),
    _BRACE: re.compile(r"[^\\'\"$`;|&<>()~:}]+"),
    _DQ_BRACE: re.compile(r"[^\\'\"$`}]+"),
    _DQUOTE: re.compile(r"[^\\\"$`]+"),
    _ARITH: re.compile(r"[^\\\"$`]+"),
    _DQ_BRACE_DQ: re.compile(r"[^\\\"$`]+"),
}
# Characters a backslash escapes in each mode (None: any character; bash
# keeps the backslash before the others).
_ESCAPABLE = {
    _TOP: None,
    _BRACE: None,
    _DQ_BRACE: '$`"\\}',
    _DQUOTE: '$`"\\',
    _ARITH: '$`"\\',
    _DQ_BRACE_DQ: None,
}
# Inside a double-quoted ${…}, bash keeps single quotes as text but still
# pairs them ("${U-'}'}" is "'}'"); only plain text between them is supported.
_DQ_BRACE_SQ = r"'[^'\\\"$`]*'"
# A "$" or "$NAME" that ends the text before a backslash (see _Expander._escape).
_AFTER_DOLLAR = r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\Z"

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(\}|:-|-)?")
_PARAM_OP = r"##|%%|//|\^\^|,,|:[-=+?]|."
_SPECIAL_PARAMS = "0123456789@*#?$!-"
_REDIRECT_WORD = r"[0-9]*[<>]"
_REDIRECT_RUN = r"[<>][<>&|]*"
_DQ_SKIP = r'"(?:[^"\\]|\\.)*"'
_SQ_SKIP = r"'[^']*'"
_OPERATOR_NAMES = {
    ";": 'command separator ";"',
    "|": 'pipe "|"',
    "&": 'background operator "&"',
    "(": 'parenthesis "("',
    ")": 'parenthesis ")"',
}


def _not_allowed(construct: str) -> str:
    return f"{construct} is not allowed in the CONFIG block"


def _skip_blanks(line: str, pos: int) -> int:
    """The first position at or after ``pos`` that is not a space or a tab."""
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    return pos


class _Expander:
    """Expands the value word of one assignment line with bash's rules."""

    def __init__(self, line: str, lineno: int, path: str, lookup: _Lookup) -> None:
        self.line = line
        self.lineno = lineno
        self.path = path
        self._lookup = lookup
        self._depth = 0  # nesting of _word calls (${…} and quotes inside ${…})

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(self.path, self.lineno, message)

    def value(self, start: int) -> str:
        """Expand the word at ``start``; the rest of the line must be a comment."""
        text, pos = self._word(start, _TOP, True, len(self.line))
        self._check_rest(pos)
        return text

    def _check_rest(self, pos: int) -> None:
        line = self.line
        pos = _skip_blanks(line, pos)
        if pos >= len(line) or line[pos] == "#":  # '#' at a word start: comment
            return
        if line[pos] in ";|&<>()":
            self._operator(pos, pos)
        redirect = re.compile(_REDIRECT_WORD).match(line, pos)
        if redirect:  # e.g. "2>file"
            self._operator(redirect.end() - 1, pos)
        extra = line[pos:].split(None, 1)[0]
        self.fail(
            _not_allowed(f'multiple words on one line (extra word "{extra}")')
            + ": write one NAME=value assignment per line"
        )

    def _operator(self, pos: int, word_start: int) -> NoReturn:
        """Reject the unquoted shell operator at ``pos``."""
        line = self.line
        char = line[pos]
        if char in "<>":
            run = re.compile(_REDIRECT_RUN).match(line, pos)
            assert run is not None  # the pattern matches any "<" or ">"
            self.fail(_not_allowed(f'redirection "{run.group()}"'))
        if line.startswith(("&&", "||"), pos):
            self.fail(_not_allowed(f'operator "{line[pos:pos + 2]}"'))
        if char == "(" and pos == word_start and line[pos - 1] == "=":
            self.fail(_not_allowed('array assignment "(…)"'))
        self.fail(_not_allowed(_OPERATOR_NAMES[char]))

    def _word(self, pos: int, mode: int, live: bool, stop: int) -> tuple[str, int]:
        """Expand from ``pos`` until the end of the word for ``mode``.

        Returns the text and the position where the word ended: a blank
        (_TOP), the closing '}' (_BRACE/_DQ_BRACE), the closing '"'
        (_DQUOTE/_DQ_BRACE_DQ) or ``stop``. ``live`` False means the result
        is discarded (unused ${X:-default}): constructs are still checked,
        arithmetic not run.
        """
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            self.fail(f"expansion nested too deeply (more than {_MAX_DEPTH} levels of ${{…}} and quotes)")
        line, plain, parts, start = self.line, _PLAIN_RE[mode], [], pos
        while pos < stop:
            match = plain.match(line, pos, stop)
            if match:
                parts.append(match.group())
                pos = match.end()
                continue
            step = self._special(pos, mode, live, start)
            if step is None:
                break
            parts.append(step[0])
            pos = step[1]
        self._depth -= 1
        return "".join(parts), pos

    def _special(self, pos: int, mode: int, live: bool, start: int) -> tuple[str, int] | None:
        """Expand the one special character at ``pos`` of a ``mode`` word.

        Returns its text and the position after it, or None where the word
        ends (the caller's closing quote, brace or blank).
        """
        line, char = self.line, self.line[pos]
        if char == "$":
            return self._dollar(pos, live, mode)
        if char == "\\":
            return self._escape(pos, mode), pos + 2
        if char == '"':
            return self._double_quote_char(pos, mode, live)
        if char == "'":
            return self._single_quoted(pos, mode)
        if char == "`":
            self.fail(_not_allowed('command substitution "`…`" (backticks)'))
        if char == "}" or char in " \t":
            return None  # "}" only stops brace modes, blanks only _TOP
        if char == "~" and (pos == start or line[pos - 1] == ":"):
            self.fail(_not_allowed('tilde expansion "~"'))
        if char in "~:":
            return char, pos + 1
        self._operator(pos, start)

    def _escape(self, pos: int, mode: int) -> str:
        """The text of the backslash escape at ``pos`` (two characters long)."""
        if pos + 1 >= len(self.line):
            self.fail(_not_allowed("line continuation (a trailing backslash)"))
        if mode == _DQ_BRACE_DQ and re.compile(_AFTER_DOLLAR).search(self.line, 0, pos):
            # There bash drops the backslash before expanding: "${U-"$V\c"}" reads
            # the variable "Vc" and "${U-"$\V"}" is "$V" expanded.
            self.fail(_not_allowed('a backslash right after "$" or "$NAME" in a "…" string inside a '
                                   "double-quoted ${…}"))
        escapable = _ESCAPABLE[mode]
        following = self.line[pos + 1]
        if escapable is None or following in escapable:
            return following
        return "\\" + following  # inside double quotes bash keeps other backslashes

    def _double_quote_char(self, pos: int, mode: int, live: bool) -> tuple[str, int] | None:
        """Handle the '"' at ``pos``: a closing quote, a string, or (in $(( ))) nothing."""
        if mode in (_DQUOTE, _DQ_BRACE_DQ):
            return None  # the closing quote
        if mode == _ARITH:  # bash drops double quotes inside $(( ))
            return "", pos + 1
        inner = _DQ_BRACE_DQ if mode == _DQ_BRACE else _DQUOTE
        text, end = self._word(pos + 1, inner, live, len(self.line))
        if end >= len(self.line):
            self.fail("unterminated double quote")
        return text, end + 1

    def _single_quoted(self, pos: int, mode: int) -> tuple[str, int]:
        """The single-quoted string at ``pos`` (reached in _TOP, _BRACE, _DQ_BRACE)."""
        line = self.line
        if mode == _DQ_BRACE:
            match = re.compile(_DQ_BRACE_SQ).match(line, pos)
            if match is None:
                self.fail(
                    _not_allowed("a single quote inside a double-quoted ${…} other than around plain text")
                    + " (bash keeps those quotes as text; write the default without them)"
                )
            return match.group(), match.end()
        close = line.find("'", pos + 1)
        if close < 0:
            self.fail("unterminated single quote")
        return line[pos + 1:close], close + 1

    def _value_of(self, name: str) -> str | None:
        """The value of ``name`` (None when unset), or a ConfigError naming this line."""
        try:
            return self._lookup(name)
        except _NameProblem as problem:
            self.fail(str(problem))

    def _dollar(self, pos: int, live: bool, mode: int) -> tuple[str, int]:
        """Expand the ``$…`` at ``pos``; return its text and the position after."""
        line = self.line
        following = line[pos + 1:pos + 2]
        if following == "(":
            if line.startswith("((", pos + 1):
                return self._arithmetic(pos, live)
            self.fail(_not_allowed('command substitution "$(…)"'))
        if following == "{":
            return self._parameter(pos, live, mode)
        if following == "[":
            self.fail(_not_allowed('obsolete arithmetic expansion "$[…]" (write "$(( … ))")'))
        name = _NAME_RE.match(line, pos + 1)
        if name:
            return self._value_of(name.group()) or "", name.end()
        if following and following in _SPECIAL_PARAMS:
            self.fail(_not_allowed(f'special parameter "${following}"'))
        if following in ("'", '"'):
            return self._dollar_quote(pos, mode)
        return "$", pos + 1  # a lone '$' is literal

    def _dollar_quote(self, pos: int, mode: int) -> tuple[str, int]:
        """``$'…'`` (ANSI-C quoting) or ``$"…"`` (a translatable string) at ``pos``."""
        following = self.line[pos + 1]
        if mode == _DQUOTE or (mode == _DQ_BRACE_DQ and following == "'"):
            return "$", pos + 1  # plain double quotes keep the '$'
        if following == "'":
            self.fail(_not_allowed("ANSI-C quoting \"$'…'\""))
        if mode == _DQ_BRACE_DQ:
            self.fail(_not_allowed('$"…" inside a "…" string inside a double-quoted ${…}'))
        # $"…" is translated through the message catalog; without one it is
        # "…": the quote is then read in the current mode.
        return "", pos + 1

    def _parameter(self, pos: int, live: bool, mode: int) -> tuple[str, int]:
        """Expand ``${NAME}``, ``${NAME:-word}`` or ``${NAME-word}`` at ``pos``."""
        line = self.line
        match = _PARAM_RE.match(line, pos)
        if match is None or match.group(2) is None:
            self._bad_parameter(pos, match.group(1) if match else None)
        name, op = match.group(1), match.group(2)
        value = self._value_of(name)
        if op == "}":
            return value or "", match.end()
        use_default = value is None or (op == ":-" and value == "")
        inner = _DQ_BRACE if mode in _QUOTED_MODES else _BRACE
        word, end = self._word(match.end(), inner, live and use_default, len(line))
        if end >= len(line) or line[end] != "}":
            self.fail(f'unterminated parameter expansion "${{{name}{op}…" (missing "}}")')
        return (word if use_default else value or ""), end + 1

    def _bad_parameter(self, pos: int, name: str | None) -> NoReturn:
        """Reject a ``${…}`` form other than the three supported ones."""
        line = self.line
        supported = " (only ${NAME}, ${NAME:-default} and ${NAME-default} are supported)"
        after = pos + 2 + len(name or "")
        if after >= len(line):
            self.fail('unterminated parameter expansion "${" (missing "}")')
        if name is None:
            self.fail(_not_allowed(_odd_parameter(line[after], line[after + 1:after + 2])) + supported)
        op = re.compile(_PARAM_OP).match(line, after)
        assert op is not None  # the pattern matches any character
        self.fail(_not_allowed(f'parameter expansion "${{{name}{op.group()}…}}"') + supported)

    def _arithmetic(self, pos: int, live: bool) -> tuple[str, int]:
        """Expand the ``$(( … ))`` at ``pos``."""
        close = self._arithmetic_end(pos + 3)
        text, end = self._word(pos + 3, _ARITH, live, close)
        if end != close:
            self.fail('malformed arithmetic expansion "$(( … ))"')
        if not live:
            return "", close + 2
        try:
            value = _evaluate_arithmetic(text, self._value_of)
        except _ArithProblem as problem:
            raise ConfigError(
                self.path, self.lineno, f'arithmetic expansion "$(({text}))": {problem}'
            ) from None
        return str(value), close + 2

    def _arithmetic_end(self, pos: int) -> int:
        """Position of the '))' closing a ``$((`` whose text starts at ``pos``."""
        end, problem = _find_arithmetic_end(self.line, pos)
        if problem is not None:
            self.fail(problem)
        return end


def _odd_parameter(char: str, following: str) -> str:
    """Name the ``${…}`` construct whose text after "${" starts with ``char``."""
    if char in "#!" and following not in ("}", ""):
        kind = "length expansion" if char == "#" else "indirect expansion"
        return f'{kind} "${{{char}…}}"'
    if char in _SPECIAL_PARAMS:
        return f'special parameter "${{{char}}}"'
    if char == "}":
        return 'empty expansion "${}"'
    return f'parameter expansion "${{{char}…}}"'


@lru_cache(maxsize=1024)
def _find_arithmetic_end(line: str, pos: int) -> tuple[int, str | None]:
    """(position of the closing '))', None) or (-1, what is wrong).

    Cached: a suite's recipes repeat the same arithmetic lines.
    """
    depth = 0
    while pos < len(line):
        char = line[pos]
        if char == "(":
            depth += 1
        elif char == ")":
            if depth:
                depth -= 1
            elif line.startswith("))", pos):
                return pos, None
            elif ")" in line[pos + 1:]:
                # "$((a) b)" is bash's $( (a) b ): a command substitution.
                return -1, _not_allowed('command substitution "$(…)"')
            else:
                break
        elif char == "\\":
            pos += 1
        elif char in "\"'":
            skip = re.compile(_DQ_SKIP if char == '"' else _SQ_SKIP).match(line, pos)
            if skip is None:
                return -1, "unterminated quote inside $(( ))"
            pos = skip.end() - 1
        pos += 1
    return -1, 'unterminated arithmetic expansion "$((" (missing "))")'


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
        return _not_allowed(f'"{word}"') + " (write a plain NAME=value assignment)"
    if word in _KEYWORDS:
        return _not_allowed(f'shell keyword "{word}"')
    if word.startswith("[["):
        return _not_allowed('test "[["')
    if word.startswith("[") or word == "test":
        return _not_allowed(f'test command "{word}"')
    if stripped.startswith("(("):
        return _not_allowed('arithmetic command "(( … ))"')
    if stripped[:1] in ("(", ")"):
        return _not_allowed('subshell "( … )"')
    if stripped[:1] in (";", "|", "&", "<", ">"):
        return _not_allowed(f'operator "{stripped[0]}" at the start of a line')
    if re.compile(_FUNCTION).match(line):
        return _not_allowed(f'function definition "{word}()"')
    if re.compile(_ARRAY_ELEMENT).match(word):
        return _not_allowed(f'array element assignment "{word.split("[")[0]}[…]="')
    if re.compile(_APPEND).match(word):
        return _not_allowed(f'append assignment "{word.split("+=")[0]}+="')
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
    return _not_allowed(f'command "{word}"') + " (only NAME=value assignments are)"


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
        """The value of ``name``, None when unset; _NameProblem if it cannot be read."""
        if name in BASH_OWN_VARIABLES:
            raise _NameProblem(_own_variable(name, "read"))
        if name in self.values:
            return self.values[name]
        value = self._environ.get(name)
        if value is not None and not value.isascii() and re.compile(_SURROGATE).search(value):
            raise _NameProblem(
                f'the environment variable "{name}" is not valid UTF-8; set it to UTF-8 text'
            )
        self.read_env.setdefault(name, value)
        return value

    def assign(self, name: str, value: str, lineno: int) -> None:
        """Record ``name=value`` from line ``lineno``."""
        self.values[name] = value
        self.where[name] = lineno


def _evaluate(text: str, path: str, environ: Mapping[str, str]) -> tuple[_Scope, int]:
    """Evaluate the block: (the scope holding its assignments, BEGIN line)."""
    begin_line, lines = _find_block(text, path)
    scope = _Scope(environ)
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
        value = simple.group(2) if simple else _Expander(line, lineno, path, scope.lookup).value(assign.end())
        scope.assign(name, value, lineno)
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
    return f" (written {written}, {_base_name(written)})"


class _Counts:
    """Reads the block's resource counts as bash arithmetic reads them.

    The old launcher computed ``$(( NUM_RUNS * NUM_NODES * GPUS_PER_NODE *
    NUM_MINUTES / 60 ))``, so ``NUM_NODES=010`` meant 8 nodes there. A count
    must be one positive integer constant in any of bash's bases; anything
    else (an expression, a blank, a sign), a constant bash would wrap, or a
    value beyond its bound in _COUNT_LIMITS is a ConfigError.
    """

    def __init__(self, scope: _Scope, path: str) -> None:
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
        if total > _INT64_MAX:
            self._fail("MAX_STEPS", "MAX_STEPS + STEPS_PER_RUN - 1 is beyond bash's 64-bit integers")
        runs, limit = total // steps, _COUNT_LIMITS["NUM_RUNS"]
        if limit is not None and runs > limit:
            self._fail(
                "MAX_STEPS",
                f"NUM_RUNS is not set and MAX_STEPS / STEPS_PER_RUN gives {runs:,} runs, "
                f"more than {limit:,}, which no real cluster allows",
            )
        return runs

    def _constant(self, name: str, written: str) -> int:
        """The positive integer constant ``written`` as bash arithmetic reads it."""
        if len(written) <= 18 and _PLAIN_DECIMAL_RE.fullmatch(written):
            return int(written)  # the common case: plain decimal, far below 2**63
        if not _CONSTANT_RE.fullmatch(written):
            self._fail(name, f"{name} must be a positive integer, got {written!r}")
        try:
            value, wrapped = _parse_number(written)
        except _ArithProblem as problem:
            self._fail(name, f"{name} must be a positive integer, got {written!r} (bash arithmetic: {problem})")
        if wrapped:
            self._fail(name, f"{name} is {written}, beyond bash's 64-bit integers (bash arithmetic would wrap it)")
        if value <= 0:
            self._fail(name, f"{name} must be a positive integer, got {written!r}")
        return value

    def _fail(self, name: str, message: str) -> NoReturn:
        raise ConfigError(self._path, self._where[name], message)


def parse_recipe(text: str, path: str, environ: Mapping[str, str]) -> RecipeConfig:
    """Evaluate and validate a recipe's CONFIG block (pure: no file access).

    NUM_NODES and NUM_MINUTES are required; GPUS_PER_NODE defaults to 8;
    NUM_RUNS defaults to ceil(MAX_STEPS / STEPS_PER_RUN) (or 1) with
    ``num_runs_defaulted`` set; SEGMENT_SIZE must divide NUM_NODES. Counts
    are read as bash arithmetic reads them (``010`` is 8, recorded in
    ``non_decimal``).
    """
    scope, begin_line = _evaluate(text, path, environ)
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
        raise ConfigError(
            path,
            scope.where["SEGMENT_SIZE"],
            f"SEGMENT_SIZE={segment_size} does not divide NUM_NODES={num_nodes}",
        )
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
