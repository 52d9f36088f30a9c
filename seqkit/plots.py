"""Training-curve pictures (PNG) with matplotlib's non-interactive backend."""

from __future__ import annotations

import os
from collections.abc import Sequence

from seqkit.fileio import atomic_path


def plot_curves(
    history: Sequence[dict],
    path: str | os.PathLike,
    panels: Sequence[tuple[str, Sequence[tuple[str, str]]]],
    title: str = "",
    x_key: str = "epoch",
) -> None:
    """Draw one panel per (y label, [(history key, legend label), ...]) against ``x_key``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    xs = [row[x_key] for row in history]
    for ax, (ylabel, series) in zip(axes[0], panels):
        for key, label in series:
            points = [(x, row[key]) for x, row in zip(xs, history) if row.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=label)
        ax.set_xlabel(x_key)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_tree(roots: Sequence, path: str | os.PathLike, prime: str, label) -> None:
    """Draw a prediction tree left to right: depth on x, leaves stacked on y.

    Each node is labelled with ``label(node)``; an edge's width follows its conditional
    probability. The format (PNG or SVG) follows the file's suffix.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coords: dict[int, tuple[int, float]] = {}
    leaves = [0]

    def place(node, depth: int) -> float:
        if node.children:
            ys = [place(child, depth + 1) for child in node.children]
            y = sum(ys) / len(ys)
        else:
            y, leaves[0] = -leaves[0], leaves[0] + 1
        coords[id(node)] = (depth, y)
        return y

    root_ys = [place(root, 1) for root in roots]
    depth = max(d for d, _ in coords.values())
    fig, ax = plt.subplots(figsize=(2.2 * (depth + 1), max(3.0, 0.28 * leaves[0])))
    start = (0, sum(root_ys) / len(root_ys))
    ax.text(*start, repr(prime[-20:]), ha="right", va="center", fontsize=9)

    def draw(node, parent_xy) -> None:
        x, y = coords[id(node)]
        ax.plot([parent_xy[0], x], [parent_xy[1], y], color="tab:blue", alpha=0.6, linewidth=0.5 + 4 * node.prob)
        ax.text(x, y, f" {label(node)}", va="center", fontsize=8)
        for child in node.children:
            draw(child, (x, y))

    for root in roots:
        draw(root, start)
    ax.set_xlim(-0.8, depth + 0.9)
    ax.axis("off")
    ax.set_title("prediction tree: character, p(char | parent), p(path)", fontsize=9)
    fig.tight_layout()
    suffix = os.path.splitext(str(path))[1].lower() or ".png"
    with atomic_path(path, suffix=suffix) as tmp:
        fig.savefig(tmp, format=suffix.lstrip("."), dpi=110)
    plt.close(fig)
