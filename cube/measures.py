"""The quality measures' names, read without torch (the params check and the report need them, not the scoring)."""

from __future__ import annotations

# Each measure's name: shown in every table and file, and the identifier code looks a figure up by.
COSINE, RECALL_AT_1, RECALL_AT_5, RECALL_AT_10, MRR, HUBNESS = "cosine", "recall@1", "recall@5", "recall@10", "mrr", "hubness"
CSLS_RECALL_AT_1, CSLS_MRR = "csls recall@1", "csls mrr"  # the same retrieval ranked by CSLS

PER_PAIR = (COSINE, RECALL_AT_1, MRR)  # the measures kept pair by pair, for paired comparisons and the gate
CSLS_PER_PAIR = (CSLS_RECALL_AT_1, CSLS_MRR)  # where a task's anchors rank by CSLS
SUMMARISED = (COSINE, RECALL_AT_1, RECALL_AT_5, RECALL_AT_10, MRR, HUBNESS)  # mean ± std per model; CSLS too where ranked
