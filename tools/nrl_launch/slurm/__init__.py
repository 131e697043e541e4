"""The one way to Slurm: the client every command goes through."""
