"""Helpers shared by tests/unit and tests/integration (on sys.path via setup.cfg)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,  # a developer's ~/.gitconfig (gpgsign, hooks) must not matter
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (fixed identity, file:// submodules allowed); return its stdout."""
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(["git", "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout


def write(path: Path, text: str, mode: int | None = None) -> Path:
    """Create ``path`` (and its folders) with ``text``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path
