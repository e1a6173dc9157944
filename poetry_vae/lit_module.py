"""The LightningModule: glue between PoemModel, the objective, the optimiser and the loggers.

Every constructor argument is a plain Python value (dicts, lists, numbers), so checkpoints hold only plain
hyper-parameters and load under ``torch.load(weights_only=True)``. Optimiser, scheduler and KL schedule are
Hydra configs (``_target_``) instantiated here. The loss is ``poetry_vae.objective``'s; the recipes that change the
training loop are callbacks (``poetry_vae.training.recipes``). Evaluation always computes in fp32 (autocast off).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor
from torchmetrics import MeanMetric

from poetry_vae.checkpoint import CHECKPOINT_FORMAT
from poetry_vae.data.vocab import SPECIALS, Vocabulary
from poetry_vae.errors import PoetryVAEError
from poetry_vae.metrics.elbo import eval_epoch_logs, latent_usage, mean_positions, perplexity
from poetry_vae.metrics.latent import iw_log_likelihood
from poetry_vae.model import build_model
from poetry_vae.objective import BagOfWords, ConstantBeta, ObjectiveConfig, elbo_terms, iw_terms
from poetry_vae.tracking import RUN_IDS_KEY, run_ids

_EVAL_STAGES = ("val", "test")
_ON_PROGRESS_BAR = ("loss", "kl", "beta", "iw_nll_char", "active_units")
Batch = dict[str, Tensor]
# sees a training run's validation numbers and returns more to log with them (a recipe's stopping rule)
ValWatcher = Callable[[dict[str, float]], dict[str, float]]


class PoemModule(pl.LightningModule):
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
        self.objective = ObjectiveConfig.from_dict(objective)
        self.beta_schedule = instantiate(anneal) if anneal else ConstantBeta(1.0)
        self.bow_head = BagOfWords.for_objective(self.objective, self.model.cfg, self.vocab.pad_id)
        if self.objective.refit_encoder:
            self._freeze_all_but("encoder", self.model.encoder_parameters())
        if self.objective.refit_decoder:
            self._freeze_all_but("decoder", self.model.decoder.parameters())
        # Epoch-level evaluation sums; MeanMetric syncs across DDP ranks by itself.
        self.eval_means = torch.nn.ModuleDict(
            {f"{stage}_{name}": MeanMetric() for stage in _EVAL_STAGES for name in ("rec", "kl", "iw_ll", "elbo")}
        )
        self._posteriors: list[tuple[Tensor, Tensor]] = []
        self.iw_this_eval = True  # whether the running validation computes the IW bound (see iw_due)
        self._rng_to_restore: Tensor | None = None
        self.encoder_grad = True  # off while a recipe trains the encoder on its own (He et al.'s outer step)
        self.val_watchers: list[ValWatcher] = []
        # wall-clock minutes of training, summed over resumes (the report's quality-per-minute curves)
        self._elapsed_before_s = 0.0
        self._fit_started: float | None = None

    def setup(self, stage: str) -> None:
        """Lightning's model summary counts FLOPs on ``example_input_array``: one poem of the data's length (a 七绝
        model without place codes knows none of its own)."""
        hparams = getattr(getattr(self.trainer, "datamodule", None), "hparams", {})
        length = hparams.get("line_length", self.model.cfg.line_length or 5) * hparams.get("num_lines", 4)
        self.example_input_array = self._example_poem(length)

    def _example_poem(self, length: int) -> tuple[Tensor, Tensor, Tensor]:
        """One poem of ``length`` characters as (tokens, dec_in, target), the vocabulary's first characters."""
        first, chars = len(SPECIALS), max(1, len(self.vocab) - len(SPECIALS))
        tokens = (first + torch.arange(length) % chars).unsqueeze(0)
        dec_in = torch.cat([torch.tensor([[self.vocab.bos_id]]), tokens], dim=1)
        target = torch.cat([tokens, torch.tensor([[self.vocab.eos_id]])], dim=1)
        return tokens, dec_in, target

    def forward(self, tokens: Tensor, dec_in: Tensor, target: Tensor) -> Tensor:
        """-ELBO per poem (β = 1, one code drawn): what the model summary runs on :attr:`example_input_array`. The
        code's noise comes from a forked RNG, so that counting leaves the training's random stream as it was."""
        on_gpu = [tokens.device.index or 0] if tokens.device.type == "cuda" else []
        with torch.random.fork_rng(devices=on_gpu):  # the CPU's generator, and the GPU's the code is drawn on
            out = self.model(tokens, dec_in, target)
        return out.rec + out.kl.sum(dim=1)

    def _freeze_all_but(self, part: str, trained: Iterable[torch.nn.Parameter]) -> None:
        if self.model.encoder is None:
            raise PoetryVAEError(f"objective.refit_{part}=true needs a model with a latent (an LM has no encoder "
                                 f"to refit{' or codes to read' if part == 'decoder' else ''}): drop the option or "
                                 "train a VAE")
        owned = {id(p) for p in trained}
        for param in self.parameters():
            param.requires_grad_(id(param) in owned)

    def train(self, mode: bool = True) -> PoemModule:
        """While one side is refitted the frozen rest runs as evaluated (no dropout): a refitted encoder must fit
        the decoder whose likelihood the importance-weighted bound measures, and a refitted decoder reads the codes
        that encoder gives at evaluation."""
        super().train(mode)
        refitted = ("encoder" if self.objective.refit_encoder else "decoder" if self.objective.refit_decoder
                    else None)
        if mode and refitted and self.model.encoder is not None:
            self.model.eval()
            getattr(self.model, refitted).train()
        return self

    # ---- the objective ----

    def current_beta(self) -> float:
        """β is a pure function of the global step, so a resumed run continues the schedule exactly."""
        return self.objective.beta(self.beta_schedule, self.global_step)

    def loss_terms(self, batch: Batch, encoder_grad: bool = True) -> tuple[dict[str, Tensor], float]:
        """The training loss and its parts on ``batch`` (noise drawn from the global RNG), and the β used."""
        samples = self.objective.iw_samples if self.model.encoder is not None else 1
        out = self.model(batch["tokens"], batch["dec_in"], batch["target"], self.objective.word_dropout,
                         batch.get("form"), encoder_grad=encoder_grad, samples=samples)
        beta = self.current_beta()
        if samples > 1:
            rows = (samples, -1)
            z = out.z.view(*rows, out.z.size(1))
            log_ratio = self.model.prior.log_ratio(z, out.mu, out.logvar)
            terms = iw_terms(out.rec.view(rows), log_ratio, out.kl, beta)
        else:
            terms = elbo_terms(out.rec, out.kl, beta, self.objective.free_bits, self.model.cfg.latent_dim)
        if self.bow_head is not None:
            terms = self.bow_head.add_to(terms, out.z, batch["tokens"])
        return terms, beta

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        terms, beta = self.loss_terms(batch, encoder_grad=self.encoder_grad)
        positions = mean_positions(batch["target"], self.vocab.pad_id)
        logs = {f"train/{name}": terms[name] for name in ("loss", "rec", "kl", "elbo", "bow") if name in terms}
        logs.update({"train/beta": beta, "train/nll_char": terms["rec"] / positions,
                     "train/ppl": perplexity(float(terms["rec"].detach()) / positions)})
        if self._fit_started is not None:
            logs["train/elapsed_min"] = self.elapsed_minutes()
        self.log_train(logs, batch["tokens"].size(0))
        return terms["loss"]

    def log_train(self, logs: dict[str, Any], batch_size: int) -> None:
        """Per-step training numbers (also the recipes' own)."""
        for name, value in logs.items():
            self.log(name, value, on_step=True, on_epoch=False, batch_size=batch_size,
                     prog_bar=name.split("/")[1] in _ON_PROGRESS_BAR)

    def elapsed_minutes(self) -> float:
        started = self._fit_started if self._fit_started is not None else time.monotonic()
        return (self._elapsed_before_s + time.monotonic() - started) / 60.0

    # ---- validation and test: ELBO terms, importance-weighted NLL, AU and MI over the whole split ----

    def iw_due(self) -> bool:
        """Whether this validation computes the IW bound (most of a VAE's validation; checkpoints pick by the ELBO):
        every ``iw_every_n_val``-th epoch and always the run's last validation (``should_stop`` set by a time budget
        or early stop; max_epochs/max_steps), so the number a sweep reads and the end of every curve are fresh."""
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

    def _eval_step(self, batch: Batch, stage: str) -> None:
        # fp32 whatever the training precision: evaluation numbers must not depend on autocast
        with torch.autocast(self.device.type, enabled=False):
            out = self.model(batch["tokens"], batch["dec_in"], batch["target"])
            kl = out.kl.sum(dim=1)
            for name, value in (("rec", out.rec), ("kl", kl), ("elbo", -(out.rec + kl))):
                self.eval_means[f"{stage}_{name}"].update(value)
            if self.iw_this_eval:
                k = self.hparams.iw_samples_val if stage == "val" else self.hparams.iw_samples_test
                self.eval_means[f"{stage}_iw_ll"].update(iw_log_likelihood(
                    self.model, batch["tokens"], batch["dec_in"], batch["target"], k, self.hparams.iw_chunk))
        self._eval_positions = mean_positions(batch["target"], self.vocab.pad_id)
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
        logs = eval_epoch_logs(stage, means, getattr(self, "_eval_positions", 21.0), self.current_beta())
        logs.update(self._latent_usage(stage))
        if stage == "val" and self._fit_started is not None and not self.trainer.sanity_checking:
            logs["val/elapsed_min"] = self.elapsed_minutes()
            for watch in self.val_watchers:
                logs.update(watch(logs))
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
        return latent_usage(stage, mu, logvar)

    # ---- optimiser ----

    def configure_optimizers(self) -> Any:
        optimizer = self.build_optimizer([p for p in self.parameters() if p.requires_grad])
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def build_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """The run's optimiser config over ``params`` (also a recipe's private encoder optimiser)."""
        optimizer_cfg = self.hparams.optimizer or {"_target_": "torch.optim.Adam", "_partial_": True}
        return instantiate(optimizer_cfg)(params=params)

    # ---- checkpoints: a format tag, the RNG state so that a resumed run draws the same noise, the clock ----

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["poetry_vae_format"] = CHECKPOINT_FORMAT
        checkpoint[RUN_IDS_KEY] = run_ids(self.loggers)  # a resume continues the same wandb run
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        checkpoint["elapsed_s"] = self.elapsed_minutes() * 60.0 if self._fit_started is not None \
            else self._elapsed_before_s

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("torch_rng_state")
        self._elapsed_before_s = float(checkpoint.get("elapsed_s", 0.0))

    def on_train_start(self) -> None:
        self._fit_started = time.monotonic()
        # Applied here, after the sanity-check validation, which would otherwise consume random numbers.
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore.cpu())
            self._rng_to_restore = None
