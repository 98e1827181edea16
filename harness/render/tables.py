"""Markdown tables, with the pages' one way of writing a number."""

from __future__ import annotations

from typing import Any


def cell(value: Any) -> str:
    """A float below 1 to 4 decimals, below 100 to 2, else whole with thousands commas; an int with commas."""
    if isinstance(value, float):
        if abs(value) < 1:
            return f"{value:.4f}"
        return f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
