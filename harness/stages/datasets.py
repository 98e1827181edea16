"""The ``datasets`` stage: corpus -> pairs -> split -> teacher embeddings (cached), and the data card."""

from __future__ import annotations

from cube import atomic
from cube.embedded import build_embedded_data, save_embedded
from harness import paths
from harness.config import Params
from harness.store.results import DataCard, DataCardSummary, DatasetsRun


def run_datasets(params: Params) -> None:
    data = build_embedded_data(params, progress=True)
    save_embedded(data, paths.EMBEDDED)
    card = DataCard.model_validate(data.card)  # the cube's card, typed once here
    summary = DataCardSummary(**card.model_dump(exclude={"teachers"}), teachers=len(card.teachers))
    atomic.write_json(paths.DATA_CARD, summary.model_dump(mode="json"))
    run = DatasetsRun(teachers=data.run_facts)
    atomic.write_json(paths.DATASETS_RUN, run.model_dump(mode="json"))
    print(f"datasets: {summary.pairs} pairs, width {data.dim}, "
          f"{sum(t.encoded for t in run.teachers)} sentences encoded, "
          f"{sum(t.cache_hits for t in run.teachers)} from the cache")
