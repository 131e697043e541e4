"""The command group as its callers start it, in this process: ``main()``
(the ``nrl-launch`` console script), ``main.run()`` (``tools/launch``,
``python -m nrl_launch``) and click's ``main(args, standalone_mode=False)``."""

from __future__ import annotations

import contextlib
import io

import click
import pytest

from nrl_launch import __version__
from nrl_launch.cli import main
from testkit import Project


def test_a_stdout_on_a_full_disk_ends_a_command_with_one_error_line(project: Project) -> None:
    # `tools/code_snapshot.sh exp-x >/dev/full`: the snapshot command does not keep going
    # without its stdout; the OSError becomes an [ERROR] line and exit 1, not a traceback
    err = io.StringIO()
    with open("/dev/full", "w") as full, contextlib.redirect_stdout(full), contextlib.redirect_stderr(err):
        code = main.run(["snapshot", "exp-x", "--project-root", str(project.root)], prog_name="nrl-launch")
        with contextlib.suppress(OSError):  # what the failed print left in the buffer
            full.close()
    assert code == 1
    assert err.getvalue().splitlines()[-1] == "[ERROR]: [Errno 28] No space left on device"
    assert (project.root / "code_snapshots" / "exp-x").is_dir()


def test_main_takes_its_arguments_as_click_documents(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main.main(["--version"])
    assert ended.value.code == 0
    assert capsys.readouterr().out == f"nrl-launch, version {__version__}\n"


def test_main_without_standalone_mode_returns_and_raises_to_its_caller() -> None:
    assert main.main(["--version"], standalone_mode=False) == 0
    with pytest.raises(click.UsageError) as raised:
        main.main(["lanch"], prog_name="nrl-launch", standalone_mode=False)
    assert raised.value.ctx is not None and raised.value.ctx.command_path == "nrl-launch"
    assert raised.value.format_message() == "unknown command 'lanch' (did you mean 'launch'?)"
