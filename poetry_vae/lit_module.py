"""The LightningModule: glue between PoemVAE, the objective, the optimiser and the loggers.

Every constructor argument is a plain Python value (dicts, lists, numbers), so checkpoints hold only plain
hyper-parameters and load under ``torch.load(weights_only=True)``. Optimiser, scheduler and KL schedule are
Hydra configs (``_target_``) instantiated here, not objects passed in.

Training recipes that change the loop live here (the objective's options, see ObjectiveConfig):

- Li et al. 2019 (``ae_steps``, ``reset_decoder``): β is 0 before step ``ae_steps``; at the first training batch
  whose global step is >= ``ae_steps`` the decoder is re-initialised (``PoemVAE.reset_decoder``, seeded by the
  run's seed, so it equals a fresh decoder built under that seed) and its Adam moments and step counts are
  dropped, so it restarts as if newly created. A ``decoder_reset_done`` flag in the checkpoint makes a resumed
  run reset exactly once: a checkpoint written at step ``ae_steps`` (before that batch) resets on resume; a
  later one does not.
- He et al. 2019 (``aggressive``): while on, each training step first makes up to ``aggressive_max_inner``
  encoder-only updates (a private optimiser over ``model.encoder_parameters()``, built from the same optimiser
  config, on random training batches drawn with its own generator), stopping early when the mean inner loss of
  a window stops falling; the outer step then trains the decoder side only (q(z|x) detached). The mode ends at
  the first validation where MI is not above the previous one, or at ``aggressive_max_steps``. The flag, the MI
  history, the private optimiser's state and its generator live in the checkpoint. One device only.
- Zhao et al. 2017 (``bag_of_words``): a linear head on z, owned by this module (not by the model a sampler
  loads), scores the poem's characters as a bag; its NLL joins the loss with that weight.

Validation and test always compute in fp32 (autocast off), whatever ``trainer.precision`` says.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor
from torchmetrics import MeanMetric

from poetry_vae.checkpoint import CHECKPOINT_FORMAT
from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PoetryVAEError
from poetry_vae.metrics.latent import active_units, iw_log_likelihood, mutual_information
from poetry_vae.model import build_model
from poetry_vae.objective import (
    ConstantBeta,
    ObjectiveConfig,
    aggressive_stays_on,
    bag_of_words_nll,
    elbo_terms,
    inner_loop_should_stop,
)
from poetry_vae.tracking import RUN_IDS_KEY, run_ids

_EVAL_STAGES = ("val", "test")
_ON_PROGRESS_BAR = ("loss", "kl", "beta", "iw_nll_char", "active_units")
Batch = dict[str, Tensor]


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
        iw_every_n_val: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # into checkpoints; loggers get the readable Hydra config instead
        self.vocab = Vocabulary.from_dict(vocab)
        self.model = build_model(model, self.vocab)
        self.objective = ObjectiveConfig(**(objective or {}))
        self.beta_schedule = instantiate(anneal) if anneal else ConstantBeta(1.0)
        # Zhao et al.'s bag-of-words head: a training-time auxiliary, not part of the model a sampler loads
        self.bow_head: torch.nn.Linear | None = None
        if self.objective.bag_of_words > 0:
            if not self.model.cfg.use_latent:
                raise PoetryVAEError("objective.bag_of_words > 0 needs a model with a latent code (use_latent=true)")
            self.bow_head = torch.nn.Linear(self.model.cfg.latent_dim, self.model.cfg.vocab_size)
        # Epoch-level evaluation sums; MeanMetric syncs across DDP ranks by itself.
        self.eval_means = torch.nn.ModuleDict(
            {f"{stage}_{name}": MeanMetric() for stage in _EVAL_STAGES for name in ("rec", "kl", "iw_ll", "elbo")}
        )
        self._posteriors: list[tuple[Tensor, Tensor]] = []
        self.iw_this_eval = True  # whether the running validation computes the IW bound (see iw_due)
        self._rng_to_restore: Tensor | None = None
        # Li et al.: the decoder reset's seed is the run's (seed_everything ran before this constructor)
        self._decoder_reset_seed = int(torch.initial_seed()) % 2**63
        self._decoder_reset_done = False
        # He et al.: aggressive mode, the validation MI it watches, its private encoder optimiser and batch draws
        self._aggressive_on = self.objective.aggressive and self.model.encoder is not None
        self._mi_history: list[float] = []
        self._inner_optimizer: torch.optim.Optimizer | None = None
        self._inner_state: dict[str, Any] | None = None
        self._inner_generator = torch.Generator().manual_seed(self._decoder_reset_seed + 1)
        # wall-clock minutes of training, summed over resumes (the report's quality-per-minute curves)
        self._elapsed_before_s = 0.0
        self._fit_started: float | None = None

    # ---- the objective ----

    def current_beta(self) -> float:
        """β is a pure function of the global step, so a resumed run continues the schedule exactly."""
        return self.objective.beta(self.beta_schedule, self.global_step)

    def _terms(self, batch: Batch, encoder_grad: bool = True) -> tuple[dict[str, Tensor], float]:
        out = self.model(batch["tokens"], batch["dec_in"], batch["target"], self.objective.word_dropout,
                         batch.get("form"), encoder_grad=encoder_grad)
        beta = self.current_beta()
        terms = elbo_terms(out.rec, out.kl, beta, self.objective.free_bits)
        if self.bow_head is not None:
            terms["bow"] = bag_of_words_nll(self.bow_head(out.z), batch["tokens"], self.vocab.pad_id).mean()
            terms["loss"] = terms["loss"] + self.objective.bag_of_words * terms["bow"]
        return terms, beta

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        aggressive = self._aggressive_on
        # outside a Trainer (a unit test) there is no training set to draw from: the inner updates reuse the batch
        draw = self._random_train_batch if self._trainer is not None else lambda: batch
        inner = self.aggressive_inner_updates(batch, draw) if aggressive else 0
        terms, beta = self._terms(batch, encoder_grad=not aggressive)
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
        if "bow" in terms:
            logs["train/bow"] = terms["bow"]
        if self.objective.aggressive:
            logs.update({"train/aggressive": float(aggressive), "train/inner_steps": float(inner)})
        if self._fit_started is not None:
            logs["train/elapsed_min"] = self.elapsed_minutes()
        for name, value in logs.items():
            self.log(name, value, on_step=True, on_epoch=False, batch_size=size,
                     prog_bar=name.split("/")[1] in _ON_PROGRESS_BAR)
        self.log("train/ppl", math.exp(min(50.0, float(terms["rec"].detach()) / positions)), batch_size=size)
        return terms["loss"]

    def _positions(self, batch: Batch) -> float:
        return float((batch["target"] != self.vocab.pad_id).sum(dim=1).float().mean())

    # ---- Li et al. 2019: re-initialise the decoder when the autoencoder phase ends ----

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        objective = self.objective
        if objective.reset_decoder and not self._decoder_reset_done and self.global_step >= objective.ae_steps:
            self.reset_decoder(self.trainer.optimizers if self._trainer is not None else [])
        if self._aggressive_on and not aggressive_stays_on([], self.global_step, objective.aggressive_max_steps):
            self._aggressive_on = False

    def reset_decoder(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """A fresh decoder (same seed every time for this run) and no optimiser state for its parameters:
        Adam then starts their moments and bias correction from zero, as for a newly built decoder."""
        self.model.reset_decoder(self._decoder_reset_seed)
        for optimizer in optimizers:
            for param in self.model.decoder.parameters():
                optimizer.state.pop(param, None)
        self._decoder_reset_done = True

    # ---- He et al. 2019: aggressive encoder-only updates ----

    def on_fit_start(self) -> None:
        if self._aggressive_on and self.trainer.world_size > 1:
            raise PoetryVAEError("objective.aggressive=true runs on one device: set trainer.devices=1 "
                                 "(its encoder-only updates are not synchronised across ranks)")

    def aggressive_inner_updates(self, first: Batch, next_batch: Callable[[], Batch]) -> int:
        """Encoder-only updates on ``first`` then on ``next_batch()`` draws; returns how many were made.

        Gradients are taken with ``torch.autograd.grad`` for the encoder's parameters only, so nothing else
        (decoder, shared embedding) receives a gradient or moves. Stops at ``aggressive_max_inner`` updates, or
        when the mean loss of the latest ``aggressive_check_every`` updates is not below the previous window's.
        """
        objective = self.objective
        params = self.model.encoder_parameters()
        optimizer = self._encoder_optimizer(params)
        clip = self._trainer.gradient_clip_val if self._trainer is not None else None
        window: list[float] = []
        means: list[float] = []
        batch = first
        for done in range(1, objective.aggressive_max_inner + 1):
            loss = self._terms(batch)[0]["loss"]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad
            if clip:
                torch.nn.utils.clip_grad_norm_(params, float(clip))
            optimizer.step()
            for param in params:
                param.grad = None
            window.append(float(loss.detach()))
            if len(window) == objective.aggressive_check_every:
                means.append(sum(window) / len(window))
                window = []
                if inner_loop_should_stop(means):
                    return done
            if done < objective.aggressive_max_inner:
                batch = next_batch()
        return objective.aggressive_max_inner

    def _encoder_optimizer(self, params: list[Tensor]) -> torch.optim.Optimizer:
        if self._inner_optimizer is None:
            self._inner_optimizer = self._build_optimizer(params)
            if self._inner_state is not None:
                self._inner_optimizer.load_state_dict(self._inner_state)
                self._inner_state = None
        return self._inner_optimizer

    def _random_train_batch(self) -> Batch:
        """A random training batch (He et al. draw one per inner update), from the module's own generator."""
        loader = self.trainer.train_dataloader
        dataset = loader.dataset
        rows = torch.randint(len(dataset), (loader.batch_size,), generator=self._inner_generator).tolist()
        if hasattr(dataset, "__getitems__"):
            batch = dataset.__getitems__(rows)
        else:
            batch = torch.utils.data.default_collate([dataset[i] for i in rows])
        return {name: value.to(self.device) for name, value in batch.items()}

    def _watch_mutual_information(self, mi: float) -> None:
        self._mi_history.append(mi)
        self._aggressive_on = aggressive_stays_on(self._mi_history, self.global_step,
                                                  self.objective.aggressive_max_steps)

    def elapsed_minutes(self) -> float:
        started = self._fit_started if self._fit_started is not None else time.monotonic()
        return (self._elapsed_before_s + time.monotonic() - started) / 60.0

    # ---- validation and test: ELBO terms, importance-weighted NLL, AU and MI over the whole split ----

    def _eval_step(self, batch: Batch, stage: str) -> None:
        # fp32 whatever the training precision: evaluation numbers must not depend on autocast
        with torch.autocast(self.device.type, enabled=False):
            self._eval_batch(batch, stage)

    def iw_due(self) -> bool:
        """Whether this validation computes the IW bound: it is most of a VAE's validation (K decoder passes), while
        checkpoints pick by the ELBO; so every ``iw_every_n_val``-th epoch and always at the run's last validation
        (a time budget or early stop sets ``should_stop`` before it; max_epochs/max_steps end it), so the number a
        sweep reads and the end of every curve are fresh."""
        trainer, every = self.trainer, self.hparams.iw_every_n_val
        if every <= 1 or trainer.sanity_checking or trainer.should_stop:
            return True
        last_epoch = trainer.max_epochs is not None and 0 <= trainer.max_epochs <= self.current_epoch + 1
        last_step = trainer.max_steps is not None and 0 <= trainer.max_steps <= self.global_step
        return last_epoch or last_step or (self.current_epoch + 1) % every == 0

    def on_validation_epoch_start(self) -> None:
        self.iw_this_eval = self.iw_due()

    def on_test_epoch_start(self) -> None:
        self.iw_this_eval = True

    def _eval_batch(self, batch: Batch, stage: str) -> None:
        out = self.model(batch["tokens"], batch["dec_in"], batch["target"])
        kl = out.kl.sum(dim=1)
        for name, value in (("rec", out.rec), ("kl", kl), ("elbo", -(out.rec + kl))):
            self.eval_means[f"{stage}_{name}"].update(value)
        if self.iw_this_eval:
            k = self.hparams.iw_samples_val if stage == "val" else self.hparams.iw_samples_test
            self.eval_means[f"{stage}_iw_ll"].update(iw_log_likelihood(
                self.model, batch["tokens"], batch["dec_in"], batch["target"], k, self.hparams.iw_chunk))
        self._eval_positions = self._positions(batch)
        if out.mu is not None:
            self._posteriors.append((out.mu.detach(), out.logvar.detach()))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_eval_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_epoch("test")

    def _log_eval_epoch(self, stage: str) -> None:
        names = ("rec", "kl", "elbo", "iw_ll") if self.iw_this_eval else ("rec", "kl", "elbo")
        means = {name: float(self.eval_means[f"{stage}_{name}"].compute()) for name in names}
        for metric in self.eval_means.values():
            metric.reset()
        positions = getattr(self, "_eval_positions", 21.0)
        logs = {
            f"{stage}/rec": means["rec"],
            f"{stage}/kl": means["kl"],
            f"{stage}/elbo": means["elbo"],
            f"{stage}/loss": means["rec"] + self.current_beta() * means["kl"],
            f"{stage}/nll_char": means["rec"] / positions,
            f"{stage}/beta": self.current_beta(),
        }
        if self.iw_this_eval:
            iw_nll_char = -means["iw_ll"] / positions
            logs.update({f"{stage}/iw_nll": -means["iw_ll"], f"{stage}/iw_nll_char": iw_nll_char,
                         f"{stage}/iw_ppl": math.exp(min(50.0, iw_nll_char))})
        logs.update(self._latent_usage(stage))
        if stage == "val" and self._fit_started is not None and not self.trainer.sanity_checking:
            logs["val/elapsed_min"] = self.elapsed_minutes()
            if self._aggressive_on and f"{stage}/mi" in logs:
                self._watch_mutual_information(logs[f"{stage}/mi"])
            if self.objective.aggressive:
                logs["val/aggressive"] = float(self._aggressive_on)
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
        optimizer = self._build_optimizer(self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _build_optimizer(self, params: Any) -> torch.optim.Optimizer:
        optimizer_cfg = self.hparams.optimizer or {"_target_": "torch.optim.Adam", "_partial_": True}
        return instantiate(optimizer_cfg)(params=params)

    # ---- checkpoints: a format tag, the RNG state so that a resumed run draws the same noise, recipe state ----

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["poetry_vae_format"] = CHECKPOINT_FORMAT
        checkpoint[RUN_IDS_KEY] = run_ids(self.loggers)  # a resume continues the same wandb run
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        checkpoint["elapsed_s"] = self.elapsed_minutes() * 60.0 if self._fit_started is not None \
            else self._elapsed_before_s
        checkpoint["decoder_reset"] = {"done": self._decoder_reset_done, "seed": self._decoder_reset_seed}
        if self.objective.aggressive:
            inner = self._inner_optimizer.state_dict() if self._inner_optimizer is not None else self._inner_state
            checkpoint["aggressive"] = {"on": self._aggressive_on, "mi_history": list(self._mi_history),
                                        "optimizer": inner, "generator": self._inner_generator.get_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("torch_rng_state")
        self._elapsed_before_s = float(checkpoint.get("elapsed_s", 0.0))
        # a checkpoint without the flag (older runs) counts the reset as done once past the boundary
        reset = checkpoint.get("decoder_reset") or {"done": checkpoint.get("global_step", 0) > self.objective.ae_steps}
        self._decoder_reset_done = bool(reset["done"])
        self._decoder_reset_seed = int(reset.get("seed", self._decoder_reset_seed))
        aggressive = checkpoint.get("aggressive")
        if aggressive is not None and self.objective.aggressive:
            self._aggressive_on = bool(aggressive["on"]) and self.model.encoder is not None
            self._mi_history = [float(v) for v in aggressive["mi_history"]]
            self._inner_state, self._inner_optimizer = aggressive["optimizer"], None
            self._inner_generator.set_state(aggressive["generator"])

    def on_train_start(self) -> None:
        self._fit_started = time.monotonic()
        # Applied here, after the sanity-check validation, which would otherwise consume random numbers.
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore.cpu())
            self._rng_to_restore = None
