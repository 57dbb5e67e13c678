"""Former home of the tables' code, kept so that old imports keep working.

The code lives in :mod:`wildmerge.scores` (reading scores, per-model averages),
:mod:`wildmerge.statistics` (bootstrap, sign and Wilcoxon tests), :mod:`wildmerge.tables`
(the tables and their files) and :mod:`wildmerge.rendering` (Markdown, captions).
"""

from wildmerge.rendering import METHOD_LABELS, format_cell, format_ci_cell, method_label, paired_to_markdown, to_markdown
from wildmerge.scores import AVERAGE, MODEL_KEYS, ROLES, model_averages, normalize_scores, read_scores
from wildmerge.statistics import (
    DEFAULT_LEVEL,
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    Bootstrap,
    bootstrap_indices,
    percentile_ci,
    sign_test_p,
    wilcoxon_signed_rank_p,
)
from wildmerge.tables import PAIRED, PAIRED_COLUMNS, TABLE_COLUMNS, table_paired, table_vs_base, table_vs_best_expert, write_tables

__all__ = [
    "AVERAGE", "DEFAULT_LEVEL", "DEFAULT_N_BOOT", "DEFAULT_SEED", "METHOD_LABELS", "MODEL_KEYS", "PAIRED",
    "PAIRED_COLUMNS", "ROLES", "TABLE_COLUMNS", "Bootstrap", "bootstrap_indices", "format_cell", "format_ci_cell",
    "method_label", "model_averages", "normalize_scores", "paired_to_markdown", "percentile_ci", "read_scores",
    "sign_test_p", "table_paired", "table_vs_base", "table_vs_best_expert", "to_markdown", "wilcoxon_signed_rank_p",
    "write_tables",
]
