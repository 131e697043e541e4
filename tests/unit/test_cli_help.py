"""What ``nrl-launch report --help`` tells a user: its arguments, each option
with its value's name and its help (the help of the options it shares with
other commands is checked where they are made)."""

from __future__ import annotations

import pytest

from testkit import run_cli

REPORT_OPTIONS = [
    ("-o, --output FILE", "File to write (default: <snapshot root>/nrl-report.html, or .json)."),
    ("--format [html|json]", "html: one self-contained page; json: the same data for other tools. [default: html]"),
    ("--compare OTHER", "Another report's JSON, or another snapshot root (e.g. last night's CODE_SNAPSHOT_DIRNAME): "
                        "verdict changes and metric deltas."),
    ("--since AGE", "Add each recipe's nights from the history database launched within AGE (7d, 36h, 2w)."),
    ("--db FILE", "The history database (default: NRL_REPORT_DB, else $XDG_STATE_HOME/nrl-launch/history.sqlite3)."),
    ("--project-root DIRECTORY", "Project (git) root holding the snapshots;"),
    ("--code-snapshot-dirname PATH", "Snapshot root folder under the project root"),
    ("--slurm-timeout SECONDS", "Seconds any Slurm command may take"),
    ("--slurm-retry SECONDS", "Seconds during which a Slurm command that failed transiently"),
]


@pytest.fixture
def report_help() -> list[str]:
    """The lines of ``nrl-launch report --help``, unwrapped (a wide terminal), spaces collapsed."""
    result = run_cli("report", "--help", terminal_width=1000, max_content_width=1000)
    assert result.exit_code == 0, result.output
    return [" ".join(line.split()) for line in result.stdout.splitlines()]


def test_the_report_usage_names_its_targets(report_help: list[str]) -> None:
    assert report_help[0] == "Usage: nrl-launch report [OPTIONS] [EXPERIMENT...|SUITE.txt]"


@pytest.mark.parametrize(("option", "text"), REPORT_OPTIONS)
def test_each_report_option_is_documented(report_help: list[str], option: str, text: str) -> None:
    assert any(line.startswith(f"{option} {text}") for line in report_help), report_help
