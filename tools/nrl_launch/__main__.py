"""Allow ``python -m nrl_launch``; ``run`` is also the ``tools/launch`` entry.

The shim starts Python with ``-S`` and calls ``run(fast_start=True)``: site
start-up hooks (``.pth`` files) can cost more than a whole DRYRUN=1 launch,
so we add the site-packages folders ourselves without running those hooks.
In a virtual environment its own site-packages folder is added; when a
dependency is not found that way, the normal ``site`` start-up runs after all.
"""

import os
import sys


def _fast_site() -> None:
    """Make site-packages importable under ``python -S``, skipping .pth hooks."""
    import site

    env = os.path.dirname(os.path.dirname(sys.executable))
    config = os.path.join(env, "pyvenv.cfg")
    if os.path.exists(config):
        if _system_packages_too(config):
            # Its packages are split between the environment and the system: finding one
            # (click) says nothing of the others, so site does it all.
            site.main()
            return
        # Under -S, site has not read pyvenv.cfg: the environment's own folder is known from
        # where its python is (tools/install's .venv, or the one a CI job activated).
        folders = [os.path.join(env, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")]
    else:
        user = [site.getusersitepackages()] if site.check_enableusersite() else []
        folders = [*user, *site.getsitepackages()]
    for folder in folders:
        if folder not in sys.path and os.path.isdir(folder):
            sys.path.append(folder)
    try:
        import click  # noqa: F401  (the CLI imports it next anyway)

        return
    except ImportError:  # e.g. an editable dependency (its .pth hook) or a venv's system packages
        pass
    site.main()


def _system_packages_too(config: str) -> bool:
    """Whether the virtual environment of ``config`` (its pyvenv.cfg) sees the system's packages."""
    try:
        with open(config, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError:
        return True  # unreadable: let site decide, as without -S
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip().lower() == "include-system-site-packages":
            return value.strip().lower() == "true"
    return False


def run(fast_start: bool = False) -> None:
    """Start the CLI; ``fast_start`` when Python was started with ``-S``."""
    if fast_start and sys.flags.no_site:
        _fast_site()
    try:
        from nrl_launch.cli import main
    except ImportError as e:  # a missing dependency: one line, not a traceback
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        print(f"[ERROR]: nrl_launch cannot start ({e}); install it with: {root}/tools/install", file=sys.stderr)
        sys.exit(1)
    code = main.run(prog_name="nrl-launch")
    if fast_start:
        # The shim's process ends here: skip the interpreter's teardown of
        # every imported module (about 10 ms) once our output is flushed.
        try:
            if sys.stdout is not None:  # None when the shell closed it (>&-)
                sys.stdout.flush()
        except OSError:
            code = code or 1  # the output is incomplete (the caller said why when it could)
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
