"""The LightningModule: glue between PoemVAE, the objective, the optimiser and the loggers.

Every constructor argument is a plain Python value (dicts, lists, numbers), so checkpoints hold only plain
hyper-parameters and load under ``torch.load(weights_only=True)``. Optimiser, scheduler and KL schedule are
Hydra configs (``_target_``) instantiated here, not objects passed in.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor
from torchmetrics import MeanMetric

from poetry_vae.checkpoint import CHECKPOINT_FORMAT
from poetry_vae.data.vocab import Vocabulary
from poetry_vae.metrics.latent import active_units, iw_log_likelihood, mutual_information
from poetry_vae.model import build_model
from poetry_vae.objective import ConstantBeta, ObjectiveConfig, elbo_terms
from poetry_vae.tracking import RUN_IDS_KEY, run_ids

_EVAL_STAGES = ("val", "test")
_ON_PROGRESS_BAR = ("loss", "kl", "beta", "iw_nll_char", "active_units")


class PoemVAEModule(pl.LightningModule):
    def __init__(
        self,
        model: dict[str, Any],
        vocab: dict[str, Any],
        objective: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        anneal: dict[str, Any] | None = None,
        iw_samples_val: int = 10,
        iw_samples_test: int = 500,
        iw_chunk: int = 50,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # into checkpoints; loggers get the readable Hydra config instead
        self.vocab = Vocabulary.from_dict(vocab)
        self.model = build_model(model, self.vocab)
        self.objective = ObjectiveConfig(**(objective or {}))
        self.beta_schedule = instantiate(anneal) if anneal else ConstantBeta(1.0)
        # Epoch-level evaluation sums; MeanMetric syncs across DDP ranks by itself.
        self.eval_means = torch.nn.ModuleDict(
            {f"{stage}_{name}": MeanMetric() for stage in _EVAL_STAGES for name in ("rec", "kl", "iw_ll", "elbo")}
        )
        self._posteriors: list[tuple[Tensor, Tensor]] = []
        self._rng_to_restore: Tensor | None = None

    # ---- the objective ----

    def current_beta(self) -> float:
        """β is a pure function of the global step, so a resumed run continues the schedule exactly."""
        return float(self.beta_schedule(self.global_step))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.model(batch["tokens"], batch["dec_in"], batch["target"], self.objective.word_dropout,
                         batch.get("form"))
        beta = self.current_beta()
        terms = elbo_terms(out.rec, out.kl, beta, self.objective.free_bits)
        positions = self._positions(batch)
        size = batch["tokens"].size(0)
        logs = {
            "train/loss": terms["loss"],
            "train/rec": terms["rec"],
            "train/kl": terms["kl"],
            "train/elbo": terms["elbo"],
            "train/beta": beta,
            "train/nll_char": terms["rec"] / positions,
        }
        for name, value in logs.items():
            self.log(name, value, on_step=True, on_epoch=False, batch_size=size,
                     prog_bar=name.split("/")[1] in _ON_PROGRESS_BAR)
        self.log("train/ppl", math.exp(min(50.0, float(terms["rec"].detach()) / positions)), batch_size=size)
        return terms["loss"]

    def _positions(self, batch: dict[str, Tensor]) -> float:
        return float((batch["target"] != self.vocab.pad_id).sum(dim=1).float().mean())

    # ---- validation and test: ELBO terms, importance-weighted NLL, AU and MI over the whole split ----

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        out = self.model(batch["tokens"], batch["dec_in"], batch["target"])
        k = self.hparams.iw_samples_val if stage == "val" else self.hparams.iw_samples_test
        iw_ll = iw_log_likelihood(self.model, batch["tokens"], batch["dec_in"], batch["target"], k,
                                  self.hparams.iw_chunk)
        kl = out.kl.sum(dim=1)
        for name, value in (("rec", out.rec), ("kl", kl), ("iw_ll", iw_ll), ("elbo", -(out.rec + kl))):
            self.eval_means[f"{stage}_{name}"].update(value)
        self._eval_positions = self._positions(batch)
        if out.mu is not None:
            self._posteriors.append((out.mu.detach(), out.logvar.detach()))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_eval_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_epoch("test")

    def _log_eval_epoch(self, stage: str) -> None:
        means = {name: float(self.eval_means[f"{stage}_{name}"].compute()) for name in ("rec", "kl", "iw_ll", "elbo")}
        for metric in self.eval_means.values():
            metric.reset()
        positions = getattr(self, "_eval_positions", 21.0)
        iw_nll_char = -means["iw_ll"] / positions
        logs = {
            f"{stage}/rec": means["rec"],
            f"{stage}/kl": means["kl"],
            f"{stage}/elbo": means["elbo"],
            f"{stage}/loss": means["rec"] + self.current_beta() * means["kl"],
            f"{stage}/nll_char": means["rec"] / positions,
            f"{stage}/iw_nll": -means["iw_ll"],
            f"{stage}/iw_nll_char": iw_nll_char,
            f"{stage}/iw_ppl": math.exp(min(50.0, iw_nll_char)),
            f"{stage}/beta": self.current_beta(),
        }
        logs.update(self._latent_usage(stage))
        # Values are already reduced across ranks (MeanMetric, all_gather): no further sync needed.
        for name, value in logs.items():
            self.log(name, value, sync_dist=False, prog_bar=name.split("/")[1] in _ON_PROGRESS_BAR)

    def _latent_usage(self, stage: str) -> dict[str, float]:
        if not self._posteriors:
            return {}
        mu = torch.cat([m for m, _ in self._posteriors])
        logvar = torch.cat([lv for _, lv in self._posteriors])
        self._posteriors.clear()
        if self.trainer.world_size > 1:  # every rank sees the whole split's posteriors
            mu = self.all_gather(mu).flatten(0, 1)
            logvar = self.all_gather(logvar).flatten(0, 1)
        if mu.size(0) < 2:
            return {}
        return {f"{stage}/active_units": float(active_units(mu)), f"{stage}/mi": mutual_information(mu, logvar)}

    # ---- optimiser ----

    def configure_optimizers(self) -> Any:
        optimizer_cfg = self.hparams.optimizer or {"_target_": "torch.optim.Adam", "_partial_": True}
        optimizer = instantiate(optimizer_cfg)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- checkpoints: a format tag, and the RNG state so that a resumed run draws the same noise ----

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["poetry_vae_format"] = CHECKPOINT_FORMAT
        checkpoint[RUN_IDS_KEY] = run_ids(self.loggers)  # a resume continues the same wandb run
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("torch_rng_state")

    def on_train_start(self) -> None:
        # Applied here, after the sanity-check validation, which would otherwise consume random numbers.
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore.cpu())
            self._rng_to_restore = None
