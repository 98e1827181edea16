"""The lattice's CPU kernel: the autograd reference's function, and bits that do not depend on how the work is split."""

import pytest
import torch

import cube.cpu_kernel as cpu_kernel
from cube.lattice import CubeLattice

pytestmark = pytest.mark.skipif(cpu_kernel.supported() is not None, reason=str(cpu_kernel.supported()))


def random_lattice(shape, channels, hidden, steps=3, seed=0, **kwargs) -> CubeLattice:
    lattice = CubeLattice(shape, channels=channels, hidden=hidden, steps=steps, **kwargs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lattice.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return lattice


def run(lattice: CubeLattice, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Output, input gradient and parameter gradients of a fixed random projection of the output."""
    lattice.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out = lattice(x)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(5))).sum().backward()
    return out.detach(), x.grad, {name: p.grad.clone() for name, p in lattice.named_parameters()}


# widths the kernel has a specialised loop for (hidden 8 / 16 / 32 / 64, channels 8 / 16) and widths it pads
WIDTHS = [(8, 32), (16, 64), (3, 24), (8, 16), (9, 8), (2, 70)]


@pytest.mark.parametrize(("channels", "hidden"), WIDTHS, ids=[f"c{c}-h{h}" for c, h in WIDTHS])
def test_the_kernel_computes_the_autograd_reference_at_every_width(channels, hidden):
    shape = (3, 4, 5)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
    assert cpu_kernel.runs(x, channels, hidden)
    got = run(random_lattice(shape, channels, hidden, boundary="walls"), x)
    want = run(random_lattice(shape, channels, hidden, boundary="walls", fast=False), x)
    pairs = {"output": (got[0], want[0]), "input": (got[1], want[1]), **{n: (got[2][n], want[2][n]) for n in want[2]}}
    for name, (a, b) in pairs.items():  # sums of thousands of terms in two orders: rounding relative to their scale
        scale = max(1.0, b.abs().max().item())
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale, msg=lambda m, n=name: f"{n}: {m}")


def test_a_sample_gets_the_same_bits_alone_in_any_batch_and_at_any_thread_count():
    shape = (4, 3, 5)  # 60 cells: not a multiple of the kernel's group of cells
    lattice = random_lattice(shape, 8, 32, steps=4, boundary="periodic")
    x = torch.randn(7, *shape, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out, grad, params = run(lattice, x)
        torch.set_num_threads(1)
        out_one, grad_one, params_one = run(lattice, x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out, out_one) and torch.equal(grad, grad_one)
    assert all(torch.equal(params[name], params_one[name]) for name in params)
    for i in (0, 3, 6):  # alone, its output and input gradient are the rows it had in the batch
        alone_out, _, _ = run(lattice, x[i : i + 1])
        assert torch.equal(alone_out[0], out[i])
    with torch.no_grad():
        assert torch.equal(lattice(x[2:5]), out[2:5])


def test_checkpointed_backward_recomputes_the_same_bits():
    shape = (3, 4, 5)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(3))
    plain = run(random_lattice(shape, 8, 32, steps=5), x)
    checkpointed = run(random_lattice(shape, 8, 32, steps=5, activation_checkpointing=True), x)
    assert torch.equal(plain[0], checkpointed[0]) and torch.equal(plain[1], checkpointed[1])
    assert all(torch.equal(plain[2][name], checkpointed[2][name]) for name in plain[2])


def test_a_lattice_without_position_code_and_with_periodic_walls_matches_the_reference():
    shape = (4, 3, 2)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(4))
    got = run(random_lattice(shape, 8, 32, boundary="periodic", position_code=False), x)
    want = run(random_lattice(shape, 8, 32, boundary="periodic", position_code=False, fast=False), x)
    assert set(got[2]) == set(want[2]) and not any("position" in name for name in got[2])
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)
    for name in want[2]:
        scale = max(1.0, want[2][name].abs().max().item())
        torch.testing.assert_close(got[2][name], want[2][name], rtol=1e-5, atol=1e-5 * scale)


def test_the_kernel_keeps_only_the_cells_values_for_backward():
    from torch.autograd.graph import saved_tensors_hooks

    lattice = random_lattice((3, 4, 5), 8, 32, steps=6)
    x = torch.randn(5, 3, 4, 5)
    kept = []
    with saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        lattice(x)
    parameters = sum(p.numel() for p in lattice.parameters())
    assert sum(t.numel() for t in kept) == x.numel() + parameters


def test_widths_past_the_kernels_registers_and_other_dtypes_take_the_torch_path():
    x = torch.zeros(1, 2, 2, 2)
    assert not cpu_kernel.runs(x, 8, cpu_kernel.MAX_HIDDEN + 1)
    assert not cpu_kernel.runs(x, cpu_kernel.MAX_CHANNELS + 1, 32)
    assert not cpu_kernel.runs(x.double(), 8, 32)
    lattice = random_lattice((2, 2, 2), 4, cpu_kernel.MAX_HIDDEN + 8).double()
    reference = random_lattice((2, 2, 2), 4, cpu_kernel.MAX_HIDDEN + 8, fast=False).double()
    torch.testing.assert_close(lattice(x.double()), reference(x.double()))


def test_a_missing_compiler_is_a_clear_error_not_a_silent_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "no-such-compiler-cube-bench")
    monkeypatch.setenv("CUBE_KERNEL_CACHE", str(tmp_path))
    cpu_kernel.library.cache_clear()
    try:
        wanted = "no C compiler 'no-such-compiler-cube-bench'.*apt-get install gcc"
        with pytest.raises(cpu_kernel.KernelUnavailable, match=wanted):
            random_lattice((2, 2, 2), 4, 8)(torch.zeros(1, 2, 2, 2))
    finally:
        cpu_kernel.library.cache_clear()
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_folder_is_a_clear_error(monkeypatch, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("CUBE_KERNEL_CACHE", str(blocked / "kernels"))
    cpu_kernel.library.cache_clear()
    try:
        with pytest.raises(cpu_kernel.KernelUnavailable, match="cannot be written.*set CUBE_KERNEL_CACHE"):
            cpu_kernel.library()
    finally:
        cpu_kernel.library.cache_clear()
    assert sorted(tmp_path.iterdir()) == [blocked]


def test_the_library_is_built_once_per_source_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CUBE_KERNEL_CACHE", str(tmp_path))
    cpu_kernel.library.cache_clear()
    try:
        cpu_kernel.library()
        built = sorted(tmp_path.iterdir())
        assert len(built) == 1 and built[0].name.startswith("cell_rule-") and built[0].suffix == ".so"
        stamp = built[0].stat().st_mtime_ns
        cpu_kernel.library.cache_clear()
        cpu_kernel.library()
        assert sorted(tmp_path.iterdir()) == built and built[0].stat().st_mtime_ns == stamp
    finally:
        cpu_kernel.library.cache_clear()


def test_torchs_flop_counter_sees_the_kernels_work_forward_and_backward():
    from torch.utils.flop_counter import FlopCounterMode

    lattice = CubeLattice((8, 8, 6))  # channels 8, hidden 32: no padding lanes
    x = torch.randn(2, 8, 8, 6)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        lattice(x)
    forward = lattice.flops_per_sample() * 2
    linears = 2 * 2 * 384 * (1 * 8 + 8 * 1)  # seed_state and readout, batch 2
    assert counter.get_total_flops() == forward + linears
    with FlopCounterMode(display=False) as counter:
        lattice(x).sum().backward()
    backward = cpu_kernel.kernel_flops(2, 384, 8, 32, 10, "backward")
    assert backward > 2 * forward
    assert counter.get_total_flops() >= forward + backward
