"""Figures for notebooks and the report (matplotlib is imported lazily: it is an optional extra)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def project_2d(mu: Tensor) -> Tensor:
    """The first two principal components of posterior means (N, Z) -> (N, 2), deterministic."""
    centred = mu.double() - mu.double().mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    coords = centred @ v[:2].T
    # SVD signs are arbitrary: make each axis's largest-magnitude point positive, so reruns give the same picture
    extremes = coords.gather(0, coords.abs().argmax(dim=0, keepdim=True))
    return (coords * torch.where(extremes >= 0, 1.0, -1.0)).float()


def latent_map(mu: Tensor, labels: Sequence[str], title: str = "test-set posterior means (PCA)") -> Any:
    """A scatter of posterior means in their first two principal components, coloured by ``labels``."""
    import matplotlib.pyplot as plt

    coords = project_2d(mu)
    fig, ax = plt.subplots(figsize=(6, 5))
    for label in sorted(set(labels)):
        rows = [i for i, value in enumerate(labels) if value == label]
        ax.scatter(coords[rows, 0], coords[rows, 1], s=6, alpha=0.6, label=f"{label} ({len(rows)})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(markerscale=3)
    fig.tight_layout()
    return fig
