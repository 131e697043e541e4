"""One experiment's folder: its snapshot, manifest, lock, continue.sh and job logs."""
