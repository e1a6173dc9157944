"""Warm-starting a model that gained input features: a checkpoint written before a feature existed loads into a
model with it, and computes what it computed before."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# the parameters a feature owns outright, which a checkpoint from before it lacks (their initialisation stays)
NEW_FEATURE_PREFIXES = ("decoder.tone_",)


def load_grown(model: nn.Module, saved: dict[str, Tensor]) -> list[str]:
    """Load ``saved`` into ``model``. A weight of the same shape is copied; a larger one (the output layer, whose
    input gained columns at its end, and an adaptive softmax's tail projections, sized from that input) takes the
    saved values in its leading block and zeros elsewhere, so the new features start with no say; a parameter of a
    new feature that ``saved`` lacks keeps its initialisation. Returns the names grown or added; a weight that fits
    neither way is a ValueError naming it."""
    current = model.state_dict()
    unknown = sorted(set(saved) - set(current))
    if unknown:
        raise ValueError(f"{unknown[0]} is not a weight of this model")
    merged, changed = {}, []
    for name, value in current.items():
        old = saved.get(name)
        if old is None:
            if not name.startswith(NEW_FEATURE_PREFIXES):
                raise ValueError(f"{name} is missing")
            merged[name] = value
            changed.append(name)
        elif old.shape == value.shape:
            merged[name] = old
        elif old.dim() == value.dim() and all(o <= n for o, n in zip(old.shape, value.shape, strict=True)):
            grown = torch.zeros_like(value)
            grown[tuple(slice(0, size) for size in old.shape)] = old
            merged[name] = grown
            changed.append(name)
        else:
            raise ValueError(f"{name} has shape {tuple(old.shape)}, this model's {tuple(value.shape)}")
    model.load_state_dict(merged)
    return changed
