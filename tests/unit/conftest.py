"""Fixtures of the unit tests; the helpers they use live in tests/testkit.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit import FakeSlurm, Project, SlurmOnPath, make_tree


@pytest.fixture(scope="session")
def tree_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``make_tree`` tree built once per session (copied by ``copy_tree``)."""
    return make_tree(tmp_path_factory.mktemp("template"))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A fresh git repository with a batch script, ready for recipes."""
    return Project.create(tmp_path / "proj")


@pytest.fixture
def slurm_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SlurmOnPath:
    """The recording fake Slurm commands, first on PATH for this test."""
    fake = SlurmOnPath.install(tmp_path / "fake-slurm")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(fake.state))
    monkeypatch.setenv("PATH", f"{fake.bin}{os.pathsep}{os.environ['PATH']}")
    return fake


@pytest.fixture
def fake_slurm() -> FakeSlurm:
    """An in-process fake Slurm for a SlurmClient's runner seam."""
    return FakeSlurm()
