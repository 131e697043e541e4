"""Allow ``python -m nrl_launch`` (the ``tools/launch`` shim uses it)."""

import sys


def _run() -> None:
    try:
        from nrl_launch.cli import main
    except ImportError as e:  # a missing dependency: one line, not a traceback
        root = __file__.rsplit("/tools/", 1)[0]
        print(f"[ERROR]: nrl_launch cannot start ({e}); install it with: pip install -e {root}", file=sys.stderr)
        sys.exit(1)
    main(prog_name="nrl-launch")


if __name__ == "__main__":
    _run()
