"""Evaluate a checkpoint on a split: ``python -m poetry_vae.evaluate ckpt_path=... [iw_samples=500 split=test]``.

Reports the importance-weighted NLL (the number comparable with the LM baseline), ELBO terms, KL, active units
and mutual information, computed by the same LightningModule code as training (in fp32), and, with
``latent_measures=true``, what the latent does (poetry_vae.metrics.latent_use): reconstruction from the posterior
mean, homotopies between pairs of poems of the split, and the diversity of greedy prior samples.
"""

from __future__ import annotations

import json
import time

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from poetry_vae.atomic import atomic_write_text, check_writable
from poetry_vae.checkpoint import built_from, check_device, read_checkpoint, resolve_checkpoint
from poetry_vae.cli import hydra_command
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.errors import PromptError
from poetry_vae.lit_module import PoemModule
from poetry_vae.metrics.latent_use import latent_measures
from poetry_vae.progress import quiet_lightning
from poetry_vae.schema import check_evaluate_config

quiet_lightning()
COUNTS = ("global_step", "iw_samples", "active_units")  # whole numbers, printed without decimals


def evaluate(cfg: DictConfig) -> dict[str, float]:
    check_evaluate_config(cfg)  # the keys' types and ranges (the command has checked them; a caller in Python not)
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise PromptError("no checkpoint given: pass ckpt_path=outputs/<run>/checkpoints/last.ckpt, or poet (shipped)")
    if cfg.split not in ("val", "test"):
        raise PromptError(f"split={cfg.split!r}: use val or test")
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    if cfg.out:
        check_writable(cfg.out, example="metrics.json")
    device = check_device(cfg.device)
    started = time.monotonic()
    path = resolve_checkpoint(cfg.ckpt_path)  # a run dir: its last.ckpt, named below (which file it is matters)
    phase(f"loading {path} and the {cfg.split} split of its corpus")
    raw = read_checkpoint(path)  # one-line errors for bad files; weights_only
    hparams = {**raw["hyper_parameters"], "iw_samples_val": int(cfg.iw_samples), "iw_samples_test": int(cfg.iw_samples),
               "iw_chunk": int(cfg.iw_chunk)}
    with built_from(cfg.ckpt_path):
        module = PoemModule(**hparams)
        module.load_state_dict(raw["state_dict"])
    datamodule = QuatrainDataModule.for_checkpoint(raw.get("datamodule_hyper_parameters") or {}, module.vocab,
                                                   f"checkpoint {cfg.ckpt_path}")
    pl.seed_everything(int(cfg.seed), verbose=False)
    on_gpu = device.type == "cuda"
    trainer = pl.Trainer(accelerator="gpu" if on_gpu else "cpu", devices=[device.index or 0] if on_gpu else 1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    run = trainer.test if cfg.split == "test" else trainer.validate
    phase(f"IW bound over {len(datamodule.poems[cfg.split]):,} {cfg.split} poems with K={cfg.iw_samples} samples, "
          f"with the ELBO, KL, MI and active units (on {device})")
    results = run(module, datamodule=datamodule, verbose=False)[0]
    # β and the β-weighted loss depend on the training step, which a fresh Trainer does not have: leave them out
    metrics = {name: float(value) for name, value in results.items() if not name.endswith(("/beta", "/loss"))}
    metrics.update({"global_step": float(raw["global_step"]), "iw_samples": float(cfg.iw_samples)})
    if cfg.latent_measures:
        metrics.update(_latent_measures(module, datamodule, cfg))
    phase(f"done in {time.monotonic() - started:.0f} s")
    print_metrics(metrics)
    if cfg.out:
        atomic_write_text(cfg.out, json.dumps({"checkpoint": str(path), "split": cfg.split,
                                                "metrics": metrics}, indent=2))
    return metrics


def _latent_measures(module: PoemModule, datamodule: QuatrainDataModule, cfg: DictConfig) -> dict[str, float]:
    poems = [list(poem.lines) for poem in datamodule.poems[cfg.split]]
    phase(f"latent measures: reconstructing {len(poems):,} poems, {cfg.homotopy_pairs} homotopies of "
          f"{cfg.homotopy_steps} steps, {cfg.prior_samples} greedy prior samples")
    measures = latent_measures(module.model, module.vocab, poems, int(cfg.homotopy_pairs), int(cfg.prior_samples),
                               int(cfg.homotopy_steps), int(cfg.seed))
    return {f"{cfg.split}/{name}": value for name, value in measures.items()}


def phase(line: str) -> None:
    """What evaluation is doing now (its phases take seconds to minutes)."""
    print(line, flush=True)


def print_metrics(metrics: dict[str, float]) -> None:
    """One metric a line, names right-aligned."""
    width = max(map(len, metrics), default=0)
    for name, value in sorted(metrics.items()):
        print(f"{name:>{width}}  {format_metric(name, value)}")


def format_metric(name: str, value: float) -> str:
    """A count as an integer (``global_step 4695``); any other metric with four or five significant digits
    (``4.5574`` nats/char, ``95.33`` perplexity, ``-96.15`` nats per poem)."""
    if name.rsplit("/", 1)[-1] in COUNTS:
        return str(round(value))
    magnitude = abs(value)
    return f"{value:.4f}" if magnitude < 10 else f"{value:.2f}" if magnitude < 1000 else f"{value:.1f}"


main = hydra_command("evaluate", evaluate)

if __name__ == "__main__":
    main()
