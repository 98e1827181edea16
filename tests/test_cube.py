import dataclasses

import pytest
import torch

from cube.config import CubeConfig
from cube.lattice import CubeLattice, neighbour
from cube.processor import EmbeddingProcessor, Mode


def unit(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)


@pytest.mark.parametrize(
    "config",
    [CubeConfig(), CubeConfig(boundary="periodic", residual=False), CubeConfig(position_code=False, hidden=16),
     CubeConfig(lattice=(4, 5, 6), adapter="linear")],
    ids=["default", "periodic-no-residual", "no-position-h16", "adapter"],
)
def test_every_learnable_parameter_gets_a_nonzero_gradient(config):
    torch.manual_seed(0)
    model = EmbeddingProcessor(384, config)
    q, a = unit(16, 384, 1), unit(16, 384, 2)
    loss = (1 - torch.cosine_similarity(model(q), a)).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def test_batch_of_64_equals_64_single_calls():
    torch.manual_seed(0)
    model = EmbeddingProcessor(384, CubeConfig()).eval()
    x = unit(64, 384)
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(64)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def test_output_is_not_a_fixed_function_of_the_input_once_weights_change():
    torch.manual_seed(0)
    model = EmbeddingProcessor(384, CubeConfig())
    x = unit(4, 384)
    before = model(x).detach()
    with torch.no_grad():
        model.lattice.readout.weight.add_(0.5)
    assert not torch.allclose(before, model(x))


def test_walls_read_zero_outside_and_periodic_wraps():
    state = torch.arange(4.0).reshape(1, 4, 1, 1, 1)
    assert neighbour(state, 1, 1, "walls").flatten().tolist() == [1, 2, 3, 0]
    assert neighbour(state, 1, -1, "walls").flatten().tolist() == [0, 0, 1, 2]
    assert neighbour(state, 1, 1, "periodic").flatten().tolist() == [1, 2, 3, 0]
    assert neighbour(state, 1, -1, "periodic").flatten().tolist() == [3, 0, 1, 2]
    state = torch.arange(1.0, 5.0).reshape(1, 4, 1, 1, 1)
    assert neighbour(state, 1, 1, "periodic").flatten().tolist() == [2, 3, 4, 1]
    assert neighbour(state, 1, 1, "walls").flatten().tolist() == [2, 3, 4, 0]


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_signals_travel_one_cell_per_step(steps):
    """A change at one cell reaches exactly the cells within Manhattan distance T after T steps."""
    torch.manual_seed(0)
    lattice = CubeLattice((7, 7, 7), steps=steps, boundary="walls")
    x = torch.randn(1, 7, 7, 7)
    y = x.clone()
    y[0, 3, 3, 3] += 1.0
    with torch.no_grad():
        changed = (lattice(x) - lattice(y)).abs()[0] > 0
    grid = torch.stack(torch.meshgrid(*[torch.arange(7)] * 3, indexing="ij"))
    distance = (grid - 3).abs().sum(0)
    assert changed[distance > steps].sum() == 0
    assert changed[distance <= steps].all()


def test_activation_checkpointing_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = EmbeddingProcessor(384, CubeConfig())
    checkpointed = EmbeddingProcessor(384, dataclasses.replace(CubeConfig(), activation_checkpointing=True))
    checkpointed.load_state_dict(plain.state_dict())
    x = unit(8, 384)
    for model in (plain, checkpointed):
        model(x).pow(2).sum().backward()
    torch.testing.assert_close(plain(x), checkpointed(x))
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_modes_choose_the_target():
    q, a = unit(2, 384, 1), unit(2, 384, 2)
    assert torch.equal(EmbeddingProcessor(384, CubeConfig(), Mode.AUTOENCODER).target(q, a), q)
    assert torch.equal(EmbeddingProcessor(384, CubeConfig(), "dialogue").target(q, a), a)


def test_flops_match_the_cell_rule_arithmetic():
    model = EmbeddingProcessor(768, CubeConfig(lattice=(8, 8, 12)))
    per_cell = 2 * ((7 * 8 + 1) * 32 + 32 * 8)
    assert model.flops_per_sample() == per_cell * 768 * 10
