"""The one rule an experiment's name passes: what its snapshot folder, job name and stdout lines can hold.

The experiment of a recipe script is named after the script (``plan.experiment_name``);
``experiment.folder`` applies :func:`name_problem` to every folder it is asked for (launch,
``nrl-launch snapshot``, ``watch``, ``status``, ``cancel``, ``logs``), and the launch refuses a
script path with a control character before anything is made. A module of its own, beside the
layers, so that every layer can use it and the DRYRUN=1 path loads it only for a name that is
not printable.
"""

from __future__ import annotations


def control_character(text: str) -> str | None:
    """The first control character of ``text`` (C0, DEL), as Python escapes it (``\\n``); None
    without. A byte that is not UTF-8 (held as a surrogate escape) is no control character."""
    found = next((char for char in text if ord(char) < 32 or ord(char) == 127), None)
    return None if found is None else repr(found)[1:-1]


def name_problem(name: str) -> str | None:
    """What keeps ``name`` from being an experiment's folder, e.g. ``starts with '.'``; None for
    a plain, visible folder name. Hidden names beside the snapshots are the launcher's own
    (temporary folders, lock files), and ``../x`` must not reach outside the snapshot root."""
    if not name:
        return "is empty"
    if name.startswith("."):
        return "starts with '.'"
    if "/" in name:
        return "contains '/'"
    if control_character(name) is not None:
        return "contains a control character"
    return None
