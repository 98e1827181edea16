"""The cube against its peers (``harness/measure/peers.py``) at one batch size, as speed ratios with intervals.

``PEERS`` is the one list of peers: what each is called in the report, how it is built from the cube, and whether
its code is its own (an independent peer: a slowdown of the cube's code cannot hide in it, so the gate and the
second-process probe time those).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from cube.processor import EmbeddingProcessor
from harness.config import Params
from harness.measure.peers import Conv3dReference, EagerReference, PerSampleLoop, reference_processor
from harness.measure.phases import PHASES, batch_inputs, first_calls, phases
from harness.measure.trackers import summarise_latency, time_interleaved
from harness.stats import paired
from harness.store.results import OWN, PeerRow, Peers, ratio_key

log = logging.getLogger(__name__)

OWN_LABEL = "this project's cube"


@dataclass(frozen=True)
class Peer:
    name: str
    label: str  # the report's words for it
    make: Callable[[EmbeddingProcessor], torch.nn.Module]
    independent: bool  # its own code: timed again in a second process and gated
    optional: bool = False  # only with bench.compiled_peer


PEERS: tuple[Peer, ...] = (
    Peer("per_sample_loop", "same cube, one sample at a time (earlier trainer's loop)",
         lambda model: PerSampleLoop(copy.deepcopy(model)), independent=False),
    Peer("conv3d_reference", "NCA-style reference: 3x3x3 conv3d + 1x1x1 conv3d",
         lambda model: reference_processor(model, Conv3dReference), independent=True),
    Peer("eager_reference", "eager reference: F.pad, slices, cat, Linear, ReLU, Linear (autograd)",
         lambda model: reference_processor(model, EagerReference), independent=True),
    Peer("compiled_eager_reference", "eager reference under torch.compile (inductor, default mode)",
         lambda model: torch.compile(reference_processor(model, EagerReference)), independent=False, optional=True),
)
BY_NAME = {peer.name: peer for peer in PEERS}
INDEPENDENT_PEERS = tuple(peer.name for peer in PEERS if peer.independent)
COMPILED_PEER = next(peer.name for peer in PEERS if peer.optional)


def label(name: str) -> str:
    """The report's words for an implementation (the cube's own or a peer)."""
    return OWN_LABEL if name == OWN else BY_NAME[name].label if name in BY_NAME else name


def default_peers(compiled_peer: bool) -> tuple[str, ...]:
    return tuple(peer.name for peer in PEERS if not peer.optional or compiled_peer)


def measure_peers(model: EmbeddingProcessor, params: Params, dim: int, device: torch.device,
                  repeats: int | None = None, peers: tuple[str, ...] | None = None,
                  batch: int | None = None, warmup: int | None = None) -> Peers:
    """The cube against the same computation done other ways, at one batch size (``bench.peer_batch_size`` unless
    ``batch`` is given), as speed ratios.

    Each implementation gets its own copy of the weights (one's optimizer steps never move another's).
    They are timed in alternation and each ratio is the geometric mean of per-repeat ratios with a 95%
    interval over the repeats, so load from elsewhere on a shared machine lands on all of them alike
    and shows as a wider interval rather than a wrong ratio. The compiled peer's first call per phase (its
    compile time) is timed apart; where torch.compile cannot run here (no C++ compiler, say) the peer is left
    out and the reason kept.
    """
    bench = params.bench
    repeats = repeats or bench.peer_repeats
    if peers is None:
        peers = default_peers(bench.compiled_peer)
    batch = batch or bench.peer_batch_size
    x, target = batch_inputs(batch, dim, device)
    labels = {name: label(name) for name in (OWN, *peers)}
    implementations = {OWN: copy.deepcopy(model)} | {name: BY_NAME[name].make(model) for name in peers}
    steps = {name: phases(implementation, x, target) for name, implementation in implementations.items()}
    compile_seconds, unavailable = {}, {}
    if COMPILED_PEER in implementations:
        try:
            with torch._inductor.config.patch(force_disable_caches=True):  # a cold compile, as on a first run
                compile_seconds = first_calls(steps[COMPILED_PEER], implementations[COMPILED_PEER], device)
        except Exception as error:  # inductor's failures have no common base class; the reason is reported
            unavailable[COMPILED_PEER] = f"torch.compile failed here: {type(error).__name__}: {str(error)[:300]}"
            log.warning("bench: %s", unavailable[COMPILED_PEER])
            del implementations[COMPILED_PEER], steps[COMPILED_PEER]
            peers = tuple(p for p in peers if p != COMPILED_PEER)
    rows, ratios = [], {}
    for phase in tqdm(PHASES, desc=f"bench: peers at batch {batch}", unit="phase"):
        for implementation in implementations.values():
            implementation.train(phase == "train")
        times = time_interleaved({name: steps[name][phase] for name in implementations}, device,
                                 bench.warmup if warmup is None else warmup, repeats)
        rows += [PeerRow(implementation=name, phase=phase, batch_size=batch, **summarise_latency(t, batch).model_dump())
                 for name, t in times.items()]
        for peer in peers:
            ratios[ratio_key(phase, peer)] = paired.ratio_interval(times[OWN], times[peer])
    return Peers(batch_size=batch, repeats=repeats, labels=labels, rows=rows, speed_ratios=ratios,
                 compile_seconds=compile_seconds, unavailable=unavailable,
                 own_at_least_as_fast=all(value.ratio >= 1.0 for value in ratios.values()))
