"""Reading a recipe's CONFIG block (spec section 3).

A recipe keeps its resource request between ``# ===== BEGIN CONFIG =====`` and
``# ===== END CONFIG =====``. The block is *evaluated* here, never executed:
every non-comment line must be one ``NAME=word`` assignment, and ``word`` is
expanded with bash's rules for a small subset that cannot have side effects
(quoting, ``$NAME``, ``${NAME}``, ``${NAME:-word}``, ``${NAME-word}`` and
``$(( … ))``). Anything that could run a command or touch a file is rejected
with a ConfigError naming the file, the line and the construct.

Two layers:

* ``_Expander`` walks one assignment line and expands its value word;
* ``_Arith`` evaluates the text of a ``$(( … ))`` with bash's grammar,
  operator precedence and 64-bit wraparound.

Nothing is cached between calls: each call sees only its own block and the
``environ`` mapping it was given (the old bash tool leaked variables from one
recipe into the next).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NoReturn

from nrl_launch.errors import ConfigError

DEFAULT_GPUS_PER_NODE = 8


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


# --------------------------------------------------------------------------
# Arithmetic: bash's $(( … )) on signed 64-bit integers
# --------------------------------------------------------------------------

_MOD = 1 << 64
_SIGN_BIT = 1 << 63

# Nesting limit for parentheses, right-associative chains and variables whose
# value is itself an expression. Bash allows 1024 levels of the latter; this
# evaluator recurses in Python, so it stops much earlier, well before Python's
# own recursion limit.
_MAX_DEPTH = 40

_ARITH_SPACE_RE = re.compile(r"[ \t\n]*")
# Longest operators first so that "<<=" wins over "<<" over "<".
_ARITH_TOKEN_RE = re.compile(
    r"(?P<num>[0-9][0-9A-Za-z_@#]*)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><<=|>>=|\*\*|<<|>>|<=|>=|==|!=|&&|\|\||\+\+|--|[-+*/%&^|]="
    r"|[-+*/%<>=!~&^|?:(),])"
)
_IDENT_AHEAD_RE = re.compile(r"[ \t\n]*[A-Za-z_]")
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


def _parse_number(token: str) -> int:
    """Value of an integer constant: decimal, ``0x`` hex, ``0`` octal, ``base#n``."""
    base, index, found_base = 10, 0, False
    if token[0] == "0":
        if len(token) == 1:
            return 0
        if token[1] in "xX":
            base, index = 16, 2
        else:
            base, index = 8, 1
        found_base = True
    value = 0
    while index < len(token):
        char = token[index]
        index += 1
        if char == "#":
            if found_base:
                raise _ArithProblem(f'invalid number "{token}"')
            if not 2 <= value <= 64:
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
        value = _wrap(value * base + digit)
    return value


# A token is (kind, value, offset): kind "num" (int value), "name" or "op".
_Token = tuple[str, object, int]


def _tokenize(text: str) -> list[_Token]:
    """Split an arithmetic expression into tokens; reject side effects."""
    tokens: list[_Token] = []
    pos, end = 0, len(text)
    while True:
        pos = _ARITH_SPACE_RE.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= end:
            return tokens
        match = _ARITH_TOKEN_RE.match(text, pos)
        if match is None:
            raise _ArithProblem(
                f'syntax error: invalid arithmetic operator (error token is "{text[pos:]}")'
            )
        kind, token = match.lastgroup or "", match.group()
        if kind == "num":
            tokens.append((kind, _parse_number(token), pos))
        elif kind == "name":
            if text.startswith("[", match.end()):
                raise _ArithProblem(f'array subscript "{token}[…]" is not supported')
            tokens.append((kind, token, pos))
        elif token in _ASSIGN_OPS:
            raise _ArithProblem(f'assignment operator "{token}" is not allowed')
        elif token in ("++", "--"):
            # Bash reads "++"/"--" as increment/decrement after a name or
            # before one; otherwise as two unary operators (so --5 is 5).
            after_name = bool(tokens) and tokens[-1][0] == "name"
            if after_name or _IDENT_AHEAD_RE.match(text, match.end()):
                raise _ArithProblem(f'increment/decrement "{token}" is not allowed')
            tokens.append(("op", token[0], pos))
            pos += 1
            continue
        else:
            tokens.append((kind, token, pos))
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
            rest = self._text[self._tokens[self._pos][2]:]
            raise _ArithProblem(f'syntax error in expression (error token is "{rest}")')
        return value

    def _peek(self) -> str | None:
        """The operator at the cursor, or None (end, number or name)."""
        if self._pos < len(self._tokens):
            kind, value, _ = self._tokens[self._pos]
            if kind == "op":
                return value  # type: ignore[return-value]
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
            ops.append(self._tokens[self._pos][1])  # type: ignore[arg-type]
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
        kind, value, offset = self._tokens[self._pos]
        if kind == "num":
            self._pos += 1
            return value  # type: ignore[return-value]
        if kind == "name":
            self._pos += 1
            return self._variable(value) if live else 0  # type: ignore[arg-type]
        if value == "(":
            self._pos += 1
            self._nest()
            inner = self._comma(live)
            if self._peek() != ")":
                raise _ArithProblem("missing `)'")
            self._pos += 1
            self._depth -= 1
            return inner
        raise _ArithProblem(
            f'syntax error: operand expected (error token is "{self._text[offset:]}")'
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


def _evaluate_arithmetic(text: str, lookup: _Lookup) -> int:
    """Evaluate bash arithmetic ``text``; raises _ArithProblem on errors."""
    return _Arith(text, lookup, 0).evaluate()


# --------------------------------------------------------------------------
# Words: expanding the value of one NAME=word line
# --------------------------------------------------------------------------

# Expansion modes of _Expander._word.
_TOP = 0  # the unquoted value word itself
_BRACE = 1  # unquoted default word of ${NAME:-word}
_DQ_BRACE = 2  # default word of a ${NAME:-word} inside double quotes
_DQUOTE = 3  # inside "…"
_ARITH = 4  # the text between $(( and ))

# Runs of characters that a mode copies verbatim (everything else is handled
# one character at a time by _word).
_PLAIN_RE = {
    _TOP: re.compile(r"[^ \t\\'\"$`;|&<>()~:]+"),
    _BRACE: re.compile(r"[^\\'\"$`;|&<>()~:{}]+"),
    _DQ_BRACE: re.compile(r"[^\\\"$`{}]+"),
    _DQUOTE: re.compile(r"[^\\\"$`]+"),
    _ARITH: re.compile(r"[^\\\"$`]+"),
}
# Characters a backslash escapes in each mode (None: any character).
_ESCAPABLE = {
    _TOP: None,
    _BRACE: None,
    _DQ_BRACE: '$`"\\}',
    _DQUOTE: '$`"\\',
    _ARITH: '$`"\\',
}

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(\}|:-|-)?")
_PARAM_OP_RE = re.compile(r"##|%%|//|\^\^|,,|:[-=+?]|.")
_SPECIAL_PARAMS = "0123456789@*#?$!-"
_BLANKS_RE = re.compile(r"[ \t]*")
_REDIRECT_WORD_RE = re.compile(r"[0-9]*[<>]")
_REDIRECT_RUN_RE = re.compile(r"[<>][<>&|]*")
_DQ_SKIP_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_SQ_SKIP_RE = re.compile(r"'[^']*'")
_OPERATOR_NAMES = {
    ";": 'command separator ";"',
    "|": 'pipe "|"',
    "&": 'background operator "&"',
    "(": 'parenthesis "("',
    ")": 'parenthesis ")"',
}


def _not_allowed(construct: str) -> str:
    return f"{construct} is not allowed in the CONFIG block"


class _Expander:
    """Expands the value word of one assignment line with bash's rules."""

    def __init__(self, line: str, lineno: int, path: str, lookup: _Lookup) -> None:
        self.line = line
        self.lineno = lineno
        self.path = path
        self.lookup = lookup

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(self.path, self.lineno, message)

    def value(self, start: int) -> str:
        """Expand the word at ``start``; the rest of the line must be a comment."""
        text, pos = self._word(start, _TOP, True, len(self.line))
        self._check_rest(pos)
        return text

    def _check_rest(self, pos: int) -> None:
        line = self.line
        pos = _BLANKS_RE.match(line, pos).end()  # type: ignore[union-attr]
        if pos >= len(line) or line[pos] == "#":  # '#' at a word start: comment
            return
        if line[pos] in ";|&<>()":
            self._operator(pos, pos)
        redirect = _REDIRECT_WORD_RE.match(line, pos)
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
            run = _REDIRECT_RUN_RE.match(line, pos).group()  # type: ignore[union-attr]
            self.fail(_not_allowed(f'redirection "{run}"'))
        if line.startswith(("&&", "||"), pos):
            self.fail(_not_allowed(f'operator "{line[pos:pos + 2]}"'))
        if char == "(" and pos == word_start and line[pos - 1] == "=":
            self.fail(_not_allowed('array assignment "(…)"'))
        self.fail(_not_allowed(_OPERATOR_NAMES[char]))

    def _word(self, pos: int, mode: int, live: bool, stop: int) -> tuple[str, int]:
        """Expand from ``pos`` until the end of the word for ``mode``.

        Returns the text and the position where the word ended: a blank
        (_TOP), the closing '}' (_BRACE/_DQ_BRACE), the closing '"' (_DQUOTE)
        or ``stop``. ``live`` False means the result is discarded (unused
        ${X:-default}): constructs are still checked, arithmetic not run.
        """
        line, plain, parts = self.line, _PLAIN_RE[mode], []
        start, braces = pos, 0
        while pos < stop:
            match = plain.match(line, pos, stop)
            if match:
                parts.append(match.group())
                pos = match.end()
                continue
            char = line[pos]
            if char == "$":
                text, pos = self._dollar(pos, live, mode)
                parts.append(text)
            elif char == "\\":
                parts.append(self._escape(pos, mode))
                pos += 2
            elif char == '"':
                if mode == _DQUOTE:
                    break
                text, pos = self._double_quoted(pos, mode, live)
                parts.append(text)
            elif char == "'":  # only special in unquoted modes
                close = line.find("'", pos + 1)
                if close < 0:
                    self.fail("unterminated single quote")
                parts.append(line[pos + 1:close])
                pos = close + 1
            elif char == "`":
                self.fail(_not_allowed('command substitution "`…`" (backticks)'))
            elif char == "{":
                braces += 1  # bash pairs braces inside ${…}: ${X:-{a}} is "{a}"
                parts.append(char)
                pos += 1
            elif char == "}":
                if braces == 0:
                    break
                braces -= 1
                parts.append(char)
                pos += 1
            elif char in " \t":
                break
            elif char == "~":
                if pos == start or line[pos - 1] == ":":
                    self.fail(_not_allowed('tilde expansion "~"'))
                parts.append(char)
                pos += 1
            elif char == ":":
                parts.append(char)
                pos += 1
            else:
                self._operator(pos, start)
        return "".join(parts), pos

    def _escape(self, pos: int, mode: int) -> str:
        """The text of the backslash escape at ``pos`` (two characters long)."""
        if pos + 1 >= len(self.line):
            self.fail(_not_allowed("line continuation (a trailing backslash)"))
        escapable = _ESCAPABLE[mode]
        following = self.line[pos + 1]
        if escapable is None or following in escapable:
            return following
        return "\\" + following  # inside double quotes bash keeps other backslashes

    def _double_quoted(self, pos: int, mode: int, live: bool) -> tuple[str, int]:
        """Expand the '"' string at ``pos``; return its text and the position after."""
        if mode == _ARITH:  # bash drops double quotes inside $(( ))
            return "", pos + 1
        text, end = self._word(pos + 1, _DQUOTE, live, len(self.line))
        if end >= len(self.line):
            self.fail("unterminated double quote")
        return text, end + 1

    def _dollar(self, pos: int, live: bool, mode: int) -> tuple[str, int]:
        """Expand the ``$…`` at ``pos``; return its text and the position after."""
        line = self.line
        following = line[pos + 1:pos + 2]
        quoted = mode in (_DQ_BRACE, _DQUOTE, _ARITH)
        if following == "(":
            if line.startswith("((", pos + 1):
                return self._arithmetic(pos, live)
            self.fail(_not_allowed('command substitution "$(…)"'))
        if following == "{":
            return self._parameter(pos, live, quoted)
        if following == "[":
            self.fail(_not_allowed('obsolete arithmetic expansion "$[…]" (write "$(( … ))")'))
        name = _NAME_RE.match(line, pos + 1)
        if name:
            return self.lookup(name.group()) or "", name.end()
        if following and following in _SPECIAL_PARAMS:
            self.fail(_not_allowed(f'special parameter "${following}"'))
        if following == "'" and not quoted:
            self.fail(_not_allowed("ANSI-C quoting \"$'…'\""))
        if following == '"' and not quoted:
            # $"…" is a translatable string; without a catalog it is "…".
            return "", pos + 1
        return "$", pos + 1  # a lone '$' is literal

    def _parameter(self, pos: int, live: bool, quoted: bool) -> tuple[str, int]:
        """Expand ``${NAME}``, ``${NAME:-word}`` or ``${NAME-word}`` at ``pos``."""
        line = self.line
        match = _PARAM_RE.match(line, pos)
        if match is None or match.group(2) is None:
            self._bad_parameter(pos, match.group(1) if match else None)
        name, op = match.group(1), match.group(2)
        value = self.lookup(name)
        if op == "}":
            return value or "", match.end()
        use_default = value is None or (op == ":-" and value == "")
        mode = _DQ_BRACE if quoted else _BRACE
        word, end = self._word(match.end(), mode, live and use_default, len(line))
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
            char = line[after]
            kinds = {"!": "indirect expansion", "#": "length expansion", "}": "empty expansion"}
            if char in kinds:
                construct = f'{kinds[char]} "${{{char}…}}"'
            elif char in _SPECIAL_PARAMS:
                construct = f'special parameter "${{{char}}}"'
            else:
                construct = f'parameter expansion "${{{char}…}}"'
        else:
            op = _PARAM_OP_RE.match(line, after).group()  # type: ignore[union-attr]
            construct = f'parameter expansion "${{{name}{op}…}}"'
        self.fail(_not_allowed(construct) + supported)

    def _arithmetic(self, pos: int, live: bool) -> tuple[str, int]:
        """Expand the ``$(( … ))`` at ``pos``."""
        close = self._arithmetic_end(pos + 3)
        text, end = self._word(pos + 3, _ARITH, live, close)
        if end != close:
            self.fail('malformed arithmetic expansion "$(( … ))"')
        if not live:
            return "", close + 2
        try:
            value = _evaluate_arithmetic(text, self.lookup)
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
            skip = (_DQ_SKIP_RE if char == '"' else _SQ_SKIP_RE).match(line, pos)
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
_FIRST_WORD_RE = re.compile(r"[ \t]*([^ \t;|&<>()]*)")
_FUNCTION_RE = re.compile(r"[ \t]*[A-Za-z_][A-Za-z0-9_.:-]*[ \t]*\(")
_ARRAY_ELEMENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\[")
_APPEND_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+=")
_SPACED_ASSIGN_RE = re.compile(r"[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]+=")
_DECLARATIONS = frozenset({"export", "local", "declare", "readonly", "typeset", "unset"})
_KEYWORDS = frozenset({
    "if", "then", "elif", "else", "fi", "for", "while", "until", "do", "done",
    "case", "esac", "select", "function", "time", "coproc", "{", "}", "!",
})


def _describe_non_assignment(line: str) -> str:
    """Explain why a block line that is not ``NAME=word`` is rejected."""
    stripped = line.lstrip(" \t")
    word = _FIRST_WORD_RE.match(line).group(1)  # type: ignore[union-attr]
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
    if _FUNCTION_RE.match(line):
        return _not_allowed(f'function definition "{word}()"')
    if _ARRAY_ELEMENT_RE.match(word):
        return _not_allowed(f'array element assignment "{word.split("[")[0]}[…]="')
    if _APPEND_RE.match(word):
        return _not_allowed(f'append assignment "{word.split("+=")[0]}+="')
    if "=" in word:
        name = word.split("=", 1)[0]
        return f'invalid variable name "{name}" in assignment "{word}"'
    if _SPACED_ASSIGN_RE.match(line):
        return f'"{stripped}" is a command, not an assignment: remove the blanks around "="'
    if "=" not in line:
        return (
            f'"{stripped}" is not an assignment: only NAME=value lines and comments '
            "are allowed in the CONFIG block"
        )
    return _not_allowed(f'command "{word}"') + " (only NAME=value assignments are)"


def _find_block(text: str, path: str) -> tuple[int, list[str]]:
    """Return the BEGIN marker's line number and the lines between the markers."""
    begin = _BEGIN_RE.search(text)
    if begin is None:
        stray = _END_RE.search(text)
        note = ""
        if stray:
            stray_line = text.count("\n", 0, stray.start()) + 1
            note = f" (line {stray_line} has an END marker but there is no BEGIN)"
        raise ConfigError(
            path,
            None,
            f"no CONFIG block found{note}. Put a block like this near the top of the "
            f"script; the launcher reads the job's resources from it:\n\n{_TEMPLATE_BLOCK}",
        )
    begin_line = text.count("\n", 0, begin.start()) + 1
    end = _END_RE.search(text, begin.end())
    if end is None:
        message = 'BEGIN CONFIG marker without a matching "# ===== END CONFIG =====" line'
        raise ConfigError(path, begin_line, message)
    body_start = text.index("\n", begin.start()) + 1
    body = text[body_start:end.start()]
    lines = body.split("\n")
    lines.pop()  # the (empty) text between the last newline and the END marker
    return begin_line, lines


def _evaluate(
    text: str, path: str, environ: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, int], int, dict[str, str | None]]:
    """Evaluate the block: (values, line of each name's last assignment, BEGIN
    line, the environment variables it read — None for those unset)."""
    begin_line, lines = _find_block(text, path)
    values: dict[str, str] = {}
    where: dict[str, int] = {}
    read_env: dict[str, str | None] = {}

    def lookup(name: str) -> str | None:
        if name in values:
            return values[name]
        value = environ.get(name)
        read_env.setdefault(name, value)
        return value

    for lineno, line in enumerate(lines, start=begin_line + 1):
        stripped = line.lstrip(" \t")
        if not stripped or stripped[0] == "#":
            continue
        simple = _SIMPLE_ASSIGN_RE.fullmatch(line)
        if simple:  # fast path: nothing to expand
            name, value = simple.group(1), simple.group(2)
        else:
            if "\r" in line:
                message = "carriage return in the line (CRLF line endings): save the script with LF"
                raise ConfigError(path, lineno, message)
            assign = _ASSIGN_RE.match(line)
            if assign is None:
                raise ConfigError(path, lineno, _describe_non_assignment(line))
            name = assign.group(1)
            value = _Expander(line, lineno, path, lookup).value(assign.end())
        values[name] = value
        where[name] = lineno
    return values, where, begin_line, read_env


def evaluate_block(text: str, path: str, environ: Mapping[str, str]) -> tuple[dict[str, str], int]:
    """Evaluate the CONFIG block found in ``text``; return (assignments, marker line).

    Assignments are evaluated in order, as bash would; names resolve to earlier
    assignments, then to ``environ`` (which is never modified). Raises
    ConfigError for a missing/unterminated block or any line that is not a
    plain assignment of the supported subset.
    """
    values, _, begin_line, _ = _evaluate(text, path, environ)
    return values, begin_line


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

_DECIMAL_RE = re.compile(r"[0-9]+")


def _as_positive(value: str | None) -> int | None:
    """The value as a positive decimal integer, or None."""
    if value is None or not _DECIMAL_RE.fullmatch(value):
        return None
    number = int(value)
    return number if number > 0 else None


def _positive_setting(
    name: str, values: Mapping[str, str], where: Mapping[str, int], path: str
) -> int | None:
    """The positive integer ``name`` is set to, None if unset; ConfigError if invalid."""
    if name not in values:
        return None
    number = _as_positive(values[name])
    if number is None:
        raise ConfigError(
            path, where[name], f"{name} must be a positive integer, got {values[name]!r}"
        )
    return number


def parse_recipe(text: str, path: str, environ: Mapping[str, str]) -> RecipeConfig:
    """Evaluate and validate a recipe's CONFIG block (pure: no file access).

    NUM_NODES and NUM_MINUTES are required; GPUS_PER_NODE defaults to 8;
    NUM_RUNS defaults to ceil(MAX_STEPS / STEPS_PER_RUN) (or 1) with
    ``num_runs_defaulted`` set; SEGMENT_SIZE must divide NUM_NODES.
    """
    values, where, begin_line, read_env = _evaluate(text, path, environ)

    def required(name: str) -> int:
        number = _positive_setting(name, values, where, path)
        if number is None:
            message = f"{name} is required but the CONFIG block does not set it"
            raise ConfigError(path, begin_line, message)
        return number

    num_nodes = required("NUM_NODES")
    num_minutes = required("NUM_MINUTES")
    gpus_per_node = _positive_setting("GPUS_PER_NODE", values, where, path) or DEFAULT_GPUS_PER_NODE
    num_runs = _positive_setting("NUM_RUNS", values, where, path)
    num_runs_defaulted = num_runs is None
    if num_runs is None:
        max_steps = _as_positive(values.get("MAX_STEPS"))
        steps_per_run = _as_positive(values.get("STEPS_PER_RUN"))
        num_runs = -(-max_steps // steps_per_run) if max_steps and steps_per_run else 1
    segment_size = _positive_setting("SEGMENT_SIZE", values, where, path)
    if segment_size is not None and num_nodes % segment_size:
        raise ConfigError(
            path,
            where["SEGMENT_SIZE"],
            f"SEGMENT_SIZE={segment_size} does not divide NUM_NODES={num_nodes}",
        )
    return RecipeConfig(
        path=path,
        num_nodes=num_nodes,
        gpus_per_node=gpus_per_node,
        num_minutes=num_minutes,
        num_runs=num_runs,
        segment_size=segment_size,
        job_reaper_comment=values.get("JOB_REAPER_COMMENT") or None,
        values=dict(values),
        num_runs_defaulted=num_runs_defaulted,
        config_line=begin_line,
        environment=read_env,
        assignment_lines=where,
    )


def read_recipe(path: str, environ: Mapping[str, str]) -> RecipeConfig:
    """Read ``path`` and return its validated RecipeConfig; ConfigError on problems."""
    try:
        # newline="" keeps the bytes bash would see (a CRLF file is reported).
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"cannot read: not valid UTF-8 ({exc.reason})") from exc
    if text.startswith("\ufeff"):  # bash would take it for part of the first line's first word
        raise ConfigError(path, 1, "the file starts with a UTF-8 byte order mark (BOM): save it as UTF-8 "
                                   "without BOM")
    return parse_recipe(text, path, environ)
