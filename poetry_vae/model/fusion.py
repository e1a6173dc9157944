"""How a fused model (model.lm_fusion) mixes its language model's next-character distribution with its decoder's.

Over the whole vocabulary (``fusion_by_cluster=false``): log p = log_softmax(a * log p_LM + b * log p_decoder), a
and b the step's learned weights. Its normaliser sums over every character, so a draw must make both models' whole
distributions at every step.

By cluster of an adaptive softmax (``fusion_by_cluster=true``): the same product of experts made twice, once over
the heads (the shortlist's characters and one entry a tail cluster) and once inside each cluster's tail:

    log p(v) = H(c) + T_c(v),  H = log_softmax(a * head_LM + b * head_decoder)
                               T_c = log_softmax(a * tail_LM,c + b * tail_decoder,c) (v in cluster c; T = 0 for
                               a shortlist character, which is its own head entry)

Each part is normalised on its own, so the head alone gives every shortlist character's exact log-prob and each
cluster's exact mass: a draw makes a row's tails only when it lands in a cluster, as for one adaptive softmax
(generation/adaptive_draw.py), and training scores each tail target inside its own cluster only. As a * log_softmax(x)
+ b * log_softmax(y) differs from a * x + b * y by one constant a row, each part mixes the two models' logits and is
normalised once.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from poetry_vae.model.decoder import clustered_target_log_probs


def mixture(weights: Tensor, lm_log_probs: Tensor, log_probs: Tensor) -> Tensor:
    """A fused step's unnormalised log-probs, a * log p_LM + b * log p_decoder: ``weights`` (..., 2) holds each
    position's (a, b) and broadcasts against the (..., V) log-probs by its leading dimensions."""
    return torch.addcmul(weights[..., :1] * lm_log_probs, weights[..., 1:], log_probs)


def fused_log_probs(weights: Tensor, lm_log_probs: Tensor, log_probs: Tensor) -> Tensor:
    """The :func:`mixture` normalised over the vocabulary (the last dimension): a fused model's log-probs."""
    return torch.log_softmax(mixture(weights, lm_log_probs.to(log_probs.dtype), log_probs), dim=-1)


def head_and_tails(layer: nn.AdaptiveLogSoftmaxWithLoss, hidden: Tensor) -> tuple[Tensor, list[Tensor]]:
    """An adaptive softmax's parts for ``hidden`` (N, width): the head's logits (N, shortlist + clusters) and each
    cluster's logits (N, cluster size)."""
    return layer.head(hidden), [tail(hidden) for tail in layer.tail]


def cluster_fused_log_probs(
    weights: Tensor, lm: tuple[Tensor, list[Tensor]], own: tuple[Tensor, list[Tensor]]
) -> Tensor:
    """The whole (N, V) log-distribution of the fusion by cluster from the two models' :func:`head_and_tails`;
    ``weights`` (N, 2) each row's (a, b)."""
    (lm_head, lm_tails), (head, tails) = lm, own
    dtype = head.dtype
    fused_head = torch.log_softmax(mixture(weights, lm_head.to(dtype), head), dim=-1)
    shortlist = head.shape[-1] - len(tails)
    parts = [fused_head[:, :shortlist]]
    for c, (lm_tail, tail) in enumerate(zip(lm_tails, tails, strict=True)):
        inside = torch.log_softmax(mixture(weights, lm_tail.to(dtype), tail), dim=-1)
        parts.append(inside + fused_head[:, shortlist + c : shortlist + c + 1])
    return torch.cat(parts, dim=-1)


def cluster_fused_target_log_probs(
    layer: nn.AdaptiveLogSoftmaxWithLoss,
    lm_layer: nn.AdaptiveLogSoftmaxWithLoss,
    hidden: Tensor,
    lm_hidden: Tensor,
    weights: Tensor,
    target: Tensor,
) -> Tensor:
    """log p(target) (N,) of the fusion by cluster: the head mixed for every row, each tail cluster's mixture made
    only for the rows whose target lies in it. ``hidden`` (K * M, width) may be K copies of the M positions of
    ``lm_hidden`` (M, width) (K codes of the same poems): the language model's parts are made once and repeated.
    ``weights`` (K * M, 2), ``target`` (K * M,). The language model takes no gradient."""
    copies = hidden.shape[0] // lm_hidden.shape[0]
    with torch.no_grad():
        lm_head = lm_layer.head(lm_hidden).to(hidden.dtype).repeat(copies, 1)

    def tail(c: int, rows: Tensor) -> Tensor:
        with torch.no_grad():
            lm_tail = lm_layer.tail[c](lm_hidden[rows % lm_hidden.shape[0]])
        own = layer.tail[c](hidden.index_select(0, rows))
        return mixture(weights[rows], lm_tail.to(own.dtype), own)

    return clustered_target_log_probs(layer, target, hidden.dtype,
                                      lambda: mixture(weights, lm_head, layer.head(hidden)), tail)
