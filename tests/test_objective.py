"""The VAE objective: analytic KL, free bits, ELBO terms, beta schedules, word dropout.

Expectations are derived independently of the code under test: KL from a Monte-Carlo estimate and from
``torch.distributions``, schedules from their textbook definitions at hand-picked steps.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from poetry_vae.errors import PoetryVAEError
from poetry_vae.objective import (
    ConstantBeta,
    CyclicalBeta,
    LinearBeta,
    LogisticBeta,
    ObjectiveConfig,
    elbo_terms,
    free_bits_kl,
    gaussian_kl,
    gaussian_log_density,
    iw_terms,
    word_dropout,
)

# ---- gaussian_kl ----


def test_gaussian_kl_matches_monte_carlo() -> None:
    mu = torch.tensor([[0.0, 1.5, -2.0], [0.7, -0.3, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.0, 0.8], [-2.5, 0.4, 1.2]], dtype=torch.float64)
    kl = gaussian_kl(mu, logvar)
    assert kl.shape == mu.shape

    g = torch.Generator().manual_seed(0)
    std = (0.5 * logvar).exp()
    n = 200_000
    z = mu + std * torch.randn((n, *mu.shape), generator=g, dtype=torch.float64)
    q, p = Normal(mu, std), Normal(torch.zeros_like(mu), torch.ones_like(mu))
    samples = q.log_prob(z) - p.log_prob(z)  # per dimension, (n, B, Z)
    mc = samples.mean(0)
    stderr = samples.std(0) / math.sqrt(n)
    # within a few percent (and within 5 standard errors of the MC estimate)
    assert torch.all((kl - mc).abs() <= torch.maximum(0.03 * mc.abs(), 5 * stderr + 1e-3))
    # the closed form agrees with torch's own implementation to float precision
    torch.testing.assert_close(kl, kl_divergence(q, p))


def test_gaussian_kl_zero_at_prior_and_positive_elsewhere() -> None:
    zeros = torch.zeros(4, 7)
    assert torch.equal(gaussian_kl(zeros, zeros), torch.zeros(4, 7))
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(50, 6, generator=g), torch.randn(50, 6, generator=g)
    assert (gaussian_kl(mu, logvar) > 0).all()


# ---- free bits ----


def test_free_bits_value_is_floored_batch_mean() -> None:
    kl = torch.tensor([[0.1, 2.0, 0.0, 0.6], [0.3, 1.0, 0.0, 0.2]])  # batch means: 0.2, 1.5, 0.0, 0.4
    assert free_bits_kl(kl, 0.5).item() == pytest.approx(0.5 + 1.5 + 0.5 + 0.5)
    assert free_bits_kl(kl, 0.3).item() == pytest.approx(0.3 + 1.5 + 0.3 + 0.4)
    # lambda = 0: plain batch mean of the per-poem KL
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(kl.sum(1).mean().item())
    # LM baseline: no latent dims
    assert free_bits_kl(torch.zeros(3, 0), 0.5).item() == 0.0


def test_free_bits_floor_the_whole_code_under_a_mixture_prior() -> None:
    """A mixture prior's KL comes as each poem's total (B, 1): the floor is then the whole code's, lambda x Z, and
    the gradient stops below it; a factorised (B, Z) KL keeps the per-dimension floor."""
    total = torch.tensor([[50.0], [60.0]], requires_grad=True)  # batch mean 55 < 2 x 32
    assert free_bits_kl(total, 2.0, latent_dim=32).item() == pytest.approx(64.0)
    free_bits_kl(total, 2.0, latent_dim=32).backward()
    assert total.grad.abs().sum().item() == 0.0
    assert free_bits_kl(total.detach(), 1.5, latent_dim=32).item() == pytest.approx(55.0)  # above 48: as it is
    per_dim = torch.tensor([[0.1, 2.0, 0.0, 0.6], [0.3, 1.0, 0.0, 0.2]])
    assert free_bits_kl(per_dim, 0.5, latent_dim=4).item() == pytest.approx(free_bits_kl(per_dim, 0.5).item())


def test_free_bits_gradient_zero_below_floor() -> None:
    kl = torch.tensor([[0.1, 2.0, 0.0, 0.6], [0.3, 1.0, 0.0, 0.2]], requires_grad=True)
    free_bits_kl(kl, 0.5).backward()
    B = kl.size(0)
    expected = torch.tensor([[0.0, 1 / B, 0.0, 0.0]] * B)  # only dim 1 (mean 1.5) is above the floor
    torch.testing.assert_close(kl.grad, expected)


# ---- ELBO terms ----


def test_elbo_terms() -> None:
    rec = torch.tensor([10.0, 20.0, 30.0])
    kl = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 0.0]])  # per-poem KL: 1, 3, 0 -> mean 4/3
    out = elbo_terms(rec, kl, beta=0.5)
    assert out["rec"].item() == pytest.approx(20.0)
    assert out["kl"].item() == pytest.approx(4 / 3)
    assert out["loss"].item() == pytest.approx(20.0 + 0.5 * 4 / 3)
    assert out["elbo"].item() == pytest.approx(-(11.0 + 23.0 + 30.0) / 3)

    # free bits change the loss only; the reported KL and ELBO are the true ones
    fb = elbo_terms(rec, kl, beta=0.5, free_bits=2.0)  # batch means 1, 1/3 -> floored to 2, 2
    assert fb["loss"].item() == pytest.approx(20.0 + 0.5 * 4.0)
    assert fb["kl"].item() == pytest.approx(4 / 3)
    assert fb["elbo"].item() == pytest.approx(out["elbo"].item())

    # beta = 0: loss is the reconstruction alone
    assert elbo_terms(rec, kl, beta=0.0)["loss"].item() == pytest.approx(20.0)


def test_gaussian_log_density_is_the_diagonal_normal() -> None:
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[-1.0, 0.2]])
    z = torch.tensor([[0.3, 0.1]])
    posterior = Normal(mu, (0.5 * logvar).exp())
    assert gaussian_log_density(z, mu, logvar) == pytest.approx(posterior.log_prob(z).sum(-1), abs=1e-6)


def test_iw_terms_is_the_log_mean_weight_and_bounds_the_elbo() -> None:
    rec = torch.tensor([[10.0, 20.0], [12.0, 26.0], [11.0, 20.0]])  # K = 3 codes, B = 2 poems
    log_ratio = torch.tensor([[-3.0, -1.0], [-1.0, -2.0], [-2.0, -4.0]])
    kl = torch.tensor([[1.0, 1.0], [0.5, 2.0]])
    out = iw_terms(rec, log_ratio, kl, beta=1.0)
    log_w = -rec + log_ratio
    bound = [math.log(sum(math.exp(w) for w in log_w[:, b].tolist()) / 3) for b in range(2)]
    assert out["loss"].item() == pytest.approx(-sum(bound) / 2)
    assert -out["loss"].item() >= log_w.mean().item()  # tighter than the K-sample ELBO (Jensen)
    assert out["rec"].item() == pytest.approx(rec.mean().item())
    assert out["kl"].item() == pytest.approx(2.25)
    assert out["elbo"].item() == pytest.approx(-(rec.mean(0) + kl.sum(1)).mean().item())
    # one code: the single-sample ELBO; beta weights the log ratio
    one = iw_terms(rec[:1], log_ratio[:1], kl, beta=0.5)
    assert one["loss"].item() == pytest.approx((rec[0] - 0.5 * log_ratio[0]).mean().item())


@pytest.mark.parametrize("kwargs", [{"iw_samples": 0}, {"iw_samples": 4, "free_bits": 1.0},
                                    {"iw_samples": 2, "bag_of_words": 0.1}, {"iw_samples": 2, "aggressive": True}])
def test_iw_samples_rejects_what_it_cannot_serve(kwargs: dict) -> None:
    with pytest.raises(PoetryVAEError, match="iw_samples"):
        ObjectiveConfig(**kwargs)


# ---- beta schedules ----


def test_constant_beta() -> None:
    schedule = ConstantBeta(0.7)
    assert [schedule(s) for s in (0, 1, 10**7)] == [0.7, 0.7, 0.7]
    assert ConstantBeta()(123) == 1.0


def test_linear_beta() -> None:
    schedule = LinearBeta(warmup_steps=100, max_value=1.0)
    assert schedule(0) == 0.0
    assert schedule(50) == pytest.approx(0.5)
    assert schedule(25) == pytest.approx(0.25)
    assert schedule(100) == pytest.approx(1.0)
    assert schedule(10_000) == pytest.approx(1.0)
    assert schedule(-5) == 0.0
    offset = LinearBeta(warmup_steps=200, max_value=0.8, start_value=0.2)
    assert offset(0) == pytest.approx(0.2)
    assert offset(100) == pytest.approx(0.5)
    assert offset(200) == pytest.approx(0.8)
    assert LinearBeta(warmup_steps=0, max_value=0.3)(0) == pytest.approx(0.3)


def test_logistic_beta() -> None:
    schedule = LogisticBeta(k=0.01, x0=1000, max_value=2.0)
    assert schedule(1000) == pytest.approx(1.0)  # max / 2 at x0
    assert schedule(0) < 1e-3 * 2.0  # 2 / (1 + e^10)
    assert schedule(0) == pytest.approx(2.0 / (1.0 + math.exp(10.0)))
    assert schedule(3000) == pytest.approx(2.0, abs=1e-6)
    for d in (1, 100, 400):  # symmetric about x0
        assert schedule(1000 + d) + schedule(1000 - d) == pytest.approx(2.0)
    steps = list(range(0, 3000, 50))
    values = [schedule(s) for s in steps]
    assert values == sorted(values)  # monotone non-decreasing
    assert schedule(-(10**7)) == 0.0  # far tail: no overflow


def test_cyclical_beta() -> None:
    schedule = CyclicalBeta(total_steps=900, cycles=3, ratio=0.5, max_value=1.0)  # period 300, peak at +150
    for start in (0, 300, 600):
        assert schedule(start) == 0.0
        assert schedule(start + 75) == pytest.approx(0.5)
        assert schedule(start + 150) == pytest.approx(1.0)
        assert schedule(start + 299) == pytest.approx(1.0)
    for step in (900, 901, 10**6):
        assert schedule(step) == 1.0
    scaled = CyclicalBeta(total_steps=1000, cycles=4, ratio=0.25, max_value=0.6)  # period 250, peak at +62.5
    assert scaled(250) == 0.0
    assert scaled(250 + 31.25) == pytest.approx(0.3)
    assert scaled(250 + 62.5) == pytest.approx(0.6)
    assert CyclicalBeta(total_steps=100, cycles=1, ratio=1.0)(50) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(total_steps=0),
        dict(total_steps=100, cycles=0),
        dict(total_steps=100, ratio=0.0),
        dict(total_steps=100, ratio=1.5),
        dict(total_steps=100, ratio=-0.2),
    ],
)
def test_cyclical_beta_bad_args(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        CyclicalBeta(**kwargs)


# ---- word dropout ----

UNK, BOS, PAD = 3, 1, 0


def _big_batch(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 60, (1000, 1000), generator=g)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.75])
def test_word_dropout_rate_and_replacement(rate: float) -> None:
    x = _big_batch()
    out = word_dropout(x, rate, unk_id=UNK, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    changed = out != x
    assert (out[changed] == UNK).all()  # replaced tokens become exactly <unk>
    kept_specials = (x == BOS) | (x == PAD)
    assert torch.equal(out[kept_specials], x[kept_specials])  # <s> and <pad> never replaced
    eligible = ~kept_specials & (x != UNK)  # a replaced <unk> is invisible; leave it out of the rate
    empirical = changed[eligible].float().mean().item()
    assert abs(empirical - rate) < 0.01
    assert x.eq(BOS).any() and x.eq(PAD).any()  # the test really exercised the keep ids


def test_word_dropout_rate_one_and_custom_keep_ids() -> None:
    x = _big_batch(2)[:50]
    out = word_dropout(x, 1.0, unk_id=UNK)
    keep = (x == BOS) | (x == PAD)
    assert torch.equal(out[keep], x[keep]) and (out[~keep] == UNK).all()
    out = word_dropout(x, 1.0, unk_id=59, keep_ids=(7,))
    assert torch.equal(out[x == 7], x[x == 7]) and (out[x != 7] == 59).all()


def test_word_dropout_rate_zero_is_identity() -> None:
    x = _big_batch()[:10]
    assert word_dropout(x, 0.0) is x


def test_word_dropout_reproducible_with_generator() -> None:
    x = _big_batch()[:100]
    a = word_dropout(x, 0.4, generator=torch.Generator().manual_seed(5))
    b = word_dropout(x, 0.4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("rate", [-0.1, 1.01, 2.0])
def test_word_dropout_bad_rate(rate: float) -> None:
    with pytest.raises(ValueError):
        word_dropout(torch.zeros(2, 3, dtype=torch.long), rate)
