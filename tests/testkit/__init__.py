"""The one test kit: real git repositories, recipe builders and fake Slurms.

Shared by tests/unit and tests/integration (``tests`` is on sys.path through
setup.cfg); the conftest files only turn these into fixtures.

One model of Slurm (:class:`FakeSlurm`: a queue of jobs and the answers of
every Slurm command), used at two levels:

* in process, as a *runner* for :class:`nrl_launch.slurm.client.SlurmClient`
  (the launcher's one Slurm seam), recording every call. Library and CLI unit
  tests use it (``run_cli(…, slurm=fake)``).
* on PATH, :class:`SlurmOnPath` puts ``tests/unit/fakes/fake_slurm.py`` first
  on ``PATH`` under the names of the Slurm commands, for tests that run real
  processes (the ``tools/launch`` shim, ``continue.sh``): each call runs the
  same model, its queue kept in a file, its knobs set by ``FAKE_*`` variables.

Modules, by what they provide or fake:

* :mod:`testkit.repos`: real git repositories (``make_repo``, ``make_tree``,
  ``Project``), recipe and CONFIG builders, the launch environment.
* :mod:`testkit.slurm`: the fake Slurm (``FakeSlurm``, ``SlurmOnPath``).
* :mod:`testkit.procs`: real launcher processes, ``run_cli`` (the click
  commands in process), locks held as another process would.
* :mod:`testkit.e2e`: launches of a private copy of this repository.
* :mod:`testkit.cluster`: the local Slurm cluster.
* :mod:`testkit.faults`: a flaky or slow ``sbatch`` on a real cluster, and a census of the
  jobs a launch queued against what its manifests record.

Everything is importable from ``testkit`` itself.
"""

from testkit.cluster import *  # noqa: F403
from testkit.e2e import *  # noqa: F403
from testkit.faults import *  # noqa: F403
from testkit.procs import *  # noqa: F403
from testkit.repos import *  # noqa: F403
from testkit.slurm import *  # noqa: F403
