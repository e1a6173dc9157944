"""Latent diagnostics: active units, mutual information I_q(x; z), importance-weighted log-likelihood."""

from __future__ import annotations

import math

import pytest
import torch

from poetry_vae.metrics.latent import active_units, iw_log_likelihood, mutual_information
from poetry_vae.model import ModelConfig, PoemModel
from poetry_vae.objective import gaussian_kl

V, T, Z = 30, 20, 4
PAD, BOS, EOS = 0, 1, 2

# ---- active units ----


def test_active_units_constant_encoder_is_zero() -> None:
    mu = torch.tensor([0.3, -1.0, 2.0, 0.0, 5.0]).expand(100, 5)
    assert active_units(mu) == 0


def test_active_units_all_dims_vary() -> None:
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(500, 8, generator=g)  # variance ~1 in every dim
    assert active_units(mu) == 8


def test_active_units_mixed() -> None:
    g = torch.Generator().manual_seed(1)
    mu = torch.zeros(1000, 6)
    mu[:, 0] = torch.randn(1000, generator=g)  # var ~1: active
    mu[:, 2] = 0.5 * torch.randn(1000, generator=g)  # var ~0.25: active
    mu[:, 3] = 0.05 * torch.randn(1000, generator=g)  # var ~0.0025 < 0.01: inactive
    mu[:, 4] = 7.0  # constant: inactive
    mu[:, 5] = 0.2 * torch.randn(1000, generator=g)  # var ~0.04: active at 0.01, inactive at 0.1
    assert active_units(mu) == 3
    assert active_units(mu, threshold=0.1) == 2
    assert active_units(mu.double()) == 3


def test_active_units_needs_two_points() -> None:
    with pytest.raises(ValueError):
        active_units(torch.zeros(1, 3))


# ---- mutual information ----


def test_mutual_information_zero_when_posteriors_equal() -> None:
    N = 500
    mu = torch.tensor([0.4, -1.0, 2.0, 0.0]).expand(N, Z)
    logvar = torch.tensor([0.0, -1.0, 0.5, -2.0]).expand(N, Z)
    mi = mutual_information(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert abs(mi) < 0.2


def test_mutual_information_log_n_when_posteriors_separated() -> None:
    N = 300
    g = torch.Generator().manual_seed(0)
    mu = 20.0 * torch.randn(N, Z, generator=g)  # points far apart ...
    logvar = torch.full((N, Z), -8.0)  # ... with std ~0.018: q(z) = q(z|x_i) / N at z ~ q(z|x_i)
    mi = mutual_information(mu, logvar, generator=torch.Generator().manual_seed(1))
    assert mi == pytest.approx(math.log(N), abs=0.3)
    # chunking is an implementation detail: same sample, same answer
    mi_small_chunks = mutual_information(mu, logvar, generator=torch.Generator().manual_seed(1), chunk=7)
    assert mi_small_chunks == pytest.approx(mi, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_mutual_information_bounded_by_log_n(seed: int) -> None:
    N = 200
    g = torch.Generator().manual_seed(seed)
    mu = (seed + 1) * 3.0 * torch.randn(N, Z, generator=g)
    logvar = torch.randn(N, Z, generator=g) - 3.0
    mi = mutual_information(mu, logvar, generator=g)
    assert -0.3 < mi <= math.log(N) + 0.3


def test_mutual_information_increases_with_separation() -> None:
    N = 200
    g = torch.Generator().manual_seed(3)
    base = torch.randn(N, Z, generator=g)
    logvar = torch.zeros(N, Z)
    values = [
        mutual_information(scale * base, logvar, generator=torch.Generator().manual_seed(4))
        for scale in (0.0, 1.0, 3.0, 10.0)
    ]
    assert values == sorted(values)


# ---- importance-weighted log-likelihood ----


def _model(use_latent: bool = True) -> PoemModel:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=V, embed_dim=16, encoder_hidden=16, latent_dim=Z, decoder_hidden=16, decoder_layers=1,
        use_latent=use_latent, output_layer="softmax",
    )  # fmt: skip
    return PoemModel(cfg).eval()


def _batch(b: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random poems; the last one is shorter and right-padded, to check that pads are not scored."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, V, (b, T), generator=g)
    tokens[-1, 12:] = PAD
    lengths = (tokens != PAD).sum(1)
    dec_in = torch.cat([torch.full((b, 1), BOS), tokens], dim=1)
    target = torch.cat([tokens, torch.full((b, 1), PAD)], dim=1)
    target[torch.arange(b), lengths] = EOS
    return tokens, dec_in, target


@torch.no_grad()
def _elbo(model: PoemModel, tokens, dec_in, target, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-sample ELBO E_q[log p(x|z)] - KL(q || p), averaged over ``samples`` draws: (mean, stderr)."""
    g = torch.Generator().manual_seed(seed)
    mu, logvar = model.encode(tokens)
    B = mu.size(0)
    eps = torch.randn(samples * B, Z, generator=g)
    z = mu.repeat(samples, 1) + (0.5 * logvar).exp().repeat(samples, 1) * eps
    log_px = model.token_log_probs(dec_in.repeat(samples, 1), target.repeat(samples, 1), z).sum(1).view(samples, B)
    elbo = log_px - gaussian_kl(mu, logvar).sum(1)
    return elbo.mean(0), elbo.std(0) / math.sqrt(samples)


def test_iw_k1_equals_elbo_in_expectation() -> None:
    model = _model()
    tokens, dec_in, target = _batch()
    R = 2000  # R independent K=1 estimates per poem, computed as one batch of repeated poems
    B = tokens.size(0)
    iw1 = iw_log_likelihood(
        model, tokens.repeat(R, 1), dec_in.repeat(R, 1), target.repeat(R, 1), k=1,
        generator=torch.Generator().manual_seed(2),
    ).view(R, B)  # fmt: skip
    elbo, elbo_se = _elbo(model, tokens, dec_in, target, samples=R, seed=3)
    se = (iw1.std(0).pow(2) / R + elbo_se.pow(2)).sqrt()
    assert torch.all((iw1.mean(0) - elbo).abs() < 4 * se + 1e-3), (iw1.mean(0), elbo, se)


@pytest.mark.parametrize("z_sensitive", [False, True])
def test_iw_large_k_at_least_elbo(z_sensitive: bool) -> None:
    model = _model()
    if z_sensitive:  # make log p(x|z) depend strongly on z, so that the IW bound is visibly tighter
        with torch.no_grad():
            model.decoder.z_to_state.weight.mul_(8.0)
            model.decoder.out.weight.mul_(3.0)
    tokens, dec_in, target = _batch()
    g = torch.Generator().manual_seed(4)
    iw = torch.stack(
        [iw_log_likelihood(model, tokens, dec_in, target, k=100, chunk=30, generator=g) for _ in range(10)]
    )
    elbo, elbo_se = _elbo(model, tokens, dec_in, target, samples=2000, seed=5)
    se = (iw.std(0).pow(2) / iw.size(0) + elbo_se.pow(2)).sqrt()
    assert torch.all(iw.mean(0) >= elbo - 3 * se), (iw.mean(0), elbo, se)
    if z_sensitive:
        assert torch.all(iw.mean(0) > elbo + 3 * se), (iw.mean(0), elbo, se)
    # and it is a likelihood of a discrete sequence: negative
    assert (iw < 0).all()


def test_iw_lm_baseline_is_exact_log_likelihood() -> None:
    model = _model(use_latent=False)
    tokens, dec_in, target = _batch()
    got = iw_log_likelihood(model, tokens, dec_in, target, k=7)
    # exact log p(x) by running the decoder step by step and adding the log-prob of each real target
    B = tokens.size(0)
    with torch.no_grad():
        state = model.initial_state(None, B)
        expected = torch.zeros(B)
        for t in range(dec_in.size(1)):
            logp, state = model.step(dec_in[:, t], state, None)
            picked = logp.gather(1, target[:, t : t + 1]).squeeze(1)
            expected += torch.where(target[:, t] == PAD, torch.zeros(B), picked)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    # independent of K and of any randomness
    torch.testing.assert_close(iw_log_likelihood(model, tokens, dec_in, target, k=1), got)


def test_iw_reproducible_with_generator() -> None:
    model = _model()
    tokens, dec_in, target = _batch()
    a = iw_log_likelihood(model, tokens, dec_in, target, k=60, chunk=25, generator=torch.Generator().manual_seed(9))
    b = iw_log_likelihood(model, tokens, dec_in, target, k=60, chunk=25, generator=torch.Generator().manual_seed(9))
    c = iw_log_likelihood(model, tokens, dec_in, target, k=60, chunk=25, generator=torch.Generator().manual_seed(10))
    assert a.shape == (tokens.size(0),)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_iw_bad_k() -> None:
    model = _model()
    tokens, dec_in, target = _batch()
    with pytest.raises(ValueError):
        iw_log_likelihood(model, tokens, dec_in, target, k=0)
    with pytest.raises(ValueError):
        iw_log_likelihood(model, tokens, dec_in, target, k=5, chunk=0)
