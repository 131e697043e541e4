"""nrl_launch: launch recipe test suites on Slurm as chained, snapshotted jobs."""

__version__ = "0.1.0"
