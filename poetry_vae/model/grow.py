"""Warm-starting a model that gained a feature: a checkpoint written before the feature existed loads into a model
with it, and computes what it computed before (the feature's own parameters start where they have no say)."""

from __future__ import annotations

from torch import Tensor, nn

# the parameters a feature owns outright, which a checkpoint from before it lacks
NEW_FEATURE_PREFIXES = ("decoder.tone_",)


def load_grown(model: nn.Module, saved: dict[str, Tensor]) -> list[str]:
    """Load ``saved`` into ``model``, whose new features' parameters ``saved`` may lack (they keep their
    initialisation). Returns the names it lacked; any other difference is a ValueError naming the weight."""
    current = model.state_dict()
    unknown = sorted(set(saved) - set(current))
    if unknown:
        raise ValueError(f"{unknown[0]} is not a weight of this model")
    missing = sorted(set(current) - set(saved))
    for name in missing:
        if not name.startswith(NEW_FEATURE_PREFIXES):
            raise ValueError(f"{name} is missing")
    for name, value in saved.items():
        if value.shape != current[name].shape:
            raise ValueError(f"{name} has shape {tuple(value.shape)}, this model's {tuple(current[name].shape)}")
    model.load_state_dict(saved, strict=False)
    return missing
