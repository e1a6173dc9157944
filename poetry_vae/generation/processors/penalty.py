"""``repetition_penalty`` (CTRL): the logit of a character already in the poem is divided by the penalty when
positive, multiplied when negative. It reshapes the logits rather than masking them, so it hands the strategy
its arguments (see :func:`~poetry_vae.generation.sampling.penalize_repeats`); the reported log-probs stay the
model's own."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from poetry_vae.generation.processors.base import Processor, Setup
from poetry_vae.generation.request import DecodeRequest


class RepetitionPenalty(Processor):
    order = 60

    def __init__(self, penalty: float) -> None:
        self.penalty = penalty

    @classmethod
    def from_request(cls, request: DecodeRequest, setup: Setup) -> RepetitionPenalty | None:
        return cls(request.repetition_penalty) if request.repetition_penalty != 1.0 else None

    def logit_args(self, t: int, tokens: Tensor) -> dict[str, Any]:
        return {"repetition_penalty": self.penalty, "history": tokens[:, :t]}
