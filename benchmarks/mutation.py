"""Mutation testing: would the unit tests notice if the code were wrong? (Not part of CI.)

Two measures, both run on scratch copies (the worktree is never changed):

``planted``: the bugs the project already met (issue 14) and the breakages
each guarded by a single test once, written by hand as edits of the code.
Each is planted alone in a copy of the worktree, the unit tests run there, and
the tests that fail are listed. Exit status 1 when a planted bug goes unnoticed.

``run`` / ``report``: mutmut over the modules where a wrong result costs most
(:data:`MODULES`), each with the fast unit tests that aim at it. The score of a
module is killed / (mutants - equivalent ones); a mutant that no selected test
reaches ("no tests") counts as not killed. :data:`EQUIVALENT` lists, with the
reason, the surviving mutants judged equivalent (no behaviour a user could
observe changes); ``report`` flags entries that no longer survive.

Why mutmut (3.x) and not cosmic-ray: mutmut records once which tests reach
which function, then forks one worker per mutant that runs only those tests,
so a module's hundreds of mutants take minutes; cosmic-ray starts the whole
test command for every mutant (about two seconds of start-up alone each, over
thousands of mutants). Both are maintained; mutmut's limits (it mutates code
inside functions only, and needs fork) do not matter here.

Install mutmut into a virtual environment of your own (never into the system
interpreter, never ``pip install -e`` of this repository), then run with it::

    python3 -m venv /tmp/mutvenv --system-site-packages
    /tmp/mutvenv/bin/pip install 'mutmut>=3.8,<4'
    /tmp/mutvenv/bin/python benchmarks/mutation.py run                # every module (about an hour on 2 cores)
    /tmp/mutvenv/bin/python benchmarks/mutation.py run plan.py        # one module
    /tmp/mutvenv/bin/python benchmarks/mutation.py retest plan.py     # after adding tests: the survivors again
    /tmp/mutvenv/bin/python benchmarks/mutation.py report            # scores of the last run, survivors listed
    python3 benchmarks/mutation.py planted [--only BUG]... [PYTEST ARGS]   # needs no mutmut

How ``run`` lays out its copy (``--work``, default /tmp/nrl-mutation/<module>):
mutmut names a mutant after its file's path and strips only a ``src/``
prefix, so the copy holds the package as ``src/nrl_launch``; the mutated tree
``mutants/`` gets every other file of the worktree beforehand and
``tools/nrl_launch`` as a symlink to ``../src/nrl_launch``, so in-process
tests, the ``tools/launch`` shim and ``PYTHONPATH=tools`` subprocesses all run
the mutant. The copy's ``pyproject.toml`` gets a ``[tool.mutmut]`` section
naming the module and its tests. Workers are forked from a fork server that
has only collected the tests (``process_isolation = "forkserver"``), so no
cache filled by an earlier test run hides a mutant.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "tools/nrl_launch"

# module -> the fast unit tests that aim at it (mutmut runs, per mutant, those of them that reach the mutated function)
MODULES: dict[str, tuple[str, ...]] = {
    "bashcfg/config.py": ("tests/unit/test_config.py", "tests/unit/test_plan.py",
                          "tests/unit/test_config_environment.py"),
    "bashcfg/words.py": ("tests/unit/test_config.py",),
    "bashcfg/arith.py": ("tests/unit/test_config.py",),
    "plan.py": ("tests/unit/test_plan.py", "tests/unit/test_launch.py", "tests/unit/test_names_refused.py"),
    "experiment/continuation.py": ("tests/unit/test_continuation.py",),
    "experiment/snapshot.py": ("tests/unit/test_snapshot.py", "tests/unit/test_code_snapshot.py",
                               "tests/unit/test_snapshot_writable.py"),
    "follow/verdict.py": ("tests/unit/test_watch.py",),
    "follow/watch.py": ("tests/unit/test_watch.py", "tests/unit/test_retry.py", "tests/unit/test_cancel.py",
                        "tests/unit/test_verdict_rule.py", "tests/unit/test_exit_status.py",
                        "tests/unit/test_planted.py"),
    # measured since issue 22
    "follow/retry.py": ("tests/unit/test_retry.py",),
    "experiment/rerun.py": ("tests/unit/test_retry.py", "tests/unit/test_continuation.py"),
    "follow/status.py": ("tests/unit/test_status.py", "tests/unit/test_verdict_rule.py", "tests/unit/test_cancel.py",
                         "tests/unit/test_watch.py"),
    "follow/cancel.py": ("tests/unit/test_cancel.py",),
    "follow/logs.py": ("tests/unit/test_follow_logs.py", "tests/unit/test_exit_status.py",
                       "tests/unit/test_small_truths.py", "tests/unit/test_planted.py"),
    "experiment/joblogs.py": ("tests/unit/test_watch.py", "tests/unit/test_follow_logs.py",
                              "tests/unit/test_folder.py"),
    "experiment/locks.py": ("tests/unit/test_locks.py", "tests/unit/test_retry.py", "tests/unit/test_planted.py",
                            "tests/unit/test_cancel.py"),
    "recipes/layout.py": ("tests/unit/test_recipes.py", "tests/unit/test_lint_layout.py"),
    "cli.py": ("tests/unit/test_console.py", "tests/unit/test_no_traceback.py", "tests/unit/test_watch.py",
               "tests/unit/test_follow_logs.py", "tests/unit/test_cancel.py", "tests/unit/test_status.py",
               "tests/unit/test_verdict_rule.py", "tests/unit/test_exit_status.py", "tests/unit/test_small_truths.py",
               "tests/unit/test_planted.py", "tests/unit/test_snapshot_writable.py", "tests/unit/test_launch.py",
               "tests/unit/test_lint_cli.py", "tests/unit/test_code_snapshot.py", "tests/unit/test_cli_progress.py",
               "tests/unit/test_cli_entry.py", "tests/unit/test_report.py", "tests/unit/test_report_history.py",
               "tests/unit/test_cli_help.py", "tests/unit/test_launch_faults.py"),
    "slurm/client.py": ("tests/unit/test_slurm.py",),
    "slurm/states.py": ("tests/unit/test_slurm.py", "tests/unit/test_retry.py"),
    "slurm/failures.py": ("tests/unit/test_slurm.py",),
    "lint/engine.py": ("tests/unit/test_lint.py", "tests/unit/test_lint_rules.py"),
    "lint/suites.py": ("tests/unit/test_lint.py", "tests/unit/test_lint_rules.py"),
}


def dotted(module: str) -> str:
    """A module's path under the package as mutmut names its mutants: ``follow/watch.py`` -> ``follow.watch``."""
    return module.removesuffix(".py").replace("/", ".")

# Surviving mutants judged equivalent: (why no user could tell them from the original, mutants).
EQUIVALENT_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ('"UTF-8", or no name (the default), is the same codec as "utf-8"',
     ("plan.x_suite_scripts__mutmut_6", "verdict.x__decode__mutmut_3", "verdict.x__decode__mutmut_6",
      "watch.x_tail_lines__mutmut_24", "watch.x_tail_lines__mutmut_27", "config.x_read_recipe__mutmut_22",
      "config.x_read_recipe__mutmut_25")),
    ("_base_name is only asked about counts bash reads in another base: a second '#' is refused before, and "
     "its last line is reached by octal constants only (leading 0, two digits or more)",
     ("arith.x_base_name__mutmut_9", "arith.x_base_name__mutmut_10", "arith.x_base_name__mutmut_12",
      "arith.x_base_name__mutmut_23", "arith.x_base_name__mutmut_26", "arith.x_base_name__mutmut_29",
      "arith.x_base_name__mutmut_30", "arith.x_base_name__mutmut_31", "arith.x_base_name__mutmut_32")),
    ("the quick test for a second BEGIN: searched from the start, the end or with rfind, or compared with <= 0, "
     "it only decides whether the exact regex search runs",
     ("config.x__refuse_second_block__mutmut_2", "config.x__refuse_second_block__mutmut_4",
      "config.x__refuse_second_block__mutmut_5", "config.x__refuse_second_block__mutmut_8",
      "config.x__refuse_second_block__mutmut_9")),
    ("the cache of arithmetic results: a miss, or a larger cache, computes the same value",
     ("arith.x_evaluate_arithmetic__mutmut_1", "arith.x_evaluate_arithmetic__mutmut_21",
      "arith.x_evaluate_arithmetic__mutmut_25")),
    ("pow(base, exponent, None) is pow(base, exponent)",
     ("arith.xǁ_Arithǁ_power__mutmut_21", "arith.xǁ_Arithǁ_power__mutmut_24")),
    ("the first element of a split is the same whatever the number of splits or their side",
     ("words.xǁExpanderǁ_check_rest__mutmut_32", "words.xǁExpanderǁ_check_rest__mutmut_33",
      "words.xǁExpanderǁ_check_rest__mutmut_34", "config.x__describe_non_assignment__mutmut_74",
      "config.x__describe_non_assignment__mutmut_77")),
    ("str.count from None is from 0",
     ("config.x__line_of__mutmut_3", "config.x__check_characters__mutmut_7")),
    ("decoding bytes with surrogateescape gives \\udc80-\\udcff only: a wider upper bound matches nothing more",
     ("config.x__check_characters__mutmut_25",)),
    ("the value of an operand bash does not evaluate (after && || ?:) is discarded",
     ("arith.x__apply_binary__mutmut_9", "arith.xǁ_Arithǁ_primary__mutmut_21")),
    ("dict.get of a missing operator gives None for any missing key",
     ("arith.xǁ_Arithǁ_binary__mutmut_8",)),
    ("the character tested is an operator character, never an X: the same letters are matched",
     ("arith.x_parse_number__mutmut_14", "words.xǁExpanderǁ_operator__mutmut_4")),
    ("the first line a grep group reads holds the mark, which sets the context budget",
     ("verdict.x__groups__mutmut_20", "verdict.x__groups__mutmut_21")),
    ("only the first line of a group can start at 0, and it holds the mark (so it is not empty)",
     ("verdict.x__groups__mutmut_33", "verdict.x__groups__mutmut_34")),
    ("find() from the end or past it is -1 anyway, and the loop stops on any negative",
     ("verdict.x__groups__mutmut_53", "verdict.x__groups__mutmut_59", "verdict.x__groups__mutmut_61")),
    ("only the descriptor of the opened log is used (fstat, mmap): text or binary mode alike",
     ("verdict.x_grep_groups__mutmut_4",)),
    ("a 1-byte log cannot hold the mark; an empty one makes mmap fail, which reads as no group too",
     ("verdict.x_grep_groups__mutmut_9",)),
    ("the message of an AssertionError after a loop that always returns",
     ("verdict.x_human_size__mutmut_25", "verdict.x_human_size__mutmut_26", "verdict.x_human_size__mutmut_27")),
    ("a width computed for the date column, which is never padded",
     ("verdict.x_ls_lah__mutmut_29",)),
    ("_log_tail is given one log at most: break and continue both end its loop",
     ("watch.x__log_tail__mutmut_7",)),
    ("reads more of the log than needed; the last lines are the same",
     ("watch.x_tail_lines__mutmut_10", "watch.x_tail_lines__mutmut_11", "watch.x_tail_lines__mutmut_12",
      "watch.x_tail_lines__mutmut_13")),
    ("SlurmClient.jobs of no id asks Slurm nothing and answers {}: the guard only saves a call",
     ("watch.xǁWatcherǁ_poll__mutmut_27",)),
    ("zip of one verdict per experiment: the lengths are always equal",
     ("watch.xǁWatcherǁwatch__mutmut_10", "watch.xǁWatcherǁwatch__mutmut_13", "watch.xǁWatcherǁwatch__mutmut_14")),
    ("a folder made in a fresh temporary folder never exists already",
     ("snapshot.xǁ_Listingǁmake_folders__mutmut_6", "snapshot.xǁ_Listingǁmake_folders__mutmut_8",
      "snapshot.xǁ_Listingǁmake_folders__mutmut_10", "snapshot.x__copy_regular__mutmut_15")),
    ("parents are made in sorted order, each before its descendants, in a fresh folder; '' is the folder itself",
     ("snapshot.x__make_dirs__mutmut_5", "snapshot.x__make_dirs__mutmut_7", "snapshot.x__make_dirs__mutmut_9",
      "snapshot.x__make_dirs__mutmut_11")),
    ("removes a folder this process made, of writable folders: rmtree meets no error to ignore",
     ("snapshot.x__remove_tree__mutmut_2", "snapshot.x__remove_tree__mutmut_4", "snapshot.x__remove_tree__mutmut_5")),
    ("how many threads copy: the same files, only the speed differs",
     ("snapshot.x__default_workers__mutmut_5", "snapshot.x__default_workers__mutmut_6",
      "snapshot.x__default_workers__mutmut_7", "snapshot.x__default_workers__mutmut_8",
      "snapshot.x__default_workers__mutmut_9", "snapshot.xǁSnapshotBatchǁ__init____mutmut_11")),
    ("the length of the random part of a temporary folder's name",
     ("snapshot.x__make_tmp__mutmut_3",)),
    ("the mode a file is created with: fchmod sets its final mode before it is closed",
     ("snapshot.x__copy_regular__mutmut_14", "snapshot.x__copy_regular__mutmut_18")),
    ("None is as false as False",
     ("snapshot.xǁSnapshotBatchǁensure__mutmut_13", "snapshot.xǁSnapshotBatchǁ_scan__mutmut_29",
      "snapshot.xǁSnapshotBatchǁ_copy_from__mutmut_36")),
    ("how much one copy_file_range or read call asks for: the same bytes land; only a 1-byte call could end the "
     "loop early, and one happens only for the last byte of a file",
     ("snapshot.x__copy_fd__mutmut_8", "snapshot.x__copy_fd__mutmut_9", "snapshot.x__copy_fd__mutmut_11",
      "snapshot.x__copy_fd__mutmut_40", "snapshot.x__copy_fd__mutmut_41")),
    ("one thread or a pool, and how many: the same files are copied",
     ("snapshot.x__run_parallel__mutmut_13", "snapshot.x__run_parallel__mutmut_14",
      "snapshot.x__run_parallel__mutmut_15", "snapshot.x__run_parallel__mutmut_17",
      "snapshot.x__run_parallel__mutmut_28")),
    ("a chunk's error is then raised by future.result() at the end: the same SnapshotError, nothing left behind",
     ("snapshot.x__run_parallel__mutmut_43",)),
    ("shutdown still waits: chunks not started run to the end, then the temporary folder is removed as before",
     ("snapshot.x__run_parallel__mutmut_53", "snapshot.x__run_parallel__mutmut_54",
      "snapshot.x__run_parallel__mutmut_55", "snapshot.x__run_parallel__mutmut_57")),
    ("os.link is called for regular files only (symlinks are made again): following links changes nothing",
     ("snapshot.xǁSnapshotBatchǁ_link_from__mutmut_25", "snapshot.xǁSnapshotBatchǁ_link_from__mutmut_28",
      "snapshot.xǁSnapshotBatchǁ_link_from__mutmut_33")),
    ("the text of the internal _CrossDevice, which is caught and never shown",
     ("snapshot.xǁSnapshotBatchǁ_link_from__mutmut_7", "snapshot.xǁSnapshotBatchǁ_link_from__mutmut_8",
      "snapshot.xǁSnapshotBatchǁ_link_from__mutmut_43", "snapshot.xǁSnapshotBatchǁ_link_from__mutmut_44")),
    ("the path of a fill result, which ensure() replaces with the destination",
     ("snapshot.xǁSnapshotBatchǁ_link_from__mutmut_46", "snapshot.xǁSnapshotBatchǁ_copy_from__mutmut_63")),
    ("a branch for platforms without fcntl (not Linux)",
     ("snapshot.x__clone_fd__mutmut_2",)),
    ("fields of a listing entry that are never read for its kind (a symlink's mode, a regular file's target)",
     ("snapshot.xǁSnapshotBatchǁ_scan__mutmut_16", "snapshot.xǁSnapshotBatchǁ_scan__mutmut_25",
      "snapshot.xǁSnapshotBatchǁ_scan__mutmut_30", "snapshot.xǁSnapshotBatchǁ_scan__mutmut_39")),
    ("older than a day, or a day old to the second: no test can stand on that second",
     ("snapshot.x__tmp_is_stale__mutmut_21",)),
    # follow/status.py (issue 22)
    ("the default of a dictionary lookup no missing key reaches: only the columns of _GIVE_WAY are ever cut, "
     "the others are never narrower than their cells; a default that is no digit string reads as no MAX_STEPS, "
     "as the empty one; a COLUMNS default that is no digit string falls back, as the empty one",
     ("status.x__line__mutmut_14", "status.x__line__mutmut_16", "status.x__line__mutmut_17",
      "status.x__line__mutmut_18", "status.x__row__mutmut_31", "status.x_terminal_width__mutmut_8")),
    ("a table narrower than 3 columns, or a terminal of 1 column: nothing can be shown there either way",
     ("status.x_format_table__mutmut_38", "status.x_terminal_width__mutmut_13")),
    ("the indentation of the JSON document: scripts parse it, the same values either way",
     ("status.x_format_json__mutmut_2", "status.x_format_json__mutmut_4", "status.x_format_json__mutmut_6")),
    ('"UTF-8" is "utf-8"; no name is the locale\'s, UTF-8 wherever a test runs in process (plan\'s suite reading '
     "is the planted bug that a child process under LANG=C catches)",
     ("status.x_max_step__mutmut_3", "status.x_max_step__mutmut_5")),
    ("the name given to the verdict rule: status reads only the verdict's status",
     ("status.x__judged__mutmut_13",)),
    # experiment/locks.py (issue 22)
    ("a soft limit of open files exactly what the locks need is set again to the same value",
     ("locks.x__make_room_for__mutmut_7",)),
    # cli.py (issue 22)
    ("kept_slurm_timeout's default setting is SLURM_TIMEOUT",
     ("cli.x_slurm_client__mutmut_11",)),
    ("click's command decorator builds a command with keyword arguments only: no positional ones to pass on",
     ("cli.xǁLauncherCommandǁ__init____mutmut_2",)),
    ("every ClickException that reaches _report is a UsageError with its context (click makes its own with one, "
     "ours are made with the command's; no click.File or prompt is used): the hint's default and the test of "
     "the context never decide",
     ("cli.x__report__mutmut_17", "cli.x__report__mutmut_18", "cli.x__report__mutmut_19")),
    ("a copy that has taken exactly the delay, to the nanosecond, shows its bar now or at the next file",
     ("cli.xǁSnapshotProgressǁ__call____mutmut_4",)),
)
# A mutant above is named by its module's file name (``verdict.x_…``); mutmut names it by its dotted path
# in the package (``nrl_launch.follow.verdict.x_…``).
_DOTTED = {dotted(module).rpartition(".")[2]: dotted(module) for module in MODULES}
EQUIVALENT: dict[str, str] = {f"nrl_launch.{_DOTTED[name.split('.', 1)[0]]}.{name.split('.', 1)[1]}": why
                              for why, names in EQUIVALENT_GROUPS for name in names}

KILLED = ("killed", "timeout", "caught by type check")


# ---------------------------------------------------------------- planted bugs


@dataclass(frozen=True)
class Planted:
    """A bug written by hand: exact text replacements in the package."""

    name: str
    what: str
    edits: tuple[tuple[str, str, str], ...]  # (file under tools/nrl_launch, old text, new text)


PLANTED = (
    Planted("general-fail-passes", "issue 14.1: a [GENERAL FAIL] (crashed job) does not fail WATCH",
            (("follow/verdict.py", "return self.status != PASS", "return self.status == METRIC_FAIL"),)),
    Planted("general-fail-exit-0", "issue 14.1: the launch exits 0 after a [GENERAL FAIL]",
            (("launch.py", "return any(v.failed for v in self.verdicts)",
              "return any(v.status == 'METRIC FAIL' for v in self.verdicts)"),)),
    Planted("watch-command-exit-0", "issue 14.1: `nrl-launch watch` exits 0 after a [GENERAL FAIL]",
            (("cli.py", "if any(v.failed for v in verdicts):",
              "if any(v.status == 'METRIC FAIL' for v in verdicts):"),)),
    Planted("run-label-i-of-i", "issue 14.2: the manifest records run i/i instead of i/NUM_RUNS",
            (("pipeline.py", "answer.job_id, sub.run_label,", 'answer.job_id, f"{sub.index}/{sub.index}",'),)),
    Planted("extra-env-last", "issue 14.3: EXTRA_ENV after the contract's variables (COMMAND=evil wins)",
            (("plan.py", "        *settings.extra_env,\n        (\"HF_HOME\"", "        (\"HF_HOME\""),
             ("plan.py", "        (\"COMMAND\", command),\n    )", "        (\"COMMAND\", command),\n"
              "        *settings.extra_env,\n    )"))),
    Planted("publish-before-manifest", "issue 14.4: the snapshot is visible before its manifest is written",
            (("experiment/snapshot.py", "            self._write_manifest(tmp, manifest, result)\n"
              "            published = _publish(tmp, dest)",
              "            published = _publish(tmp, dest)\n"
              "            if published:\n                self._write_manifest(dest, manifest, result)"),)),
    Planted("record-warning-on-stdout", "issue 14.5: 'could not record job' warning on stdout",
            (("pipeline.py", 'self.err(f"[WARNING]: could not record job',
              'self.out(f"[WARNING]: could not record job'),)),
    Planted("no-singleton", "runs not chained: --dependency=singleton dropped",
            (("plan.py", 'values += [("output", output), ("dependency", "singleton")]',
              'values += [("output", output)]'),)),
    Planted("continue-sh-unquoted", "continue.sh writes values and paths without shell quoting",
            (("experiment/continuation.py", "    q = shlex.quote\n", "    q = str\n"),
             ("experiment/continuation.py", "else shlex.quote(word) for word in sub.argv]",
              "else word for word in sub.argv]"))),
    Planted("snapshot-in-place", "the snapshot is copied in place (no temporary folder + rename)",
            (("experiment/snapshot.py", "        tmp = _make_tmp(dest)\n",
              "        dest.mkdir(parents=True, exist_ok=True)\n        tmp = dest\n"),
             ("experiment/snapshot.py", "            published = _publish(tmp, dest)\n",
              "            published = True\n"))),
    Planted("no-untracked-check", "an untracked recipe is launched",
            (("experiment/gitrepo.py", "            return rel\n        raise _untracked(script)\n    repo = ",
              "            return rel\n        return rel\n    repo = "),)),
    Planted("continue-sh-env-not-pinned", "continue.sh does not pin what the CONFIG block read",
            (("experiment/continuation.py", "{_pinned(sub)}\n", "# (none)\n"),)),
    Planted("no-hf-home", "HF_HOME is not put into the job's environment",
            (("plan.py", '        ("HF_HOME", settings.hf_home),\n', ""),)),
    # mutmut's plan.x_suite_scripts__mutmut_2/4: only a child process in the C locale tells them apart,
    # and mutmut credits a test only with the functions it reaches in its own process
    Planted("suite-read-in-the-locale-encoding", "a suite file read in the locale's encoding (ASCII under LANG=C)",
            (("plan.py", 'with open(suite, encoding="utf-8") as handle:', "with open(suite) as handle:"),)),
    # issue 22: the planted bugs no test caught, and the rules of its fixes
    Planted("retry-without-the-lock", "issue 22: a retry decided without the experiment's lock (two watches, or a "
            "watch and continue.sh, submit a run for one lost run)",
            (("follow/retry.py", "        with folder.lock(self.err):\n            recorded = folder.manifest",
              "        if True:  # planted\n            recorded = folder.manifest"),)),
    Planted("retries-of-earlier-launches-counted", "issue 22: retries of an earlier launch count against this "
            "launch's MAX_RETRIES",
            (("follow/retry.py", "made = retries_made(recorded, exp.ids)", "made = len(recorded.retries)"),)),
    Planted("cancellations-counted-as-runs", "issue 22: a cancellation entry counted as a run (the next run's "
            "label and --output one too high)",
            (("experiment/manifest.py", "return len(self.runs) + 1", "return len(self.entries) + 1"),)),
    Planted("resume-drops-stop-chain", "issue 22: the printed resume command drops --stop-chain-on-failure",
            (("follow/watch.py", '    if watching.stop_chain_on_failure:\n        words += ["--stop-chain-on-failure", '
              '"1"]\n', ""),)),
    Planted("dryrun-2-watches", "issue 22: DRYRUN=2 WATCH=1 watches anyway (and exits 1)",
            (("launch.py", "watching = settings.watch and settings.dryrun is DryRun.OFF",
              "watching = settings.watch"),)),
    Planted("logs-follow-never-rereads", "issue 22: logs --follow never reads the manifest again (a retry or "
            "continue.sh run added while following is missed)",
            (("follow/logs.py", "        self.folder.refresh()\n        return recorded_jobs(self.folder, self.only)",
              "        return recorded_jobs(self.folder, self.only)"),)),
    Planted("watch-command-all-failed", "issue 22: `nrl-launch watch a b` fails only when all experiments failed",
            (("cli.py", "if any(v.failed for v in verdicts):", "if all(v.failed for v in verdicts):"),)),
    Planted("slurm-timeout-not-passed", "issue 22: NRL_SLURM_TIMEOUT not passed to the runner",
            (("slurm/client.py", "return self.runner(list(argv), cwd=cwd, env=env, timeout=self.timeout)",
              "return self.runner(list(argv), cwd=cwd, env=env, timeout=120.0)"),)),
    Planted("launch-locks-its-first-experiment-only", "issue 22: a launch of two experiments leaves the second one "
            "open to a concurrent writer",
            (("pipeline.py", "with locked((p.folder for p in planned), self.err):",
              "with locked((p.folder for p in planned[:1]), self.err):"),)),
    Planted("status-judges-while-queued", "issue 22 items 1/3: status gives a verdict while a run is still queued",
            (("follow/status.py", "{j.job_id for j in row.jobs if still_queued(j.state)}", "set()"),)),
    Planted("watch-misses-runs-recorded-meanwhile", "issue 22 item 3: WATCH judges while a continue.sh run it did "
            "not submit is queued",
            (("follow/watch.py", "folder = self.folders.get(exp.name)", "folder = None"),)),
    Planted("unreachable-slurm-exits-1", "issue 22 item 6: a watch that gives up (Slurm unreachable) exits 1, "
            "which git bisect run reads as a bad commit",
            (("errors.py", "    exit_code = 128\n", "    exit_code = 1\n"),)),
    Planted("status-table-cuts-names", "issue 22 item 10: the status table cuts an experiment name to fit",
            (("follow/status.py", "        widths, _ = _fit(table, everything[1:], max(width - _GAP, 1))\n"
              "        lines = []\n        for line in table:\n            lines += [line[0], \" \" * _GAP + "
              "_line(line, widths)]",
              "        widths, _ = _fit(table, everything, width)\n        widths[0] = width // 3\n"
              "        lines = [_line(line, widths) for line in table]"),)),
    Planted("shared-snapshot-files-writable", "issue 22 item 13: snapshots that share files through hard links "
            "leave them writable (a hot-fix of one changes all)",
            (("experiment/snapshot.py", "        self._share(base)\n", ""),)),
)


def scratch_copy(dest: Path) -> Path:
    """Every file of the worktree (tracked or not, git-ignored ones aside) in ``dest``, as a new git repository."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if not os.path.lexists(source):
            continue  # deleted in the worktree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    git = ["git", "-c", "user.name=mutation", "-c", "user.email=mutation@example.com", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "scratch copy"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True)
    return dest


def plant(copy: Path, bug: Planted) -> None:
    """Apply ``bug``'s edits in ``copy``; each old text must occur exactly once."""
    for name, old, new in bug.edits:
        path = copy / PACKAGE / name
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"[ERROR]: {bug.name}: {PACKAGE}/{name} holds {old!r} {text.count(old)} times, not once "
                             "(the code changed: update the planted bug)")
        path.write_text(text.replace(old, new))


def failing_tests(copy: Path, tests: list[str]) -> tuple[int, list[str]]:
    """pytest's exit status in ``copy`` and the ids of the tests that failed."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests], cwd=copy,
                          capture_output=True, text=True)
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in done.stdout.splitlines()
              if line.startswith(("FAILED ", "ERROR "))]
    return done.returncode, failed


def planted(names: list[str], tests: list[str]) -> int:
    """Plant each bug alone, run the tests, say which caught it; 1 if any went unnoticed."""
    chosen = [bug for bug in PLANTED if not names or bug.name in names]
    unknown = set(names) - {bug.name for bug in PLANTED}
    if unknown:
        raise SystemExit(f"[ERROR]: no planted bug named {', '.join(sorted(unknown))}")
    missed = []
    with tempfile.TemporaryDirectory(prefix="nrl-planted-") as base:
        for bug in chosen:
            copy = scratch_copy(Path(base) / bug.name)
            plant(copy, bug)
            status, failed = failing_tests(copy, tests)
            caught = status != 0
            print(f"{'CAUGHT' if caught else 'MISSED'} {bug.name}: {bug.what} ({len(failed)} failing tests)",
                  flush=True)
            for test in failed:
                print(f"    {test}", flush=True)
            if not caught:
                missed.append(bug.name)
            shutil.rmtree(copy)
    print(f"{len(chosen) - len(missed)} of {len(chosen)} planted bugs caught" +
          (f"; missed: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


# ---------------------------------------------------------------- mutmut


def mutmut_program() -> Path:
    """The ``mutmut`` beside this interpreter (run this script with the venv's python)."""
    program = Path(sys.executable).parent / "mutmut"
    if not program.is_file():
        raise SystemExit(f"[ERROR]: no mutmut beside {sys.executable}: install it in a virtual environment and run "
                         "this script with its python (see this file's docstring)")
    return program


# A pytest plugin for mutmut's runs only (written into the copy's tests/). While
# mutmut records which tests reach which function (MUTANT_UNDER_TEST=stats),
# child processes run the original code: a child cannot report its calls back,
# and mutmut's bookkeeping there would look for its configuration in the
# child's working directory. With a mutant under test, children run it too.
# mutmut's trampolines add frames to every call: the recursion limit grows so
# that the evaluator's deepest accepted nesting (arith.MAX_DEPTH) still fits.
STATS_PLUGIN = """import os
import subprocess
import sys

sys.setrecursionlimit(6000)

_popen_init = subprocess.Popen.__init__


def _init(self, *args, **kwargs):
    env = kwargs.get("env")
    env = os.environ if env is None else env
    if env.get("MUTANT_UNDER_TEST") == "stats":
        kwargs["env"] = {**env, "MUTANT_UNDER_TEST": ""}
    _popen_init(self, *args, **kwargs)


subprocess.Popen.__init__ = _init
"""
PLUGIN_MODULE = "mutation_stats_plugin"


def mutmut_section(module: str) -> str:
    """The ``[tool.mutmut]`` section of one module's copy."""
    tests = ", ".join(f'"{test}"' for test in MODULES[module])
    return (f'\n[tool.mutmut]\nsource_paths = ["src"]\nonly_mutate = ["src/nrl_launch/{module}"]\n'
            f"pytest_add_cli_args_test_selection = [{tests}]\n"
            f'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "{PLUGIN_MODULE}", "-x"]\n'
            'process_isolation = "forkserver"\nuse_git_change_detection = false\n')


def prepare(work: Path, module: str) -> Path:
    """A fresh copy of the worktree laid out for mutmut (see the docstring)."""
    if work.exists():
        shutil.rmtree(work)
    copy = scratch_copy(work)
    (copy / "src").mkdir()
    os.rename(copy / PACKAGE, copy / "src" / "nrl_launch")
    with open(copy / "pyproject.toml", "a", encoding="utf-8") as handle:
        handle.write(mutmut_section(module))
    (copy / "tests" / f"{PLUGIN_MODULE}.py").write_text(STATS_PLUGIN)
    mutants = copy / "mutants"
    mutants.mkdir()
    for entry in copy.iterdir():
        if entry.name not in ("src", "mutants", ".git"):
            target = mutants / entry.name
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, target, symlinks=True)
            else:
                shutil.copy2(entry, target, follow_symlinks=False)
    (mutants / PACKAGE).symlink_to(Path("..") / "src" / "nrl_launch")
    return copy


def run(modules: list[str], work: Path, max_children: int | None) -> int:
    """``mutmut run`` for each module in its own copy, then the report."""
    program = mutmut_program()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    for module in modules:
        copy = prepare(work / module.removesuffix(".py"), module)
        print(f"== mutmut run: {module} ({', '.join(MODULES[module])}) in {copy}", flush=True)
        args = [str(program), "run", *(["--max-children", str(max_children)] if max_children else [])]
        subprocess.run(args, cwd=copy, env=env, check=False)
    return report(modules, work)


def retest(modules: list[str], work: Path, max_children: int | None) -> int:
    """Bring the worktree's tests into each module's last run and run mutmut again on the mutants
    that were not killed (quicker than ``run`` after adding tests), then the report."""
    program = mutmut_program()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    for module in modules:
        copy = work / module.removesuffix(".py")
        if not (copy / "mutants").is_dir():
            raise SystemExit(f"[ERROR]: no run of {module} in {copy}: use the run command first")
        for target in (copy / "tests", copy / "mutants" / "tests"):
            shutil.copytree(REPO / "tests", target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
            (target / f"{PLUGIN_MODULE}.py").write_text(STATS_PLUGIN)
        for pyproject in (copy / "pyproject.toml", copy / "mutants" / "pyproject.toml"):
            # the module's test selection as MODULES says now
            text = pyproject.read_text(encoding="utf-8")
            pyproject.write_text(text[:text.index("\n[tool.mutmut]")] + mutmut_section(module), encoding="utf-8")
        # which tests reach which function is recorded again: mutmut's incremental
        # update of that record missed added tests
        (copy / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        left = sorted(name for name, status in statuses(copy).items() if status not in KILLED)
        print(f"== mutmut run: {module}, {len(left)} mutants not killed last time", flush=True)
        if left:
            args = [str(program), "run", *(["--max-children", str(max_children)] if max_children else []), *left]
            subprocess.run(args, cwd=copy, env=env, check=False, stdout=subprocess.DEVNULL)
    return report(modules, work)


def statuses(copy: Path) -> dict[str, str]:
    """mutant name -> status, as ``mutmut results --all true`` lists them."""
    done = subprocess.run([str(mutmut_program()), "results", "--all", "true"], cwd=copy, capture_output=True,
                          text=True, check=True)
    found = (re.fullmatch(r"\s*(\S+): (.+)", line) for line in done.stdout.splitlines())
    return {m.group(1): m.group(2).strip() for m in found if m}


def report(modules: list[str], work: Path) -> int:
    """Per module: mutants, killed, survivors, equivalent ones and the score; 1 below 90 %."""
    below = []
    for module in modules:
        copy = work / module.removesuffix(".py")
        if not (copy / "mutants").is_dir():
            print(f"{module}: no run in {copy}")
            below.append(module)
            continue
        found = statuses(copy)
        counts = Counter(found.values())
        killed = sum(counts[s] for s in KILLED)
        equivalent = [name for name, status in found.items() if name in EQUIVALENT and status not in KILLED]
        stale = [name for name in EQUIVALENT if name.startswith(f"nrl_launch.{dotted(module)}.") and
                 found.get(name, "killed") in KILLED]
        considered = len(found) - len(equivalent)
        score = 100.0 * killed / considered if considered else 100.0
        print(f"{module}: {len(found)} mutants, {killed} killed, {len(equivalent)} equivalent, "
              f"score {score:.1f}% ({dict(counts)})")
        for name, status in sorted(found.items()):
            if status not in KILLED and name not in EQUIVALENT:
                print(f"    {status}: {name}")
        for name in stale:
            print(f"    [stale EQUIVALENT entry: {name} is killed or gone]")
        if score < 90:
            below.append(module)
    return 1 if below else 0


def main() -> int:
    """Parse the command line and run one of the commands."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_planted = sub.add_parser("planted", help="plant the known bugs one by one and run the unit tests")
    p_planted.add_argument("--only", action="append", default=[], metavar="BUG",
                           help=f"plant only these (repeatable): {', '.join(b.name for b in PLANTED)}")
    for name in ("run", "retest", "report"):
        p = sub.add_parser(name, help=f"mutmut {name} over modules ({', '.join(MODULES)})")
        p.add_argument("modules", nargs="*", metavar="MODULE", help="default: all of them")
        p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "nrl-mutation")
        if name != "report":
            p.add_argument("--max-children", type=int, help="parallel workers (default: one per CPU)")
    args, pytest_args = parser.parse_known_args()  # planted: the rest goes to pytest (default: tests/unit)
    if args.command == "planted":
        return planted(args.only, pytest_args or ["tests/unit"])
    if pytest_args:
        parser.error(f"unrecognized arguments: {' '.join(pytest_args)}")
    modules = args.modules or list(MODULES)
    unknown = set(modules) - set(MODULES)
    if unknown:
        raise SystemExit(f"[ERROR]: not a measured module: {', '.join(sorted(unknown))} "
                         f"(choose among {', '.join(MODULES)})")
    if args.command == "run":
        return run(modules, args.work, args.max_children)
    if args.command == "retest":
        return retest(modules, args.work, args.max_children)
    return report(modules, args.work)


if __name__ == "__main__":
    sys.exit(main())
