"""Allow ``python -m nrl_launch``."""

from nrl_launch.cli import main

if __name__ == "__main__":
    main()
