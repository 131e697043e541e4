"""What Slurm says about jobs and nodes, as data: job ids, job states and
reasons, host lists and node states, and the parsers of the answers the
client asks for (squeue, sacct, scontrol, sinfo lines)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple


class JobInfo(NamedTuple):
    """What Slurm says about one job."""

    job_id: str
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, NODE_FAIL, ...
    reason: str = ""  # why it is pending or why it ended ("" for none)
    exit_code: str = ""  # "<status>:<signal>" once it ended ("" when unknown)
    nodes: str = ""  # the nodes it ran (or runs) on, Slurm's host list


def job_ids(ids: Iterable[object]) -> list[str]:
    """Distinct job ids in the order given; anything that is not one is left out.

    The one filter every Slurm query and every log lookup goes through: a
    manifest edited by hand must not put arbitrary words on a command line.
    """
    return list(dict.fromkeys(text for text in map(str, ids) if text.isascii() and text.isdigit()))


# A Slurm host list: names, ranges in brackets, commas (what %N and NodeList print).
HOSTLIST_RE = re.compile(r"[A-Za-z0-9_.\-\[\],]+")
# sinfo's long node states (%T) in which a node must not get the job again.
_UNHEALTHY_STATES = frozenset({"down", "drain", "drained", "draining", "fail", "failing", "inval", "unknown",
                               "not_responding"})


def unhealthy_state(state: str) -> bool:
    """True for an ``sinfo -o %T`` state of a failed or failing node; a trailing ``*`` means not responding."""
    text = state.strip().lower()
    return text.endswith("*") or text.rstrip("~#%$@^-!").split("+")[0] in _UNHEALTHY_STATES


SQUEUE_FORMAT = "%i|%T|%r|%N"  # job id, state, reason, nodes
SACCT_FIELDS = "JobID,State,ExitCode,NodeList,Reason"
SINFO_FORMAT = "%N|%T"  # node, long state


def parse_squeue(stdout: str, wanted: set[str]) -> dict[str, JobInfo]:
    """The jobs of ``wanted`` in squeue's answer (``SQUEUE_FORMAT`` lines)."""
    found = {}
    for line in stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 4 and fields[0] in wanted:
            found[fields[0]] = JobInfo(fields[0], fields[1], _reason_field(fields[2]), "", fields[3])
    return found


def parse_sacct(stdout: str, wanted: Iterable[str]) -> dict[str, JobInfo]:
    """The jobs of ``wanted`` in sacct's answer (``-P -o SACCT_FIELDS`` lines)."""
    found = {}
    for line in stdout.splitlines():
        fields = line.split("|")
        if len(fields) == 5 and fields[0] in wanted and fields[1]:
            # "CANCELLED by 0" -> "CANCELLED"
            found[fields[0]] = JobInfo(fields[0], fields[1].split()[0], _reason_field(fields[4]), fields[2],
                                       _node_field(fields[3]))
    return found


_SCONTROL_FIELD_RE = re.compile(r"\b(JobState|Reason|ExitCode|NodeList)=(\S*)")


def parse_scontrol(job_id: str, stdout: str) -> JobInfo | None:
    """The job in ``scontrol show job -o``'s answer; None when it names no state."""
    fields = dict(_SCONTROL_FIELD_RE.findall(stdout))
    if "JobState" not in fields:
        return None
    return JobInfo(job_id, fields["JobState"], _reason_field(fields.get("Reason", "")), fields.get("ExitCode", ""),
                   _node_field(fields.get("NodeList", "")))


def parse_scontrol_all(stdout: str, wanted: set[str]) -> dict[str, JobInfo]:
    """The jobs of ``wanted`` in ``scontrol show job -o``'s answer for every job (one line each)."""
    found = {}
    for line in stdout.splitlines():
        match = _SCONTROL_ID_RE.match(line)
        if match is not None and match.group(1) in wanted:
            info = parse_scontrol(match.group(1), line)
            if info is not None:
                found[info.job_id] = info
    return found


_SCONTROL_ID_RE = re.compile(r"JobId=(\d+)\s")


def parse_sinfo(stdout: str) -> list[str]:
    """The nodes of sinfo's answer (``SINFO_FORMAT`` lines) in an unhealthy state, each once."""
    bad: list[str] = []
    for line in stdout.splitlines():
        name, _, state = line.strip().partition("|")
        if name and unhealthy_state(state) and name not in bad:  # one line per node and partition
            bad.append(name)
    return bad


def _reason_field(text: str) -> str:
    return "" if text in ("None", "(null)") else text


def _node_field(text: str) -> str:
    return "" if text in ("None assigned", "(null)", "None") else text
