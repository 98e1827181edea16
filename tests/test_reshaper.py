import math

import pytest
import torch

from cube.reshaper import EmbeddingReshaper, LatticeSizeError, nearest_shapes


def test_round_trip_is_exact_and_keeps_gradients():
    reshaper = EmbeddingReshaper(384, (8, 8, 6))
    x = torch.randn(5, 384, requires_grad=True)
    lattice = reshaper.to_lattice(x)
    assert lattice.shape == (5, 8, 8, 6)
    back = reshaper.to_embedding(lattice * 2)
    assert torch.equal(back, x * 2)
    back.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))


def test_mismatch_names_width_lattice_and_shapes_that_fit():
    with pytest.raises(LatticeSizeError) as err:
        EmbeddingReshaper(768, (8, 8, 8))
    message = str(err.value)
    assert "768" in message and "8x8x8 = 512" in message
    assert "8x8x12" in message
    assert "adapter: linear" in message


@pytest.mark.parametrize(("dim", "lattice"), [(768, (8, 8, 8)), (384, (7, 7, 7)), (1000, (9, 9, 9))])
def test_suggested_shapes_hold_exactly_dim(dim, lattice):
    shapes = nearest_shapes(dim, lattice)
    assert shapes and all(math.prod(s) == dim for s in shapes)


def test_linear_adapter_handles_any_width_with_gradients():
    reshaper = EmbeddingReshaper(300, (8, 8, 6), adapter="linear")
    x = torch.randn(4, 300)
    out = reshaper.to_embedding(reshaper.to_lattice(x))
    assert out.shape == (4, 300)
    out.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in reshaper.parameters())


def test_wrong_input_shape_is_refused():
    reshaper = EmbeddingReshaper(384, (8, 8, 6))
    with pytest.raises(ValueError, match=r"\(batch, 384\)"):
        reshaper.to_lattice(torch.randn(2, 100))
