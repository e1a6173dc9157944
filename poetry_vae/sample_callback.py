"""Poems beside the loss curves: at validation epoch end, prior samples and reconstructions go to every logger.

wandb gets a table per epoch (``samples/poems``); every run also gets ``<run dir>/samples/epoch_NNN.jsonl``,
which the CSV logger cannot hold. Only rank 0 decodes, with its own random generator, so training randomness
(and resume equivalence) is untouched.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from poetry_vae.atomic import atomic_write_text
from poetry_vae.generation.decoding import generate, sample_prior
from poetry_vae.generation.request import SHAPE_FIELDS, DecodeRequest


class PoemSamples(pl.Callback):
    def __init__(
        self,
        n_prior: int = 8,
        n_reconstruct: int = 4,
        strategy: str = "top_p",
        temperature: float = 0.8,
        every_n_epochs: int = 1,
        seed: int = 0,
        dirname: str = "samples",
    ) -> None:
        self.n_prior, self.n_reconstruct = n_prior, n_reconstruct
        self.request = DecodeRequest(strategy=strategy, temperature=temperature, precision="fp32")
        self.every_n_epochs, self.seed, self.dirname = every_n_epochs, seed, dirname

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if trainer.sanity_checking or epoch % self.every_n_epochs:
            return
        rows = self.poems(pl_module, trainer.datamodule, epoch)
        step = trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                columns = ["epoch", "step", "kind", "input", "poem", "log_prob"]
                data = [[epoch, step, r["kind"], r["input"], r["poem"], r["log_prob"]] for r in rows]
                logger.log_table("samples/poems", columns=columns, data=data, step=step)
        out = Path(trainer.default_root_dir) / self.dirname / f"epoch_{epoch:03d}.jsonl"
        atomic_write_text(out, "".join(json.dumps({"epoch": epoch, "step": step, **r}, ensure_ascii=False) + "\n"
                                       for r in rows))

    def poems(self, pl_module: pl.LightningModule, datamodule: Any, epoch: int) -> list[dict[str, Any]]:
        model, vocab = pl_module.model, pl_module.vocab
        form = {key: int(datamodule.hparams[key]) for key in SHAPE_FIELDS} if datamodule is not None else {}
        request = dataclasses.replace(self.request, **form)  # the data's line length and count
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed * 1_000_003 + epoch)
        z = sample_prior(model, self.n_prior, generator)
        rows = [
            {"kind": "prior", "input": "", "poem": p.text, "log_prob": round(p.log_prob, 2)}
            for p in generate(model, vocab, z, request, generator, num_poems=self.n_prior)
        ]
        if model.cfg.use_latent and self.n_reconstruct and datamodule is not None:
            tokens = datamodule.tensors["val"]["tokens"][: self.n_reconstruct].to(pl_module.device)
            with torch.no_grad():
                mu, _ = model.encode(tokens)
            greedy = dataclasses.replace(request, strategy="greedy")
            for ids, p in zip(tokens.tolist(), generate(model, vocab, mu, greedy), strict=True):
                rows.append({"kind": "reconstruction", "input": vocab.decode(ids), "poem": p.text,
                             "log_prob": round(p.log_prob, 2)})
        return rows
