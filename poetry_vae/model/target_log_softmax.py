"""``log_softmax(logits)[target]`` per row, computed and differentiated in blocks of rows that stay in the cache.

Autograd's ``F.log_softmax(logits).gather(1, target)`` writes the whole (N, V) log-softmax in the forward pass and
keeps it; its backward zero-fills a second (N, V) table for the gather, scatters into it, and writes a third with
log-softmax's backward. At a batch of 128 poems (N = 2,688 positions) and an 8,621-character vocabulary each table
is 93 MB, freshly allocated (and page-faulted) every step. The value needs only each row's log-sum-exp and its
target's logit; the gradient is the softmax minus the one-hot target, times the incoming gradient. Here the forward
writes no table (each block's log-softmax goes through one reused block-sized buffer) and the backward writes the
gradient once, block by block.
"""

from __future__ import annotations

import torch
from torch import Tensor

ROWS = 256  # rows a block: 256 x 8,621 fp32 (8.8 MB) passes through the cache between a block's operations


def _wide(dtype: torch.dtype) -> torch.dtype:
    """Reduced-precision logits (bf16 autocast) are normalised in fp32, as log_softmax is under autocast."""
    return torch.promote_types(dtype, torch.float32)


class _TargetLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        wide = _wide(logits.dtype)
        out = torch.empty(logits.shape[0], dtype=wide, device=logits.device)
        scratch = None
        for start in range(0, logits.shape[0], ROWS):
            rows = slice(start, start + ROWS)
            block = logits[rows].to(wide)
            if scratch is None or scratch.shape[0] < block.shape[0]:
                scratch = torch.empty_like(block)
            log_probs = torch.ops.aten._log_softmax.out(block, 1, False, out=scratch[: block.shape[0]])
            out[rows] = log_probs.gather(1, target[rows].unsqueeze(1)).squeeze(1)
        ctx.save_for_backward(logits, target)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        logits, target = ctx.saved_tensors
        table = torch.empty(logits.shape, dtype=_wide(logits.dtype), device=logits.device)
        for start in range(0, logits.shape[0], ROWS):
            rows = slice(start, start + ROWS)
            # d/dlogits of log_softmax(logits)[t] is onehot(t) - softmax: -grad * softmax, then + grad at t
            block = torch.ops.aten._softmax.out(logits[rows].to(table.dtype), 1, False, out=table[rows])
            block.mul_(grad[rows].unsqueeze(1).neg())
            block.scatter_add_(1, target[rows].unsqueeze(1), grad[rows].unsqueeze(1))
        return table.to(logits.dtype), None


def target_log_softmax(logits: Tensor, target: Tensor) -> Tensor:
    """(N, V) logits and (N,) target ids -> (N,) log-probabilities of the targets (fp32 for reduced-precision
    logits)."""
    return _TargetLogSoftmax.apply(logits, target)
