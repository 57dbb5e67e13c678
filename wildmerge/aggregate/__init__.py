"""Aggregation stage: scores into tables, paired item tables and figures."""
