"""pytest-benchmark timings of the cube library's hot paths, each with a check on its result.

Plain ``pytest --benchmark-disable`` runs every benchmarked call once, as an ordinary test.
Timed runs: ``--benchmark-enable --benchmark-only --benchmark-autosave`` saves a run under
``.benchmarks/``; ``--benchmark-compare --benchmark-compare-fail=median:30%`` fails on a slowdown.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from pytest_benchmark.fixture import BenchmarkFixture

from cube.config import CubeConfig, StageConfig, TeacherModelConfig
from cube.lattice import CubeLattice
from cube.losses import cosine_loss, stage_loss
from cube.processor import EmbeddingProcessor
from cube.reshaper import EmbeddingReshaper
from cube.teachers import Teacher, get_teacher
from harness.config import Params

# at least 10 timed rounds: the slower paths fill --benchmark-max-time=0.5 in 2-5 rounds, and a median of so few is noisy
pytestmark = [pytest.mark.bench, pytest.mark.benchmark(min_rounds=10)]

CPU = torch.device("cpu")
SEED = 0
BENCH_THREADS = 1  # see steady()
BATCH = 64
CUBE = CubeConfig()  # lattice (8, 8, 6), 8 state channels, hidden 32, 10 steps
DIM = math.prod(CUBE.lattice)  # 384: MiniLM's width, so the default reshaper is a pure view
WIDE = 768  # an embedding width that does not match the lattice: needs the linear adapter
SENTENCES = [
    "How are you today?",
    "What is your name?",
    "I like to read books.",
    "The weather is nice.",
    "Do you know any jokes?",
    "Where do you live?",
    "Tell me about yourself.",
    "Good night and sleep well.",
]


def unit_rows(rows: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Random unit-length rows, like a teacher's embeddings."""
    return F.normalize(torch.randn(rows, dim, generator=generator), dim=-1)


@pytest.fixture(autouse=True)
def steady(benchmark: BenchmarkFixture) -> Iterator[None]:
    """Seeded, and single-threaded while timed: on a shared or busy CPU, intra-op threads waiting on one another
    swing the timings far more than any code change, so one thread keeps saved runs comparable."""
    torch.manual_seed(SEED)
    threads = torch.get_num_threads()
    torch.set_num_threads(BENCH_THREADS)
    benchmark.extra_info["torch_threads"] = BENCH_THREADS
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(SEED)


@pytest.fixture
def embeddings(generator: torch.Generator) -> torch.Tensor:
    return unit_rows(BATCH, DIM, generator)


@pytest.fixture
def targets(embeddings: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Unit targets that agree with ``embeddings`` in part (cosine around 0.7), as trained pairs do."""
    return F.normalize(embeddings + torch.randn(embeddings.shape, generator=generator) / math.sqrt(DIM), dim=-1)


@pytest.fixture
def processor() -> EmbeddingProcessor:
    return EmbeddingProcessor(DIM, CUBE)


@pytest.fixture
def advanced() -> StageConfig:
    return Params().train.advanced


@pytest.fixture(scope="module")
def minilm() -> Teacher:
    return get_teacher(TeacherModelConfig(), CPU)


# ---------------------------------------------------------------- lattice


def test_lattice_step(benchmark: BenchmarkFixture, generator: torch.Generator) -> None:
    lattice = CubeLattice(CUBE.lattice, channels=CUBE.state_channels, hidden=CUBE.hidden, steps=CUBE.steps,
                          boundary=CUBE.boundary, position_code=CUBE.position_code)
    state = torch.randn(BATCH, *CUBE.lattice, CUBE.state_channels, generator=generator)
    external = torch.randn(BATCH, *CUBE.lattice, 1, generator=generator)
    benchmark.group = "lattice.step"
    benchmark.extra_info.update(state=list(state.shape), external=list(external.shape), hidden=CUBE.hidden)

    with torch.no_grad():
        new = benchmark(lattice.step, state, external)

    assert new.shape == state.shape
    assert torch.isfinite(new).all()
    change = (new - state).abs()
    assert 0 < change.mean() < state.abs().mean()  # a small update: the cell rule starts near the identity


# ---------------------------------------------------------------- processor


def test_processor_forward(benchmark: BenchmarkFixture, processor: EmbeddingProcessor, embeddings: torch.Tensor) -> None:
    processor.eval()
    benchmark.group = "processor.forward"
    benchmark.extra_info.update(input=list(embeddings.shape), lattice=list(CUBE.lattice), steps=CUBE.steps,
                                grad=False)

    with torch.no_grad():
        out = benchmark(processor, embeddings)

    assert out.shape == embeddings.shape
    assert torch.isfinite(out).all()
    assert F.cosine_similarity(out, embeddings, dim=-1).min() > 0.5  # residual: the untrained cube stays near its input


def test_processor_train_step(benchmark: BenchmarkFixture, processor: EmbeddingProcessor, embeddings: torch.Tensor,
                              targets: torch.Tensor, advanced: StageConfig) -> None:
    processor.train()
    optimizer = torch.optim.AdamW(processor.parameters(), lr=advanced.lr, weight_decay=advanced.weight_decay)
    before = [p.detach().clone() for p in processor.parameters()]

    def train_step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = cosine_loss(processor(embeddings), targets)
        loss.backward()
        optimizer.step()
        return loss.detach()

    benchmark.group = "processor.train_step"
    benchmark.extra_info.update(input=list(embeddings.shape), lattice=list(CUBE.lattice), steps=CUBE.steps,
                                optimizer="adamw", parameters=processor.parameter_count())

    loss = benchmark(train_step)

    assert loss.ndim == 0 and torch.isfinite(loss)
    assert 0.0 < loss.item() < 1.0  # targets agree with the inputs, and the residual path passes inputs through
    for old, new in zip(before, processor.parameters()):
        assert torch.isfinite(new).all()
        assert not torch.equal(old, new.detach())  # every parameter got a gradient and moved


# ---------------------------------------------------------------- reshaper


@pytest.mark.parametrize(("adapter", "dim"), [("none", DIM), ("linear", WIDE)])
def test_reshaper_round_trip(benchmark: BenchmarkFixture, adapter: str, dim: int, generator: torch.Generator) -> None:
    reshaper = EmbeddingReshaper(dim, CUBE.lattice, adapter)
    embeddings = unit_rows(BATCH, dim, generator)

    def round_trip() -> tuple[torch.Tensor, torch.Tensor]:
        cells = reshaper.to_lattice(embeddings)
        return cells, reshaper.to_embedding(cells)

    benchmark.group = "reshaper.round_trip"
    benchmark.extra_info.update(adapter=adapter, input=list(embeddings.shape), lattice=list(CUBE.lattice))

    with torch.no_grad():
        cells, back = benchmark(round_trip)

    assert cells.shape == (BATCH, *CUBE.lattice)
    assert back.shape == embeddings.shape
    assert torch.isfinite(back).all()
    if adapter == "none":
        assert torch.equal(back, embeddings)  # a pure view: exact round trip


# ---------------------------------------------------------------- losses


def test_stage_loss_advanced(benchmark: BenchmarkFixture, embeddings: torch.Tensor, targets: torch.Tensor,
                             advanced: StageConfig, generator: torch.Generator) -> None:
    benchmark.group = "losses"
    benchmark.extra_info.update(stage="advanced", pred=list(embeddings.shape), target=list(targets.shape))

    total, parts = benchmark(stage_loss, embeddings, targets, advanced)

    weights = {"cosine": advanced.cosine_weight, "mse": advanced.mse_weight, "infonce": advanced.infonce_weight,
               "triplet": advanced.triplet_weight, "diversity": advanced.diversity_weight}
    assert set(parts) == {name for name, weight in weights.items() if weight > 0}  # the default stage's own mix
    assert torch.isfinite(total) and total.item() > 0
    assert total.item() == pytest.approx(sum(float(p) for p in parts.values()), rel=1e-5)
    unrelated, _ = stage_loss(unit_rows(BATCH, DIM, generator), targets, advanced)
    assert total.item() < unrelated.item()  # predictions that agree with their targets cost less than random ones


def test_cosine_loss(benchmark: BenchmarkFixture, embeddings: torch.Tensor, targets: torch.Tensor) -> None:
    benchmark.group = "losses"
    benchmark.extra_info.update(pred=list(embeddings.shape), target=list(targets.shape))

    loss = benchmark(cosine_loss, embeddings, targets)

    assert loss.ndim == 0 and torch.isfinite(loss)
    assert 0.0 < loss.item() < 0.6  # targets were built at cosine ~0.7 to their predictions


# ---------------------------------------------------------------- teacher


def test_teacher_encode(benchmark: BenchmarkFixture, minilm: Teacher) -> None:
    benchmark.group = "teacher.encode"
    benchmark.extra_info.update(model=minilm.config.name, sentences=len(SENTENCES), width=minilm.width)

    out = benchmark(minilm.encode, SENTENCES, progress=False)

    assert out.shape == (len(SENTENCES), 384) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(len(SENTENCES)))
    off_diagonal = (out @ out.T).masked_fill(torch.eye(len(SENTENCES), dtype=torch.bool), -1.0)
    assert off_diagonal.max() < 0.95  # different sentences, different embeddings
