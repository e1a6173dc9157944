"""Running a model in eval mode for a while (inference, measures) and giving it back in the mode it was in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``with evaluating(model):`` dropout off and batch norm on its running statistics, restored afterwards
    (a training loop may call a measure between its steps)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
