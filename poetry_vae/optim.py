"""Learning-rate schedules that Hydra can build with ``_partial_: true`` (the optimiser is passed in later)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def inverse_sqrt_warmup(optimizer: Optimizer, warmup_steps: int = 4000) -> LambdaLR:
    """The original program's intended schedule (its Adam betas 0.9/0.98, eps 1e-9 come from the Transformer recipe).

    The learning rate rises linearly to the configured ``lr`` over ``warmup_steps``, then decays as
    ``lr * sqrt(warmup_steps / step)``: Vaswani et al.'s schedule, rescaled so that its peak is ``lr``.
    """
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")

    def factor(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup_steps, math.sqrt(warmup_steps / step))

    return LambdaLR(optimizer, factor)


def cosine_decay(optimizer: Optimizer, total_steps: int, floor: float = 0.05) -> LambdaLR:
    """Half a cosine from the configured ``lr`` down to ``floor * lr`` over ``total_steps``, then flat.

    For a cool-down stage: a run at constant rate plateaus, and decaying the rate at the end buys the last
    part of the loss that the noise of a large step hides. Flat after ``total_steps`` (not periodic like
    ``CosineAnnealingLR``), so a run that outlives its estimate keeps the small rate.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor}")

    def factor(step: int) -> float:
        progress = min(step / total_steps, 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
