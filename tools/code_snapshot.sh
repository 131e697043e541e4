#!/usr/bin/env bash
# tools/code_snapshot.sh EXPERIMENT: create (or reuse) the code snapshot
# <project root>/<CODE_SNAPSHOT_DIRNAME>/EXPERIMENT of the repository this
# script lives in, and print its absolute path (only that) on stdout:
#
#     SNAPSHOT_DIR=$(bash tools/code_snapshot.sh "$EXP") && cd "$SNAPSHOT_DIR"
#
# A thin shim, like tools/launch, over `nrl-launch snapshot`: the same
# snapshot code as the launcher (atomic, submodules, manifest). Messages and
# progress go to stderr. Honours CODE_SNAPSHOT_DIRNAME and SNAPSHOT_MODE.
usage="usage: $0 EXPERIMENT  (prints the absolute path of the experiment's code snapshot)"
if [[ $# -ne 1 || -z $1 ]]; then
    echo "$usage" >&2
    exit 1
fi
if [[ $1 == -h || $1 == --help ]]; then  # not an experiment called --help; stdout stays for the path
    echo "$usage" >&2
    exit 0
fi
shim=${BASH_SOURCE[0]}
if [[ -L $shim ]]; then
    shim=$(readlink -f -- "$shim")
fi
[[ $shim == */* ]] || shim=./$shim
# As in tools/launch: this checkout's package first, without exporting PYTHONPATH.
# The interpreter: NRL_LAUNCH_PYTHON, else the checkout's own environment
# (.venv, made by tools/install), else python3 on PATH.
py=${NRL_LAUNCH_PYTHON:-${shim%/*}/../.venv/bin/python3}
[[ -n ${NRL_LAUNCH_PYTHON:-} || -x $py ]] || py=python3
exec "$py" -S -c \
    'import sys; sys.version_info >= (3, 10) or sys.exit("[ERROR]: nrl_launch needs Python 3.10 or newer; %s is %s (set NRL_LAUNCH_PYTHON to a newer python3)" % (sys.executable, sys.version.split()[0])); sys.path[0] = sys.argv.pop(1); import nrl_launch.__main__ as m; m.run(fast_start=True)' \
    "${shim%/*}" snapshot --project-root "${shim%/*}" -- "$1"
