"""Tests for nrl_launch.bashcfg.config: CONFIG block evaluation checked against real bash."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import MappingProxyType

import pytest

from nrl_launch.bashcfg.config import (
    BASH_OWN_VARIABLES,
    BASH_READONLY_VARIABLES,
    DEFAULT_GPUS_PER_NODE,
    NonDecimalCount,
    RecipeConfig,
    evaluate_block,
    parse_recipe,
    read_recipe,
)
from nrl_launch.errors import ConfigError

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")

BEGIN = "# ===== BEGIN CONFIG ====="
END = "# ===== END CONFIG ====="


def block(*lines: str, before: int = 0) -> str:
    """A script with ``before`` filler lines, then a CONFIG block of ``lines``."""
    head = ["#!/bin/bash"] + [f"# filler {i}" for i in range(before)]
    return "\n".join(head + [BEGIN, *lines, END, "echo body"]) + "\n"


def run_bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a clean environment holding only ``env``."""
    assert BASH is not None
    args = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), BASH, "-c", script]
    return subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)


def ours_arith(expr: str, env: dict[str, str]) -> str:
    values, _ = evaluate_block(block(f"R=$(({expr}))"), "t.sh", env)
    return values["R"]


# --------------------------------------------------------------------------
# Arithmetic against bash
# --------------------------------------------------------------------------

ARITH_ENV = {
    "A": "7", "B": "-3", "EXPR": "3+4", "CHAIN": "EXPR*2", "EMPTY": "",
    "BLANK": "  ", "HEX": "0x1f", "NEG": "-9223372036854775807", "ZERO": "0",
}

ARITH_CASES = [
    # literals and bases
    "0", "42", "007", "010", "0x1F", "0XfF", "0x", "2#1011", "8#17", "16#ff",
    "36#zz", "64#@_", "62#Zz", "10#08", "-0x10", "9223372036854775807",
    # 64-bit wraparound
    "9223372036854775807 + 1", "-9223372036854775807 - 2", "9223372036854775808",
    "18446744073709551617", "4611686018427387904 * 4", "3037000500 * 3037000500",
    "-(-9223372036854775807 - 1)", "(-9223372036854775807 - 1) / -1",
    "(-9223372036854775807 - 1) % -1", "2 ** 63", "2 ** 64", "3 ** 41", "(-3) ** 41",
    # division and remainder signs
    "7 / 2", "-7 / 2", "7 / -2", "-7 / -2", "7 % 3", "-7 % 3", "7 % -3", "-7 % -3",
    "1 / 3", "-1 / 3", "0 / -5",
    # power and unary minus
    "2 ** 10", "-2 ** 2", "-2 ** 3", "2 ** 3 ** 2", "(2 ** 3) ** 2", "0 ** 0",
    "- -5", "--5", "5--3", "+-+5", "!0", "!7", "!!7", "~0", "~-1", "~5", "-~5", "!-1",
    "2 ** -B", "-A ** 2",
    # precedence and associativity
    "1 + 2 * 3", "(1 + 2) * 3", "10 - 4 - 3", "100 / 10 / 5", "2 * 3 % 4",
    "1 + 2 << 1", "1 << 2 + 1", "5 & 3 ^ 6 | 8", "5 | 3 & 1", "6 ^ 3 & 5",
    "1 < 2 == 1", "3 < 2 == 0", "1 == 1 && 0 || 1", "0 || 0 && 1",
    "1 ? 2 : 3", "0 ? 2 : 3", "1 ? 0 ? 3 : 4 : 5", "0 ? 1 : 0 ? 2 : 3",
    "(1 ? 2 : 3) ? 4 : 5", "1 ? 2, 3 : 4", "1, 2, 3", "1 ? 2 : 3, 5",
    "((((1 + 2))) * ((3)))", "  ( ( 1 ) )  ", "-(3 - 5) * -(2)",
    # shifts (count taken mod 64, as bash on x86-64)
    "1 << 62", "1 << 63", "1 << 64", "1 << 65", "1 << -1", "-8 >> 1", "-1 >> 63",
    "1 << 63 >> 63", "255 >> 4",
    # comparisons
    "3 < 4", "4 < 3", "3 <= 3", "3 >= 4", "3 > -4", "5 == 5", "5 != 5", "-1 < 0",
    "3 < 3", "3 > 3", "4 >= 4", "4 <= 3", "-2 > -2", "-2 >= -1",
    # && and || against their neighbours, and operands that are 1
    "1 && 1", "1 || 0 && 0", "0 && 0 || 1", "1 && 1 | 2", "0 || 1 == 1", "0 || 2 & 1", "1 && 2 ^ 2",
    # digits of the larger bases
    "36#A", "36#a", "16#A", "64#A", "64#Z", "64#a", "64#_", "11#A",
    # long flat expressions: nesting depth is given back after each operand
    " + ".join(["(1)"] * 60), " + ".join(["2 ** 1"] * 60), ", ".join(["1 ? 1 : 1"] * 60),
    " + ".join(["-(1)"] * 60),
    # logical results and short-circuit
    "5 && 7", "0 && 7", "0 || 0", "3 || 0", "0 && 1 / 0", "1 || 1 / 0",
    "0 ? 1 / 0 : 9", "1 ? 9 : 1 % 0",
    # variables, bare and with $
    "A", "$A", "A * 2", "$A * 2", "B", "A + B", "A / B", "A % B", "-B", "B ** 2",
    "EXPR", "EXPR * 2", "$EXPR * 2", "CHAIN", "CHAIN + 1", "UNSET", "UNSET + 1",
    "$UNSET + 1", "EMPTY", "BLANK", "$BLANK + 1", "HEX", "$HEX + 1", "NEG - 2",
    "ZERO ? 1 : 2", "A > B ? A : B", "(A + B) * (A - B)", "${A} + 1", "${UNSET:-5} * 2",
    "$((A + 1)) * 2", "", "   ",
]


@needs_bash
@pytest.mark.parametrize("expr", ARITH_CASES)
def test_arithmetic_matches_bash(expr: str) -> None:
    result = run_bash(f"echo $(({expr}))", ARITH_ENV)
    assert result.returncode == 0, result.stderr  # the table holds valid expressions only
    assert ours_arith(expr, ARITH_ENV) == result.stdout.strip()


ARITH_ERRORS = [
    ("1 / 0", "division by 0"),
    ("5 % 0", "division by 0"),
    ("1 / ZERO", "division by 0"),
    ("1 / (A - 7)", "division by 0"),
    ("2 ** -1", "exponent less than 0"),
    ("0 && 2 ** -1", "exponent less than 0"),
    ("08", "value too great for base"),
    ("0x1g", "value too great for base"),
    ("1e3", "value too great for base"),
    ("37#Z", "value too great for base"),
    ("1#5", "invalid arithmetic base"),
    ("0#5", "invalid number"),
    ("2#", "invalid integer constant"),
    ("1 +", "syntax error: operand expected"),
    ("* 2", 'syntax error: operand expected (error token is "* 2")'),
    ("1 2", "syntax error"),
    ("(1 + 2", 'unterminated arithmetic expansion "$((" (missing "))")'),
    ("1 ? 2", "`:' expected for conditional expression"),
    ("7 ?: 3", "expression expected after '?'"),
    ("1 ? 2 :", "expression expected after ':'"),
    ("1 ?", "expression expected after '?'"),
    ("( 1 2 )", "missing `)'"),
    # the operands bash evaluates are evaluated: their errors count
    ("1 / 0, 2", "division by 0"),
    ("0 ? 1 : 1 / 0", "division by 0"),
    ("1 && 1 / 0", "division by 0"),
    ("0 || 1 / 0", "division by 0"),
    ("0 ? 1 :", "expression expected after ':'"),
    ("1 @ 2", "syntax error: invalid arithmetic operator"),
    ("LOOP", 'expression recursion level exceeded (evaluating "LOOP")'),
]


@needs_bash
@pytest.mark.parametrize(("expr", "message"), ARITH_ERRORS)
def test_arithmetic_errors_where_bash_fails(expr: str, message: str) -> None:
    env = {**ARITH_ENV, "LOOP": "LOOP"}
    assert run_bash(f"echo $(({expr}))", env).returncode != 0
    with pytest.raises(ConfigError) as caught:
        evaluate_block(block(f"R=$(({expr}))", before=3), "tests/x.sh", env)
    assert caught.value.line == 6
    assert str(caught.value).startswith("tests/x.sh:6: ")
    whole = message if message.startswith("unterminated") else f'arithmetic expansion "$(({expr}))": {message}'
    assert caught.value.message.startswith(whole), caught.value.message


@needs_bash
def test_deep_but_reasonable_nesting_matches_bash() -> None:
    expr = "(" * 30 + "A - 1" + ")" * 30 + " * " + "2 ** " * 5 + "1"
    assert ours_arith(expr, ARITH_ENV) == run_bash(f"echo $(({expr}))", ARITH_ENV).stdout.strip()


@pytest.mark.parametrize(
    "expr",
    ["(" * 3000 + "1" + ")" * 3000, "2 ** " * 500 + "1", "1 ? " * 500 + "1" + " : 0" * 500],
)
def test_absurd_nesting_is_a_config_error_not_a_crash(expr: str) -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        ours_arith(expr, {})


def test_self_referencing_variables_stop() -> None:
    env = {f"V{i}": f"V{i + 1} + 1" for i in range(500)}
    with pytest.raises(ConfigError, match="recursion level exceeded"):
        ours_arith("V0", env)
    assert ours_arith("V480", env) == "20"


def test_division_by_zero_message_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"^r\.sh:5: .*division by 0"):
        parse_recipe(block("NUM_NODES=1", "N=$(( NUM_NODES / 0 ))", before=1), "r.sh", {})


# --------------------------------------------------------------------------
# Whole assignment lines against bash
# --------------------------------------------------------------------------

LINE_CASES = [
    ('NUM_NODES="${NUM_NODES:-4}"          # caller may override', "NUM_NODES", {}),
    ('NUM_NODES="${NUM_NODES:-4}"          # caller may override', "NUM_NODES", {"NUM_NODES": "7"}),
    ('NUM_NODES="${NUM_NODES:-4}"', "NUM_NODES", {"NUM_NODES": ""}),
    ("NUM_NODES=${NUM_NODES-4}", "NUM_NODES", {"NUM_NODES": ""}),
    ("NUM_NODES=${NUM_NODES-4}", "NUM_NODES", {}),
    ("NUM_NODES=${NUM_NODES}", "NUM_NODES", {"NUM_NODES": "3"}),
    ("STEPS_PER_RUN=40  # step_time ~ 95sec", "STEPS_PER_RUN", {}),
    ("NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))", "NUM_RUNS",
     {"MAX_STEPS": "120", "STEPS_PER_RUN": "40"}),
    ("NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))", "NUM_RUNS",
     {"MAX_STEPS": "121", "STEPS_PER_RUN": "40"}),
    ("NUM_RUNS=3", "NUM_RUNS", {}),
    ("MODEL=org/Some-Model-1.5B  # a '#' only starts a comment at a word start", "MODEL", {}),
    ("X=a#b", "X", {}),
    ("X=#a", "X", {}),
    ("X= #c", "X", {}),
    ("X=", "X", {}),
    ("JOB_REAPER_COMMENT='{\"Reaper\":{\"exemptIdleTimeMins\":\"120\",\"reason\":\"long init\"}}'",
     "JOB_REAPER_COMMENT", {}),
    ("USE_SIDECAR=true", "USE_SIDECAR", {}),
    ("X=a\"b\"'c'd", "X", {}),
    ("X=a\\ b", "X", {}),
    ("X=\\$HOME\\'\\\"", "X", {"HOME": "/h"}),
    ('X="a\\qb\\$c\\"d\\\\e\\`f"', "X", {}),
    ("X='a\\b $c'", "X", {}),
    ('X="a\'b"', "X", {}),
    ("X=$A$B", "X", {"A": "1", "B": "2"}),
    ("X=${A}x${B}", "X", {"A": "1", "B": "2"}),
    ("X=\"$A and ${B}\"", "X", {"A": "one two", "B": " spaced "}),
    ("X=$A", "X", {"A": "  spaced  out  "}),
    ("X=$UNSET", "X", {}),
    ("X=${UNSET:-\"a b\"}", "X", {}),
    ("X=${UNSET:-'a b'}", "X", {}),
    ("X=${UNSET:-a b}", "X", {}),
    ("X=\"${UNSET:-'a'}\"", "X", {}),
    ("X=\"${UNSET:-\"a b\"}\"", "X", {}),
    ("X=${UNSET:-${OTHER:-z}}", "X", {}),
    ("X=${UNSET:-${OTHER:-z}}", "X", {"OTHER": "o"}),
    ("X=${UNSET:-$((2*3))}", "X", {}),
    ("X=${SET:-$((2*3))}", "X", {"SET": "s"}),
    ("X=${UNSET:-\\}}", "X", {}),
    ("X=\"${UNSET:-\\}}\"", "X", {}),
    ("X=${UNSET:-{a}}", "X", {}),
    ("X=${UNSET:-\"}\"}", "X", {}),
    ("X=${EMPTY:-d}", "X", {"EMPTY": ""}),
    ("X=${EMPTY-d}", "X", {"EMPTY": ""}),
    ('X="$((2*3))"', "X", {}),
    ('X="$(( ${N:-2} * 3 ))"', "X", {"N": "5"}),
    ("X=$((1 + $((2 * 3))))", "X", {}),
    ('X=$(( "2" * 3 ))', "X", {}),
    ("X=$(( N * 2 ))x", "X", {"N": "3+4"}),
    ("X=$(( $N * 2 ))x", "X", {"N": "3+4"}),
    ("X=$", "X", {}),
    ('X="$"', "X", {}),
    ("X=a$", "X", {}),
    ("X=$/x", "X", {}),
    ("X={a,b}", "X", {}),
    ("X=*.sh", "X", {}),
    ("X=a}b", "X", {}),
    ("X=a=b", "X", {}),
    ("X=a:b", "X", {}),
    ("X=a~b", "X", {}),
    ("X=$((1)) # c", "X", {}),
    ("   X=indented", "X", {}),
    ("X=\t# tab then comment", "X", {}),
    # braces inside ${…} are not paired: the first unquoted "}" closes
    ("X=${Y-{}}", "X", {"Y": "v"}),
    ("X=${Y-{}}", "X", {}),
    ("X=${U-{a}b}", "X", {}),
    ("X=${U-{a b}}", "X", {}),
    ('X="${Y-{a}}"', "X", {"Y": "v"}),
    ('X="${U-{a}b}"', "X", {}),
    # quotes inside a double-quoted ${…}
    ('X="${U-"\\b"}"', "X", {}),
    ('X="${U-a"\\b"c}"', "X", {}),
    ('X="${U-"\\a\\\\b\\\'\\}"}"', "X", {}),
    ('X="${U-"\'a\'"}"', "X", {}),
    ('X="${U-"\'}\'"}"', "X", {}),
    ('X="${U-"$\'a\'"}"', "X", {}),
    ('X="${U-"${V-"\\b"}"}"', "X", {}),
    ('X="${U-"${V-\\b}"}"', "X", {}),
    ('X=${U-"${V-"\\b"}"}', "X", {}),
    ('X="${U-"$V x\\c${V}\\d$((1))\\e"}"', "X", {"V": "7"}),
    ('X="${U-$V\\c}"', "X", {"V": "7"}),
    ('X="${U-\\b}"', "X", {}),
    ('X="${U-\\\'}"', "X", {}),
    ("X=\"${U-'}'}\"", "X", {}),
    ("X=\"${U-'a b'}\"", "X", {}),
    ("X=\"${U-'a'}b\"", "X", {}),
    ("X=${U-'}'}", "X", {}),
    # "$" before a quote inside a plain "…" string is a literal "$"
    ('X="$"a""', "X", {}),
    ('X="a$"', "X", {}),
    ("X=\"a$'b'\"", "X", {}),
    ("X=${U-\"$'b'\"}", "X", {}),
    ("X=${U-\"a$\"}", "X", {}),
    # single quotes next to each other and to plain text
    ("X='a'b'c'", "X", {}),
    ("X=''", "X", {}),
    ("X='a''b'", "X", {}),
    ("X=a'#b'c", "X", {}),
]


@needs_bash
@pytest.mark.parametrize(("line", "name", "env"), LINE_CASES)
def test_assignment_line_matches_bash(line: str, name: str, env: dict[str, str]) -> None:
    result = run_bash(f'{line}\nprintf %s "${name}"', env)
    assert result.returncode == 0, result.stderr
    values, _ = evaluate_block(block(line), "t.sh", env)
    assert values[name] == result.stdout


@needs_bash
def test_assignments_see_earlier_lines_like_bash() -> None:
    lines = [
        "A=2",
        "B=$((A * 3))",
        "A=${A}0",
        "C=\"$A-$B\"",
        "D=$((A + B))",
        "E=${ENV_ONLY:-none}",
    ]
    env = {"A": "99", "ENV_ONLY": "from-env"}
    bash = run_bash("\n".join(lines) + '\nprintf "%s|%s|%s|%s|%s" "$A" "$B" "$C" "$D" "$E"', env)
    values, _ = evaluate_block(block(*lines), "t.sh", env)
    ours = "|".join(values[k] for k in "ABCDE")
    assert ours == bash.stdout == "20|6|20-6|26|from-env"


# --------------------------------------------------------------------------
# Rejected constructs
# --------------------------------------------------------------------------

REJECTED = [
    ("X=$(hostname)", 'command substitution "$(…)"'),
    ('X="$(hostname)"', 'command substitution "$(…)"'),
    ("X=${U:-$(hostname)}", 'command substitution "$(…)"'),
    ("X=${SET:-$(hostname)}", 'command substitution "$(…)"'),  # even when unused
    ("X=$((1+2) * 3)", 'command substitution "$(…)"'),
    ("X=`hostname`", 'command substitution "`…`" (backticks)'),
    ('X="`hostname`"', 'command substitution "`…`" (backticks)'),
    ("X=1; Y=2", 'command separator ";"'),
    ("X=1;", 'command separator ";"'),
    ("X=1 | cat", 'pipe "|"'),
    ("X=1|cat", 'pipe "|"'),
    ("X=1 && Y=2", 'operator "&&"'),
    ("X=1 || true", 'operator "||"'),
    ("X=1 &", 'background operator "&"'),
    ("X=1 > /tmp/f", 'redirection ">"'),
    ("X=1>/tmp/f", 'redirection ">"'),
    ("X=1 2>/tmp/f", 'redirection ">"'),
    ("X=1 >> /tmp/f", 'redirection ">>"'),
    ("X=1 < /etc/passwd", 'redirection "<"'),
    ("X=(a b)", "array assignment"),
    ("export X=1", '"export"'),
    ("local X=1", '"local"'),
    ("declare X=1", '"declare"'),
    ("readonly X=1", '"readonly"'),
    ("f() { X=1; }", "function definition"),
    ("function f { X=1; }", 'shell keyword "function"'),
    ("[[ $X == 1 ]] && Y=2", 'test "[["'),
    ("[ x = y ]", 'test command "["'),
    ("if true; then X=1; fi", 'shell keyword "if"'),
    ("for i in 1; do X=1; done", 'shell keyword "for"'),
    ("(( X = 1 ))", 'arithmetic command "(( … ))"'),
    ("A=1 B=2", 'multiple words on one line (extra word "B=2")'),
    ("A=1 cmd", 'multiple words on one line (extra word "cmd")'),
    ("A= cmd", 'multiple words on one line (extra word "cmd")'),
    ("A=a b", 'multiple words on one line (extra word "b")'),
    ("echo hi", '"echo hi" is not an assignment'),
    ("echo X=1", 'command "echo"'),
    ("1X=2", 'invalid variable name "1X"'),
    ("X-Y=2", 'invalid variable name "X-Y"'),
    ("=2", 'invalid variable name ""'),
    ("X+=2", 'append assignment "X+="'),
    ("X[0]=2", 'array element assignment "X[…]="'),
    ("X = 2", '"X = 2" is a command, not an assignment: remove the blanks around "="'),
    ("X='abc", "unterminated single quote"),
    ('X="abc', "unterminated double quote"),
    ("X=${A", 'unterminated parameter expansion "${"'),
    ("X=${A:-b", "unterminated parameter expansion"),
    ("X=${!A}", 'indirect expansion "${!…}"'),
    ("X=${#A}", 'length expansion "${#…}"'),
    ("X=${A#x}", 'parameter expansion "${A#…}"'),
    ("X=${A%%x}", 'parameter expansion "${A%%…}"'),
    ("X=${A/x/y}", 'parameter expansion "${A/…}"'),
    ("X=${A:=x}", 'parameter expansion "${A:=…}"'),
    ("X=${A:+x}", 'parameter expansion "${A:+…}"'),
    ("X=${A:1}", 'parameter expansion "${A:…}"'),
    ("X=${A^^}", 'parameter expansion "${A^^…}"'),
    ("X=${}", 'empty expansion "${}"'),
    ("X=${1}", 'special parameter "${1}"'),
    ("X=$1", 'special parameter "$1"'),
    ("X=$$", 'special parameter "$$"'),
    ("X=$?", 'special parameter "$?"'),
    ("X=$'a\\tb'", "ANSI-C quoting"),
    ("X=~/x", 'tilde expansion "~"'),
    ("X=a:~/x", 'tilde expansion "~"'),
    ("X=abc\\", "line continuation"),
    ("X=$((1 + ))", 'arithmetic expansion "$((1 + ))": syntax error: operand expected'),
    ("X=$((1 + 2)", 'unterminated arithmetic expansion "$(("'),
    ("X=$(( Y = 3 ))", 'arithmetic expansion "$(( Y = 3 ))": assignment operator "="'),
    ("X=$(( Y += 3 ))", 'arithmetic expansion "$(( Y += 3 ))": assignment operator "+="'),
    ("X=$(( Y++ ))", 'arithmetic expansion "$(( Y++ ))": increment/decrement "++"'),
    ("X=$(( --Y ))", 'arithmetic expansion "$(( --Y ))": increment/decrement "--"'),
    ("X=$(( Y[1] ))", 'arithmetic expansion "$(( Y[1] ))": array subscript "Y[…]"'),
    ("X=$(( $(hostname) ))", 'command substitution "$(…)"'),
    ("X=$(( `hostname` ))", 'command substitution "`…`" (backticks)'),
    ("X=$[1+2]", 'obsolete arithmetic expansion "$[…]"'),
    ('X="$[1+2]"', 'obsolete arithmetic expansion "$[…]"'),
    ("X=1\r", "carriage return in the line (CRLF line endings)"),
    # special parameters, in every form and place
    *[(f"X={form}", f'special parameter "{form}"') for form in (
        "$#", "$?", "$$", "$!", "$0", "$1", "$9", "$@", "$*", "$-",
        "${#}", "${?}", "${$}", "${!}", "${0}", "${1}", "${@}", "${*}", "${-}",
    )],
    ("X=${U-$#}", 'special parameter "$#"'),
    ('X="${U:-$@}"', 'special parameter "$@"'),
    ('X="$*"', 'special parameter "$*"'),
    ("X=$(( $# + 1 ))", 'special parameter "$#"'),
    ("X=$(( ${?} ))", 'special parameter "${?}"'),
    # $'…' wherever bash would decode it
    ("X=${U-$'a'}", "ANSI-C quoting"),
    ("X=\"${U-$'a'}\"", "ANSI-C quoting"),
    ("X=$(( $'1' ))", "ANSI-C quoting"),
    ('X="$(( $\'1\' ))"', "ANSI-C quoting"),
    # $"…" wherever bash would translate it: its value depends on the locale's
    # message catalog and, inside a double-quoted ${…}, on bash's extquote
    # option; "${U-a$"$V"b}" is "a" in bash 5.2 (found by fuzz_config.py)
    ('X=$"ab"', 'locale translation "$\"…\""'),
    ('X=$""', 'locale translation "$\"…\""'),
    ('X=a$""b', 'locale translation "$\"…\""'),
    ('X=${U-$"x"}', 'locale translation "$\"…\""'),
    ('X=${U:-${V:-$"x"}}', 'locale translation "$\"…\""'),
    ('X="${U-$"x"}"', 'locale translation "$\"…\""'),
    ('X="${U:-a$"$V"b}"', 'locale translation "$\"…\""'),
    ('X="${U:-${V:-$"x"}}"', 'locale translation "$\"…\""'),
    ('X=$(( $"1" + 1 ))', 'locale translation "$\"…\""'),
    ('X="$(( $"1" + 1 ))"', 'locale translation "$\"…\""'),
    ('X="$(( ${U:-$"1"} ))"', 'locale translation "$\"…\""'),
    # odd quoting inside a double-quoted ${…} (bash's results are erratic there)
    ('X="${U-"a$"}"', '$"…" inside a "…" string inside a double-quoted ${…}'),
    ("X=\"${U-'\"'}\"", "a single quote inside a double-quoted ${…}"),
    ("X=\"${U-'$V'}\"", "a single quote inside a double-quoted ${…}"),
    ("X=\"${U-'a\\b'}\"", "a single quote inside a double-quoted ${…}"),
    ("X=\"${U-'a}\"", "a single quote inside a double-quoted ${…}"),
    # there bash drops backslashes before expanding ("$V\c" reads "Vc"; found by fuzz_config.py)
    ('X="${U-"$V\\c"}"', 'a backslash right after "$" or "$NAME" in a "…" string inside a double-quoted ${…}'),
    ('X="${U-"a$V\\_"}"', 'a backslash right after "$" or "$NAME"'),
    ('X="${U-"$\\V"}"', 'a backslash right after "$" or "$NAME"'),
    # control characters
    ("X=a\x01b", "control character U+0001"),
    ("X='a\x7fb'", "control character U+007F"),
    ("X=a\x00", "control character U+0000"),
    ("X=a\ud800", "a lone surrogate U+D800"),
]


@pytest.mark.parametrize(("line", "construct"), REJECTED)
def test_rejected_construct_names_file_line_and_construct(line: str, construct: str) -> None:
    text = block("NUM_NODES=1", "# a comment", "", line, before=2)
    with pytest.raises(ConfigError) as caught:
        evaluate_block(text, "tests/x.sh", {"SET": "s"})
    error = caught.value
    assert text.split("\n")[7] == line  # file line 8
    assert error.path == "tests/x.sh"
    assert error.line == 8
    assert str(error).startswith("tests/x.sh:8: ")
    assert error.message.startswith(construct), error.message


REFUSED_EXACTLY = [  # lines that are not plain assignments, and words bash would read differently
    ("declare X=1", '"declare" is not allowed in the CONFIG block (write a plain NAME=value assignment)'),
    ("  export X=1", '"export" is not allowed in the CONFIG block (write a plain NAME=value assignment)'),
    ("while true; do :; done", 'shell keyword "while" is not allowed in the CONFIG block'),
    ("[[ -n x ]]", 'test "[[" is not allowed in the CONFIG block'),
    ("[ -n x ]", 'test command "[" is not allowed in the CONFIG block'),
    ("test -n x", 'test command "test" is not allowed in the CONFIG block'),
    ("\t(( X++ ))", 'arithmetic command "(( … ))" is not allowed in the CONFIG block'),
    ("( cd /tmp )", 'subshell "( … )" is not allowed in the CONFIG block'),
    (") x", 'subshell "( … )" is not allowed in the CONFIG block'),
    (" \t; x", 'operator ";" at the start of a line is not allowed in the CONFIG block'),
    ("| x", 'operator "|" at the start of a line is not allowed in the CONFIG block'),
    ("& x", 'operator "&" at the start of a line is not allowed in the CONFIG block'),
    ("< x", 'operator "<" at the start of a line is not allowed in the CONFIG block'),
    ("> x", 'operator ">" at the start of a line is not allowed in the CONFIG block'),
    ("f() { :; }", 'function definition "f()" is not allowed in the CONFIG block'),
    ("A[1]=2", 'array element assignment "A[…]=" is not allowed in the CONFIG block'),
    ("A+=3", 'append assignment "A+=" is not allowed in the CONFIG block'),
    ("1X=2=3", 'invalid variable name "1X" in assignment "1X=2=3"'),
    ("X = 1", '"X = 1" is a command, not an assignment: remove the blanks around "="'),
    ("echo hi", '"echo hi" is not an assignment: only NAME=value lines and comments are allowed in the CONFIG block'),
    ("echo a=b", 'command "echo" is not allowed in the CONFIG block (only NAME=value assignments are)'),
    ("A=1 B=2", 'multiple words on one line (extra word "B=2") is not allowed in the CONFIG block: write one '
                "NAME=value assignment per line"),
    ("X=a\\", "line continuation (a trailing backslash) is not allowed in the CONFIG block"),
    ('X="abc', "unterminated double quote"),
    ("X='abc", "unterminated single quote"),
    ("X=~/x", 'tilde expansion "~" is not allowed in the CONFIG block'),
    ("X=`x`", 'command substitution "`…`" (backticks) is not allowed in the CONFIG block'),
    ("X=(a b)", 'array assignment "(…)" is not allowed in the CONFIG block'),
    ("A=1 X", 'multiple words on one line (extra word "X") is not allowed in the CONFIG block: write one NAME=value '
              "assignment per line"),
    ("X=$UID", 'cannot read "UID": bash sets this variable by itself (man bash, "Shell Variables"); its value in '
               "bash is not the launcher's environment's, so it cannot be evaluated here"),
    ("UID=1", 'cannot assign "UID": bash sets this variable by itself (man bash, "Shell Variables"); assigning it '
              "would change or break bash itself; use another name"),
]


@pytest.mark.parametrize(("line", "message"), REFUSED_EXACTLY)
def test_refused_lines_say_exactly_why(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        evaluate_block(block("NUM_NODES=1", line), "tests/x.sh", {})
    assert str(caught.value) == f"tests/x.sh:4: {message}"  # shebang, BEGIN, NUM_NODES, the line


def test_forbidden_construct_message_style() -> None:
    with pytest.raises(ConfigError) as caught:
        evaluate_block(block("X=$(whoami)", before=9), "tests/x.sh", {})
    assert str(caught.value) == (
        'tests/x.sh:12: command substitution "$(…)" is not allowed in the CONFIG block'
    )


def test_rejected_lines_are_never_executed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "touched"
    for line in (f"X=$(touch {marker})", f"X=`touch {marker}`", f"X=1; touch {marker}",
                 f"X=1 > {marker}", f"touch {marker}"):
        with pytest.raises(ConfigError):
            evaluate_block(block(line), "t.sh", {})
    assert not marker.exists()


def test_comments_and_blank_lines_are_ignored() -> None:
    values, line = evaluate_block(
        block("", "   ", "# echo $(rm -rf /)", "   # indented; comment", "X=1"), "t.sh", {}
    )
    assert values == {"X": "1"}
    assert line == 2


# --------------------------------------------------------------------------
# Bash's own variables (BASH_OWN_VARIABLES)
# --------------------------------------------------------------------------

OWN_READ_FORMS = [
    "X=$NAME", "X=${NAME}", "X=${NAME:-d}", "X=${NAME-d}", 'X="$NAME"', "X=/scratch/$NAME/ckpt",
    "X=${U:-$NAME}", 'X="${U:-"$NAME"}"', "X=$(( NAME + 1 ))", "X=$(( $NAME ))", "X=$(( ${NAME:-1} ))",
]
OWN_NAMES = [
    "UID", "EUID", "PPID", "HOSTNAME", "RANDOM", "SRANDOM", "SECONDS", "EPOCHSECONDS", "EPOCHREALTIME",
    "BASHPID", "LINENO", "_", "SHELLOPTS", "BASHOPTS", "BASH_SOURCE", "BASH_VERSION", "FUNCNAME", "GROUPS",
    "HOSTTYPE", "MACHTYPE", "OSTYPE", "PIPESTATUS", "OPTIND", "OPTARG", "IFS", "PS4", "PWD", "SHLVL", "PATH",
]


def own_variable_error(line: str, environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        evaluate_block(block("A=1", line, before=2), "r.sh", {"U": "", **environ})
    assert caught.value.line == 6
    return caught.value


@pytest.mark.parametrize("form", OWN_READ_FORMS)
def test_reading_a_bash_own_variable_is_an_error_in_every_form(form: str) -> None:
    error = own_variable_error(form.replace("NAME", "UID"), {})
    assert error.message.startswith('cannot read "UID": bash sets this variable by itself')
    assert '(man bash, "Shell Variables")' in error.message


@pytest.mark.parametrize("name", OWN_NAMES)
@pytest.mark.parametrize("form", ["X=$NAME", "X=$(( NAME ))"])
def test_reading_any_bash_own_variable_is_an_error(name: str, form: str) -> None:
    # Even when the launcher's environment has it: bash's value is its own.
    error = own_variable_error(form.replace("NAME", name), {name: "5"})
    assert f'cannot read "{name}"' in error.message


@pytest.mark.parametrize("name", OWN_NAMES)
def test_assigning_a_bash_own_variable_is_an_error(name: str) -> None:
    error = own_variable_error(f"{name}=5", {})
    assert error.message.startswith(f'cannot assign "{name}": bash sets this variable by itself')


def test_own_variable_in_an_unused_default_is_still_an_error() -> None:
    # Simpler to explain than "only when the default is used", and never wrong.
    error = own_variable_error("X=${A:-$UID}", {})
    assert 'cannot read "UID"' in error.message


def test_ordinary_variables_bash_only_reads_come_from_the_environment() -> None:
    values, _ = evaluate_block(block("X=$HOME/ckpt", "L=${LANG:-C}", "T=$TMPDIR"), "r.sh",
                               {"HOME": "/home/u", "LANG": "en_US.UTF-8"})
    assert values == {"X": "/home/u/ckpt", "L": "en_US.UTF-8", "T": ""}


@needs_bash
def test_own_variables_include_every_variable_bash_sets_in_a_clean_environment() -> None:
    listed = run_bash("compgen -v", {}).stdout.split()
    assert "UID" in listed  # the listing worked
    assert sorted(set(listed) - BASH_OWN_VARIABLES) == []


def _man_bash_shell_variables() -> tuple[list[str], list[str]]:
    """The names man bash lists in "Shell Variables": (set by the shell, used by the shell)."""
    man = shutil.which("man")
    if man is None:
        pytest.skip("man is not installed")
    done = subprocess.run([man, "bash"], capture_output=True, text=True, check=False,
                          env={"MANWIDTH": "200", "PATH": "/usr/bin:/bin", "LANG": "C"})
    text = done.stdout
    marks = [text.find(mark) for mark in ("The following variables are set by the shell",
                                          "The following variables are used by the shell", "\n   Arrays")]
    if done.returncode != 0 or min(marks) < 0:
        pytest.skip("the bash manual page is not available")
    name = re.compile(r"^ {7}([A-Z_][A-Z0-9_]*)(?: |$)", re.M)
    return name.findall(text, marks[0], marks[1]), name.findall(text, marks[1], marks[2])


def test_own_variables_include_every_variable_man_bash_says_the_shell_sets() -> None:
    set_by_shell, _ = _man_bash_shell_variables()
    assert "BASHPID" in set_by_shell and "RANDOM" in set_by_shell  # the parsing worked
    assert sorted(set(set_by_shell) - BASH_OWN_VARIABLES) == []


@needs_bash
def test_own_variables_include_every_variable_bash_overrides_from_the_environment() -> None:
    # Every variable of the manual's section, set in the environment: those
    # bash does not keep as they are must be in the set.
    set_by_shell, used_by_shell = _man_bash_shell_variables()
    candidates = sorted({*set_by_shell, *used_by_shell, "TERM", "MODEL"})
    probe = 'for n in $NAMES; do [ "${!n-unset}" = envvalue ] || printf "%s\\n" "$n"; done'
    env = {name: "envvalue" for name in candidates} | {"NAMES": " ".join(candidates)}
    changed = set(run_bash(probe, env).stdout.split())
    assert {"PPID", "IFS"} <= changed and "HOME" not in changed  # the probe worked
    assert sorted(changed - BASH_OWN_VARIABLES) == []


@needs_bash
def test_read_only_variables_are_exactly_those_bash_refuses_to_export() -> None:
    # EXTRA_ENV refuses these names: continue.sh exports the job's variables under set -e
    probe = 'for n in $NAMES; do ( export "$n=x" ) 2>/dev/null || printf "%s\\n" "$n"; done'
    refused = set(run_bash(probe, {"NAMES": " ".join(sorted(BASH_OWN_VARIABLES))}).stdout.split())
    assert sorted(refused) == sorted(BASH_READONLY_VARIABLES)


# --------------------------------------------------------------------------
# Odd input: nesting, encodings, control characters
# --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "word",
    [
        "${U-" * 3000 + "x" + "}" * 3000,
        '"${U-' * 1500 + "x" + '}"' * 1500,
        "${U:-$((" * 1000 + "1" + "))}" * 1000,
        "$((" * 3000 + "1" + "))" * 3000,
        '"' + "$((" * 100 + "1" + "))" * 100 + '"',
    ],
)
def test_absurd_word_nesting_is_a_config_error_not_a_crash(word: str) -> None:
    with pytest.raises(ConfigError, match="nested too deeply") as caught:
        evaluate_block(block("X=" + word, before=1), "r.sh", {})
    assert caught.value.line == 4


@needs_bash
def test_reasonable_word_nesting_matches_bash() -> None:
    word = '"${U-' * 12 + "${A:-x}" + "$((" * 5 + "1" + "))" * 5 + '}"' * 12
    values, _ = evaluate_block(block("X=" + word), "r.sh", {"A": "a"})
    assert values["X"] == run_bash(f'X={word}\nprintf %s "$X"', {"A": "a"}).stdout == "a1"


@needs_bash
def test_nesting_at_both_limits_stays_within_pythons_stack() -> None:
    # 39 nested ${…} around a $(( )) of 39 nested parentheses: the deepest
    # accepted input, evaluated with Python's default recursion limit.
    word = "${U-" * 38 + "$((" + "(1+" * 39 + "1" + ")" * 39 + "))" + "}" * 38
    values, _ = evaluate_block(block("X=" + word), "r.sh", {})
    assert values["X"] == run_bash(f'X={word}\nprintf %s "$X"', {}).stdout == "40"


def test_byte_order_mark_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="byte order mark") as caught:
        parse_recipe("\ufeff" + block("NUM_NODES=1", "NUM_MINUTES=1"), "r.sh", {})
    assert caught.value.line == 1


def test_byte_order_mark_is_reported_by_read_recipe(tmp_path: Path) -> None:
    script = tmp_path / "r.sh"
    script.write_bytes(b"\xef\xbb\xbf" + block("NUM_NODES=1", "NUM_MINUTES=1").encode())
    with pytest.raises(ConfigError, match=r"^.*r\.sh:1: the file starts with a UTF-8 byte order mark"):
        read_recipe(str(script), {})


def test_non_utf8_bytes_outside_the_block_are_accepted(tmp_path: Path) -> None:
    script = tmp_path / "r.sh"
    text = block("NUM_NODES=2", "NUM_MINUTES=5", "NAME='héllo'").replace("#!/bin/bash\n", "#!/bin/bash\n# caf\0\n")
    script.write_bytes(text.encode().replace(b"\0", b"\xe9") + b"echo \xff\xfe\n")
    config = read_recipe(str(script), {})
    assert (config.num_nodes, config.values["NAME"]) == (2, "héllo")


@pytest.mark.parametrize("line", ["NAME='caf\0'", "# a comment: caf\0", "X=1  # caf\0"])
def test_non_utf8_byte_inside_the_block_names_the_line(tmp_path: Path, line: str) -> None:
    script = tmp_path / "r.sh"
    text = block("NUM_NODES=1", "NUM_MINUTES=1", line, before=2)
    script.write_bytes(text.encode().replace(b"\0", b"\xe9"))
    with pytest.raises(ConfigError) as caught:
        read_recipe(str(script), {})
    assert caught.value.line == 7
    assert caught.value.message.startswith("a byte that is not UTF-8 (0xe9) in the CONFIG block")


@pytest.mark.parametrize("line", ["X=${MODEL:-m}", "X=$MODEL", 'X="${MODEL}"', "X=$(( MODEL ))"])
def test_environment_value_not_utf8_is_an_error_naming_it(line: str) -> None:
    environ = {"MODEL": "caf\udce9"}  # how os.environ gives the byte 0xe9
    with pytest.raises(ConfigError) as caught:
        evaluate_block(block("A=1", line), "r.sh", environ)
    assert caught.value.line == 4
    assert 'the environment variable "MODEL" is not valid UTF-8' in caught.value.message
    # Unread, it does not matter.
    assert evaluate_block(block("A=1"), "r.sh", environ)[0] == {"A": "1"}


# --------------------------------------------------------------------------
# One block per script
# --------------------------------------------------------------------------

def test_second_block_after_the_first_is_an_error_naming_both() -> None:
    text = block("NUM_NODES=1", "NUM_MINUTES=1") + f"{BEGIN}\nNUM_NODES=2\n{END}\n"
    with pytest.raises(ConfigError) as caught:
        parse_recipe(text, "r.sh", {})
    assert caught.value.line == 7
    assert caught.value.message == (
        "a second CONFIG block (BEGIN at line 7) after the one of lines 2-5: one block per script"
    )


def test_begin_inside_a_block_is_an_error_naming_both() -> None:
    text = block("NUM_NODES=1", BEGIN, "NUM_MINUTES=1", before=1)
    with pytest.raises(ConfigError) as caught:
        parse_recipe(text, "r.sh", {})
    assert caught.value.line == 5
    assert caught.value.message == (
        "a second BEGIN CONFIG marker, inside the block that starts at line 3 (its END is at line 7): "
        "one block per script"
    )


def test_marker_lookalikes_are_not_a_second_block() -> None:
    text = block("NUM_NODES=1", "NUM_MINUTES=1") + "  # ===== BEGIN CONFIG =====\n#===== BEGIN CONFIG\n"
    assert parse_recipe(text, "r.sh", {}).num_nodes == 1


# --------------------------------------------------------------------------
# Block location
# --------------------------------------------------------------------------

def test_missing_block_error_has_template() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_recipe("#!/bin/bash\nNUM_NODES=1\necho hi\n", "r.sh", {})
    error = caught.value
    assert error.line is None
    assert str(error).startswith("r.sh: no CONFIG block")
    assert "near the top of the script" in error.message
    template = error.message[error.message.index(BEGIN):]
    assert template.rstrip().endswith(END)
    # The template itself is a valid block.
    config = parse_recipe(template, "template.sh", {})
    assert (config.num_nodes, config.num_runs, config.segment_size) == (1, 2, 1)
    assert config.job_reaper_comment == '{"k":"v"}'


def test_begin_without_end_names_begin_line() -> None:
    text = "#!/bin/bash\n\n" + BEGIN + "\nNUM_NODES=1\n"
    with pytest.raises(ConfigError) as caught:
        evaluate_block(text, "r.sh", {})
    assert caught.value.line == 3
    assert "END CONFIG" in caught.value.message


def test_marker_variants_and_line_numbers() -> None:
    text = "#!/bin/bash\n# = BEGIN CONFIG =========\nA=1\n#=== END CONFIG ===\nB=2\n# == END CONFIG =\n"
    values, line = evaluate_block(text, "r.sh", {})
    # "#=== END" is not an END marker (no blank after '#'), so it is a comment.
    assert line == 2
    assert values == {"A": "1", "B": "2"}


def test_indented_marker_is_not_a_marker() -> None:
    with pytest.raises(ConfigError, match="no CONFIG block"):
        evaluate_block("  " + BEGIN + "\nA=1\n" + END + "\n", "r.sh", {})


def test_error_line_numbers_are_file_line_numbers() -> None:
    text = block("A=1", "B=2", "C=oops here", before=10)
    with pytest.raises(ConfigError) as caught:
        evaluate_block(text, "r.sh", {})
    assert caught.value.line == 15
    assert text.split("\n")[14] == "C=oops here"


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------

def recipe(*lines: str, environ: dict[str, str] | None = None) -> RecipeConfig:
    return parse_recipe(block(*lines), "r.sh", environ or {})


def test_minimal_recipe_defaults() -> None:
    config = recipe("NUM_NODES=2", "NUM_MINUTES=30")
    assert config.path == "r.sh"
    assert config.num_nodes == 2
    assert config.num_minutes == 30
    assert config.gpus_per_node == DEFAULT_GPUS_PER_NODE == 8
    assert config.num_runs == 1
    assert config.num_runs_defaulted is True
    assert config.segment_size is None
    assert config.job_reaper_comment is None
    assert config.values == {"NUM_NODES": "2", "NUM_MINUTES": "30"}
    assert config.config_line == 2


def test_full_recipe() -> None:
    config = recipe(
        'NUM_NODES="${NUM_NODES:-4}"',
        "GPUS_PER_NODE=4",
        "STEPS_PER_RUN=60",
        "MAX_STEPS=120",
        "NUM_RUNS=$(( (MAX_STEPS + STEPS_PER_RUN - 1) / STEPS_PER_RUN ))  # Round up",
        "NUM_MINUTES=240",
        "SEGMENT_SIZE=2",
        "JOB_REAPER_COMMENT='{\"k\":\"v\"}'",
    )
    assert (config.num_nodes, config.gpus_per_node, config.num_runs) == (4, 4, 2)
    assert config.num_runs_defaulted is False
    assert config.segment_size == 2
    assert config.job_reaper_comment == '{"k":"v"}'
    assert list(config.values) == [
        "NUM_NODES", "GPUS_PER_NODE", "STEPS_PER_RUN", "MAX_STEPS", "NUM_RUNS",
        "NUM_MINUTES", "SEGMENT_SIZE", "JOB_REAPER_COMMENT",
    ]


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (["NUM_MINUTES=10"], 2, "NUM_NODES is required"),
        (["NUM_NODES=1"], 2, "NUM_MINUTES is required"),
        (["NUM_NODES=0", "NUM_MINUTES=10"], 3, "NUM_NODES must be a positive integer, got '0'"),
        (["NUM_NODES=-1", "NUM_MINUTES=10"], 3, "got '-1'"),
        (["NUM_NODES=abc", "NUM_MINUTES=10"], 3, "got 'abc'"),
        (["NUM_NODES=1.5", "NUM_MINUTES=10"], 3, "got '1.5'"),
        (["NUM_NODES=", "NUM_MINUTES=10"], 3, "got ''"),
        (['NUM_NODES=" 4"', "NUM_MINUTES=10"], 3, "got ' 4'"),
        (["NUM_NODES=$((2-2))", "NUM_MINUTES=10"], 3, "NUM_NODES must be a positive integer"),
        (["NUM_NODES=1", "", "NUM_MINUTES=0"], 5, "NUM_MINUTES must be a positive integer"),
        (["NUM_NODES=1", "NUM_MINUTES=1", "GPUS_PER_NODE=0"], 5, "GPUS_PER_NODE must be"),
        (["NUM_NODES=1", "NUM_MINUTES=1", "GPUS_PER_NODE=eight"], 5, "GPUS_PER_NODE must be"),
        (["NUM_NODES=1", "NUM_MINUTES=1", "NUM_RUNS=0"], 5, "NUM_RUNS must be"),
        (["NUM_NODES=1", "NUM_MINUTES=1", "SEGMENT_SIZE=x"], 5, "SEGMENT_SIZE must be"),
        (["NUM_NODES=4", "NUM_MINUTES=1", "SEGMENT_SIZE=3"], 5,
         "SEGMENT_SIZE=3 does not divide NUM_NODES=4"),
        (["NUM_NODES=2", "NUM_MINUTES=1", "SEGMENT_SIZE=4"], 5, "does not divide"),
        # the line of the last assignment is named
        (["NUM_NODES=2", "NUM_MINUTES=1", "NUM_NODES=0"], 5, "NUM_NODES must be"),
    ],
)
def test_validation_errors(lines: list[str], line: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        recipe(*lines)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"r.sh:{line}: ")
    assert message in caught.value.message


def test_segment_size_dividing_is_accepted() -> None:
    assert recipe("NUM_NODES=8", "NUM_MINUTES=1", "SEGMENT_SIZE=4").segment_size == 4
    assert recipe("NUM_NODES=8", "NUM_MINUTES=1", "SEGMENT_SIZE=8").segment_size == 8


def test_empty_reaper_comment_is_none() -> None:
    assert recipe("NUM_NODES=1", "NUM_MINUTES=1", "JOB_REAPER_COMMENT=").job_reaper_comment is None


def test_required_values_may_come_from_environment_defaults() -> None:
    config = recipe('NUM_NODES="${NUM_NODES:-4}"', "NUM_MINUTES=${T:-9}", environ={"NUM_NODES": "16"})
    assert (config.num_nodes, config.num_minutes) == (16, 9)


def test_environment_alone_does_not_satisfy_required() -> None:
    with pytest.raises(ConfigError, match="NUM_NODES is required"):
        recipe("NUM_MINUTES=1", environ={"NUM_NODES": "2"})


@pytest.mark.parametrize(
    ("extra", "runs", "defaulted"),
    [
        (["MAX_STEPS=120", "STEPS_PER_RUN=60"], 2, True),
        (["MAX_STEPS=121", "STEPS_PER_RUN=60"], 3, True),
        (["MAX_STEPS=59", "STEPS_PER_RUN=60"], 1, True),
        (["MAX_STEPS=1000", "STEPS_PER_RUN=1"], 1000, True),
        (["MAX_STEPS=120"], 1, True),
        (["STEPS_PER_RUN=60"], 1, True),
        ([], 1, True),
        (["MAX_STEPS=120", "STEPS_PER_RUN=60", "NUM_RUNS=5"], 5, False),
        (["NUM_RUNS=1"], 1, False),
    ],
)
def test_num_runs_default(extra: list[str], runs: int, defaulted: bool) -> None:
    config = recipe("NUM_NODES=1", "NUM_MINUTES=10", *extra)
    assert config.num_runs == runs
    assert config.num_runs_defaulted is defaulted


@pytest.mark.parametrize(
    ("runs", "nodes", "gpus", "minutes", "hours"),
    [
        (1, 1, 8, 25, 3),  # 200 / 60 = 3: product first, then truncating division
        (1, 1, 8, 60, 8),
        (3, 2, 8, 240, 192),
        (1, 1, 1, 59, 0),
        (2, 1, 1, 45, 1),  # 90 / 60; per-run truncation would give 0
        (7, 3, 4, 10, 14),
    ],
)
def test_gpu_hours(runs: int, nodes: int, gpus: int, minutes: int, hours: int) -> None:
    config = recipe(
        f"NUM_NODES={nodes}", f"GPUS_PER_NODE={gpus}", f"NUM_MINUTES={minutes}", f"NUM_RUNS={runs}"
    )
    assert config.gpu_hours == hours


# --------------------------------------------------------------------------
# Counts: bash's integer constants, bounds
# --------------------------------------------------------------------------

@needs_bash
@pytest.mark.parametrize(
    ("written", "value", "base"),
    [
        ("010", 8, "octal"),
        ("01", 1, "octal"),  # the smallest count, written in another base
        ("0x1", 1, "hexadecimal"),
        ("0755", 493, "octal"),
        ("0x10", 16, "hexadecimal"),
        ("0X1f", 31, "hexadecimal"),
        ("8#17", 15, "base 8"),
        ("2#1010", 10, "base 2"),
        ("36#Z", 35, "base 36"),
        ("64#_", 63, "base 64"),
        ("10#010", 10, "base 10"),
        ("12", 12, None),
    ],
)
def test_counts_are_read_as_bash_arithmetic_reads_them(written: str, value: int, base: str | None) -> None:
    line = f"NUM_NODES={written}"
    lines = [line, "NUM_MINUTES=30", "GPUS_PER_NODE=4", "NUM_RUNS=3"]
    bash = run_bash("\n".join(lines) + "\necho $(( NUM_RUNS * NUM_NODES * GPUS_PER_NODE * NUM_MINUTES / 60 ))", {})
    config = recipe(*lines)
    assert config.num_nodes == value
    assert str(config.gpu_hours) == bash.stdout.strip() == str(value * 6)
    if base is None:
        assert config.non_decimal == ()
    else:
        assert config.non_decimal == (NonDecimalCount("NUM_NODES", written, 3, value),)
        assert config.non_decimal[0].describe() == f"{line} is read as {value} ({base}), as bash arithmetic does"


def test_every_count_is_read_in_its_base_and_recorded_in_order() -> None:
    config = recipe("NUM_NODES=0x4", "NUM_MINUTES=010", "GPUS_PER_NODE=8#10", "SEGMENT_SIZE=02",
                    "MAX_STEPS=0x64", "STEPS_PER_RUN=030")
    assert (config.num_nodes, config.num_minutes, config.gpus_per_node, config.segment_size) == (4, 8, 8, 2)
    assert config.num_runs == 5  # ⌈100 / 24⌉
    assert config.non_decimal == (
        NonDecimalCount("NUM_NODES", "0x4", 3, 4), NonDecimalCount("NUM_MINUTES", "010", 4, 8),
        NonDecimalCount("GPUS_PER_NODE", "8#10", 5, 8), NonDecimalCount("MAX_STEPS", "0x64", 7, 100),
        NonDecimalCount("STEPS_PER_RUN", "030", 8, 24), NonDecimalCount("SEGMENT_SIZE", "02", 6, 2),
    )


def test_steps_are_not_read_when_num_runs_is_set() -> None:
    config = recipe("NUM_NODES=1", "NUM_MINUTES=1", "NUM_RUNS=2", "MAX_STEPS=0x10", "STEPS_PER_RUN=oops")
    assert (config.num_runs, config.non_decimal) == (2, ())


@needs_bash
@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("NUM_NODES=090", "NUM_NODES must be a positive integer, got '090' (bash arithmetic: value too great for base"),
        ("NUM_NODES=08", "value too great for base"),
        ("NUM_NODES=2#2", "value too great for base"),
        ("NUM_NODES=1#1", "invalid arithmetic base"),
        ("NUM_NODES=65#1", "invalid arithmetic base"),
        ("NUM_NODES=0x1g", "value too great for base"),
        ("NUM_NODES=9223372036854775808", "NUM_NODES is 9223372036854775808, beyond bash's 64-bit integers"),
        ("NUM_NODES=0x10000000000000001", "beyond bash's 64-bit integers (bash arithmetic would wrap it)"),
    ],
)
def test_count_constants_bash_rejects_or_wraps_are_errors(line: str, message: str) -> None:
    # bash reports the first ones, and silently wraps the last ones
    wraps = "beyond" in message
    assert (run_bash(f"{line}\necho $(( NUM_NODES ))", {}).returncode == 0) is wraps
    with pytest.raises(ConfigError) as caught:
        recipe(line, "NUM_MINUTES=1")
    assert caught.value.line == 3
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (["NUM_NODES=100001"], 3, "NUM_NODES is 100,001, more than 100,000, which no real cluster allows"),
        (["NUM_NODES=0x186a1"], 3, "NUM_NODES is 100,001 (written 0x186a1, hexadecimal), more than 100,000"),
        (["NUM_NODES=1", "GPUS_PER_NODE=1025"], 4, "GPUS_PER_NODE is 1,025, more than 1,024"),
        (["NUM_NODES=1", "NUM_MINUTES=525601"], 4, "NUM_MINUTES is 525,601, more than 525,600"),
        (["NUM_NODES=1", "NUM_RUNS=10001"], 4, "NUM_RUNS is 10,001, more than 10,000"),
        (["NUM_NODES=1", "NUM_RUNS=800000000000000000"], 4, "more than 10,000"),
        (["NUM_NODES=1", "MAX_STEPS=10001", "STEPS_PER_RUN=1"], 4,
         "NUM_RUNS is not set and MAX_STEPS / STEPS_PER_RUN gives 10,001 runs, more than 10,000"),
        (["NUM_NODES=1", "MAX_STEPS=9223372036854775807", "STEPS_PER_RUN=2"], 4,
         "MAX_STEPS + STEPS_PER_RUN - 1 is beyond bash's 64-bit integers"),
        (["NUM_NODES=1", "MAX_STEPS=abc", "STEPS_PER_RUN=2"], 4, "MAX_STEPS must be a positive integer, got 'abc'"),
        (["NUM_NODES=1", "MAX_STEPS=0", "STEPS_PER_RUN=60"], 4, "MAX_STEPS must be a positive integer, got '0'"),
        (["NUM_NODES=1", "MAX_STEPS=10", "STEPS_PER_RUN=-1"], 5, "STEPS_PER_RUN must be a positive integer"),
        (["NUM_NODES=1", "SEGMENT_SIZE=0x0"], 4, "SEGMENT_SIZE must be a positive integer, got '0x0'"),
        (["NUM_NODES=1+1"], 3, "NUM_NODES must be a positive integer, got '1+1'"),
        (["NUM_NODES=+1"], 3, "got '+1'"),
        (["NUM_NODES=00"], 3, "got '00'"),
    ],
)
def test_count_errors(lines: list[str], line: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        recipe(*lines, "NUM_MINUTES=1" if "NUM_MINUTES" not in "".join(lines) else "A=1")
    assert caught.value.line == line
    assert message in caught.value.message


@needs_bash
def test_counts_at_their_bounds_are_accepted_and_match_bash() -> None:
    lines = ["NUM_NODES=100000", "GPUS_PER_NODE=1024", "NUM_MINUTES=525600", "NUM_RUNS=10000"]
    bash = run_bash("\n".join(lines) + "\necho $(( NUM_RUNS * NUM_NODES * GPUS_PER_NODE * NUM_MINUTES / 60 ))", {})
    assert str(recipe(*lines).gpu_hours) == bash.stdout.strip()


def test_no_leak_between_recipes() -> None:
    environ = {"HOME": "/home/u"}
    snapshot = dict(environ)
    first = parse_recipe(
        block('NUM_NODES="${NUM_NODES:-4}"', "GPUS_PER_NODE=4", "NUM_MINUTES=10"), "a.sh", environ
    )
    second = parse_recipe(block("NUM_NODES=2", "NUM_MINUTES=10"), "b.sh", environ)
    third = parse_recipe(
        block('NUM_NODES="${NUM_NODES:-3}"', "G=${GPUS_PER_NODE:-unset}", "NUM_MINUTES=1"),
        "c.sh",
        environ,
    )
    assert (first.num_nodes, first.gpus_per_node) == (4, 4)
    assert (second.num_nodes, second.gpus_per_node) == (2, 8)
    assert (third.num_nodes, third.gpus_per_node) == (3, 8)
    assert third.values["G"] == "unset"
    assert "GPUS_PER_NODE" not in second.values
    assert environ == snapshot


def test_read_only_environ_mapping_is_accepted() -> None:
    environ = MappingProxyType({"NUM_NODES": "6"})
    config = parse_recipe(block('NUM_NODES="${NUM_NODES:-4}"', "NUM_MINUTES=1"), "r.sh", environ)
    assert config.num_nodes == 6
    assert dict(environ) == {"NUM_NODES": "6"}


def test_returned_values_are_copies_mutating_them_changes_nothing_later() -> None:
    text = block("NUM_NODES=1", "NUM_MINUTES=1", "N=$(( NUM_NODES + 1 ))")
    values, _ = evaluate_block(text, "r.sh", {})
    values["NUM_NODES"] = "999"
    values["EXTRA"] = "x"
    assert evaluate_block(text, "r.sh", {})[0] == {"NUM_NODES": "1", "NUM_MINUTES": "1", "N": "2"}
    config = parse_recipe(text, "r.sh", {})
    config_values = config.values
    assert isinstance(config_values, dict)
    config_values["NUM_NODES"] = "999"
    again = parse_recipe(text, "r.sh", {})
    assert again.values == {"NUM_NODES": "1", "NUM_MINUTES": "1", "N": "2"}
    assert again.num_nodes == 1


# --------------------------------------------------------------------------
# read_recipe
# --------------------------------------------------------------------------

def test_read_recipe(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "r.sh"
    script.write_text(block("NUM_NODES=2", "NUM_MINUTES=5", "NAME='héllo'"), encoding="utf-8")
    config = read_recipe(str(script), {})
    assert config.path == str(script)
    assert config.num_nodes == 2
    assert config.values["NAME"] == "héllo"


def test_read_recipe_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "nope.sh")
    with pytest.raises(ConfigError) as caught:
        read_recipe(path, {})
    assert caught.value.line is None
    assert caught.value.path == path
    assert caught.value.message.startswith("cannot read: ")
    assert isinstance(caught.value.__cause__, OSError)


def test_read_recipe_reports_crlf(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "r.sh"
    script.write_bytes(block("NUM_NODES=1", "NUM_MINUTES=1").replace("\n", "\r\n").encode())
    with pytest.raises(ConfigError, match="CRLF") as caught:
        read_recipe(str(script), {})
    assert caught.value.line == 3



@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"A": "B+1", "B": "1"}, "4"),
        ({"A": "B+1", "B": "5"}, "12"),  # the same expression, a value read through A changed
        ({"A": "7"}, "14"),
        ({}, "0"),
        ({"A": "B+1", "B": "1"}, "4"),  # and back: the remembered result is right again
    ],
)
def test_arithmetic_results_are_reused_only_for_the_same_values(environ: dict[str, str], expected: str) -> None:
    # evaluations of one expression are remembered across recipes of a launch;
    # a result must never outlive the values it was computed from
    block = "# ===== BEGIN CONFIG =====\nX=$(( A * 2 ))\nY=$(( 0 && UID ))\n# ===== END CONFIG =====\n"
    values, _ = evaluate_block(block, "x.sh", environ)
    assert values == {"X": expected, "Y": "0"}  # UID sits in a branch bash never evaluates: not read


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#!/bin/bash\n# ===== END CONFIG =====\n",
         "t.sh: no CONFIG block found (line 2 has an END marker but there is no BEGIN). Put a block like this"),
        ("#!/bin/bash\necho no block\n", "t.sh: no CONFIG block found. Put a block like this"),
        ("# ===== BEGIN CONFIG =====\nNUM_NODES=1\n",
         't.sh:1: BEGIN CONFIG marker without a matching "# ===== END CONFIG =====" line'),
        ("# ===== BEGIN CONFIG =====\nNUM_NODES=1\nNUM_MINUTES=1\n# ===== END CONFIG =====\n"
         "# ===== BEGIN CONFIG =====\n# ===== END CONFIG =====\n",
         "t.sh:5: a second CONFIG block (BEGIN at line 5) after the one of lines 1-4: one block per script"),
        ("\n\n# ===== BEGIN CONFIG =====\nNUM_NODES=1\nX=a\rb\n# ===== END CONFIG =====\n",
         "t.sh:5: carriage return in the line (CRLF line endings): save the script with LF"),
        ("# ===== BEGIN CONFIG =====\n\nNUM_NODES=1\nX=a\rb\n# ===== END CONFIG =====\n",
         "t.sh:4: carriage return in the line (CRLF line endings): save the script with LF"),
        ("\n# ===== BEGIN CONFIG =====\nX=$((1/0))\n# ===== END CONFIG =====\n",
         't.sh:3: arithmetic expansion "$((1/0))": division by 0'),
    ],
)
def test_block_level_errors_name_the_file_and_the_right_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_recipe(text, "t.sh", {})
    assert str(caught.value).startswith(message), str(caught.value)


def test_an_end_marker_before_the_block_is_a_comment_like_any_other() -> None:
    # The block runs from BEGIN to the next END after it; an END line above BEGIN is a comment to bash.
    text = f"#!/bin/bash\n{END}\n{BEGIN}\nNUM_NODES=2\nNUM_MINUTES=30\n{END}\n"
    config = parse_recipe(text, "t.sh", {})
    assert (config.num_nodes, config.num_minutes, config.config_line) == (2, 30, 3)


@pytest.mark.parametrize("byte", [0x80, 0xE9, 0xFF])
def test_every_byte_that_is_not_utf8_is_named(tmp_path: Path, byte: int) -> None:
    script = tmp_path / "r.sh"
    script.write_bytes(b"# ===== BEGIN CONFIG =====\nNUM_NODES=1\nNAME=caf" + bytes([byte]) +
                       b"\n# ===== END CONFIG =====\n")
    with pytest.raises(ConfigError) as caught:
        read_recipe(str(script), {})
    assert str(caught.value).startswith(f"{script}:3: a byte that is not UTF-8 (0x{byte:02x}) in the CONFIG block")


def test_read_recipe_reads_the_environment_and_says_why_a_file_cannot_be_read(tmp_path: Path) -> None:
    script = tmp_path / "r.sh"
    script.write_text(block("NUM_NODES=${NODES:-1}", "NUM_MINUTES=10"))
    assert read_recipe(str(script), {"NODES": "3"}).num_nodes == 3
    with pytest.raises(ConfigError) as caught:
        read_recipe(str(tmp_path), {})
    assert str(caught.value) == f"{tmp_path}: cannot read: Is a directory"


@pytest.mark.parametrize(
    ("max_steps", "outcome"),
    [
        ("10000", 10000),  # exactly the limit of runs: allowed
        ("10001", "NUM_RUNS is not set and MAX_STEPS / STEPS_PER_RUN gives 10,001 runs, more than 10,000"),
        ("9223372036854775807", "NUM_RUNS is not set and MAX_STEPS / STEPS_PER_RUN gives 9,223,372,036,854,775,807 "
                                "runs, more than 10,000"),  # MAX_STEPS + STEPS_PER_RUN - 1 is still 64-bit
    ],
)
def test_derived_runs_at_their_limits(max_steps: str, outcome: object) -> None:
    text = block("NUM_NODES=1", "NUM_MINUTES=1", "STEPS_PER_RUN=1", f"MAX_STEPS={max_steps}")
    if isinstance(outcome, int):
        assert parse_recipe(text, "t.sh", {}).num_runs == outcome
        return
    with pytest.raises(ConfigError) as caught:
        parse_recipe(text, "t.sh", {})
    assert str(caught.value) == f"t.sh:6: {outcome}, which no real cluster allows"
