"""The latent prior: N(0, I), and the full-covariance Gaussian fitted to the aggregate posterior."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from poetry_vae.checkpoint import load_checkpoint, read_checkpoint, resolve_checkpoint
from poetry_vae.checkpoint_io import write_checkpoint_file
from poetry_vae.cli import CONFIG_DIR
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.errors import PoetryVAEError, PromptError
from poetry_vae.fit_prior import fit_prior
from poetry_vae.generation import DecodeRequest, generate, sample_prior
from poetry_vae.metrics.latent import iw_log_likelihood
from poetry_vae.metrics.poetry import tone_compliance
from poetry_vae.model import ModelConfig, PoemModel
from poetry_vae.model.prior import UNLABELLED, VERSES, GaussianPrior, StandardPrior
from poetry_vae.objective import gaussian_log_density
from poetry_vae.sample import write_poems


def _fitted(dim: int = 4, seed: int = 0) -> GaussianPrior:
    g = torch.Generator().manual_seed(seed)
    prior = GaussianPrior(dim)
    mixing = torch.randn(dim, dim, generator=g)
    mu = torch.randn(500, dim, generator=g) @ mixing + torch.randn(dim, generator=g)
    prior.fit(mu, torch.randn(500, dim, generator=g) * 0.3 - 1.0)
    return prior


def test_standard_prior_is_the_unit_normal() -> None:
    prior, z = StandardPrior(3), torch.randn(5, 3)
    assert torch.allclose(prior.log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1), atol=1e-6)
    assert list(prior.state_dict()) == []  # nothing new in the checkpoints of models without a fitted prior


def test_log_ratio_is_the_prior_over_the_posterior() -> None:
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[-1.0, 0.2]])
    z = torch.tensor([[0.3, 0.1]])
    posterior = Normal(mu, (0.5 * logvar).exp())
    expected = Normal(0.0, 1.0).log_prob(z).sum(-1) - posterior.log_prob(z).sum(-1)
    assert StandardPrior(2).log_ratio(z, mu, logvar) == pytest.approx(expected, abs=1e-6)
    prior = _fitted(dim=2)
    law = MultivariateNormal(prior.means[0], scale_tril=prior.scale_trils[0])
    expected = law.log_prob(z) - posterior.log_prob(z).sum(-1)
    assert prior.log_ratio(z, mu, logvar) == pytest.approx(expected, abs=1e-5)


def test_unfitted_gaussian_prior_equals_the_standard_one() -> None:
    mu, logvar, z = torch.randn(6, 4), torch.randn(6, 4) * 0.5, torch.randn(2, 6, 4)
    standard, gaussian = StandardPrior(4), GaussianPrior(4)
    assert torch.allclose(gaussian.log_prob(z), standard.log_prob(z), atol=1e-5)
    assert torch.allclose(gaussian.kl(mu, logvar), standard.kl(mu, logvar), atol=1e-5)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.allclose(gaussian.sample(7, g1), standard.sample(7, g2))


def test_fit_matches_the_aggregate_posteriors_moments() -> None:
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(4000, 3, generator=g) * torch.tensor([2.0, 0.5, 1.0]) + 1.0, torch.full((4000, 3), -1.0)
    prior = GaussianPrior(3)
    prior.fit(mu, logvar)
    # codes drawn from the aggregate posterior (one per poem) have the fitted mean and covariance
    z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g)
    covariance = prior.scale_trils[0] @ prior.scale_trils[0].t()
    assert torch.allclose(prior.means[0], z.mean(0), atol=0.1)
    assert torch.allclose(covariance, torch.cov(z.t()), atol=0.15)
    # and it scores them higher than N(0, I) does (the ELBO's prior term grows)
    assert prior.log_prob(z).mean() > StandardPrior(3).log_prob(z).mean() + 1.0


def test_fitted_prior_kl_is_the_exact_full_covariance_kl() -> None:
    prior = _fitted()
    mu, logvar = torch.randn(8, 4), torch.randn(8, 4) * 0.4
    posterior = MultivariateNormal(mu, scale_tril=torch.diag_embed((0.5 * logvar).exp()))
    law = MultivariateNormal(prior.means[0], scale_tril=prior.scale_trils[0])
    assert torch.allclose(prior.kl(mu, logvar).sum(-1), kl_divergence(posterior, law), atol=1e-4)


def test_fitted_prior_samples_follow_its_law() -> None:
    prior = _fitted()
    z = prior.sample(20000, torch.Generator().manual_seed(0))
    covariance = prior.scale_trils[0] @ prior.scale_trils[0].t()
    assert torch.allclose(z.mean(0), prior.means[0], atol=0.1 * covariance.diagonal().sqrt().max())
    assert torch.allclose(torch.cov(z.t()), covariance, rtol=0.1, atol=0.05 * covariance.diagonal().max())


def _two_clusters(n: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    """Posteriors of n poems whose means fall in two separated clusters (weights 0.7 and 0.3)."""
    g = torch.Generator().manual_seed(2)
    side = (torch.rand(n, generator=g) < 0.3).float().unsqueeze(1)
    mu = torch.randn(n, 2, generator=g) * 0.3 + side * torch.tensor([4.0, 0.0]) - 1.0
    return mu, torch.full((n, 2), -4.0)


def test_mixture_prior_finds_the_clusters_and_is_a_proper_mixture() -> None:
    mu, logvar = _two_clusters()
    mixture, single = GaussianPrior(2, 2), GaussianPrior(2)
    mixture.fit(mu, logvar, torch.Generator().manual_seed(0))
    single.fit(mu, logvar)
    weights = mixture.logits.exp()
    assert sorted(weights.tolist()) == pytest.approx([0.3, 0.7], abs=0.03)
    assert sorted(mixture.means[:, 0].tolist()) == pytest.approx([-1.0, 3.0], abs=0.1)
    z = torch.randn(5, 3, 2)
    components = MultivariateNormal(mixture.means, scale_tril=mixture.scale_trils)
    manual = torch.logsumexp(components.log_prob(z.unsqueeze(-2)) + mixture.logits, dim=-1)
    assert torch.allclose(mixture.log_prob(z), manual, atol=1e-4)
    # two clusters are fitted far better by two components than by one Gaussian over both
    assert mixture.log_prob(mu).mean() > single.log_prob(mu).mean() + 1.0
    # samples: each component in its share, none between the clusters where one Gaussian puts many
    draws = mixture.sample(4000, torch.Generator().manual_seed(1))
    assert float((draws[:, 0] > 1.0).float().mean()) == pytest.approx(0.3, abs=0.03)
    assert float(((draws[:, 0] > 0.2) & (draws[:, 0] < 1.8)).float().mean()) < 0.01
    between = single.sample(4000, torch.Generator().manual_seed(1))[:, 0]
    assert float(((between > 0.2) & (between < 1.8)).float().mean()) > 0.2


def test_prior_fitted_by_verse_draws_each_verse_from_its_own_half() -> None:
    mu, logvar = _two_clusters()
    regulated = mu[:, 0] > 1.0  # the poems of the 0.3 cluster play the regulated ones
    prior = GaussianPrior(2, 4)
    prior.fit_by_verse(mu, logvar, regulated, torch.Generator().manual_seed(0))
    assert prior.verses.tolist() == [0, 0, 1, 1] and VERSES[1] == "regulated"
    assert prior.fitted_verses() == VERSES
    assert StandardPrior(2).fitted_verses() == GaussianPrior(2, 2).fitted_verses() == ()  # none to choose from
    # each half weighs its verse's share, and the whole is still one proper mixture over every poem
    weights = prior.logits.exp()
    assert float(weights[2:].sum()) == pytest.approx(float(regulated.float().mean()), abs=1e-6)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
    either = prior.sample(4000, torch.Generator().manual_seed(1))
    assert float((either[:, 0] > 1.0).float().mean()) == pytest.approx(0.3, abs=0.03)
    for verse, side in (("regulated", 1.0), ("unregulated", -1.0)):
        drawn = prior.sample(2000, torch.Generator().manual_seed(1), verse=verse)
        assert bool(((drawn[:, 0] - 1.0) * side > 0).all()), verse


def test_verse_needs_a_prior_fitted_by_verse() -> None:
    unlabelled = GaussianPrior(2, 2)
    unlabelled.fit(*_two_clusters(), torch.Generator().manual_seed(0))
    for prior in (StandardPrior(2), unlabelled):
        with pytest.raises(PromptError, match=r"not fitted by verse.*by_verse=true"):
            prior.sample(3, verse="regulated")
    with pytest.raises(PromptError, match="choose unregulated or regulated"):
        unlabelled.sample(3, verse="lushi")
    mu, logvar = _two_clusters()
    with pytest.raises(PromptError, match="even number of components"):
        GaussianPrior(2, 3).fit_by_verse(mu, logvar, mu[:, 0] > 1.0)
    with pytest.raises(PromptError, match="poems of both verses"):
        GaussianPrior(2, 2).fit_by_verse(mu, logvar, torch.ones(len(mu), dtype=torch.bool))


def test_a_prior_saved_before_verses_loads_unlabelled() -> None:
    fitted = GaussianPrior(2, 2)
    fitted.fit(*_two_clusters(), torch.Generator().manual_seed(0))
    old = {name: value for name, value in fitted.state_dict().items() if name != "verses"}
    loaded = GaussianPrior(2, 2)
    loaded.load_state_dict(old)  # strict: the missing buffer is filled, not reported
    assert (loaded.verses == UNLABELLED).all() and torch.equal(loaded.means, fitted.means)


def test_mixture_prior_kl_is_estimated_at_the_drawn_code() -> None:
    mixture = GaussianPrior(2, 2)
    mixture.fit(*_two_clusters(), torch.Generator().manual_seed(0))
    mu, logvar, z = torch.randn(6, 2), torch.randn(6, 2) * 0.3, torch.randn(6, 2)
    expected = gaussian_log_density(z, mu, logvar) - mixture.log_prob(z)
    assert torch.allclose(mixture.kl(mu, logvar, z).squeeze(1), expected, atol=1e-5)
    with pytest.raises(ValueError, match="pass z"):
        mixture.kl(mu, logvar)


def test_model_prior_from_config_and_state_dict() -> None:
    cfg = ModelConfig(vocab_size=20, embed_dim=8, encoder_hidden=8, latent_dim=4, decoder_hidden=8, prior="gaussian")
    model = PoemModel(cfg)
    assert {"prior.logits", "prior.means", "prior.scale_trils"} <= set(model.state_dict())
    plain = PoemModel(ModelConfig(vocab_size=20, embed_dim=8, encoder_hidden=8, latent_dim=4, decoder_hidden=8))
    assert not any(key.startswith("prior.") for key in plain.state_dict())
    with pytest.raises(PoetryVAEError, match="prior='flow'"):
        ModelConfig(vocab_size=20, prior="flow")


def _fit_config(ckpt: Path, out: Path, *extra: str):  # -> DictConfig
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("fit_prior", overrides=[f"ckpt_path={ckpt}", f"out={out}", "batch_size=100", *extra])


def test_fit_prior_writes_a_model_with_the_fitted_prior(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "fitted.ckpt"
    result = fit_prior(_fit_config(tiny_checkpoint, out))
    source, fitted = load_checkpoint(tiny_checkpoint), load_checkpoint(out)
    assert source.model.cfg.prior == "standard" and fitted.model.cfg.prior == "gaussian"
    # the encoder and decoder are the source's, bit for bit; only the prior is new
    fitted_state, source_state = fitted.model.state_dict(), source.model.state_dict()
    assert set(fitted_state) - set(source_state) == {"prior.logits", "prior.means", "prior.scale_trils",
                                                     "prior.verses"}
    assert (fitted.model.prior.verses == UNLABELLED).all()  # fitted to every poem alike
    assert all(torch.equal(value, fitted_state[name]) for name, value in source_state.items())
    # fitted to the training poems' posteriors: their mean, and a higher E log p(z) than N(0, I) gives them
    datamodule = QuatrainDataModule.for_checkpoint(source.data_hparams, source.vocab, "test")
    datamodule.setup()
    train = datamodule.tensors["train"]
    mu, _ = source.model.encode_in_batches(train["tokens"], train.get("form"), 100)
    assert torch.allclose(fitted.model.prior.means[0], mu.mean(0), atol=1e-5)
    assert result["log_prior_after"] > result["log_prior_before"]
    # it evaluates and samples like any checkpoint
    z = sample_prior(fitted.model, 4, torch.Generator().manual_seed(0))
    assert z.shape == (4, fitted.model.cfg.latent_dim) and torch.isfinite(z).all()
    tokens = datamodule.tensors["val"]
    nll = iw_log_likelihood(fitted.model, tokens["tokens"][:8], tokens["dec_in"][:8], tokens["target"][:8], k=3)
    assert torch.isfinite(nll).all()


def test_fit_prior_can_leave_out_a_pretraining_corpus(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """with_pretraining=false fits a model pretrained on the blocks (data.pretrain_corpus) to the codes of its 五绝
    training poems alone: the same prior as a model trained on them alone gets."""
    raw = read_checkpoint(tiny_checkpoint)
    raw["datamodule_hyper_parameters"] = {**raw["datamodule_hyper_parameters"], "pretrain_corpus": "wuyan"}
    pretrained = tmp_path / "pretrained.ckpt"
    write_checkpoint_file(raw, pretrained)
    alone, left_out = tmp_path / "alone.ckpt", tmp_path / "left_out.ckpt"
    fit_prior(_fit_config(tiny_checkpoint, alone))
    fit_prior(_fit_config(pretrained, left_out, "with_pretraining=false"))
    assert torch.equal(load_checkpoint(alone).model.prior.means, load_checkpoint(left_out).model.prior.means)


def test_fit_prior_writes_a_mixture(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "mixture.ckpt"
    fit_prior(_fit_config(tiny_checkpoint, out, "components=3"))
    fitted = load_checkpoint(out)
    assert fitted.model.cfg.prior_components == 3 and fitted.model.prior.means.shape[0] == 3
    assert fitted.model.prior.logits.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    z = sample_prior(fitted.model, 6, torch.Generator().manual_seed(0))
    assert torch.isfinite(fitted.model.prior.log_prob(z)).all()


def test_fit_prior_by_verse(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "by_verse.ckpt"
    fit_prior(_fit_config(tiny_checkpoint, out, "components=4", "by_verse=true"))
    fitted = load_checkpoint(out)
    assert fitted.model.prior.verses.tolist() == [0, 0, 1, 1]
    assert "by_verse=true" in torch.load(out, weights_only=True)["prior_fit"]["command"]
    z = sample_prior(fitted.model, 5, torch.Generator().manual_seed(0), verse="regulated")
    assert z.shape == (5, fitted.model.cfg.latent_dim) and torch.isfinite(z).all()
    odd = tmp_path / "odd.ckpt"
    with pytest.raises(PromptError, match="components=3 with by_verse=true: give an even number"):
        fit_prior(_fit_config(tiny_checkpoint, odd, "components=3", "by_verse=true"))
    assert not odd.exists()


def test_fit_prior_never_replaces_a_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken.ckpt"
    out.write_bytes(b"an earlier result")
    with pytest.raises(PromptError, match="exists: choose a new file"):
        fit_prior(_fit_config(tiny_checkpoint, out))
    assert out.read_bytes() == b"an earlier result"
    with pytest.raises(PoetryVAEError, match=r"^out is empty: give a file path"):  # not "out=. is a directory"
        fit_prior(_fit_config(tiny_checkpoint, ""))


def test_fit_prior_refuses_a_language_model(tmp_path: Path) -> None:
    out = tmp_path / "lm_prior.ckpt"
    with pytest.raises(PromptError, match="is a language model") as error:
        fit_prior(_fit_config(Path("poet_lm"), out))
    assert "\n" not in str(error.value) and not out.exists()


def test_the_shipped_flagship_writes_regulated_verse_from_its_regulated_codes() -> None:
    """The shipped poet's prior was fitted by verse: the codes of its regulated half decode to poems that fit a
    tone pattern far more often than those of the other half, with no constraint on the decoder."""
    shipped = load_checkpoint(resolve_checkpoint("poet"))
    assert sorted(set(shipped.model.prior.verses.tolist())) == [0, 1]
    request = DecodeRequest(strategy="top_p", top_p=0.9, temperature=0.8, precision="fp32", **shipped.form)
    fit = {}
    for verse in VERSES:
        generator = torch.Generator().manual_seed(0)
        z = sample_prior(shipped.model, 200, generator, verse)
        poems = [poem.lines for poem in generate(shipped.model, shipped.vocab, z, request, generator)]
        fit[verse] = tone_compliance(poems)["fit_rate"]
    # measured over ten draws of 500 (docs/flagship_history.md): v7 0.823 against 0.296 (v5 0.76 against 0.15)
    assert fit["regulated"] > 0.6 and fit["regulated"] - fit["unregulated"] > 0.3


def test_sample_verse_writes_the_verse_into_each_record(tmp_path: Path) -> None:
    out = tmp_path / "regulated.jsonl"
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("sample", overrides=["n=3", "verse=regulated", f"out={out}"])  # the shipped poet
    write_poems(cfg)
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(rows) == 3 and {row["verse"] for row in rows} == {"regulated"}
