"""The benchmark's peers compute exactly what the cube computes: outputs and gradients agree."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cube.config import CubeConfig
from cube.lattice import CubeLattice
from cube.processor import EmbeddingProcessor
from harness.measure.peers import Conv3dReference, EagerReference, PerSampleLoop, dense_kernel, reference_processor, used_taps

LATTICE = (3, 4, 5)  # non-cubic, so a swapped axis cannot go unnoticed
CASES = [("walls", True), ("walls", False), ("periodic", True), ("periodic", False)]
CASE_IDS = [f"{b}-{'pos' if p else 'nopos'}" for b, p in CASES]
TOL = {"rtol": 1e-5, "atol": 2e-5}  # sums in another order than the cube's kernel adds them


def randomise(module: nn.Module, seed: int = 0, scale: float = 0.3) -> None:
    """Replace every parameter by fresh Gaussian values: no symmetry between taps, axes or directions survives."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))


def cube(boundary: str, position_code: bool, seed: int = 0) -> CubeLattice:
    lattice = CubeLattice(LATTICE, channels=4, hidden=8, steps=3, boundary=boundary, position_code=position_code)
    randomise(lattice, seed)
    return lattice


def cells(batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, *LATTICE, generator=torch.Generator().manual_seed(seed))


def test_dense_kernel_round_trip_and_zero_off_taps():
    weight = torch.randn(8, 7 * 4 + 1)
    kernel = dense_kernel(weight, 4)
    assert kernel.shape == (8, 5, 3, 3, 3)
    torch.testing.assert_close(used_taps(kernel), weight, rtol=0, atol=0)
    assert (kernel != 0).sum() == weight.numel()  # nothing but the 7 taps (and 1 external tap) is set


def same_outputs_and_input_gradients(lattice: torch.nn.Module, ref: torch.nn.Module) -> None:
    """One input and one upstream gradient through both: equal outputs and equal input gradients
    (parameter gradients are left in place for the caller to compare)."""
    x = cells()
    x_cube, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_cube, out_ref = lattice(x_cube), ref(x_ref)
    torch.testing.assert_close(out_ref, out_cube, **TOL)
    upstream = torch.randn(out_cube.shape, generator=torch.Generator().manual_seed(2))
    (out_cube * upstream).sum().backward()
    (out_ref * upstream).sum().backward()
    torch.testing.assert_close(x_ref.grad, x_cube.grad, **TOL)


@pytest.mark.parametrize(("boundary", "position_code"), CASES, ids=CASE_IDS)
def test_conv3d_reference_matches_cube_output_and_gradients(boundary, position_code):
    lattice = cube(boundary, position_code)
    ref = Conv3dReference.from_lattice(lattice)
    same_outputs_and_input_gradients(lattice, ref)
    cell = lattice.cell
    pairs = {
        "perceive.weight": (used_taps(ref.perceive.weight.grad), cell.perceive.weight.grad),
        "perceive.bias": (ref.perceive.bias.grad, cell.perceive.bias.grad),
        "update.weight": (ref.update.weight.grad.flatten(1), cell.update.weight.grad),
        "update.bias": (ref.update.bias.grad, cell.update.bias.grad),
        "seed_state.weight": (ref.seed_state.weight.grad.flatten(1), lattice.seed_state.weight.grad),
        "seed_state.bias": (ref.seed_state.bias.grad, lattice.seed_state.bias.grad),
        "readout.weight": (ref.readout.weight.grad.flatten(1), lattice.readout.weight.grad),
        "readout.bias": (ref.readout.bias.grad, lattice.readout.bias.grad),
    }
    if position_code:
        pairs["position"] = (ref.position.grad.permute(1, 2, 3, 0), lattice.position.grad)
    for name, (got, want) in pairs.items():
        torch.testing.assert_close(got, want, **TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "autograd"])
@pytest.mark.parametrize(("boundary", "position_code"), CASES, ids=CASE_IDS)
def test_eager_reference_matches_cube_output_and_gradients(boundary, position_code, fast):
    """Against both of the cube's own paths: the fast propagation (hand-written backward) and autograd over ``step``."""
    lattice = cube(boundary, position_code)
    lattice.fast = fast
    ref = EagerReference.from_lattice(lattice)
    same_outputs_and_input_gradients(lattice, ref)
    ours = dict(lattice.named_parameters())
    theirs = dict(ref.named_parameters())
    assert set(theirs) == set(ours)  # same names: the reference loads a lattice's state_dict as it is
    for name, param in ours.items():
        torch.testing.assert_close(theirs[name].grad, param.grad, **TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("boundary", ["walls", "periodic"])
def test_eager_reference_on_lattices_one_and_two_cells_thick(boundary):
    """Where padding and slicing meet the edge cases: a side of 1 (a neighbour is a wall, or the cell itself) and of 2."""
    lattice = CubeLattice((1, 2, 3), channels=4, hidden=8, steps=3, boundary=boundary)
    randomise(lattice, seed=5)
    x = torch.randn(2, 1, 2, 3, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(EagerReference.from_lattice(lattice)(x), lattice(x), **TOL)


def test_eager_reference_owns_copies_not_the_cubes_parameters():
    lattice = cube("periodic", True)
    ref = EagerReference.from_lattice(lattice)
    assert not {id(p) for p in lattice.parameters()} & {id(p) for p in ref.parameters()}
    with torch.no_grad():
        ref.cell.update.bias.add_(1.0)
    assert not torch.equal(ref(cells()), lattice(cells()))


def test_reference_owns_copies_not_the_cubes_parameters():
    lattice = cube("walls", True)
    ref = Conv3dReference.from_lattice(lattice)
    cube_ids = {id(p) for p in lattice.parameters()}
    assert not cube_ids & {id(p) for p in ref.parameters()}
    assert all(p.requires_grad for p in ref.parameters())
    with torch.no_grad():
        ref.update.bias.add_(1.0)
    assert not torch.equal(ref(cells()), lattice(cells()))


@pytest.mark.parametrize("boundary", ["walls", "periodic"])
def test_kernel_mapping_is_checked_by_an_impulse(boundary):
    """One nonzero cell input spreads one cell per step; a mirrored tap (+1 and -1 swapped) would land elsewhere."""
    lattice = cube(boundary, position_code=False, seed=3)
    with torch.no_grad():
        lattice.seed_state.bias.zero_()
        lattice.cell.perceive.bias.zero_()
        lattice.cell.update.bias.zero_()
    x = torch.zeros(1, *LATTICE)
    x[0, 1, 1, 1] = 1.0
    ref = Conv3dReference.from_lattice(lattice)
    out = lattice(x)
    torch.testing.assert_close(ref(x), out, **TOL)
    for dims in ((2,), (3,), (4,)):  # a kernel mirrored along one axis is the classic off-by-direction bug
        mirrored = Conv3dReference.from_lattice(lattice)
        with torch.no_grad():
            mirrored.perceive.weight.copy_(mirrored.perceive.weight.flip(dims))
        assert (mirrored(x) - out).abs().max() > 1e-3, f"mirroring kernel dim {dims} went unnoticed"


def processor_config(boundary: str, position_code: bool, adapter: str = "none") -> CubeConfig:
    return CubeConfig(lattice=LATTICE, state_channels=4, hidden=8, steps=3, boundary=boundary,
                      position_code=position_code, adapter=adapter)


@pytest.mark.parametrize(
    ("boundary", "position_code", "adapter", "dim"),
    [("walls", True, "none", 60), ("periodic", False, "none", 60), ("walls", True, "linear", 24)],
    ids=["walls-pos", "periodic-nopos", "adapter"],
)
@pytest.mark.parametrize("peer", [Conv3dReference, EagerReference], ids=["conv3d", "eager"])
def test_reference_processor_matches_model(boundary, position_code, adapter, dim, peer):
    torch.manual_seed(0)
    model = EmbeddingProcessor(dim, processor_config(boundary, position_code, adapter))
    randomise(model.lattice)
    ref = reference_processor(model, peer)
    assert isinstance(ref.lattice, peer) and isinstance(model.lattice, CubeLattice)
    assert not isinstance(ref, EmbeddingProcessor)  # none of the cube's own code runs in the peer
    x = torch.randn(5, dim, generator=torch.Generator().manual_seed(4))
    x_model, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_model, out_ref = model(x_model), ref(x_ref)
    assert out_ref.shape == (5, dim)
    torch.testing.assert_close(out_ref, out_model, **TOL)
    out_model.square().sum().backward()
    out_ref.square().sum().backward()
    torch.testing.assert_close(x_ref.grad, x_model.grad, **TOL)


def test_per_sample_loop_matches_model_and_shares_parameters():
    torch.manual_seed(0)
    model = EmbeddingProcessor(60, processor_config("walls", True))
    randomise(model.lattice)
    loop = PerSampleLoop(model)
    assert [id(p) for p in loop.parameters()] == [id(p) for p in model.parameters()]
    x = torch.randn(6, 60, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(loop(x), model(x), **TOL)
    loop(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_compiled_eager_reference_matches_cube_output_and_gradients():
    """The bench's torch.compile peer computes the cube's function: its speed ratio compares like with like."""
    from cube.config import to_plain
    from harness.config import params_from_dict
    from harness.measure.peer_ratios import COMPILED_PEER, measure_peers

    lattice = cube("walls", True)
    compiled = torch.compile(EagerReference.from_lattice(lattice))
    same_outputs_and_input_gradients(lattice, compiled)
    ours = dict(lattice.named_parameters())
    for name, param in compiled.named_parameters():
        name = name.removeprefix("_orig_mod.")
        torch.testing.assert_close(param.grad, ours[name].grad, **TOL, msg=lambda m, name=name: f"{name}: {m}")
    # measured by the bench with its compile time apart, or left out with the reason
    config = CubeConfig(lattice=(2, 2, 2), state_channels=4, hidden=8, steps=2)
    params = params_from_dict({"cube": to_plain(config), "bench": {"peer_batch_size": 4, "peer_repeats": 3, "warmup": 1}})
    peers = measure_peers(EmbeddingProcessor(8, config), params, 8, torch.device("cpu"),
                          peers=("eager_reference", COMPILED_PEER))
    if peers.unavailable:
        assert "torch.compile failed here" in peers.unavailable[COMPILED_PEER]
    else:
        assert set(peers.compile_seconds) == {"forward", "train"}
        assert all(s > 0 for s in peers.compile_seconds.values())
        assert f"train_own_vs_{COMPILED_PEER}" in peers.speed_ratios
