"""Learned rhyme: how much of the decoder's own probability goes to a rhyme, with no constraint in the way.

``rhyme_mass``: teacher-forced on real poems, with z drawn from the prior (what the decoder knows, not what a
poem's code tells it), the probability the model gives, at line 4's last character, to the characters that share a
平水韵 class with line 2's last character. A model that has learned rhyme puts most of it there; one that has not
puts about the class's share of the vocabulary (~0.1). ``learned_rhyme_rate``: the share of unconstrained samples
(top-p 0.9, temperature 0.8) whose lines 2 and 4 rhyme, by the independent checker.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.generation.decoding import generate, sample_prior
from poetry_vae.generation.request import DecodeRequest
from poetry_vae.metrics.poetry import rhyme_rate
from poetry_vae.model.modes import evaluating
from poetry_vae.model.poem_model import PoemModel
from poetry_vae.prosody.masks import build_masks

SAMPLING = DecodeRequest(strategy="top_p", top_p=0.9, temperature=0.8, precision="fp32")  # exact on every CPU


def rhyme_mass(
    model: PoemModel, vocab: Vocabulary, dec_in: Tensor, line_length: int, generator: torch.Generator | None = None
) -> float:
    """Mean probability of a character rhyming with line 2's end at line 4's end, over the poems of ``dec_in``
    (B, 1 + 4 * line_length) whose line-2 end has a known class (nan if none has)."""
    device = next(model.parameters()).device
    rhyme = build_masks(vocab.tokens, "pingshui").rhyme.to(device)  # (classes, V)
    dec_in = dec_in.to(device)
    anchor, end = dec_in[:, 2 * line_length], 4 * line_length - 1  # line 2's last char; line 4's step
    allowed = (rhyme[:, anchor].t().float() @ rhyme.float()) > 0  # (B, V): shares a class with the anchor
    known = allowed.any(dim=1)
    if not bool(known.any()):
        return float("nan")
    dec_in = dec_in[known]
    with evaluating(model), torch.no_grad():
        z = sample_prior(model, dec_in.size(0), generator)
        log_probs = model.next_token_log_probs(dec_in[:, : end + 1], z)[:, end]  # (B, V)
    return float(log_probs.exp().mul(allowed[known]).sum(dim=1).mean())


def learned_rhyme_rate(
    model: PoemModel, vocab: Vocabulary, n: int, line_length: int, generator: torch.Generator | None = None
) -> float:
    """Rhyme rate (lines 2 and 4) of ``n`` unconstrained prior samples (top-p 0.9, T 0.8)."""
    request = dataclasses.replace(SAMPLING, line_length=line_length)
    z = sample_prior(model, n, generator)
    poems = generate(model, vocab, z, request, generator, num_poems=n)
    return rhyme_rate([p.lines for p in poems], line_length=line_length)
