"""The cell rule computed fast: ``Propagation``, the same arithmetic as ``CubeLattice.step`` with far fewer,
larger operations and a hand-written backward.

Per step, one ``index_select`` gathers every cell's neighbourhood into a (rows, 7C) matrix (walls read a zero row),
the external input and perceive bias are folded into one (rows, H) term computed once for all T steps, and the
backward scatters the neighbourhood gradient back with one ``embedding_bag`` sum instead of six shifted adds.
Autograd would instead record about thirty small ops per step, each its own pass over memory; on a CPU that
bookkeeping, not the matmuls, dominated. The tests hold it equal to the autograd path on outputs and gradients.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from cube.neighbours import SPATIAL_AXES, neighbour

BLOCKS = 7  # own state, then +1 / -1 along X, Y, Z: the order ``neighbourhood()`` concatenates them
OPPOSITE = (0, 2, 1, 4, 3, 6, 5)  # the block that looks back: cell j's +X neighbour i has j as its -X neighbour
CHECKPOINT_SLOTS = 8  # states the checkpointed backward holds at once, whatever the number of steps
UPDATE_WIDTH_MULTIPLE = 16  # the update matmul's output width is zero-padded to a multiple of this (see _Rule)


@functools.lru_cache(maxsize=32)
def neighbour_table(lattice: tuple[int, int, int], boundary: str) -> torch.Tensor:
    """(cells, 7): the flat index of each cell's [own, +X, -X, +Y, -Y, +Z, -Z] neighbour; -1 outside (walls).

    Built by running ``neighbour`` itself on the cell numbers, so the fast path's order and boundary
    rule cannot drift from ``neighbourhood()``'s.
    """
    numbers = torch.arange(1, math.prod(lattice) + 1).view(1, *lattice, 1)  # 0 is reserved for "outside"
    blocks = [numbers] + [neighbour(numbers, axis, offset, boundary) for axis in SPATIAL_AXES for offset in (1, -1)]
    return torch.cat(blocks, dim=-1).view(-1, BLOCKS) - 1


@dataclass(frozen=True)
class Indices:
    """Row indices of one (lattice, boundary, batch), for a state buffer of ``rows + 1`` rows whose last row is zero.

    ``gather`` (rows * 7,): the state row each neighbourhood entry reads (``rows``, the zero row, outside walls).
    ``scatter`` (rows, 7): for each cell, the rows of the flattened (rows * 7 + 1, C) neighbourhood gradient
    that read it, i.e. ``gather``'s transpose (``rows * 7``, again a zero row, where nothing reads it).
    """

    gather: torch.Tensor
    scatter: torch.Tensor


@functools.lru_cache(maxsize=16)
def batch_indices(lattice: tuple[int, int, int], boundary: str, batch: int, device: torch.device) -> Indices:
    table = neighbour_table(lattice, boundary)
    cells = table.shape[0]
    rows = batch * cells
    first_row = (torch.arange(batch) * cells).view(batch, 1, 1)
    reads = torch.where(table < 0, rows, table + first_row).view(rows, BLOCKS)
    # cell j's block-k gradient comes from the cell that reads j through block k: j's neighbour in the opposite direction
    readers = reads[:, list(OPPOSITE)]
    scatter = torch.where(readers == rows, BLOCKS * rows, BLOCKS * readers + torch.arange(BLOCKS))
    return Indices(reads.reshape(-1).to(device), scatter.to(device))


def _state_buffer(like: torch.Tensor, rows: int, channels: int) -> torch.Tensor:
    """(rows + 1, C), uninitialised but for the last row: the zero that cells outside the walls read."""
    buffer = like.new_empty(rows + 1, channels)
    buffer[rows].zero_()
    return buffer


@dataclass
class _Grads:
    """Parameter gradients summed over the steps of one backward pass."""

    neighbours_t: torch.Tensor  # (7C, H): perceive weight without its external column, transposed
    update_weight: torch.Tensor  # (C, H)
    update_bias: torch.Tensor  # (C,)
    pre_activation: torch.Tensor  # (rows, H): sum over steps of d loss / d perceive output


class _Rule:
    """One step of the cell rule on flat (rows, C) states, forward and backward, for one batch.

    The perceive layer is linear, so its external-input column and bias, the same at every step,
    are folded into one (rows, H) term ``constant`` computed once; each step then multiplies only
    the 7C gathered state columns.

    Two matmul shapes are chosen for the CPU's BLAS (MKL), timed on the 2-core bench machine at the
    default cube and batch 64 (24,576 rows): an 8-wide output (hidden @ update weight.T) runs about 3x
    slower than a 16-wide one (0.78 against 0.27 ms), so the update weight is zero-padded to a multiple
    of ``UPDATE_WIDTH_MULTIPLE`` rows and only the first C columns are added to the state; and the perceive
    weight's gradient is accumulated transposed (gathered.T @ grad), 1.0 against 1.26 ms.
    """

    def __init__(self, external: torch.Tensor, perceive_weight: torch.Tensor, perceive_bias: torch.Tensor,
                 update_weight: torch.Tensor, update_bias: torch.Tensor, indices: Indices) -> None:
        self.rows, self.channels = indices.scatter.shape[0], update_weight.shape[0]
        self.width = BLOCKS * self.channels
        self.indices = indices
        self.neighbour_weight = perceive_weight[:, : self.width]
        self.external_weight = perceive_weight[:, self.width :]
        self.update_weight, self.update_bias = update_weight, update_bias
        padded = -self.channels % UPDATE_WIDTH_MULTIPLE
        self.padded_update_weight = F.pad(update_weight, (0, 0, 0, padded))  # (C + padding, H), zero rows below
        self.padded_update_bias = F.pad(update_bias, (0, padded))
        self.external = external.reshape(self.rows, 1)
        self.constant = torch.addmm(perceive_bias, self.external, self.external_weight.t())

    def start(self, state: torch.Tensor) -> torch.Tensor:
        """A (B, X, Y, Z, C) state as a fresh state buffer (its own copy: the caller's tensor is never written)."""
        buffer = _state_buffer(state, self.rows, self.channels)
        buffer[: self.rows].copy_(state.reshape(self.rows, self.channels))
        return buffer

    def perceive(self, state: torch.Tensor, gathered: torch.Tensor | None = None,
                 hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(neighbourhood (rows, 7C), hidden (rows, H)) of a state buffer, into ``gathered`` / ``hidden`` if given."""
        if gathered is None:
            gathered = state.new_empty(self.rows, self.width)
        torch.index_select(state, 0, self.indices.gather, out=gathered.view(-1, self.channels))
        hidden = torch.addmm(self.constant, gathered, self.neighbour_weight.t(), out=hidden)
        return gathered, hidden.relu_()

    def advance(self, state: torch.Tensor, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The next state buffer: state + update(hidden)."""
        out = _state_buffer(state, self.rows, self.channels) if out is None else out
        update = torch.addmm(self.padded_update_bias, hidden, self.padded_update_weight.t())
        torch.add(state[: self.rows], update[:, : self.channels], out=out[: self.rows])
        return out

    def run(self, state: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` steps without recording anything, into two fresh state buffers used in turn (``state`` is kept)."""
        if steps == 0:
            return state
        gathered = state.new_empty(self.rows, self.width)
        hidden = state.new_empty(self.rows, self.neighbour_weight.shape[0])
        buffers = [_state_buffer(state, self.rows, self.channels) for _ in range(min(steps, 2))]
        current = state
        for step in range(steps):
            self.perceive(current, gathered, hidden)
            current = self.advance(current, hidden, out=buffers[step % 2])
        return current

    def zero_grads(self) -> _Grads:
        weight = self.neighbour_weight
        return _Grads(weight.new_zeros(weight.shape[::-1]), torch.zeros_like(self.update_weight),
                      torch.zeros_like(self.update_bias), self.constant.new_zeros(self.constant.shape))

    def backward_step(self, grad: torch.Tensor, gathered: torch.Tensor, hidden: torch.Tensor, grads: _Grads) -> torch.Tensor:
        """d loss / d state before one step, given ``grad`` = d loss / d state after it (updated in place)."""
        grads.update_weight.addmm_(grad.t(), hidden)
        grads.update_bias.add_(grad.sum(0))
        pre_activation = torch.ops.aten.threshold_backward(torch.mm(grad, self.update_weight), hidden, 0)
        grads.neighbours_t.addmm_(gathered.t(), pre_activation)
        grads.pre_activation.add_(pre_activation)
        flat = grad.new_empty(self.rows * BLOCKS + 1, self.channels)  # + the zero row walls scatter from
        flat[-1].zero_()
        torch.mm(pre_activation, self.neighbour_weight, out=flat[:-1].view(self.rows, self.width))
        return grad.add_(F.embedding_bag(self.indices.scatter, flat, mode="sum"))

    def backward_recomputing(self, state: torch.Tensor, steps: int, grad: torch.Tensor, grads: _Grads,
                             slots: int) -> torch.Tensor:
        """Backward through ``steps`` steps from the state buffer ``state``, recomputing the states it needs.

        Bisection: run to the middle state, backprop the second half (one slot fewer: the middle is held),
        drop the middle, backprop the first half. With T <= 2**slots that recomputes about (T/2) log2 T
        steps, plus one per step for its neighbourhood and hidden layer; with no slot left a segment of L
        steps is recomputed from its start for each step, L²/2 steps. Either way at most ``slots`` states
        are held, so memory stays flat in T while compute grows only a little faster than T.
        """
        if steps == 1:
            return self.backward_step(grad, *self.perceive(state), grads)
        if slots == 0:
            for step in reversed(range(steps)):
                grad = self.backward_recomputing(self.run(state, step), 1, grad, grads, 0)
            return grad
        half = steps // 2
        grad = self.backward_recomputing(self.run(state, half), steps - half, grad, grads, slots - 1)
        return self.backward_recomputing(state, half, grad, grads, slots)


class Propagation(torch.autograd.Function):
    """T steps of the cell rule, from an initial (B, X, Y, Z, C) state to the final one, with a hand-written backward.

    ``checkpointed=False`` keeps each step's neighbourhood and hidden layer (7C + H floats per cell and
    step) for the backward. ``checkpointed=True`` keeps only the initial state and recomputes the rest in
    backward (``_Rule.backward_recomputing``): saved memory independent of T, for about T log T
    recomputed steps instead of none.
    """

    @staticmethod
    def forward(ctx, state: torch.Tensor, external: torch.Tensor, perceive_weight: torch.Tensor,
                perceive_bias: torch.Tensor, update_weight: torch.Tensor, update_bias: torch.Tensor, steps: int,
                boundary: str, checkpointed: bool) -> torch.Tensor:
        shape = state.shape
        indices = batch_indices(tuple(shape[1:4]), boundary, shape[0], state.device)
        rule = _Rule(external, perceive_weight, perceive_bias, update_weight, update_bias, indices)
        current = rule.start(state)
        ctx.shape, ctx.steps, ctx.boundary, ctx.checkpointed = shape, steps, boundary, checkpointed
        if checkpointed:
            final = rule.run(current, steps)
            ctx.save_for_backward(external, perceive_weight, perceive_bias, update_weight, update_bias, state)
        else:
            recorded = []
            for _ in range(steps):
                gathered, hidden = rule.perceive(current)
                recorded += [gathered, hidden]
                current = rule.advance(current, hidden)
            final = current
            ctx.save_for_backward(external, perceive_weight, perceive_bias, update_weight, update_bias, *recorded)
        return final[: rule.rows].view(shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        external, perceive_weight, perceive_bias, update_weight, update_bias, *rest = ctx.saved_tensors
        shape = ctx.shape
        rule = _Rule(external, perceive_weight, perceive_bias, update_weight, update_bias,
                     batch_indices(tuple(shape[1:4]), ctx.boundary, shape[0], grad_output.device))
        grad = grad_output.reshape(rule.rows, rule.channels).clone()
        grads = rule.zero_grads()
        if ctx.checkpointed:
            grad = rule.backward_recomputing(rule.start(rest[0]), ctx.steps, grad, grads, CHECKPOINT_SLOTS)
        else:
            for step in reversed(range(ctx.steps)):
                grad = rule.backward_step(grad, rest[2 * step], rest[2 * step + 1], grads)
        summed = grads.pre_activation  # the external column and the bias see the same gradient at every step
        perceive_weight_grad = torch.cat([grads.neighbours_t.t(), summed.t() @ rule.external], dim=1)
        external_grad = (summed @ rule.external_weight).view(external.shape) if ctx.needs_input_grad[1] else None
        return (grad.view(shape), external_grad, perceive_weight_grad, summed.sum(0), grads.update_weight,
                grads.update_bias, None, None, None)


def propagate(state: torch.Tensor, values: torch.Tensor, perceive: torch.nn.Linear, update: torch.nn.Linear,
              steps: int, boundary: str, checkpointing: bool) -> torch.Tensor:
    """``steps`` applications of the cell rule to ``state`` (B, X, Y, Z, C) with external input ``values``
    (B, X, Y, Z): through ``Propagation`` when a gradient is wanted, else in place over reused buffers."""
    weights = (perceive.weight, perceive.bias, update.weight, update.bias)
    state = state.contiguous()
    if torch.is_grad_enabled() and any(t.requires_grad for t in (state, values, *weights)):
        return Propagation.apply(state, values, *weights, steps, boundary, checkpointing)
    indices = batch_indices(tuple(state.shape[1:4]), boundary, state.shape[0], state.device)
    rule = _Rule(values, *weights, indices)  # inference: nothing recorded, buffers reused across steps
    return rule.run(rule.start(state), steps)[: rule.rows].view(state.shape)
