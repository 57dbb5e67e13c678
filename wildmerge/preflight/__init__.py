"""Pre-flight stage: a checkpoint checked against its base before any merge."""
