"""Bash arithmetic: ``$(( … ))`` on signed 64-bit integers, for the CONFIG block.

Evaluates the text between ``$((`` and ``))`` with bash's grammar, operator
precedence, integer constants in every base bash reads, and 64-bit
wraparound; names are resolved through the ``Lookup`` the caller gives
(:mod:`nrl_launch.bashcfg.config`'s scope). Errors are ``ArithProblem`` (and the
caller's ``NameProblem``), to which the word expander adds file and line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

# Name -> value (None when unset); resolves block assignments, then environ.
Lookup = Callable[[str], str | None]

# Nesting limit for parentheses, right-associative chains, variables whose
# value is itself an expression, and nested ${…}/"…" in a word. Bash allows
# 1024 levels of the variable kind and thousands of parentheses; this module
# recurses in Python, so it stops much earlier, well before Python's own
# recursion limit, with a ConfigError.
MAX_DEPTH = 40

_MOD = 1 << 64
_SIGN_BIT = 1 << 63
INT64_MAX = _SIGN_BIT - 1

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
CONSTANT_RE = re.compile(r"[0-9][0-9A-Za-z_@#]*")
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


class ArithProblem(Exception):
    """An arithmetic error; the expander adds the file, line and expression."""


class NameProblem(Exception):
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


def parse_number(token: str) -> tuple[int, bool]:
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
                raise ArithProblem(f'invalid number "{token}"')
            if wrapped or not 2 <= value <= 64:
                raise ArithProblem(f'invalid arithmetic base "{token}"')
            base, value, found_base = value, 0, True
            # Bash only checks that a digit character follows; its value is
            # checked below ("2#2" is "value too great for base").
            if index >= len(token) or _digit_value(token[index], 64) >= 64:
                raise ArithProblem(f'invalid integer constant "{token}"')
            continue
        digit = _digit_value(char, base)
        if digit >= base:
            raise ArithProblem(f'value too great for base "{token}"')
        # The exact value only grows, so it is beyond the limit exactly when
        # some step is (wrapping at each step equals wrapping at the end).
        exact = value * base + digit
        wrapped = wrapped or exact > INT64_MAX
        value = _wrap(exact)
    return value, wrapped


def base_name(constant: str) -> str:
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
            raise ArithProblem(
                f'syntax error: invalid arithmetic operator (error token is "{text[pos:]}")'
            )
        kind, token = match.lastgroup or "", match.group()
        if kind == "num":
            tokens.append(_Token(kind, token, pos, parse_number(token)[0]))
        elif kind == "name":
            if text.startswith("[", match.end()):
                raise ArithProblem(f'array subscript "{token}[…]" is not supported')
            tokens.append(_Token(kind, token, pos))
        elif token in _ASSIGN_OPS:
            raise ArithProblem(f'assignment operator "{token}" is not allowed')
        elif token in ("++", "--"):
            # Bash reads "++"/"--" as increment/decrement after a name or
            # before one; otherwise as two unary operators (so --5 is 5).
            after_name = bool(tokens) and tokens[-1].kind == "name"
            if after_name or re.compile(_IDENT_AHEAD).match(text, match.end()):
                raise ArithProblem(f'increment/decrement "{token}" is not allowed')
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
                raise ArithProblem("division by 0")
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

    def __init__(self, text: str, lookup: Lookup, depth: int) -> None:
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
            raise ArithProblem(f'syntax error in expression (error token is "{rest}")')
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
        if self._depth > MAX_DEPTH:
            raise ArithProblem(f"expression nested too deeply (more than {MAX_DEPTH} levels)")

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
            raise ArithProblem("expression expected after '?'")
        self._nest()
        # As in bash: the middle is a full comma expression, the last operand
        # another conditional (so ?: is right-associative).
        when_true = self._comma(live and condition != 0)
        if self._peek() != ":":
            raise ArithProblem("`:' expected for conditional expression")
        self._pos += 1
        if self._pos >= len(self._tokens):
            raise ArithProblem("expression expected after ':'")
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
            raise ArithProblem("exponent less than 0")
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
            raise ArithProblem("syntax error: operand expected")
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
                raise ArithProblem("missing `)'")
            self._pos += 1
            self._depth -= 1
            return inner
        raise ArithProblem(
            f'syntax error: operand expected (error token is "{self._text[token.offset:]}")'
        )

    def _variable(self, name: str) -> int:
        """A name's value; an unset/empty name is 0, any other value an expression."""
        text = self._lookup(name)
        if not text:
            return 0
        if _SIMPLE_INT_RE.fullmatch(text):  # the common case, no recursion needed
            return int(text)
        if self._depth >= MAX_DEPTH:
            raise ArithProblem(f'expression recursion level exceeded (evaluating "{name}")')
        return _Arith(text, self._lookup, self._depth + 1).evaluate()


# Results of earlier evaluations: expression -> [(names read in order with their
# values, result)]. A suite repeats the same few expressions with the same few
# values (NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))).
_ARITH_RESULTS: dict[str, list[tuple[tuple[tuple[str, str | None], ...], int]]] = {}
_ARITH_RESULTS_PER_TEXT = 16


def evaluate_arithmetic(text: str, lookup: Lookup) -> int:
    """Evaluate bash arithmetic ``text``; raises ArithProblem on errors.

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


