"""Where each embedding dimension sits on the lattice: a fixed permutation computed from the training split.

In reshape order dimension i sits in cell i, so lattice neighbours are unrelated dimensions and the cell rule,
which sees only its six face neighbours, must carry a signal many steps to mix two dimensions that belong together.
A computed placement puts dimensions that go together side by side. "Together" is an affinity between two
dimensions measured on the training pairs:

- ``correlation``: |corr(x_i, x_j)| over the training questions and answers;
- ``coupling``: |W_ij| + |W_ji| of the least-squares map from questions to answers (ridge, off-diagonal only):
  how much dimension j of a question says about dimension i of its answer.

The layout maximises the summed affinity over lattice edges by swapping pairs of cells, best swap first, from
reshape order. Affinities are rounded to multiples of 2^-24 before the search, so every sum it compares is exact
in float64 and the permutation does not depend on the order in which a CPU adds floats. The permutation holds
no trainable parameter (the model carries it as a buffer of D integers).
"""

from __future__ import annotations

import torch

from cube.neighbours import lattice_edges

PLACEMENTS = ("reshape", "correlation", "coupling")
GRID = 2.0 ** -24
RIDGE_LAMBDA = 1.0


def affinity(kind: str, questions: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """(D, D) symmetric non-negative affinity with a zero diagonal, float64, on the grid of ``GRID``."""
    q, a = questions.double(), answers.double()
    if kind == "correlation":
        x = torch.cat([q, a])
        x = x - x.mean(0)
        x = x / x.norm(dim=0).clamp_min(1e-12)
        value = (x.T @ x).abs()
    elif kind == "coupling":
        qc, ac = q - q.mean(0), a - a.mean(0)
        gram = qc.T @ qc + RIDGE_LAMBDA * torch.eye(q.shape[1], dtype=q.dtype)
        weight = torch.linalg.solve(gram, qc.T @ ac).abs()
        value = weight + weight.T
    else:
        raise ValueError(f"unknown placement affinity {kind!r}; use one of {PLACEMENTS[1:]}")
    value = value / value.max().clamp_min(1e-300)
    value.fill_diagonal_(0.0)
    return torch.round(value / GRID) * GRID


def edge_score(order: torch.Tensor, value: torch.Tensor, lattice: tuple[int, int, int]) -> float:
    """Mean affinity over the lattice's face edges when cell c holds dimension ``order[c]``."""
    a, b = lattice_edges(lattice)
    return float(value[order[a], order[b]].mean())


def layout(value: torch.Tensor, lattice: tuple[int, int, int], max_swaps: int = 50_000) -> torch.Tensor:
    """A permutation (cell -> dimension) with a high summed affinity over lattice edges, by best-first swaps."""
    cells = value.shape[0]
    a, b = lattice_edges(lattice)
    adjacent = torch.zeros(cells, cells, dtype=torch.float64)
    adjacent[a, b] = adjacent[b, a] = 1.0
    order = torch.arange(cells)
    # support[c, d]: the affinity dimension d would have with the dimensions now in cell c's neighbours
    support = adjacent @ value[order]
    for _ in range(max_swaps):
        held = support[:, order]  # held[c, e] = support[c, order[e]]
        own = held.diagonal()
        pair_value = value[order][:, order]
        gain = held - own[:, None] + held.T - own[None, :] + 2.0 * pair_value * adjacent
        best = int(torch.argmax(gain))
        if gain.view(-1)[best] <= 0.0:
            break
        c, e = divmod(best, cells)
        dc, de = int(order[c]), int(order[e])
        change = value[de] - value[dc]
        support += adjacent[:, c:c + 1] * change - adjacent[:, e:e + 1] * change
        order[c], order[e] = de, dc
    return order


def compute(kind: str, questions: torch.Tensor, answers: torch.Tensor,
            lattice: tuple[int, int, int]) -> torch.Tensor:
    """The placement ``kind`` for a lattice of ``lattice`` cells from training pairs: cell c holds dimension order[c]."""
    if kind == "reshape":
        return torch.arange(questions.shape[1])
    return layout(affinity(kind, questions, answers), lattice)
