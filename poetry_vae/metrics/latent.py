"""Latent-space diagnostics: importance-weighted log-likelihood, active units, mutual information.

Pure functions of their inputs (the caller gathers tensors across DDP ranks and sets eval mode).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from poetry_vae.model.poem_model import PoemModel
from poetry_vae.objective import LOG_2PI, gaussian_log_density


@torch.no_grad()
def iw_log_likelihood(
    model: PoemModel,
    tokens: Tensor,
    dec_in: Tensor,
    target: Tensor,
    k: int,
    chunk: int = 50,
    generator: torch.Generator | None = None,
    max_rows: int = 2048,
) -> Tensor:
    """Importance-weighted estimate of log p(x) per poem (Burda et al. 2016): (B,), in nats.

    log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x) (:func:`iw_log_weights`). A lower bound of log p(x)
    in expectation, >= the ELBO and tightening with K. For the LM baseline (use_latent=False) this is the exact
    log p(x). Set ``model.eval()`` first.
    """
    if not model.cfg.use_latent:
        return model.token_log_probs(dec_in, target, None).sum(dim=1)
    log_w = iw_log_weights(model, tokens, dec_in, target, k, chunk, generator, max_rows)
    return torch.logsumexp(log_w, dim=0) - math.log(k)


@torch.no_grad()
def iw_log_weights(
    model: PoemModel,
    tokens: Tensor,
    dec_in: Tensor,
    target: Tensor,
    k: int,
    chunk: int = 50,
    generator: torch.Generator | None = None,
    max_rows: int = 2048,
) -> Tensor:
    """(K, B) importance log-weights log p(x|z_k) + log p(z_k) - log q(z_k|x) of K codes drawn from each poem's
    posterior, ``chunk`` codes at a time. At most ``max_rows`` poems are decoded at once (codes x batch): the
    full-softmax logits of a row take V x 21 floats (~0.4 MB)."""
    if k < 1 or chunk < 1:
        raise ValueError(f"need k >= 1 and chunk >= 1, got k={k}, chunk={chunk}")
    mu, logvar = model.encode(tokens)
    B = mu.size(0)
    chunk = max(1, min(chunk, max_rows // B))
    log_w = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps  # (n, B, Z)
        log_pxz = model.token_log_probs(dec_in.repeat(n, 1), target.repeat(n, 1), z.reshape(n * B, -1), copies=n)
        log_w.append(log_pxz.sum(dim=1).view(n, B) + model.prior.log_ratio(z, mu, logvar))
    return torch.cat(log_w)


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """Number of latent dims whose posterior mean varies across the data: Var_x(mu_j) >= threshold
    (Burda et al. 2016). mu is (N, Z) over the whole evaluation set, N >= 2."""
    if mu.size(0) < 2:
        raise ValueError("active_units needs at least 2 posterior means")
    return int((mu.float().var(dim=0) >= threshold).sum())


@torch.no_grad()
def mutual_information(
    mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None, chunk: int = 128
) -> float:
    """I_q(x; z) estimate of He et al. 2019 over a set of N posteriors (N, Z), in nats.

    E_x E_q(z|x) [log q(z|x)] - E_q(z) [log q(z)], with one z_i ~ q(z|x_i) per poem and the aggregate
    posterior q(z) = (1/N) sum_j q(z|x_j). Bounded by log N; sample rows are processed ``chunk`` at a
    time, so memory is chunk * N * Z.
    """
    mu, logvar = mu.double(), logvar.double()
    N, Z = mu.shape
    neg_entropy = (-0.5 * Z * LOG_2PI - 0.5 * (1.0 + logvar).sum(dim=1)).mean()
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * eps
    log_qz = torch.cat(
        [
            torch.logsumexp(gaussian_log_density(zc.unsqueeze(1), mu, logvar), dim=1) - math.log(N)
            for zc in z.split(chunk)
        ]
    )
    return float(neg_entropy - log_qz.mean())
