"""The quality measures' names, read without torch (the params check and the report need them, not the scoring)."""

from __future__ import annotations

PER_PAIR = ("cosine", "recall@1", "mrr")  # the measures kept pair by pair, for paired comparisons and the gate
CSLS_PER_PAIR = ("csls recall@1", "csls mrr")  # the same retrieval ranked by CSLS, where a task's anchors use it
SUMMARISED = ("cosine", "recall@1", "recall@5", "recall@10", "mrr", "hubness")  # mean ± std per model; CSLS too where ranked
