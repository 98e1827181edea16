import dataclasses

import pytest
import torch

import cube.cpu_kernel as cpu_kernel
import cube.propagation as propagation_module
from cube.config import CubeConfig
from cube.lattice import CubeLattice
from cube.neighbours import neighbour
from cube.processor import EmbeddingProcessor, Mode
from harness.measure.trackers import saved_activation_bytes


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
    """After T steps a cell's output depends on exactly the inputs within Manhattan distance T.

    Read from the gradient, not from a perturbed forward: a third-order effect can round away when the output adds
    it to larger terms, while a path's derivative is a product that stays non-zero and no path gives exact zero."""
    torch.manual_seed(0)
    lattice = CubeLattice((7, 7, 7), steps=steps, boundary="walls")
    x = torch.randn(1, 7, 7, 7, requires_grad=True)
    lattice(x)[0, 3, 3, 3].backward()
    reached = x.grad[0] != 0
    grid = torch.stack(torch.meshgrid(*[torch.arange(7)] * 3, indexing="ij"))
    distance = (grid - 3).abs().sum(0)
    assert reached[distance > steps].sum() == 0
    assert reached[distance <= steps].all()


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


# ---------------------------------------------------------------- the fast propagation against autograd's

SMALL = [((3, 4, 5), "walls", True), ((3, 4, 5), "periodic", False), ((1, 2, 3), "walls", False),
         ((1, 2, 3), "periodic", True), ((2, 1, 2), "periodic", True)]
SMALL_IDS = [f"{'x'.join(map(str, shape))}-{boundary}-{'pos' if pos else 'nopos'}" for shape, boundary, pos in SMALL]
TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(params=["kernel", "torch"])
def fast_path(request, monkeypatch) -> str:
    """Run the test on both fast paths: the CPU kernel, and the torch ops it replaces on the CPU (used on GPUs)."""
    if request.param == "torch":
        monkeypatch.setattr(cpu_kernel, "runs", lambda *args: False)
    elif cpu_kernel.supported() is not None:
        pytest.skip(cpu_kernel.supported())
    return request.param


def random_lattice(shape, boundary, position_code, steps=4, seed=0, **kwargs) -> CubeLattice:
    """Every parameter freshly Gaussian, so no symmetry between blocks, axes or directions hides a mix-up."""
    lattice = CubeLattice(shape, channels=4, hidden=8, steps=steps, boundary=boundary, position_code=position_code,
                          **kwargs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lattice.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return lattice


def outputs_and_gradients(lattice: CubeLattice, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Output, and the gradient of a random projection of it with respect to the input and every parameter."""
    lattice.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out = lattice(x)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(9))).sum().backward()
    return out.detach(), {"input": x.grad, **{name: p.grad for name, p in lattice.named_parameters()}}


def assert_same(got: tuple, want: tuple) -> None:
    torch.testing.assert_close(got[0], want[0], **TOL)
    assert set(got[1]) == set(want[1])
    for name in want[1]:
        torch.testing.assert_close(got[1][name], want[1][name], **TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
@pytest.mark.parametrize(("shape", "boundary", "position_code"), SMALL, ids=SMALL_IDS)
def test_fast_propagation_matches_autograd_on_outputs_and_every_gradient(shape, boundary, position_code, checkpointing,
                                                                         fast_path):
    reference = random_lattice(shape, boundary, position_code, fast=False)
    fast = random_lattice(shape, boundary, position_code, activation_checkpointing=checkpointing)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    assert_same(outputs_and_gradients(fast, x), outputs_and_gradients(reference, x))


@pytest.mark.parametrize("slots", [0, 1, 2, 8])
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_checkpointed_backward_gives_the_plain_gradients_whatever_its_slot_budget(monkeypatch, slots, steps):
    """0 slots: every state recomputed from the start; 1-2: bisection that runs out of slots; 8: bisection all the way
    (torch's fast path: the kernel recomputes a sample's states in one pass)."""
    monkeypatch.setattr(cpu_kernel, "runs", lambda *args: False)
    plain = random_lattice((3, 4, 5), "walls", True, steps=steps)
    checkpointed = random_lattice((3, 4, 5), "walls", True, steps=steps, activation_checkpointing=True)
    monkeypatch.setattr(propagation_module, "CHECKPOINT_SLOTS", slots)
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(3))
    assert_same(outputs_and_gradients(checkpointed, x), outputs_and_gradients(plain, x))


def test_saved_memory_is_flat_in_steps_with_checkpointing_or_the_kernel_and_linear_otherwise(fast_path):
    values = torch.randn(2, 4, 4, 4)

    def saved(steps: int, checkpointing: bool) -> int:
        lattice = CubeLattice((4, 4, 4), steps=steps, activation_checkpointing=checkpointing)
        return saved_activation_bytes(lambda: lattice(values))

    flat = [saved(steps, True) for steps in (1, 4, 16, 64)]
    assert len(set(flat)) == 1, flat
    plain = [saved(steps, False) for steps in (1, 4, 16)]
    if fast_path == "kernel":  # it keeps the values only, and recomputes the states in backward either way
        assert set(plain) == {flat[0]}, plain
        return
    per_step = (plain[1] - plain[0]) / 3
    assert per_step > 0 and plain[2] - plain[1] == 12 * per_step
    assert flat[0] < plain[1]


def test_no_grad_forward_equals_the_recorded_forward(fast_path):
    lattice = random_lattice((3, 4, 5), "walls", True)
    x = torch.randn(4, 3, 4, 5)
    with torch.no_grad():
        inference = lattice(x)
    torch.testing.assert_close(inference, lattice(x).detach(), rtol=0, atol=0)


def test_autocast_falls_back_to_the_autograd_path():
    fast = random_lattice((3, 4, 5), "periodic", True)
    reference = random_lattice((3, 4, 5), "periodic", True, fast=False)
    x = torch.randn(2, 3, 4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, want = fast(x), reference(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    out.float().sum().backward()
    assert all(p.grad is not None for p in fast.parameters())


def test_parameter_names_are_those_of_existing_checkpoints():
    names = set(CubeLattice((3, 4, 5)).state_dict())
    assert names == {"seed_state.weight", "seed_state.bias", "cell.perceive.weight", "cell.perceive.bias",
                     "cell.update.weight", "cell.update.bias", "readout.weight", "readout.bias", "position"}
