"""The cell rule's CPU kernel (``cube/kernels/cell_rule.c``): built on first use, called through ctypes.

Why a kernel of our own: under the portable pins the BLAS runs its SSE2 branch, the one MKL runs alike on
every x86-64 CPU, and the cell rule's skinny matmuls (7C -> H -> C per cell) ran there at a fifth of what
the CPU can do. The kernel fixes the order of every addition itself (vector lanes hold different outputs,
never parts of one sum; explicit FMAs; no compiler contraction), so it gives the same bits on any CPU with
AVX2 and FMA under both numerics modes, at any thread count, and it keeps each sample's states in cache.

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
        ("table", ctypes.c_void_p), *[(name, ctypes.c_void_p) for name in ("pk", "pw", "pe", "pb", "ut", "un", "ub")]]


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
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            built = Path(scratch) / target.name
            result = subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE)], capture_output=True, text=True)
            if result.returncode != 0:
                raise KernelUnavailable(f"compiling {SOURCE} with {compiler} failed:\n{result.stderr.strip()}")
            os.replace(built, target)  # atomic: a concurrent build leaves one whole file either way
    lib = ctypes.CDLL(str(target))
    lib.cube_gradient_width.restype = ctypes.c_int64
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
    """The cell rule's parameters laid out as the kernel reads them (see cell_rule.c), exact copies only."""

    def __init__(self, lattice: tuple[int, int, int], boundary: str, steps: int, perceive_weight: torch.Tensor,
                 perceive_bias: torch.Tensor, update_weight: torch.Tensor, update_bias: torch.Tensor) -> None:
        from cube.propagation import neighbour_table  # the fast path's own table: one order and boundary rule

        hidden, channels = perceive_weight.shape[0], update_weight.shape[0]
        hpad, cpad, width = _round_up(hidden), _round_up(channels), BLOCKS * channels
        weight, update = perceive_weight.detach().float(), update_weight.detach().float()
        zeros = functools.partial(torch.zeros, dtype=torch.float32)
        self.table = neighbour_table(lattice, boundary).to(torch.int32).contiguous()
        self.pk = zeros(width, hpad)
        self.pk[:, :hidden] = weight[:, :width].t()
        self.pw = zeros(hpad, BLOCKS, cpad)
        self.pw[:hidden, :, :channels] = weight[:, :width].view(hidden, BLOCKS, channels)
        self.pe, self.pb = zeros(hpad), zeros(hpad)
        self.pe[:hidden], self.pb[:hidden] = weight[:, width], perceive_bias.detach()
        self.ut, self.un, self.ub = zeros(hpad, cpad), zeros(cpad, hpad), zeros(cpad)
        self.ut[:hidden, :channels], self.un[:channels, :hidden] = update.t(), update
        self.ub[:channels] = update_bias.detach()
        self.hidden, self.channels, self.hpad, self.cpad = hidden, channels, hpad, cpad
        self.cells = self.table.shape[0]
        self.rule = _Rule(self.cells, channels, cpad, hidden, hpad, steps, self.table.data_ptr(),
                          *(t.data_ptr() for t in (self.pk, self.pw, self.pe, self.pb, self.ut, self.un, self.ub)))

    def unpack(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-layout parameter gradients (the kernel's order) -> (perceive weight, perceive bias, update weight,
        update bias) gradients in the parameters' shapes."""
        width, hidden, channels, hpad, cpad = BLOCKS * self.channels, self.hidden, self.channels, self.hpad, self.cpad
        pk, pe, pb, ut, ub = packed.split([width * hpad, hpad, hpad, hpad * cpad, cpad])
        perceive = torch.cat([pk.view(width, hpad)[:, :hidden].t(), pe[:hidden].view(hidden, 1)], dim=1)
        return perceive, pb[:hidden].clone(), ut.view(hpad, cpad)[:hidden, :channels].t().contiguous(), ub[:channels].clone()


def _pointer(tensor: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(tensor.data_ptr() if tensor is not None and tensor.numel() else None)


@torch.library.custom_op("cube::cell_rule_forward", mutates_args=(), device_types="cpu")
def cell_rule_forward(state: torch.Tensor, values: torch.Tensor, perceive_weight: torch.Tensor,
                      perceive_bias: torch.Tensor, update_weight: torch.Tensor, update_bias: torch.Tensor, steps: int,
                      boundary: str, record: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(final state, every state s_0 .. s_{T-1} as (B, T, N, Cp) if ``record`` else an empty tensor)."""
    weights = _Weights(tuple(state.shape[1:4]), boundary, steps, perceive_weight, perceive_bias, update_weight,
                       update_bias)
    batch = state.shape[0]
    state, values = state.float().contiguous(), values.float().contiguous()
    final = torch.empty_like(state)
    saved = state.new_empty(batch, steps, weights.cells, weights.cpad) if record else state.new_empty(0)
    lib, rule = library(), ctypes.byref(weights.rule)
    parallel(lambda first, last, work: lib.cube_forward(
        rule, _pointer(state), _pointer(values), _pointer(final), _pointer(saved), ctypes.c_int64(first),
        ctypes.c_int64(last), ctypes.c_void_p(work)), batch, 2 * weights.cells * weights.cpad + weights.cpad)
    return final, saved


@torch.library.custom_op("cube::cell_rule_backward", mutates_args=(), device_types="cpu")
def cell_rule_backward(states: torch.Tensor, checkpointed: bool, values: torch.Tensor, perceive_weight: torch.Tensor,
                       perceive_bias: torch.Tensor, update_weight: torch.Tensor, update_bias: torch.Tensor,
                       grad_output: torch.Tensor, steps: int, boundary: str
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (state, values, perceive weight, perceive bias, update weight, update bias) from the recorded
    states, or with ``checkpointed`` from the initial state (each sample's states recomputed)."""
    weights = _Weights(tuple(grad_output.shape[1:4]), boundary, steps, perceive_weight, perceive_bias, update_weight,
                       update_bias)
    batch, cells = values.shape[0], weights.cells
    lib, rule = library(), ctypes.byref(weights.rule)
    grad_output = grad_output.float().contiguous()
    grad_state, grad_values = torch.empty_like(grad_output), torch.empty_like(values)
    width = lib.cube_gradient_width(rule)
    per_sample = values.new_empty(batch, width)
    scratch = 2 * (cells + 1) * weights.cpad + weights.cpad + ((steps + 2) * cells * weights.cpad if checkpointed else 0)
    state0, saved = (states, None) if checkpointed else (None, states)
    parallel(lambda first, last, work: lib.cube_backward(
        rule, _pointer(state0), _pointer(saved), _pointer(values), _pointer(grad_output), _pointer(grad_state),
        _pointer(grad_values), _pointer(per_sample), ctypes.c_int64(first), ctypes.c_int64(last),
        ctypes.c_void_p(work)), batch, scratch)
    summed = values.new_empty(width)
    parallel(lambda first, last, _: lib.cube_sum_rows(
        _pointer(per_sample), ctypes.c_int64(batch), ctypes.c_int64(width), _pointer(summed), ctypes.c_int64(first),
        ctypes.c_int64(last)), width, 0)
    return grad_state, grad_values, *weights.unpack(summed)


def kernel_flops(batch: int, cells: int, channels: int, hidden: int, steps: int, phase: str) -> int:
    """FLOPs (2 per multiply-add) the kernel issues, padding lanes included: "forward", "backward" (which
    recomputes each step's hidden layer) or "recompute" (the checkpointed backward's extra forward)."""
    hpad, cpad, width = _round_up(hidden), _round_up(channels), BLOCKS * channels
    forward = width * hpad + hpad + hpad * cpad  # perceive (with the external column), update
    backward = (width * hpad + hpad) + hpad * cpad + channels * hpad + 2 * hpad + width * hpad + hpad * BLOCKS * cpad
    per_cell_step = {"forward": forward, "backward": backward, "recompute": forward}[phase]
    return 2 * per_cell_step * batch * cells * steps


@register_flop_formula(torch.ops.cube.cell_rule_forward)
def _forward_flops(state_shape, values_shape, perceive_shape, *args, **kwargs) -> int:
    steps, batch, cells = args[3], state_shape[0], math.prod(state_shape[1:4])
    return kernel_flops(batch, cells, state_shape[4], perceive_shape[0], steps, "forward")


@register_flop_formula(torch.ops.cube.cell_rule_backward)
def _backward_flops(states_shape, checkpointed, values_shape, perceive_shape, perceive_bias_shape, update_shape,
                    update_bias_shape, grad_shape, steps, *args, **kwargs) -> int:
    batch, cells, channels, hidden = grad_shape[0], math.prod(grad_shape[1:4]), grad_shape[4], perceive_shape[0]
    extra = kernel_flops(batch, cells, channels, hidden, steps, "recompute") if checkpointed else 0
    return kernel_flops(batch, cells, channels, hidden, steps, "backward") + extra


class KernelPropagation(torch.autograd.Function):
    """T steps of the cell rule through the CPU kernel, from an initial (B, X, Y, Z, C) state to the final one.

    Forward keeps every state s_0 .. s_{T-1} (C floats per cell and step, padded to 8) for the backward,
    which recomputes each step's hidden layer from them, one sample at a time, in cache. ``checkpointed``
    keeps only the initial state and recomputes each sample's states in backward: saved memory flat in T,
    the same gradients to the bit, one more forward of work.
    """

    @staticmethod
    def forward(ctx, state: torch.Tensor, values: torch.Tensor, perceive_weight: torch.Tensor,
                perceive_bias: torch.Tensor, update_weight: torch.Tensor, update_bias: torch.Tensor, steps: int,
                boundary: str, checkpointed: bool) -> torch.Tensor:
        recording = any(ctx.needs_input_grad)
        final, saved = cell_rule_forward(state, values, perceive_weight, perceive_bias, update_weight, update_bias,
                                         steps, boundary, recording and not checkpointed)
        if recording:
            ctx.save_for_backward(state if checkpointed else saved, values, perceive_weight, perceive_bias,
                                  update_weight, update_bias)
            ctx.steps, ctx.boundary, ctx.checkpointed = steps, boundary, checkpointed
        return final

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        states, values, *weights = ctx.saved_tensors
        grads = cell_rule_backward(states, ctx.checkpointed, values, *weights, grad_output, ctx.steps, ctx.boundary)
        return (*grads, None, None, None)


def propagate(state: torch.Tensor, values: torch.Tensor, perceive: torch.nn.Linear, update: torch.nn.Linear,
              steps: int, boundary: str, checkpointing: bool) -> torch.Tensor:
    """``steps`` applications of the cell rule to ``state`` (B, X, Y, Z, C) with external input ``values``
    (B, X, Y, Z), in the CPU kernel (recording for backward only where a gradient is wanted)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (state, values, *perceive.parameters(),
                                                                  *update.parameters())):
        return KernelPropagation.apply(state, values, perceive.weight, perceive.bias, update.weight, update.bias,
                                       steps, boundary, checkpointing)
    return cell_rule_forward(state, values, perceive.weight, perceive.bias, update.weight, update.bias, steps,
                             boundary, False)[0]


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
