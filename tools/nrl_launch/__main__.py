"""Allow ``python -m nrl_launch`` (the ``tools/launch`` shim uses it)."""

from nrl_launch.cli import main

if __name__ == "__main__":
    main(prog_name="nrl-launch")
