"""A placement of embedding dimensions on the lattice: a permutation, computed the same way every time, carried by
the model's state dict, and one the cube computes through without losing a dimension."""

import pytest
import torch

from cube import placement, probes
from cube.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from cube.config import ConfigError, CubeConfig
from cube.neighbours import lattice_edges
from cube.processor import EmbeddingProcessor
from cube.reshaper import EmbeddingReshaper
from harness.config import params_from_dict

LATTICE = (4, 4, 3)


def coupled_pairs(n: int = 2000, dim: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Questions, and answers in which dimension 2k+1 of the answer carries dimension 2k of the question (scattered
    so that reshape order puts no coupled pair side by side)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, dim, generator=g)
    scatter = torch.randperm(dim, generator=g)
    a = q.clone()
    a[:, scatter[1::2]] += 2.0 * q[:, scatter[0::2]]
    return q, a


def test_lattice_edges_are_the_face_pairs():
    first, second = lattice_edges((2, 3, 4))
    assert len(first) == 1 * 3 * 4 + 2 * 2 * 4 + 2 * 3 * 3
    coords = torch.stack(torch.meshgrid(*(torch.arange(s) for s in (2, 3, 4)), indexing="ij"), -1).reshape(-1, 3)
    assert ((coords[first] - coords[second]).abs().sum(-1) == 1).all()


@pytest.mark.parametrize("kind", ["coupling", "correlation"])
def test_a_computed_placement_is_a_permutation_that_puts_coupled_dimensions_side_by_side(kind):
    q, a = coupled_pairs()
    value = placement.affinity(kind, q, a)
    assert torch.equal(value, value.T) and (value.diagonal() == 0).all()
    order = placement.compute(kind, q, a, LATTICE)
    assert torch.equal(torch.sort(order).values, torch.arange(48))
    reshape = placement.edge_score(torch.arange(48), value, LATTICE)
    placed = placement.edge_score(order, value, LATTICE)
    assert placed > 2 * reshape, (reshape, placed)
    if kind == "coupling":  # every coupled pair ends up on an edge
        first, second = lattice_edges(LATTICE)
        on_edges = {frozenset((int(order[x]), int(order[y]))) for x, y in zip(first, second)}
        strong = (value > 0.5).nonzero().tolist()
        assert strong and all(frozenset(p) in on_edges for p in strong)


def test_the_placement_does_not_depend_on_the_order_floats_are_added_in():
    q, a = coupled_pairs()
    order = placement.compute("coupling", q, a, LATTICE)
    reversed_rows = placement.compute("coupling", q.flip(0), a.flip(0), LATTICE)  # the same pairs, summed backwards
    assert torch.equal(order, reversed_rows)
    value = placement.affinity("coupling", q, a)
    assert torch.equal(torch.round(value / placement.GRID) * placement.GRID, value)  # on the grid: sums are exact


def test_the_reshaper_puts_dimension_order_c_in_cell_c_and_back():
    reshaper = EmbeddingReshaper(48, LATTICE, placed=True)
    order = torch.randperm(48, generator=torch.Generator().manual_seed(1))
    reshaper.place(order)
    x = torch.randn(5, 48)
    cells = reshaper.to_lattice(x).reshape(5, 48)
    assert torch.equal(cells, x[:, order])
    assert torch.equal(reshaper.to_embedding(reshaper.to_lattice(x)), x)
    with pytest.raises(ValueError, match="permutation"):
        reshaper.place(torch.zeros(48, dtype=torch.long))
    with pytest.raises(ValueError, match="without a placement"):
        EmbeddingReshaper(48, LATTICE).place(order)


def test_a_placed_cube_keeps_its_placement_through_a_checkpoint(tmp_path):
    config = CubeConfig(lattice=LATTICE, placement="coupling", steps=2)
    q, a = coupled_pairs()
    model = EmbeddingProcessor(48, config)
    model.place_dimensions(q, a)
    assert not torch.equal(model.reshaper.order, torch.arange(48))
    save_checkpoint(tmp_path, {f"best.{k}": v for k, v in model.state_dict().items()}, {"epoch": 1})
    restored = EmbeddingProcessor(48, config)
    load_model_weights(restored, load_checkpoint(tmp_path))
    assert torch.equal(restored.reshaper.order, model.reshaper.order)
    x = q[:8] / q[:8].norm(dim=1, keepdim=True)
    assert torch.equal(restored(x), model(x))
    default = EmbeddingProcessor(48, CubeConfig(lattice=LATTICE, steps=2))
    default.place_dimensions(q, a)  # reshape: nothing to place, and nothing added to the state dict
    assert "reshaper.order" not in default.state_dict()


def test_a_placement_with_a_linear_adapter_is_refused_naming_both_settings():
    with pytest.raises(ConfigError, match="cube.placement 'coupling'.*cube.adapter 'linear'"):
        params_from_dict({"cube": {"placement": "coupling", "adapter": "linear"}})


def test_a_probe_trains_only_its_free_entries():
    order = torch.arange(48)
    local = probes.lattice_local(order, LATTICE, "local")
    first, _ = lattice_edges(LATTICE)
    assert local.free_parameters() == 48 + 2 * len(first) + 48
    x = torch.randn(16, 48)
    (local(x) ** 2).sum().backward()
    assert (local.weight.grad[local.mask == 0] == 0).all()
    assert (local.weight.grad[local.mask == 1] != 0).any()
    assert probes.diagonal(48).free_parameters() == 96
    assert probes.LowRankLinear(48, 3).free_parameters() == 2 * 48 * 3 + 48
    assert torch.equal(probes.LowRankLinear(48, 3)(x), x)  # starts as the identity
