"""Training-curve pictures (PNG) with matplotlib's non-interactive backend."""

from __future__ import annotations

import os
from typing import Sequence

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
