"""End-to-end tests against the local Slurm cluster (tools/local-slurm).

A package so that this directory's conftest.py is imported as
``integration.conftest`` and does not take the bare module name ``conftest``
that tests/unit imports from (``from conftest import ...``).
"""
