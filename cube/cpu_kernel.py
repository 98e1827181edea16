"""The cube lattice's CPU kernel (``cube/kernels/cell_rule.c``: seed, cell rule, readout): built on first use,
called through ctypes.

Why a kernel of our own: under the portable pins the BLAS runs its SSE2 branch, the one MKL runs alike on
every x86-64 CPU, and the cell rule's skinny matmuls (7C -> H -> C per cell) ran there at a fifth of what
the CPU can do. The kernel fixes the order of every addition itself (vector lanes hold different outputs,
never parts of one sum; explicit FMAs; no compiler contraction), so it gives the same bits on any CPU with
AVX2 and FMA under both numerics modes, at any thread count, and it keeps each sample's states in cache (backward
recomputes them there rather than keeping them in memory).

The library is compiled once per source, flags and compiler into the user's cache folder
(``$CUBE_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/cube-bench/kernels``). The compiler is ``$CC``, else ``cc``.
Threads: the batch is split over ``torch.get_num_threads()`` Python threads (ctypes releases the GIL);
a sample is always computed by one thread, so the split does not change any result.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.flop_counter import register_flop_formula

from cube.numerics import REQUIRED_FLAGS, cpu_flags

SOURCE = Path(__file__).with_name("kernels") / "cell_rule.c"
FLAGS = ("-O3", "-mavx2", "-mfma", "-ffp-contract=off", "-fno-fast-math", "-ffreestanding",
         "-fno-tree-loop-distribute-patterns", "-nostdlib", "-shared", "-fPIC")
LANES = 8
BLOCKS = 7
MAX_HIDDEN, MAX_CHANNELS = 128, 32  # the kernel's register budget (MAX_HV, MAX_CV lanes of 8)


class KernelUnavailable(RuntimeError):
    """The CPU kernel cannot be built or run here."""


class _Rule(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in ("cells", "channels", "cpad", "hidden", "hpad", "steps")] + [
        ("table", ctypes.c_void_p), *[(name, ctypes.c_void_p) for name in (
            "pk", "pw", "pe", "pb", "ut", "un", "ub", "sw", "sb", "pos", "rw", "rb")]]


@functools.lru_cache(maxsize=1)
def supported() -> str | None:
    """None where the kernel can run here, else why not."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the cell rule's CPU kernel needs an x86-64 CPU, this is {platform.machine()}"
    missing = [flag for flag in REQUIRED_FLAGS if flag not in cpu_flags()]
    if missing:
        return f"the cell rule's CPU kernel needs AVX2 and FMA; this CPU lacks {', '.join(missing)}"
    return None


def runs(state: torch.Tensor, channels: int, hidden: int) -> bool:
    """Whether the kernel computes this cube's propagation: float32 on a CPU it supports, a cell it has registers for.

    Where the CPU supports it, a missing compiler is an error (``library``), not a reason to fall back: the other
    path adds in another order, so falling back would change the figures without a word.
    """
    return (state.device.type == "cpu" and state.dtype == torch.float32 and supported() is None
            and channels <= MAX_CHANNELS and hidden <= MAX_HIDDEN)


def _cache_folder() -> Path:
    if os.environ.get("CUBE_KERNEL_CACHE"):
        return Path(os.environ["CUBE_KERNEL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cube-bench" / "kernels"


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """The compiled kernel, built now if this source, these flags and this compiler have not built it before."""
    reason = supported()
    if reason:
        raise KernelUnavailable(reason)
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise KernelUnavailable(f"the cell rule's CPU kernel is compiled on first use and no C compiler {compiler!r} "
                                "was found: install one (Debian/Ubuntu: apt-get install gcc) or set CC")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(encoding="utf-8"), *FLAGS, version]).encode()).hexdigest()[:16]
    target = _cache_folder() / f"cell_rule-{key}.so"
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                built = Path(scratch) / target.name
                result = subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE)], capture_output=True,
                                        text=True)
                if result.returncode != 0:
                    raise KernelUnavailable(f"compiling {SOURCE} with {compiler} failed:\n{result.stderr.strip()}")
                os.replace(built, target)  # atomic: a concurrent build leaves one whole file either way
        except OSError as error:
            raise KernelUnavailable(f"the cell rule's CPU kernel is built into {target.parent}, which cannot be "
                                    f"written ({error.strerror}): set CUBE_KERNEL_CACHE to a folder you can write"
                                    ) from None
    lib = ctypes.CDLL(str(target))
    lib.cube_gradient_width.restype = ctypes.c_int64
    lib.cube_record_width.restype = ctypes.c_int64
    lib.cube_fma_peak.restype = ctypes.c_float
    lib.cube_fma_peak.argtypes = [ctypes.c_int64]
    return lib


@functools.lru_cache(maxsize=4)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cell-rule")


def parallel(call, count: int, scratch_floats: int) -> None:
    """call(first, last, scratch_pointer) over [0, count) split in contiguous parts, one per thread."""
    threads = max(1, min(torch.get_num_threads(), count))
    bounds = [count * i // threads for i in range(threads + 1)]
    scratch = torch.empty(threads, scratch_floats)
    jobs = [(bounds[i], bounds[i + 1], scratch[i].data_ptr()) for i in range(threads) if bounds[i] < bounds[i + 1]]
    if len(jobs) == 1:
        call(*jobs[0])
        return
    for future in [_pool(threads).submit(call, *job) for job in jobs]:
        future.result()


def _round_up(value: int, multiple: int = LANES) -> int:
    return -(-value // multiple) * multiple


class _Weights:
    """The lattice's parameters laid out as the kernel reads them (see cell_rule.c), exact copies only."""

    def __init__(self, lattice: tuple[int, int, int], boundary: str, steps: int,
                 params: Sequence[torch.Tensor | None]) -> None:
        from cube.propagation import neighbour_table  # the fast path's own table: one order and boundary rule

        (seed_weight, seed_bias, position, perceive_weight, perceive_bias, update_weight, update_bias, readout_weight,
         readout_bias) = (t.detach().float() if t is not None else None for t in params)
        hidden, channels = perceive_weight.shape[0], update_weight.shape[0]
        hpad, cpad, width = _round_up(hidden), _round_up(channels), BLOCKS * channels
        zeros = functools.partial(torch.zeros, dtype=torch.float32)
        self.table = neighbour_table(lattice, boundary).to(torch.int32).contiguous()
        self.cells = self.table.shape[0]
        self.pk = zeros(width, hpad)
        self.pk[:, :hidden] = perceive_weight[:, :width].t()
        self.pw = zeros(hpad, BLOCKS, cpad)
        self.pw[:hidden, :, :channels] = perceive_weight[:, :width].view(hidden, BLOCKS, channels)
        self.pe, self.pb = zeros(hpad), zeros(hpad)
        self.pe[:hidden], self.pb[:hidden] = perceive_weight[:, width], perceive_bias
        self.ut, self.un, self.ub = zeros(hpad, cpad), zeros(cpad, hpad), zeros(cpad)
        self.ut[:hidden, :channels], self.un[:channels, :hidden] = update_weight.t(), update_weight
        self.ub[:channels] = update_bias
        self.sw, self.sb, self.rw = zeros(cpad), zeros(cpad), zeros(cpad)
        self.sw[:channels], self.sb[:channels] = seed_weight[:, 0], seed_bias
        self.rw[:channels], self.rb = readout_weight[0], readout_bias.reshape(1).contiguous()
        self.pos = None
        if position is not None:
            self.pos = zeros(self.cells, cpad)
            self.pos[:, :channels] = position.reshape(self.cells, channels)
        self.hidden, self.channels, self.hpad, self.cpad = hidden, channels, hpad, cpad
        self.rule = _Rule(self.cells, channels, cpad, hidden, hpad, steps, self.table.data_ptr(),
                          *(_pointer(t).value for t in (self.pk, self.pw, self.pe, self.pb, self.ut, self.un,
                                                        self.ub, self.sw, self.sb, self.pos, self.rw, self.rb)))

    def unpack(self, packed: torch.Tensor, position_shape: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """Per-layout parameter gradients (the kernel's order) -> gradients in the parameters' shapes, in the
        order of ``LATTICE_PARAMETERS`` (an empty tensor for a missing position code)."""
        width, hidden, channels, hpad, cpad = BLOCKS * self.channels, self.hidden, self.channels, self.hpad, self.cpad
        sizes = [width * hpad, hpad, hpad, hpad * cpad, cpad, cpad, cpad, cpad, 1]
        pk, pe, pb, ut, ub, sw, sb, rw, rb, pos = packed.split([*sizes, packed.numel() - sum(sizes)])
        perceive = torch.cat([pk.view(width, hpad)[:, :hidden].t(), pe[:hidden].view(hidden, 1)], dim=1)
        position = (pos.view(self.cells, cpad)[:, :channels].reshape(*position_shape) if self.pos is not None
                    else packed.new_empty(0))
        grads = (sw[:channels].reshape(channels, 1), sb[:channels], position, perceive, pb[:hidden],
                 ut.view(hpad, cpad)[:hidden, :channels].t(), ub[:channels], rw[:channels].reshape(1, channels), rb)
        return tuple(grad.clone(memory_format=torch.contiguous_format) for grad in grads)  # no output aliases another


LATTICE_PARAMETERS = ("seed weight", "seed bias", "position", "perceive weight", "perceive bias", "update weight",
                      "update bias", "readout weight", "readout bias")


def _pointer(tensor: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(tensor.data_ptr() if tensor is not None and tensor.numel() else None)


@torch.library.custom_op("cube::lattice_forward", mutates_args=(), device_types="cpu")
def lattice_forward(values: torch.Tensor, seed_weight: torch.Tensor, seed_bias: torch.Tensor,
                    position: torch.Tensor | None, perceive_weight: torch.Tensor, perceive_bias: torch.Tensor,
                    update_weight: torch.Tensor, update_bias: torch.Tensor, readout_weight: torch.Tensor,
                    readout_bias: torch.Tensor, steps: int, boundary: str) -> torch.Tensor:
    """The lattice's outputs (B, X, Y, Z) for the cells' values (B, X, Y, Z)."""
    weights = _Weights(tuple(values.shape[1:4]), boundary, steps, (
        seed_weight, seed_bias, position, perceive_weight, perceive_bias, update_weight, update_bias, readout_weight,
        readout_bias))
    batch, lib, rule = values.shape[0], library(), ctypes.byref(weights.rule)
    values = values.float().contiguous()
    out = torch.empty_like(values)
    parallel(lambda first, last, work: lib.cube_forward(
        rule, _pointer(values), _pointer(out), ctypes.c_int64(first), ctypes.c_int64(last), ctypes.c_void_p(work)),
        batch, 2 * weights.cells * weights.cpad + weights.cpad)
    return out


@torch.library.custom_op("cube::lattice_backward", mutates_args=(), device_types="cpu")
def lattice_backward(values: torch.Tensor, seed_weight: torch.Tensor, seed_bias: torch.Tensor,
                     position: torch.Tensor | None, perceive_weight: torch.Tensor, perceive_bias: torch.Tensor,
                     update_weight: torch.Tensor, update_bias: torch.Tensor, readout_weight: torch.Tensor,
                     readout_bias: torch.Tensor, grad_output: torch.Tensor, steps: int, boundary: str
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the values and of ``LATTICE_PARAMETERS``, each sample's states and hidden layers recomputed
    from its values in the thread's scratch (in cache)."""
    weights = _Weights(tuple(values.shape[1:4]), boundary, steps, (
        seed_weight, seed_bias, position, perceive_weight, perceive_bias, update_weight, update_bias, readout_weight,
        readout_bias))
    batch, cells, cpad = values.shape[0], weights.cells, weights.cpad
    lib, rule = library(), ctypes.byref(weights.rule)
    values, grad_output = values.float().contiguous(), grad_output.float().contiguous()
    grad_values = torch.empty_like(values)
    width = lib.cube_gradient_width(rule)
    per_sample = values.new_empty(batch, width)
    parallel(lambda first, last, work: lib.cube_backward(
        rule, _pointer(values), _pointer(grad_output), _pointer(grad_values), _pointer(per_sample),
        ctypes.c_int64(first), ctypes.c_int64(last), ctypes.c_void_p(work)),
        batch, 2 * (cells + 1) * cpad + cpad + lib.cube_record_width(rule))
    summed = values.new_empty(width)
    parallel(lambda first, last, _: lib.cube_sum_rows(
        _pointer(per_sample), ctypes.c_int64(batch), ctypes.c_int64(width), _pointer(summed), ctypes.c_int64(first),
        ctypes.c_int64(last)), width, 0)
    return grad_values, *weights.unpack(summed, position.shape if position is not None else ())


def kernel_flops(batch: int, cells: int, channels: int, hidden: int, steps: int, phase: str) -> int:
    """FLOPs (2 per multiply-add) the kernel issues, padding lanes included: "forward", or "backward" (which
    recomputes the forward's states and hidden layers first). The seed and readout (C multiply-adds each per
    cell, and as many per cell for each of their two gradients) are counted once per cell."""
    hpad, cpad, width = _round_up(hidden), _round_up(channels), BLOCKS * channels
    forward = width * hpad + hpad + hpad * cpad  # perceive (with the external column), update
    backward = hpad * cpad + channels * hpad + 2 * hpad + width * hpad + hpad * BLOCKS * cpad
    per_step, per_cell = {"forward": (forward, 2 * channels),
                          "backward": (forward + backward, 2 * channels + 4 * channels)}[phase]
    return 2 * batch * cells * (per_step * steps + per_cell)


@register_flop_formula(torch.ops.cube.lattice_forward)
def _forward_flops(values_shape, seed_shape, seed_bias_shape, position_shape, perceive_shape, *args, **kwargs) -> int:
    steps, batch, cells, channels = args[5], values_shape[0], math.prod(values_shape[1:4]), seed_shape[0]
    return kernel_flops(batch, cells, channels, perceive_shape[0], steps, "forward")


@register_flop_formula(torch.ops.cube.lattice_backward)
def _backward_flops(values_shape, seed_shape, seed_bias_shape, position_shape, perceive_shape, *args,
                    **kwargs) -> int:
    steps, batch, cells, channels = args[6], values_shape[0], math.prod(values_shape[1:4]), seed_shape[0]
    return kernel_flops(batch, cells, channels, perceive_shape[0], steps, "backward")


class KernelLattice(torch.autograd.Function):
    """Seed, T steps of the cell rule and readout through the CPU kernel, from the cells' values (B, X, Y, Z) to
    their outputs (B, X, Y, Z).

    Forward keeps only the values. Backward recomputes, one sample at a time, that sample's states s_0 .. s_T
    and hidden layers in the thread's scratch and goes back through them there, in cache: writing them to memory
    in forward and reading them back costs more here than computing them again (one more forward of work), and
    the memory saved for backward is the input's, whatever the steps. So ``activation_checkpointing`` changes
    nothing on this path.
    """

    @staticmethod
    def forward(ctx, values: torch.Tensor, steps: int, boundary: str, *params: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(values, *params)
        ctx.steps, ctx.boundary = steps, boundary
        return lattice_forward(values, *params, steps, boundary)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        values, *params = ctx.saved_tensors
        grad_values, *grads = lattice_backward(values, *params, grad_output, ctx.steps, ctx.boundary)
        return grad_values, None, None, *(grad if param is not None else None for grad, param in zip(grads, params))


def lattice(values: torch.Tensor, params: Sequence[torch.Tensor | None], steps: int, boundary: str) -> torch.Tensor:
    """The lattice's outputs (B, X, Y, Z) for the cells' values (B, X, Y, Z), in the CPU kernel, with ``params``
    the tensors ``LATTICE_PARAMETERS`` names (position None where there is none)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (values, *params)):
        return KernelLattice.apply(values, steps, boundary, *params)
    return lattice_forward(values, *params, steps, boundary)


def fma_peak_flops(rounds: int = 20_000_000) -> float:
    """FLOP/s of the kernel's instructions at their best: 8-lane FMAs in 10 independent chains (no loads), on each
    of ``torch.get_num_threads()`` threads at once. The compute ceiling for any code limited to AVX2 and FMA."""
    lib, threads = library(), max(1, torch.get_num_threads())
    parallel(lambda first, last, _: lib.cube_fma_peak(1000), threads, 0)  # warm: threads started, clocks up
    start = time.perf_counter()
    parallel(lambda first, last, _: lib.cube_fma_peak(rounds), threads, 0)
    return threads * rounds * 10 * LANES * 2 / (time.perf_counter() - start)


if __name__ == "__main__":
    reason = supported()
    if reason:
        print(f"cpu_kernel: not built ({reason}); the cube runs on torch ops here")
    else:
        try:
            print(f"cpu_kernel: {library()._name}")
        except KernelUnavailable as error:
            raise SystemExit(f"cpu_kernel: {error}") from None
