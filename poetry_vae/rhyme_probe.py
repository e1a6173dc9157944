"""The learned-rhyme curve: at each validation end, ``val/rhyme_mass`` and ``val/rhyme_rate`` on every logger.

See :mod:`poetry_vae.metrics.rhyme` for what they measure. A fixed seed per run (not per epoch) compares epochs on
the same prior draws; the probe has its own generator, so training randomness (and resume equivalence) is untouched.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from poetry_vae.metrics.rhyme import learned_rhyme_rate, rhyme_mass


class RhymeProbe(pl.Callback):
    def __init__(self, n_poems: int = 500, n_samples: int = 200, seed: int = 0) -> None:
        self.n_poems, self.n_samples, self.seed = n_poems, n_samples, seed

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if trainer.sanity_checking or datamodule is None or getattr(datamodule, "tensors", None) is None:
            return
        line_length = int(datamodule.hparams["line_length"])
        model, vocab = pl_module.model, pl_module.vocab
        dec_in = datamodule.tensors["val"]["dec_in"][: self.n_poems]
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        mass = rhyme_mass(model, vocab, dec_in, line_length, generator)
        rate = learned_rhyme_rate(model, vocab, self.n_samples, line_length, generator)
        pl_module.log_dict({"val/rhyme_mass": mass, "val/rhyme_rate": rate}, on_epoch=True)
