"""DAG-time: the study a config describes (plan, paths, rerun state, config checks). Reads no weights."""
