"""Pick one token per row: greedy, full sampling, top-k, top-p (nucleus), without a per-row sort.

The decoder hands over raw logits (R, W) whose width W is a multiple of ``BLOCK`` (padding columns are
``-inf``) and a 0/1 ``keep`` mask of allowed tokens; :func:`choose` returns the chosen tokens and their
*unconstrained* log-probabilities. Every strategy draws from the same distribution as a plain
sort-and-cumsum implementation (``tests/test_generation.py`` keeps one and compares token frequencies):

- greedy: the masked logits' argmax, found block-wise (the block maxima, then one block per row), which is
  several times faster than ``argmax`` over the row and returns the same first maximum;
- sampling: inverse CDF in two levels, one uniform per row: pick a block by its mass, then a token inside it,
  so the only full-row work is one ``exp`` and one block sum (no row-wide ``cumsum``);
- top-p: rejection. Draw ``j`` from the whole allowed distribution and keep it if the mass strictly above
  ``p_j`` is below ``top_p`` (exactly the test that puts ``j`` in the nucleus); otherwise draw again for
  that row. Conditioned on acceptance the draw follows the nucleus distribution, and a round accepts with
  probability >= ``top_p``; rows still rejected after ``ROUNDS`` rounds take the exact sort-based path;
- top-k: ``topk`` over the masked logits, then a draw among the k.

Every draw uses the given generator only, so a seeded generator reproduces a batch exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from poetry_vae.model.stepper import BLOCK, padded_size

STRATEGIES = ("greedy", "sample", "top_k", "top_p", "beam")
ROUNDS = 4  # top-p rejection rounds before the remaining rows take the exact sort-based path

Phase = Callable[[str], AbstractContextManager]


def no_phase(name: str) -> AbstractContextManager:
    return nullcontext()


class Workspace:
    """Reusable (R, W) buffers, so a step allocates (and page-faults) no new row-sized tensors."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, like: Tensor) -> Tensor:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._buffers[name] = torch.empty_like(like)
        return buf


def _uniform(rows: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(rows, 1, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _last_positive(weights: Tensor) -> Tensor:
    """(R, 1) index of each row's last positive column (the guard for float round-off at the top of a CDF)."""
    columns = torch.arange(weights.shape[1], device=weights.device)
    return torch.where(weights > 0, columns, 0).amax(dim=1, keepdim=True)


def block_argmax(x: Tensor) -> Tensor:
    """(R, W) -> (R,) first index of each row's maximum; W a multiple of ``BLOCK``."""
    rows, width = x.shape
    blocks = x.view(rows, width // BLOCK, BLOCK)
    best = blocks.amax(dim=2).argmax(dim=1)  # the first block holding the maximum
    inner = blocks[torch.arange(rows, device=x.device), best]
    return best * BLOCK + inner.argmax(dim=1)


def block_sample(weights: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """(R, W) non-negative weights (any scale, W a multiple of ``BLOCK``) -> (R,) drawn columns, (R,) row totals.

    Zero-weight columns are never drawn; one uniform per row.
    """
    rows, width = weights.shape
    blocks = weights.view(rows, width // BLOCK, BLOCK)
    mass = blocks.sum(dim=2)
    cdf = mass.cumsum(dim=1)
    total = cdf[:, -1:]
    u = _uniform(rows, weights, generator) * total
    block = torch.searchsorted(cdf, u, right=True).minimum(_last_positive(mass))
    inner = blocks.gather(1, block.unsqueeze(2).expand(-1, 1, BLOCK)).squeeze(1)
    rest = (u - (cdf.gather(1, block) - mass.gather(1, block))).clamp_(min=0)
    column = torch.searchsorted(inner.cumsum(dim=1), rest, right=True).minimum(_last_positive(inner))
    return (block * BLOCK + column).squeeze(1), total.squeeze(1)


def _nucleus_threshold(probs: Tensor, top_p: float) -> Tensor:
    """(R, 1) smallest weight inside each row's nucleus (the exact, sort-based definition): the fewest most
    likely tokens whose mass reaches ``top_p`` (the top token always counts; ties with the last one too)."""
    if probs.device.type == "cpu":  # numpy's value sort is much faster than torch.sort, which builds indices
        ascending = torch.from_numpy(np.sort(probs.numpy(), axis=1))
    else:
        ascending = probs.sort(dim=1).values
    cumulative = ascending.cumsum(dim=1)
    above = cumulative[:, -1:] - cumulative  # mass strictly above each token
    kept = (above < top_p * cumulative[:, -1:]).sum(dim=1, keepdim=True).clamp_(min=1)
    return ascending.gather(1, ascending.shape[1] - kept)


def nucleus_sample(
    weights: Tensor, top_p: float, generator: torch.Generator | None, scratch: Tensor | None = None
) -> Tensor:
    """(R, W) non-negative weights -> (R,) columns drawn from each row's top-p nucleus, by rejection."""
    rows = weights.shape[0]
    chosen = torch.empty(rows, dtype=torch.long, device=weights.device)
    pending = torch.arange(rows, device=weights.device)
    current = weights
    scratch = torch.empty_like(weights) if scratch is None else scratch
    for _ in range(ROUNDS):
        drawn, total = block_sample(current, generator)
        above_buf = scratch[: current.shape[0]]
        torch.gt(current, current.gather(1, drawn.unsqueeze(1)), out=above_buf)  # 1.0 where p_i > p_j
        above = above_buf.mul_(current).sum(dim=1)
        accept = above < top_p * total
        if bool(accept.all()):
            chosen[pending] = drawn
            return chosen
        chosen[pending[accept]] = drawn[accept]
        pending, current = pending[~accept], current[~accept]
    kept = current.masked_fill(current < _nucleus_threshold(current, top_p), 0.0)
    chosen[pending] = block_sample(kept, generator)[0]
    return chosen


def _log_normaliser(logits: Tensor, buffer: Tensor) -> tuple[Tensor, Tensor]:
    """(R, 1) row max and (R,) log-sum-exp of raw logits; ``buffer`` is left holding exp(logits - max)."""
    peak = logits.amax(dim=1, keepdim=True)
    total = torch.sub(logits, peak, out=buffer).exp_().sum(dim=1)
    return peak, peak.squeeze(1) + total.log()


def _masked_weights(
    logits: Tensor, keep: Tensor, temperature: float, peak: Tensor, buffer: Tensor
) -> Tensor:
    """(R, W) unnormalised masked softmax weights at ``temperature``, written into ``buffer``.

    At temperature 1 ``buffer`` already holds exp(logits - peak) from :func:`_log_normaliser`: masking is one
    multiply. A row whose allowed tokens all underflowed there (far below the unmasked max) is recomputed
    against its masked max.
    """
    if temperature == 1.0:
        weights = buffer.mul_(keep)
        lost = weights.amax(dim=1) <= 0
        if not bool(lost.any()):
            return weights
        weights[lost] = _tempered(logits[lost], keep if keep.shape[0] == 1 else keep[lost], 1.0)
        return weights
    buffer.copy_(_tempered(logits, keep, temperature))
    return buffer


def _tempered(logits: Tensor, keep: Tensor, temperature: float) -> Tensor:
    masked = logits.masked_fill(keep <= 0, float("-inf"))
    peak = masked.amax(dim=1, keepdim=True)
    return masked.sub_(peak).div_(temperature).exp_()


def choose(
    logits: Tensor,
    keep: Tensor,
    strategy: str,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 0.9,
    generator: torch.Generator | None = None,
    bias: Tensor | None = None,
    work: Workspace | None = None,
    phase: Phase = no_phase,
) -> tuple[Tensor, Tensor]:
    """Raw logits (R, W) and a 0/1 float ``keep`` mask (1 or R rows) -> (R,) chosen ids, (R,) their log-probs.

    The log-probs are the model's *unconstrained* ones (normalised over the whole vocabulary); filtering
    (top-k / top-p) happens after masking, so the kept set renormalises over allowed tokens only. ``bias`` is
    ``keep`` as an additive 0/-inf mask when the caller has it (greedy uses it). ``logits`` is overwritten
    (greedy adds the mask in place). ``phase(name)`` times the stages (see :class:`~.profile.StepProfile`).
    """
    work = work or Workspace()
    exp_buffer = work.get("exp", logits)
    with phase("normalise"):
        peak, log_norm = _log_normaliser(logits, exp_buffer)
    if strategy == "greedy":
        with phase("mask"):
            if bias is None:
                bias = torch.zeros_like(keep).masked_fill_(keep <= 0, float("-inf"))
            masked = logits.add_(bias)  # allowed columns add exactly 0.0, so the chosen logit is unchanged
        with phase("choose"):
            chosen = block_argmax(masked)
    elif strategy == "top_k":
        with phase("mask"):
            masked = logits.masked_fill(keep <= 0, float("-inf"))
        with phase("filter"):
            values, index = masked.topk(min(top_k, masked.shape[1]), dim=1)
        with phase("choose"):
            weights = torch.softmax(values / temperature, dim=1)
            weights = F.pad(weights, (0, padded_size(weights.shape[1]) - weights.shape[1]))
            chosen = index.gather(1, block_sample(weights, generator)[0].unsqueeze(1)).squeeze(1)
    elif strategy in ("sample", "top_p"):
        with phase("mask"):
            weights = _masked_weights(logits, keep, temperature, peak, exp_buffer)
        if strategy == "sample" or top_p >= 1.0:
            with phase("choose"):
                chosen = block_sample(weights, generator)[0]
        else:
            with phase("filter+choose"):
                chosen = nucleus_sample(weights, top_p, generator, work.get("scratch", logits))
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return chosen, logits.gather(1, chosen.unsqueeze(1)).squeeze(1) - log_norm


def pick_tokens(
    log_probs: Tensor,
    allowed: Tensor,
    strategy: str,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 0.9,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(R, V) log-probs (or logits) and a broadcastable bool mask of allowed tokens -> (R,) chosen token ids."""
    pad = padded_size(log_probs.shape[1]) - log_probs.shape[1]
    logits = F.pad(log_probs.float(), (0, pad), value=float("-inf"))
    keep = F.pad(allowed.reshape(-1, allowed.shape[-1]).to(logits.dtype), (0, pad))
    return choose(logits, keep, strategy, temperature, top_k, top_p, generator)[0]
