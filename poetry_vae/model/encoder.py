"""Bidirectional LSTM encoder: embedded poem -> (mu, logvar) of the Gaussian posterior q(z|x).

With ``bn_gamma > 0`` (BN-VAE, Zhu et al. 2020) mu passes through batch normalisation with a fixed scale γ and a
learned shift b: over a training batch each dimension then has mean(mu_j^2) = γ^2 v/(v + eps) + b_j^2, so the
batch-mean KL of dimension j is at least 0.5 (γ^2 v/(v + eps) + b_j^2) (the variance terms σ^2 - log σ^2 - 1 are
>= 0): a floor under the expected KL at no extra cost. In eval mode the running statistics are used, so q(z|x)
is an ordinary per-poem function and the ELBO and IW-NLL stay exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from poetry_vae.model.config import VAEConfig


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(
            cfg.embed_dim,
            cfg.encoder_hidden,
            num_layers=cfg.encoder_layers,
            bidirectional=True,
            batch_first=True,
            dropout=cfg.dropout if cfg.encoder_layers > 1 else 0.0,
        )
        self.to_mu = nn.Linear(2 * cfg.encoder_hidden, cfg.latent_dim)
        self.to_logvar = nn.Linear(2 * cfg.encoder_hidden, cfg.latent_dim)
        self.bn_gamma = cfg.bn_gamma
        if cfg.bn_gamma > 0:  # γ is a constant, not a parameter: the floor must not be learned away
            self.mu_bn = nn.BatchNorm1d(cfg.latent_dim, affine=False)
            self.mu_shift = nn.Parameter(torch.zeros(cfg.latent_dim))

    def forward(self, emb: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """emb (B, T, E); lengths (B,) of right-padded inputs, or None when nothing is padded."""
        x = self.dropout(emb)
        if lengths is not None:
            x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(x)  # h_n: (layers * 2, B, H); last two rows = top layer fwd, bwd
        final = torch.cat([h_n[-2], h_n[-1]], dim=-1)
        return self._normalise(self.to_mu(final)), self.to_logvar(final)

    def _normalise(self, mu: Tensor) -> Tensor:
        if self.bn_gamma <= 0:
            return mu
        bn = self.mu_bn
        # batch statistics need two poems; a single poem in training mode uses the running statistics
        batch_stats = self.training and mu.size(0) > 1
        normed = F.batch_norm(mu, bn.running_mean, bn.running_var, training=batch_stats,
                              momentum=bn.momentum if batch_stats else 0.0, eps=bn.eps)
        if batch_stats:
            bn.num_batches_tracked.add_(1)
        return self.bn_gamma * normed + self.mu_shift
