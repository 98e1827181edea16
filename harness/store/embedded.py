"""The datasets stage's embedded splits as a training chain under one seed sees them."""

from __future__ import annotations

from cube.embedded import EmbeddedData, load_embedded, redraw_split
from harness import paths
from harness.config import Params


def embedded_for(params: Params, seed: int) -> EmbeddedData:
    """The embedded splits a chain under ``seed`` trains and is scored on: the datasets stage's, or, with
    ``quality.resplit``, the same pairs split again under an extra seed."""
    data = load_embedded(paths.EMBEDDED)
    if not params.quality.resplit or seed == params.seed:
        return data
    return redraw_split(data, params.data.val_fraction, params.data.test_fraction, seed)
