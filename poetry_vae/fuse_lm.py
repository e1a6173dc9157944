"""Put a trained language model beside a VAE's decoder: ``python -m poetry_vae.fuse_lm ckpt_path=... lm=... out=...``.

Writes a new checkpoint whose model has ``model.lm_fusion=true``: the VAE's weights as they were, the language
model's as they were (frozen from then on), and the fusion weights at their start (each step draws from
log_softmax(0.4 * LM + 0.8 * decoder)). The language model must have been trained with the VAE's decoder sizes and
vocabulary: the recipe's reference (``poet_lm`` for ``poet``). Training it on (``init_from=<out>
model.lm_fusion=true``, e.g. ``experiment=poet_fused``) fits the decoder and the fusion weights to each other.

A VAE that already has a language model beside its decoder gets the new one in its place, its decoder and fusion
weights kept: a better-trained LM of the same sizes (e.g. one cooled down further) swapped in, to be trained on.
"""

from __future__ import annotations

import copy

from omegaconf import DictConfig, OmegaConf

from poetry_vae.atomic import atomic_write, check_writable
from poetry_vae.checkpoint import MODEL_PREFIX, load_checkpoint, read_checkpoint, resolve_checkpoint
from poetry_vae.checkpoint_io import write_checkpoint_file
from poetry_vae.cli import hydra_command
from poetry_vae.errors import PromptError
from poetry_vae.model.build import build_model
from poetry_vae.project_paths import shown_path
from poetry_vae.schema import check_fuse_lm_config


def fuse_lm(cfg: DictConfig) -> dict[str, str]:
    check_fuse_lm_config(cfg)
    for key in ("ckpt_path", "out"):
        if OmegaConf.is_missing(cfg, key):
            raise PromptError(f"no {key} given: python -m poetry_vae.fuse_lm ckpt_path=<VAE> lm=<its LM reference> "
                              "out=<new file>")
    out = check_writable(cfg.out, example="fused.pt")
    if out.exists():
        raise PromptError(f"out={out} exists: choose a new file (a fused checkpoint never replaces one)")
    source, lm_source = resolve_checkpoint(cfg.ckpt_path), resolve_checkpoint(cfg.lm, key="lm")
    vae, lm = load_checkpoint(source), load_checkpoint(lm_source)
    if not vae.model.cfg.use_latent:
        raise PromptError(f"ckpt_path={cfg.ckpt_path} is a language model: give a VAE's checkpoint")
    if lm.model.cfg.use_latent:
        raise PromptError(f"lm={cfg.lm} is a VAE: give a language model (use_latent=false), e.g. lm=poet_lm")
    if vae.vocab.tokens != lm.vocab.tokens:
        raise PromptError(f"lm={cfg.lm} has another vocabulary than ckpt_path={cfg.ckpt_path}: give a language model "
                          "trained on the same corpus (the VAE recipe's LM reference)")
    raw = read_checkpoint(source)
    model_hparams = {**raw["hyper_parameters"]["model"], "lm_fusion": True}
    fused = build_model(model_hparams, vae.vocab)
    try:
        fused.lm.load_state_dict(lm.model.state_dict())
    except RuntimeError as error:
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
        raise PromptError(f"lm={cfg.lm}'s decoder differs from the VAE's ({detail}): give a language model trained "
                          "with the VAE's decoder sizes (the recipe's LM reference)") from None
    weights = dict(raw["state_dict"])
    dtype = weights[f"{MODEL_PREFIX}decoder.lstm.weight_hh_l0"].dtype  # the VAE's precision (a slimmed file's half)
    swapped = vae.model.lm is not None  # a fused VAE keeps its fusion weights; only its language model changes
    if not swapped:
        weights[f"{MODEL_PREFIX}decoder.fusion"] = fused.decoder.fusion.detach().float()
    weights.update({f"{MODEL_PREFIX}lm.{name}": value.to(dtype) if value.is_floating_point() else value
                    for name, value in lm.model.state_dict().items()})
    written = copy.copy(raw)
    written["hyper_parameters"] = {**raw["hyper_parameters"], "model": model_hparams}
    written["state_dict"] = weights
    written["lm_fusion"] = {"command": f"python -m poetry_vae.fuse_lm ckpt_path={cfg.ckpt_path} lm={cfg.lm} "
                                       f"out={cfg.out}",
                            "vae": shown_path(source), "lm": shown_path(lm_source)}
    atomic_write(out, lambda tmp: write_checkpoint_file(written, tmp))
    done = "in place of its language model" if swapped else "beside its decoder"
    print(f"wrote {out}: {cfg.ckpt_path}'s VAE with {cfg.lm} {done}")
    return {"out": str(out)}


main = hydra_command("fuse_lm", fuse_lm)

if __name__ == "__main__":
    main()
