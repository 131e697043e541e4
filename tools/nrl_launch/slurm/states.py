"""What Slurm says about jobs and nodes, as data: job ids, job states and
reasons, host lists and node states, and the parsers of the answers the
client asks for (squeue, sacct, scontrol, sinfo lines)."""

from __future__ import annotations

import re
import time
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


# ---------------------------------------------------------------- when jobs waited and ran (nrl-launch report)


class JobSpan(NamedTuple):
    """When one job waited and ran, as Slurm recorded it: times in seconds since the epoch, None
    when not (yet) known (a pending job has no start, a running one no end)."""

    job_id: str
    state: str
    submit: float | None
    start: float | None
    end: float | None
    exit_code: str = ""  # "<status>:<signal>" ("" when unknown)
    nodes: str = ""  # Slurm's host list
    gpus: int | None = None  # GPUs allocated (AllocTRES gres/gpu), None when Slurm does not say


SPAN_FIELDS = "JobID,Submit,Start,End,State,ExitCode,NodeList,AllocTRES"
_GPU_TRES_RE = re.compile(r"(?:^|,)gres/gpu=(\d+)(?:,|$)")
_SCONTROL_SPAN_RE = re.compile(r"\b(JobState|SubmitTime|StartTime|EndTime|ExitCode|NodeList)=(\S*)")
_NOT_STARTED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
# The states of a job still queued or running (one home: spans, the report's RUNNING rows).
NOT_ENDED = _NOT_STARTED | {"RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "STOPPED", "SIGNALING"}


def slurm_time(text: str) -> float | None:
    """Seconds since the epoch of a Slurm timestamp (``2026-12-06T12:08:28``, the local time
    Slurm prints); None for ``Unknown``, ``None`` and anything else that is not a time."""
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return None


def _span(job_id: str, state: str, submit: str, start: str, end: str, exit_code: str, nodes: str,
          gpus: int | None) -> JobSpan:
    """A span whose times mean what they say: Slurm prints a pending job's expected start and a
    running job's time limit as StartTime/EndTime, which are no start or end yet."""
    return JobSpan(job_id, state, slurm_time(submit), None if state in _NOT_STARTED else slurm_time(start),
                   None if state in NOT_ENDED else slurm_time(end), exit_code, _node_field(nodes), gpus)


def parse_spans(stdout: str, wanted: Iterable[str]) -> dict[str, JobSpan]:
    """The jobs of ``wanted`` in sacct's answer (``-P -o SPAN_FIELDS`` lines, ``sacct -c`` too)."""
    chosen, found = set(wanted), {}
    for line in stdout.splitlines():
        fields = line.split("|")
        if len(fields) == 8 and fields[0] in chosen and fields[4]:
            gpus = _GPU_TRES_RE.search(fields[7])
            # "CANCELLED by 0" -> "CANCELLED"
            found[fields[0]] = _span(fields[0], fields[4].split()[0], fields[1], fields[2], fields[3], fields[5],
                                     fields[6], int(gpus.group(1)) if gpus else None)
    return found


def parse_scontrol_span(job_id: str, stdout: str) -> JobSpan | None:
    """The job in ``scontrol show job -o``'s answer; None when it names no state."""
    fields = dict(_SCONTROL_SPAN_RE.findall(stdout))
    if "JobState" not in fields:
        return None
    return _span(job_id, fields["JobState"], fields.get("SubmitTime", ""), fields.get("StartTime", ""),
                 fields.get("EndTime", ""), fields.get("ExitCode", ""), fields.get("NodeList", ""), None)
