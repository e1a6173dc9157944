"""The VAE objective: analytic KL, free bits, ELBO terms, KL-weight (beta) schedules and word dropout.

Conventions: ``rec`` is the NLL of a whole poem (summed over its tokens) and ``kl`` is per latent
dimension, so ``rec + kl.sum(1)`` is the negative ELBO of a poem. Mixing a per-token mean
reconstruction with a summed KL silently multiplies beta by the poem length (the original program's collapse).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from poetry_vae.errors import PoetryVAEError

if TYPE_CHECKING:  # the model imports this module
    from poetry_vae.model.config import ModelConfig


@dataclass(frozen=True)
class ObjectiveConfig:
    """What the training loss adds to the reconstruction term; ``conf/objective/*.yaml`` maps onto it."""

    # per-dimension KL floor in nats (0 = off); under a mixture prior, whose KL does not split by dimension, the
    # whole code's floor is free_bits x latent_dim
    free_bits: float = 0.0
    word_dropout: float = 0.0  # decoder inputs (not <s>, not pad) -> <unk> at this rate, training only
    # Zhao et al. 2017: weight of an auxiliary loss that predicts the poem's characters, as a bag, from z alone
    # (one linear layer); z must then carry the poem's content, which the decoder can read (0 = off)
    bag_of_words: float = 0.0
    # Li et al. 2019: an autoencoder phase (beta = 0) of ae_steps optimiser steps; the anneal schedule then sees
    # step - ae_steps. reset_decoder re-initialises the decoder at the end of that phase.
    ae_steps: int = 0
    reset_decoder: bool = False
    # He et al. 2019: encoder-only inner updates (at most aggressive_max_inner a step, stopped early when the
    # inner loss, averaged over aggressive_check_every updates, stops falling) until validation MI stops rising
    # or the global step reaches aggressive_max_steps (0 = no limit).
    aggressive: bool = False
    aggressive_max_inner: int = 30
    aggressive_check_every: int = 5
    aggressive_max_steps: int = 0
    # Train q(z|x) alone against the frozen decoder, embedding and prior, on the model's own ELBO (no free bits,
    # no word dropout, the decoder as evaluated): with the model fixed the ELBO is log p(x) - KL(q || p(z|x)), so
    # this only brings the proposal closer to the true posterior and tightens the importance-weighted bound on a
    # likelihood that does not change (Cremer et al. 2018's amortisation gap).
    refit_encoder: bool = False
    # The dual: train the decoder alone (its LSTM, z's paths into it and the output layer) on the codes of a frozen
    # encoder, embedding, highway and prior. The KL of every poem stays what it was, so the code is kept while the
    # decoder, free of the free bits and word dropout that built the code, reads it anew (on the flagship: a small
    # gain, docs/flagship_history.md). Word dropout stays allowed (a regulariser of the decoder); free bits, which act
    # on the KL alone, would do nothing.
    refit_decoder: bool = False
    # Burda et al. 2016: > 1 trains on the importance-weighted bound with this many codes a poem (1 = the ELBO): the
    # bound the IW perplexity reports, tighter than the ELBO, so the decoder is paid for log p(x) and the encoder
    # for proposals that serve it. Costs iw_samples decoder passes a poem
    iw_samples: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ObjectiveConfig:
        """From a checkpoint's or a config's dict; keys it does not know are one error naming them (a checkpoint
        written by another version of the project)."""
        unknown = sorted(set(d or {}) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise PoetryVAEError(f"unknown objective key(s): {', '.join(unknown)}")
        return cls(**(d or {}))

    def __post_init__(self) -> None:
        problems = [
            (self.free_bits < 0, f"free_bits={self.free_bits}: must be >= 0 nats"),
            (not 0.0 <= self.word_dropout <= 1.0, f"word_dropout={self.word_dropout}: must be in [0, 1]"),
            (self.bag_of_words < 0, f"bag_of_words={self.bag_of_words}: must be >= 0 (0 = no bag-of-words loss)"),
            (self.ae_steps < 0, f"ae_steps={self.ae_steps}: must be >= 0 (0 = no autoencoder phase)"),
            (self.reset_decoder and self.ae_steps < 1,
             "reset_decoder=true needs ae_steps >= 1 (the decoder is re-initialised when that phase ends)"),
            (self.aggressive_max_inner < 1, f"aggressive_max_inner={self.aggressive_max_inner}: must be >= 1"),
            (self.aggressive_check_every < 1,
             f"aggressive_check_every={self.aggressive_check_every}: must be >= 1"),
            (self.aggressive_max_steps < 0,
             f"aggressive_max_steps={self.aggressive_max_steps}: must be >= 0 (0 = no limit)"),
            (self.refit_encoder and (self.free_bits > 0 or self.word_dropout > 0 or self.bag_of_words > 0
                                     or self.ae_steps > 0 or self.aggressive),
             "refit_encoder=true trains the proposal on the model's own ELBO: set free_bits=0, word_dropout=0 "
             "and leave bag_of_words, ae_steps and aggressive off"),
            (self.refit_encoder and self.refit_decoder,
             "refit_encoder=true and refit_decoder=true together would train nothing: choose one"),
            (self.refit_decoder and (self.free_bits > 0 or self.bag_of_words > 0 or self.ae_steps > 0
                                     or self.aggressive),
             "refit_decoder=true trains the decoder on fixed codes, whose KL no term can move: set free_bits=0 and "
             "leave bag_of_words, ae_steps and aggressive off"),
            (self.iw_samples < 1, f"iw_samples={self.iw_samples}: must be >= 1 (1 = the ELBO)"),
            (self.iw_samples > 1 and (self.free_bits > 0 or self.bag_of_words > 0 or self.aggressive),
             f"iw_samples={self.iw_samples} trains on the importance-weighted bound, which has no KL term of its own "
             "for free bits, a bag-of-words loss or aggressive encoder updates: set free_bits=0, bag_of_words=0, "
             "aggressive=false, or iw_samples=1"),
        ]
        for bad, message in problems:
            if bad:
                raise PoetryVAEError(f"objective.{message}")

    def beta(self, schedule: Callable[[int], float], step: int) -> float:
        """β at ``step``: 0 during the autoencoder phase, then the schedule restarted at its end."""
        return 0.0 if step < self.ae_steps else float(schedule(step - self.ae_steps))


# ---- aggressive training (He et al. 2019): the two decisions, as pure functions ----


def inner_loop_should_stop(window_means: Sequence[float]) -> bool:
    """He et al.'s inner-loop stop: the mean inner loss of the latest window did not fall below the previous one."""
    return len(window_means) >= 2 and window_means[-1] >= window_means[-2]


def aggressive_stays_on(mi_history: Sequence[float], step: int, max_steps: int = 0) -> bool:
    """Aggressive mode continues while validation MI keeps rising: off at the first MI that is not above the
    previous one, or once ``step`` reaches ``max_steps`` (0 = no limit)."""
    if max_steps and step >= max_steps:
        return False
    return not (len(mi_history) >= 2 and mi_history[-1] <= mi_history[-2])


LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dim (broadcasting)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per dimension: (B, Z) -> (B, Z)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits_kl(kl: Tensor, lambda_: float, latent_dim: int | None = None) -> Tensor:
    """KL term seen by the optimiser with free bits (Kingma et al. 2016, per-dimension variant).

    ``sum_j max(lambda_, mean_batch KL_j)``: a dimension whose batch-mean KL is below ``lambda_`` nats
    is not pushed further towards the prior (zero gradient). ``lambda_ = 0`` gives the plain batch
    mean of the per-poem KL. ``kl`` is (B, Z); a (B, 0) tensor (the LM baseline) gives 0. A prior that does not
    factorise (a mixture) gives each poem's total KL alone, (B, 1): the whole code then has the floor of its
    ``latent_dim`` dimensions, ``lambda_ * latent_dim`` (Kingma et al.'s variant with one group).
    """
    if kl.shape[1] == 1 and latent_dim:
        lambda_ *= latent_dim
    return kl.mean(dim=0).clamp(min=lambda_).sum()


def bag_of_words_nll(logits: Tensor, tokens: Tensor, pad_id: int) -> Tensor:
    """Each poem's characters scored by one order-free distribution: logits (B, V) from z, tokens (B, T) ->
    (B,) the summed NLL of the non-pad tokens (Zhao et al. 2017's bag-of-words loss)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1).gather(1, tokens)
    return -log_probs.masked_fill(tokens == pad_id, 0.0).sum(dim=1)


class BagOfWords(torch.nn.Linear):
    """Zhao et al. 2017's bag-of-words loss term: one linear layer on z scores the poem's characters as a bag, and
    ``weight`` times their mean NLL joins the loss. A training-time auxiliary, not part of the model a sampler
    loads; a plain ``Linear`` so that its parameters keep the names checkpoints hold (``bow_head.weight``)."""

    def __init__(self, latent_dim: int, vocab_size: int, weight: float, pad_id: int) -> None:
        super().__init__(latent_dim, vocab_size)
        self.loss_weight = float(weight)
        self.pad_id = pad_id

    @classmethod
    def for_objective(cls, objective: ObjectiveConfig, model: ModelConfig, pad_id: int) -> BagOfWords | None:
        """The term ``objective.bag_of_words`` asks for, or None when its weight is 0."""
        if objective.bag_of_words <= 0:
            return None
        if not model.use_latent:
            raise PoetryVAEError("objective.bag_of_words > 0 needs a model with a latent code (use_latent=true)")
        return cls(model.latent_dim, model.vocab_size, objective.bag_of_words, pad_id)

    def add_to(self, terms: dict[str, Tensor], z: Tensor, tokens: Tensor) -> dict[str, Tensor]:
        """``terms`` with ``bow`` (mean NLL per poem) added, and its weighted share in ``loss``."""
        bow = bag_of_words_nll(self(z), tokens, self.pad_id).mean()
        return {**terms, "bow": bow, "loss": terms["loss"] + self.loss_weight * bow}


def elbo_terms(
    rec: Tensor, kl: Tensor, beta: float, free_bits: float = 0.0, latent_dim: int | None = None
) -> dict[str, Tensor]:
    """rec (B,) poem NLL, kl (B, Z) (or (B, 1), a mixture prior's total: see :func:`free_bits_kl`) -> scalars:
    loss to minimise, mean rec, mean true KL, mean ELBO."""
    rec_mean = rec.mean()
    kl_poem = kl.sum(dim=1)
    return {
        "loss": rec_mean + beta * free_bits_kl(kl, free_bits, latent_dim),
        "rec": rec_mean,
        "kl": kl_poem.mean(),
        "elbo": -(rec + kl_poem).mean(),
    }


def iw_terms(rec: Tensor, log_ratio: Tensor, kl: Tensor, beta: float) -> dict[str, Tensor]:
    """The importance-weighted objective (Burda et al. 2016) of K codes a poem: rec (K, B) the poem's NLL under each
    code, log_ratio (K, B) log p(z_k) - log q(z_k|x), kl (B, Z) the analytic KL -> scalars: loss (minus the bound
    log (1/K) sum_k exp(-rec_k + beta log_ratio_k); at beta = 1 the IW bound), and rec, kl, elbo as
    :func:`elbo_terms` gives them (rec averaged over the K codes)."""
    log_w = -rec + beta * log_ratio
    bound = torch.logsumexp(log_w, dim=0) - math.log(rec.size(0))
    kl_poem = kl.sum(dim=1)
    rec_mean = rec.mean(dim=0)
    return {"loss": -bound.mean(), "rec": rec_mean.mean(), "kl": kl_poem.mean(), "elbo": -(rec_mean + kl_poem).mean()}


# ---- KL weight schedules: pure functions of the global step, so a resumed run continues them ----


@dataclass(frozen=True)
class ConstantBeta:
    value: float = 1.0

    def __call__(self, step: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class LinearBeta:
    """start_value -> max_value linearly over ``warmup_steps``, then constant."""

    warmup_steps: int
    max_value: float = 1.0
    start_value: float = 0.0

    def __call__(self, step: int) -> float:
        frac = 1.0 if self.warmup_steps <= 0 else min(1.0, max(0.0, step / self.warmup_steps))
        return self.start_value + (self.max_value - self.start_value) * frac


@dataclass(frozen=True)
class LogisticBeta:
    """Bowman et al. 2016: max_value / (1 + exp(-k (step - x0)))."""

    k: float = 0.0025
    x0: int = 2500
    max_value: float = 1.0

    def __call__(self, step: int) -> float:
        t = -self.k * (step - self.x0)
        return 0.0 if t > 700 else self.max_value / (1.0 + math.exp(t))


@dataclass(frozen=True)
class CyclicalBeta:
    """Fu et al. 2019: ``cycles`` cycles over ``total_steps``; in each, beta rises linearly from 0 to
    max_value over the first ``ratio`` of the cycle, then stays at max_value. After total_steps: max."""

    total_steps: int
    cycles: int = 4
    ratio: float = 0.5
    max_value: float = 1.0

    def __post_init__(self) -> None:
        if self.total_steps < 1 or self.cycles < 1 or not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"bad {self}: need total_steps, cycles >= 1 and 0 < ratio <= 1")

    def __call__(self, step: int) -> float:
        if step >= self.total_steps:
            return float(self.max_value)
        period = self.total_steps / self.cycles
        tau = (max(step, 0) % period) / period
        return self.max_value * min(1.0, tau / self.ratio)


# ---- word dropout (Bowman et al. 2016, sec. 3.3) ----


def word_dropout(
    dec_in: Tensor,
    rate: float,
    unk_id: int = 3,
    keep_ids: Sequence[int] = (1, 0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Replace whole decoder-input tokens by ``unk_id`` with probability ``rate``; ``keep_ids``
    (default ``<s>``=1 and ``<pad>``=0) are never replaced. ``rate == 0`` returns ``dec_in`` itself."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"word dropout rate must be in [0, 1], got {rate}")
    if rate == 0.0:
        return dec_in
    drop = torch.rand(dec_in.shape, generator=generator, device=dec_in.device) < rate
    drop &= ~torch.isin(dec_in, torch.tensor(list(keep_ids), device=dec_in.device))
    return dec_in.masked_fill(drop, unk_id)
