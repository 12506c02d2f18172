"""Figures a person looks at: the book's `show_images` and friends (matplotlib, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def show_images(
    images: torch.Tensor, num_rows: int, num_cols: int, titles: Sequence[str] | None = None, scale: float = 1.5
) -> Figure:
    """A grid of grayscale images with optional titles (d2l.show_images)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(num_cols * scale, num_rows * scale))
    axes = fig.subplots(num_rows, num_cols, squeeze=False).flatten()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i].detach().cpu().numpy(), cmap="gray")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig
