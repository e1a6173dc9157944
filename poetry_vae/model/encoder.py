"""Bidirectional LSTM encoder: embedded poem -> (mu, logvar) of the Gaussian posterior q(z|x)."""

from __future__ import annotations

import torch
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

    def forward(self, emb: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """emb (B, T, E); lengths (B,) of right-padded inputs, or None when nothing is padded."""
        x = self.dropout(emb)
        if lengths is not None:
            x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(x)  # h_n: (layers * 2, B, H); last two rows = top layer fwd, bwd
        final = torch.cat([h_n[-2], h_n[-1]], dim=-1)
        return self.to_mu(final), self.to_logvar(final)
