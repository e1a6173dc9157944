"""A VAE started from a language model with the same decoder (poetry_vae.model.warm_start): exactly the LM at step 0,
every new weight trainable from the first step, and a clear refusal when the two do not match."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from poetry_vae.checkpoint import load_checkpoint
from poetry_vae.cli import CONFIG_DIR
from poetry_vae.errors import CheckpointError
from poetry_vae.model import ModelConfig, PoemModel
from poetry_vae.model.warm_start import vae_from_lm
from poetry_vae.train import build_module, start_from, starting_vocabulary

V, T = 60, 21
STRUCTURE = dict(line_length=5, place_dim=4, rhyme_dim=4, num_forms=2)


def model(seed: int, **kw) -> PoemModel:
    torch.manual_seed(seed)
    base = dict(vocab_size=V, embed_dim=16, encoder_hidden=16, latent_dim=8, decoder_hidden=16, dropout=0.3,
                adaptive_cutoffs=(10, 30), adaptive_div_value=2.0)
    return PoemModel(ModelConfig(**(base | STRUCTURE | kw)))


def batch(b: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, V, (b, T - 1), generator=g)
    dec_in = torch.cat([torch.full((b, 1), 1), tokens], dim=1)
    target = torch.cat([tokens, torch.full((b, 1), 2)], dim=1)
    return tokens, dec_in, target, torch.randint(0, 2, (b,), generator=g)


VAE_PATHS = [
    dict(z_to_initial_state=True, z_to_every_input=True, z_to_output=True, position_codes=6, position_code_dim=4),
    dict(z_to_initial_state=False, z_to_every_input=False, z_to_output=True, position_codes=0),
    dict(z_to_initial_state=True, z_to_every_input=False, z_to_output=False, position_codes=6, position_code_dim=4),
]


# (the VAE's paths, the LM's position codes): an LM with position codes only into a VAE that has them
STARTS = [(paths, lm_codes) for paths in VAE_PATHS for lm_codes in (0, 6) if paths["position_codes"] or not lm_codes]


@pytest.mark.parametrize("output_layer", ["adaptive", "softmax"])
@pytest.mark.parametrize(("paths", "lm_codes"), STARTS)
def test_the_vae_starts_as_exactly_the_lm(output_layer: str, paths: dict, lm_codes: int) -> None:
    lm = model(1, use_latent=False, output_layer=output_layer, position_codes=lm_codes, position_code_dim=4).eval()
    vae = model(2, output_layer=output_layer, **paths).eval()
    vae_from_lm(vae, lm)
    tokens, dec_in, target, form = batch()
    expected = lm.token_log_probs(dec_in, target, None, form=form)
    for scale in (0.0, 3.0):  # any code: z's paths are all at zero
        z = scale * torch.randn(len(tokens), 8)
        torch.testing.assert_close(vae.token_log_probs(dec_in, target, z, form=form), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(vae.embed.weight, lm.embed.weight)


def test_every_new_weight_learns() -> None:
    """Zeros on both sides of a product would be a saddle no gradient leaves: every path z gains must move within two
    steps (z's codes reach the output through zero columns first, so their own weights move from the second)."""
    lm = model(1, use_latent=False, output_layer="adaptive", position_codes=0)
    vae = model(2, output_layer="adaptive", **VAE_PATHS[0])
    vae_from_lm(vae, lm)
    decoder, hidden = vae.decoder, vae.cfg.decoder_hidden
    lm_units = lm.decoder.out.tail[0][1].in_features
    paths = {
        "z_to_state": lambda: decoder.z_to_state.weight,
        "z_to_positions": lambda: decoder.z_to_positions.weight,
        "z's input columns": lambda: decoder.lstm.weight_ih_l0[:, 16:24],
        "z's output columns": lambda: decoder.out.head.weight[:, hidden : hidden + 8],
        "the codes' output columns": lambda: decoder.out.head.weight[:, hidden + 8 : hidden + 12],
        "the tail's new units": lambda: decoder.out.tail[0][1].weight[:, lm_units:],
        "the encoder": lambda: vae.encoder.lstm.weight_ih_l0,
    }
    before = {name: weight().detach().clone() for name, weight in paths.items()}
    optimiser = torch.optim.SGD(vae.parameters(), lr=0.5)
    tokens, dec_in, target, form = batch()
    for _ in range(2):
        optimiser.zero_grad()
        out = vae(tokens, dec_in, target, form=form)
        (out.rec.mean() + out.kl.sum(1).mean()).backward()
        optimiser.step()
    for name, weight in paths.items():
        assert not torch.equal(weight().detach(), before[name]), name


def test_a_decoder_that_differs_is_refused_in_one_line() -> None:
    lm = model(1, use_latent=False, decoder_hidden=24, output_layer="adaptive")
    with pytest.raises(ValueError, match=r"decoder_hidden 24 \(this VAE: 16\)"):
        vae_from_lm(model(2, output_layer="adaptive"), lm)
    with pytest.raises(ValueError, match="use_latent=false"):
        vae_from_lm(model(2), model(3))
    coded = model(1, use_latent=False, position_codes=6, position_code_dim=4)
    with pytest.raises(ValueError, match="position_codes 6"):
        vae_from_lm(model(2, position_codes=4, position_code_dim=4), coded)


def test_the_flagship_recipe_starts_from_the_shipped_lm(tmp_path: Path) -> None:
    """poet_from_lm: the shipped LM reference into the flagship's model, scored alike on real poems."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=poet_from_lm", f"paths.cache_dir={tmp_path}",
                                          "data.limit_train_poems=64"])
    init = load_checkpoint(CONFIG_DIR.parent / cfg.init_from)
    assert not init.model.cfg.use_latent
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule, starting_vocabulary(datamodule, None, init))
    start_from(module, init)
    vae, lm = module.model.eval(), init.model.float().eval()
    tokens, dec_in, target, form = batch()
    z = torch.randn(len(tokens), vae.cfg.latent_dim)
    torch.testing.assert_close(vae.token_log_probs(dec_in, target, z, form=form),
                               lm.token_log_probs(dec_in, target, None, form=form), rtol=0, atol=1e-4)
    wide = compose_module(tmp_path, "model.decoder_hidden=48", init)
    with pytest.raises(CheckpointError, match=r"^init_from=.*decoder_hidden 128 \(this VAE: 48\)$"):
        start_from(wide, init)


def compose_module(tmp_path: Path, override: str, init):  # -> PoemModule
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=poet_from_lm", f"paths.cache_dir={tmp_path}",
                                          "data.limit_train_poems=64", override])
    datamodule = instantiate(cfg.data)
    return build_module(cfg, datamodule, starting_vocabulary(datamodule, None, init))


def test_the_decoder_refit_starts_from_the_shipped_flagship_and_keeps_its_codes(tmp_path: Path) -> None:
    """poet_refit_decoder on the shipped VAE (v6: its fitted prior and the language model beside its decoder
    included) loads it whole, and only its decoder (with the fusion weights) trains; the language model is frozen."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=poet_refit_decoder", f"paths.cache_dir={tmp_path}",
                                          "data.limit_train_poems=64", "init_from=poetry_vae/resources/poet.pt",
                                          "model.lm_fusion=true"])
    init = load_checkpoint(CONFIG_DIR.parent / cfg.init_from)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule, starting_vocabulary(datamodule, None, init))
    start_from(module, init)
    assert module.objective.refit_decoder and module.objective.iw_samples == 5
    trained = {name for name, param in module.model.named_parameters() if param.requires_grad}
    assert trained and all(name.startswith("decoder.") for name in trained)
    tokens, _, _, form = batch()
    module.train()
    shipped = init.model.float().eval()
    with torch.no_grad():
        for mine, theirs in zip(module.model.encode(tokens, form), shipped.encode(tokens, form), strict=True):
            torch.testing.assert_close(mine, theirs)  # the encoder runs as evaluated: the shipped codes
        z = torch.randn(len(tokens), shipped.cfg.latent_dim)
        torch.testing.assert_close(module.model.prior.log_prob(z), shipped.prior.log_prob(z))
