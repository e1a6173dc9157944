"""Fluency of written poems: their negative log-likelihood per character under a reference language model."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from poetry_vae.data.forms import FORM_IDS, JUEJU
from poetry_vae.data.vocab import Vocabulary
from poetry_vae.layout import written_chars
from poetry_vae.model.modes import evaluating
from poetry_vae.model.poem_model import PoemModel


def nll_per_char(model: PoemModel, vocab: Vocabulary, texts: Sequence[str], batch_size: int = 512) -> float:
    """Mean NLL (nats) per character of ``texts`` (written characters, all of one length) under ``model`` read
    as a language model: a latent model is scored at z = 0, the prior's mode. Characters outside the vocabulary
    read as <unk>; the end-of-poem token is not counted. Poems may be given with their marks (，。)."""
    texts = [written_chars(text) for text in texts]
    if not texts:
        raise ValueError("no poems to score")
    length = len(texts[0])
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with evaluating(model), torch.no_grad():
        for start in range(0, len(texts), batch_size):
            tokens = torch.as_tensor(vocab.encode_many(list(texts[start : start + batch_size]), length), device=device)
            bos = torch.full((len(tokens), 1), vocab.bos_id, dtype=torch.long, device=device)
            dec_in, target = torch.cat([bos, tokens[:, :-1]], 1), tokens
            z = torch.zeros(len(tokens), model.cfg.latent_dim, device=device) if model.cfg.use_latent else None
            form = (torch.full((len(tokens),), FORM_IDS[JUEJU], dtype=torch.long, device=device)
                    if model.cfg.num_forms else None)
            logp = model.token_log_probs(dec_in, target, z, form=form)
            total -= float(logp.sum())
            count += target.numel()
    return total / count
