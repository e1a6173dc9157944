"""Pick one token per row from masked log-probabilities: greedy, full sampling, top-k, top-p (nucleus).

Sampling is inverse-CDF: cumulative probabilities, one uniform per row, ``searchsorted``. On a 2-core CPU
this is ~5x faster than ``torch.multinomial`` over a 5k vocabulary, and draws exactly one uniform per row per
step, so a seeded generator reproduces a batch exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

STRATEGIES = ("greedy", "sample", "top_k", "top_p", "beam")


def _uniform(rows: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(rows, 1, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _inverse_cdf(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """(R, K) non-negative weights (any scale) -> (R,) sampled column; zero-weight columns are never chosen."""
    cdf = probs.cumsum(dim=1)
    u = _uniform(probs.shape[0], probs, generator) * cdf[:, -1:]
    index = torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[1] - 1).squeeze(1)
    # float rounding can land on a trailing zero-weight column: fall back to the heaviest one
    bad = probs.gather(1, index.unsqueeze(1)).squeeze(1) <= 0
    return torch.where(bad, probs.argmax(dim=1), index)


def _nucleus_threshold(probs: Tensor, top_p: float) -> Tensor:
    """(R, 1) smallest probability inside each row's nucleus: the fewest most-likely tokens whose mass
    reaches ``top_p`` (the top token always counts; ties with the last one are kept too).

    Only sorted *values* are needed (sampling then runs over the unsorted vocabulary, where order does not
    matter); on CPU numpy's value sort is ~20x faster than ``torch.sort``, which also builds indices (a
    ``topk`` prefilter was no faster here: measured 60-120 ms against 65 ms for 1024 x 4783).
    """
    if probs.device.type == "cpu":
        ascending = torch.from_numpy(np.sort(probs.numpy(), axis=1))
    else:
        ascending = probs.sort(dim=1).values
    cumulative = ascending.cumsum(dim=1)
    above = cumulative[:, -1:] - cumulative  # mass strictly above each token
    kept = (above < top_p * cumulative[:, -1:]).sum(dim=1, keepdim=True).clamp_(min=1)
    return ascending.gather(1, ascending.shape[1] - kept)


def pick_tokens(
    log_probs: Tensor,
    allowed: Tensor,
    strategy: str,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 0.9,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(R, V) log-probs and a broadcastable bool mask of allowed tokens -> (R,) chosen token ids.

    Filtering (top-k / top-p) happens after masking, so the kept set renormalises over allowed tokens only.
    """
    logits = log_probs.masked_fill(~allowed, float("-inf"))
    if strategy == "greedy":
        return logits.argmax(dim=1)
    logits = logits / temperature
    if strategy == "sample":
        return _inverse_cdf(torch.softmax(logits, dim=1), generator)
    if strategy == "top_k":
        values, index = logits.topk(min(top_k, logits.shape[1]), dim=1)
        return index.gather(1, _inverse_cdf(torch.softmax(values, dim=1), generator).unsqueeze(1)).squeeze(1)
    if strategy == "top_p":
        probs = torch.softmax(logits, dim=1)
        return _inverse_cdf(probs.masked_fill(probs < _nucleus_threshold(probs, top_p), 0.0), generator)
    raise ValueError(f"unknown strategy {strategy!r}")
