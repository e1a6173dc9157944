"""Fit a trained VAE's prior to its aggregate posterior: ``python -m poetry_vae.fit_prior ckpt_path=... out=...``.

Encodes the training split of the checkpoint's corpus, fits full-covariance Gaussians to the codes' aggregate
posterior (:class:`poetry_vae.model.prior.GaussianPrior`: one by moment matching, or a mixture of ``components``)
and writes a new checkpoint whose model has that prior (``model.prior=gaussian model.prior_components=<n>``);
the encoder and decoder are unchanged. Sampling, evaluation and further
training (``init_from=`` with those two overrides) all use it.
"""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig, OmegaConf

from poetry_vae.atomic import atomic_write, check_writable
from poetry_vae.checkpoint import MODEL_PREFIX, load_checkpoint, read_checkpoint, resolve_checkpoint
from poetry_vae.checkpoint_io import write_checkpoint_file
from poetry_vae.cli import hydra_command
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.errors import PromptError
from poetry_vae.metrics.poetry import fits_a_pattern
from poetry_vae.model.prior import GaussianPrior
from poetry_vae.project_paths import shown_path
from poetry_vae.schema import check_fit_prior_config


def fit_prior(cfg: DictConfig) -> dict[str, float]:
    check_fit_prior_config(cfg)
    for key in ("ckpt_path", "out"):
        if OmegaConf.is_missing(cfg, key):
            raise PromptError(f"no {key} given: python -m poetry_vae.fit_prior ckpt_path=<checkpoint> out=<new file>")
    if cfg.by_verse and int(cfg.components) % 2:
        raise PromptError(f"components={cfg.components} with by_verse=true: give an even number (half for each "
                          "verse), e.g. components=8")
    out = check_writable(cfg.out, example="fitted.pt")
    if out.exists():
        raise PromptError(f"out={out} exists: choose a new file (a fitted checkpoint never replaces one)")
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    source = resolve_checkpoint(cfg.ckpt_path)
    loaded = load_checkpoint(source)
    model = loaded.model.float()
    if not model.cfg.use_latent:
        raise PromptError(f"{cfg.ckpt_path} is a language model (no latent code): give a VAE's checkpoint")
    data = loaded.data_hparams if cfg.with_pretraining else {**loaded.data_hparams, "pretrain_corpus": None}
    datamodule = QuatrainDataModule.for_checkpoint(data, loaded.vocab, f"checkpoint {source}")
    datamodule.setup()
    train = datamodule.tensors["train"]
    print(f"encoding the {len(train['tokens']):,} training poems of {cfg.ckpt_path}", flush=True)
    mu, logvar = model.encode_in_batches(train["tokens"], train.get("form"), int(cfg.batch_size))
    components = int(cfg.components)
    print(f"fitting {'one Gaussian' if components == 1 else f'a mixture of {components} Gaussians'} to their "
          f"aggregate posterior{', half to each verse' if cfg.by_verse else ''}", flush=True)
    prior = GaussianPrior(mu.shape[1], components)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    if cfg.by_verse:
        regulated = regulated_poems(datamodule)
        print(f"{float(regulated.float().mean()):.3f} of them fit a regulated tone pattern", flush=True)
        prior.fit_by_verse(mu, logvar, regulated, generator)
    else:
        prior.fit(mu, logvar, generator)
    # what the fit buys: the ELBO's prior term E log p(z) over one code a poem, before and after
    codes = model.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = float(model.prior.log_prob(codes).mean()), float(prior.log_prob(codes).mean())
    raw = read_checkpoint(source)
    fitted = copy.copy(raw)
    fitted["hyper_parameters"] = {**raw["hyper_parameters"],
                                  "model": {**raw["hyper_parameters"]["model"], "prior": "gaussian",
                                            "prior_components": components}}
    fitted["state_dict"] = {**raw["state_dict"], **{f"{MODEL_PREFIX}prior.{name}": value.float()
                                                     for name, value in prior.state_dict().items()}}
    by_verse = " by_verse=true" if cfg.by_verse else ""
    fitted["prior_fit"] = {"command": f"python -m poetry_vae.fit_prior ckpt_path={cfg.ckpt_path} out={cfg.out} "
                                      f"components={components}{by_verse} seed={cfg.seed}",
                           "source": shown_path(source), "poems": len(mu), "log_prior_before": before,
                           "log_prior_after": after}
    atomic_write(out, lambda tmp: write_checkpoint_file(fitted, tmp))
    print(f"E log p(z) over the training codes: {before:.2f} -> {after:.2f} nats a poem; wrote {out}")
    return {"log_prior_before": before, "log_prior_after": after}


def regulated_poems(datamodule: QuatrainDataModule) -> torch.Tensor:
    """(N,) bool: which training poems fit a regulated tone pattern (the poetry report's tone fit, poem by poem)."""
    return torch.tensor([fits_a_pattern(list(poem.lines)) for poem in datamodule.poems["train"]])


main = hydra_command("fit_prior", fit_prior)

if __name__ == "__main__":
    main()
