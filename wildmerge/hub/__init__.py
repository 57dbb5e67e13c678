"""Fetch stage: hub checkpoints and benchmark datasets, pinned by the lock file."""
