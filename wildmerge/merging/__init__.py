"""Merge stage: mergekit runs, the registered methods, merged models."""
