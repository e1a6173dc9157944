"""``no_repeat_ngram_size``: no n consecutive characters twice in a poem, counted across line breaks. A soft
rule: at a step where it would leave a row no character, it yields there to the hard constraints."""

from __future__ import annotations

import torch
from torch import Tensor

from poetry_vae.generation.processors.base import Mask, Processor, Setup
from poetry_vae.generation.request import DecodeRequest


def repeated_ngrams(tokens: Tensor, t: int, n: int, width: int) -> Tensor | None:
    """(R, width) bool: the ids that would make step ``t`` end an ``n``-gram the row already holds, given the
    (R, >= t) ``tokens`` chosen so far; None before any n-gram is complete (n = 1 bans every earlier id)."""
    if n < 1 or t < n:
        return None
    windows = tokens[:, :t].unfold(1, n, 1)  # (R, t - n + 1, n): every complete n-gram so far
    prefix = tokens[:, t - n + 1 : t].unsqueeze(1)  # (R, 1, n - 1): what step t would extend
    rows, starts = (windows[:, :, :-1] == prefix).all(dim=2).nonzero(as_tuple=True)
    ban = torch.zeros(tokens.shape[0], width, dtype=torch.bool, device=tokens.device)
    ban[rows, windows[rows, starts, -1]] = True
    return ban


def without_banned(keep: Tensor, ban: Tensor) -> Tensor:
    """``keep`` (R or 1, W; bool or 0/1) with the ``ban`` (R, W) ids removed, except in rows it would empty: a
    soft rule yields there to the hard constraints, which keep every row satisfiable."""
    kept = keep.expand(ban.shape).masked_fill(ban, 0)
    empty = ~kept.any(dim=1)
    if bool(empty.any()):
        kept[empty] = keep.expand(ban.shape)[empty]
    return kept


class NoRepeatNgram(Processor):
    order = 50
    soft = True

    def __init__(self, size: int) -> None:
        self.size = size

    @classmethod
    def from_request(cls, request: DecodeRequest, setup: Setup) -> NoRepeatNgram | None:
        return cls(request.no_repeat_ngram_size) if request.no_repeat_ngram_size else None

    def mask(self, t: int, tokens: Tensor, keep: Tensor | None, bias: Tensor | None) -> Mask:
        assert keep is not None
        ban = repeated_ngrams(tokens, t, self.size, keep.shape[1])
        return (keep, bias) if ban is None else (without_banned(keep, ban), None)
