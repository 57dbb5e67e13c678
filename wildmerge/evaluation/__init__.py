"""Evaluation stage: lm-eval runs, budgets, per-item outcomes, the evaluation jobs."""
