"""Bidirectional LSTM encoder: embedded poem -> (mu, logvar) of the Gaussian posterior q(z|x).

With ``bn_gamma > 0`` (BN-VAE, Zhu et al. 2020) mu passes through batch normalisation with a fixed scale γ and a
learned shift b: over a training batch each dimension then has mean(mu_j^2) = γ^2 v/(v + eps) + b_j^2, so the
batch-mean KL of dimension j is at least 0.5 (γ^2 v/(v + eps) + b_j^2) (the variance terms σ^2 - log σ^2 - 1 are
>= 0): a floor under the expected KL at no extra cost. In eval mode the running statistics are used, so q(z|x)
is an ordinary per-poem function and the ELBO and IW-NLL stay exact.

Right padding: eagerly, the batch is packed when (and only when) something is padded. Under ``torch.compile``
that check would be a data-dependent branch (a graph break), so the traced path, :meth:`Encoder.unpacked`,
computes the same states without packing or branching: each direction runs as its own single-direction LSTM
over the same weights, the backward one over every row reversed within its own length, so neither reads a pad
before a real token, and the final states are read at each row's last real position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from poetry_vae.model.config import ModelConfig
from poetry_vae.model.dropout import Dropout, dropout

BN_EPS = 1e-12


def reverse_within(x: Tensor, lengths: Tensor) -> Tensor:
    """(B, T, D) right-padded rows -> each row's first ``lengths[b]`` steps reversed, the padding left in place."""
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)
    index = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.size(2)))


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.dropout = Dropout(cfg.dropout)
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
            # eps far below any variance the encoder keeps: with the usual 1e-5 the encoder escaped the floor by
            # shrinking the pre-BN variance under eps (measured: v ~ 1e-8, train KL 0.01 nats, eval KL 330)
            self.mu_bn = nn.BatchNorm1d(cfg.latent_dim, affine=False, eps=BN_EPS)
            self.mu_shift = nn.Parameter(torch.zeros(cfg.latent_dim))

    def _direction(self, x: Tensor, layer: int, suffix: str) -> Tensor:
        """One direction of one layer as a single-direction LSTM: (B, T, D) -> outputs (B, T, H)."""
        lstm = self.lstm
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        params = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in names]
        zeros = x.new_zeros(1, x.size(0), lstm.hidden_size)
        return torch.lstm(x, (zeros, zeros), params, True, 1, 0.0, self.training, False, True)[0]

    def forward(self, emb: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """emb (B, T, E); lengths (B,) of right-padded inputs (None: nothing is padded)."""
        x = self.dropout(emb)
        if lengths is None:
            lengths = torch.full((x.size(0),), x.size(1), dtype=torch.long, device=x.device)
        if torch.compiler.is_compiling():  # a trace-time constant, not a graph break
            final = self.unpacked(x, lengths)
        elif bool((lengths < x.size(1)).any()):  # eager: pack only when something is padded (fastest)
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            final = self._final(self.lstm(packed)[1][0])
        else:
            final = self._final(self.lstm(x)[1][0])
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

    @staticmethod
    def _final(h_n: Tensor) -> Tensor:
        return torch.cat([h_n[-2], h_n[-1]], dim=-1)  # h_n: (layers * 2, B, H); top layer fwd, bwd

    def unpacked(self, x: Tensor, lengths: Tensor) -> Tensor:
        """(B, 2H) final states of the top layer for right-padded ``x``, with no data-dependent control flow."""
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1)
        for layer in range(self.lstm.num_layers):
            if layer > 0:
                x = dropout(x, self.lstm.dropout, self.training)  # nn.LSTM's between-layer dropout
            forward = self._direction(x, layer, "")
            backward_rev = self._direction(reverse_within(x, lengths), layer, "_reverse")
            x = torch.cat([forward, reverse_within(backward_rev, lengths)], dim=2)
        h = x.size(2) // 2
        final_fwd = x[..., :h].gather(1, last.expand(-1, 1, h)).squeeze(1)
        return torch.cat([final_fwd, x[:, 0, h:]], dim=-1)  # the backward pass ends at each row's first token
