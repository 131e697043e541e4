"""The value word of one ``NAME=word`` line of a CONFIG block, expanded with bash's rules.

Quoting, ``$NAME``, ``${NAME}``, ``${NAME:-word}``, ``${NAME-word}`` and
``$(( … ))`` (evaluated by :mod:`nrl_launch.bashcfg.arith`) in each of the places bash
treats differently (unquoted, inside ``"…"``, inside a ``${…}`` word,
quoted or not). Every construct that could run a command, or whose bash
meaning is not reproduced exactly, is a ConfigError naming the file, the line
and the construct (:mod:`nrl_launch.bashcfg.config` lists them).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NoReturn

from nrl_launch.bashcfg.arith import MAX_DEPTH, ArithProblem, Lookup, NameProblem, evaluate_arithmetic
from nrl_launch.errors import ConfigError

# Expansion modes of Expander._word. Bash's rules differ in each; those of
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
# A "$" or "$NAME" that ends the text before a backslash (see Expander._escape).
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


def not_allowed(construct: str) -> str:
    return f"{construct} is not allowed in the CONFIG block"


def _skip_blanks(line: str, pos: int) -> int:
    """The first position at or after ``pos`` that is not a space or a tab."""
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    return pos


class Expander:
    """Expands the value word of one assignment line with bash's rules."""

    def __init__(self, line: str, lineno: int, path: str, lookup: Lookup) -> None:
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
            not_allowed(f'multiple words on one line (extra word "{extra}")')
            + ": write one NAME=value assignment per line"
        )

    def _operator(self, pos: int, word_start: int) -> NoReturn:
        """Reject the unquoted shell operator at ``pos``."""
        line = self.line
        char = line[pos]
        if char in "<>":
            run = re.compile(_REDIRECT_RUN).match(line, pos)
            assert run is not None  # the pattern matches any "<" or ">"
            self.fail(not_allowed(f'redirection "{run.group()}"'))
        if line.startswith(("&&", "||"), pos):
            self.fail(not_allowed(f'operator "{line[pos:pos + 2]}"'))
        if char == "(" and pos == word_start and line[pos - 1] == "=":
            self.fail(not_allowed('array assignment "(…)"'))
        self.fail(not_allowed(_OPERATOR_NAMES[char]))

    def _word(self, pos: int, mode: int, live: bool, stop: int) -> tuple[str, int]:
        """Expand from ``pos`` until the end of the word for ``mode``.

        Returns the text and the position where the word ended: a blank
        (_TOP), the closing '}' (_BRACE/_DQ_BRACE), the closing '"'
        (_DQUOTE/_DQ_BRACE_DQ) or ``stop``. ``live`` False means the result
        is discarded (unused ${X:-default}): constructs are still checked,
        arithmetic not run.
        """
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self.fail(f"expansion nested too deeply (more than {MAX_DEPTH} levels of ${{…}} and quotes)")
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
            self.fail(not_allowed('command substitution "`…`" (backticks)'))
        if char == "}" or char in " \t":
            return None  # "}" only stops brace modes, blanks only _TOP
        if char == "~" and (pos == start or line[pos - 1] == ":"):
            self.fail(not_allowed('tilde expansion "~"'))
        if char in "~:":
            return char, pos + 1
        self._operator(pos, start)

    def _escape(self, pos: int, mode: int) -> str:
        """The text of the backslash escape at ``pos`` (two characters long)."""
        if pos + 1 >= len(self.line):
            self.fail(not_allowed("line continuation (a trailing backslash)"))
        if mode == _DQ_BRACE_DQ and re.compile(_AFTER_DOLLAR).search(self.line, 0, pos):
            # There bash drops the backslash before expanding: "${U-"$V\c"}" reads
            # the variable "Vc" and "${U-"$\V"}" is "$V" expanded.
            self.fail(not_allowed('a backslash right after "$" or "$NAME" in a "…" string inside a '
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
                    not_allowed("a single quote inside a double-quoted ${…} other than around plain text")
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
        except NameProblem as problem:
            self.fail(str(problem))

    def _dollar(self, pos: int, live: bool, mode: int) -> tuple[str, int]:
        """Expand the ``$…`` at ``pos``; return its text and the position after."""
        line = self.line
        following = line[pos + 1:pos + 2]
        if following == "(":
            if line.startswith("((", pos + 1):
                return self._arithmetic(pos, live)
            self.fail(not_allowed('command substitution "$(…)"'))
        if following == "{":
            return self._parameter(pos, live, mode)
        if following == "[":
            self.fail(not_allowed('obsolete arithmetic expansion "$[…]" (write "$(( … ))")'))
        name = _NAME_RE.match(line, pos + 1)
        if name:
            return self._value_of(name.group()) or "", name.end()
        if following and following in _SPECIAL_PARAMS:
            self.fail(not_allowed(f'special parameter "${following}"'))
        if following in ("'", '"'):
            return self._dollar_quote(pos, mode)
        return "$", pos + 1  # a lone '$' is literal

    def _dollar_quote(self, pos: int, mode: int) -> tuple[str, int]:
        """A "$" followed by a quote at ``pos``: ``$'…'`` (ANSI-C quoting) or
        ``$"…"`` (a string translated through the locale's message catalog).

        Only inside a plain "…" string is the "$" a literal character (and
        ``$'`` inside a "…" within a double-quoted ${…}, which bash also keeps
        as text). Everywhere else bash decodes or translates the string, with
        results that depend on the locale, on bash's ``extquote`` option (inside
        a double-quoted ${…}: on by default, ``$"x"`` there is "x", off it is
        "") and on bash's version: rejected, never guessed.
        """
        following = self.line[pos + 1]
        if mode == _DQUOTE or (mode == _DQ_BRACE_DQ and following == "'"):
            return "$", pos + 1
        if mode == _DQ_BRACE_DQ:
            self.fail(not_allowed('$"…" inside a "…" string inside a double-quoted ${…}'))
        if following == "'":
            self.fail(not_allowed("ANSI-C quoting \"$'…'\""))
        self.fail(not_allowed('locale translation "$\"…\""') + ' (bash translates the string with the message '
                  'catalog of the locale; write "…" without the "$")')

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
            self.fail(not_allowed(_odd_parameter(line[after], line[after + 1:after + 2])) + supported)
        op = re.compile(_PARAM_OP).match(line, after)
        assert op is not None  # the pattern matches any character
        self.fail(not_allowed(f'parameter expansion "${{{name}{op.group()}…}}"') + supported)

    def _arithmetic(self, pos: int, live: bool) -> tuple[str, int]:
        """Expand the ``$(( … ))`` at ``pos``."""
        close = self._arithmetic_end(pos + 3)
        text, end = self._word(pos + 3, _ARITH, live, close)
        if end != close:
            self.fail('malformed arithmetic expansion "$(( … ))"')
        if not live:
            return "", close + 2
        try:
            value = evaluate_arithmetic(text, self._value_of)
        except ArithProblem as problem:
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
                return -1, not_allowed('command substitution "$(…)"')
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


