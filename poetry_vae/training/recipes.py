"""Training recipes that change the loop, as Lightning callbacks that keep their own state in checkpoints.

Turned on by the objective's options (``conf/objective``, see ObjectiveConfig); ``recipe_callbacks`` gives the ones
a module's objective asks for, and ``poetry_vae.train`` adds them to every run.

- Li et al. 2019 (``ae_steps``, ``reset_decoder``) -- DecoderReset: β is 0 before step ``ae_steps`` (the
  objective's β); at the first training batch whose global step is >= ``ae_steps`` the decoder is re-initialised
  (``PoemModel.reset_decoder``, seeded by the run's seed, so it equals a fresh decoder built under that seed) and its
  Adam moments and step counts are dropped, so it restarts as if newly created. A ``done`` flag in the checkpoint
  makes a resumed run reset exactly once: a checkpoint written at step ``ae_steps`` (before that batch) resets on
  resume; a later one does not.
- He et al. 2019 (``aggressive``) -- AggressiveEncoder: while on, each training step first makes up to
  ``aggressive_max_inner`` encoder-only updates (a private optimiser over ``model.encoder_parameters()``, built from
  the run's optimiser config, on random training batches drawn with its own generator), stopping early when the mean
  inner loss of a window stops falling; the outer step then trains the decoder side only (q(z|x) detached). The mode
  ends at the first validation where MI is not above the previous one, or at ``aggressive_max_steps``. The flag,
  the MI history, the private optimiser's state and its generator live in the checkpoint. One device only.

Checkpoints written while these recipes lived in the LightningModule hold their state under the top-level keys
``decoder_reset`` and ``aggressive``: a resume reads them, and they are still written, so that a checkpoint resumes
under either version of the code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from poetry_vae.errors import PoetryVAEError
from poetry_vae.objective import ObjectiveConfig, aggressive_stays_on, inner_loop_should_stop

if TYPE_CHECKING:
    from poetry_vae.lit_module import PoemModule

Batch = dict[str, Tensor]


def _run_seed() -> int:
    """The random seed seed_everything set (the recipes are built right after the module, as its weights were)."""
    return int(torch.initial_seed()) % 2**63


class DecoderReset(pl.Callback):
    """Li et al. 2019: re-initialise the decoder, once, when the autoencoder phase of ``ae_steps`` steps ends."""

    LEGACY_KEY = "decoder_reset"

    def __init__(self, ae_steps: int, seed: int | None = None) -> None:
        self.ae_steps = ae_steps
        self.seed = _run_seed() if seed is None else seed
        self.done = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if not self.done and trainer.global_step >= self.ae_steps:
            self.reset(pl_module, trainer.optimizers)

    def reset(self, pl_module: PoemModule, optimizers: list[torch.optim.Optimizer]) -> None:
        """A fresh decoder (same seed every time for this run) and no optimiser state for its parameters:
        Adam then starts their moments and bias correction from zero, as for a newly built decoder."""
        pl_module.model.reset_decoder(self.seed)
        for optimizer in optimizers:
            for param in pl_module.model.decoder.parameters():
                optimizer.state.pop(param, None)
        self.done = True

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done, "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.done = bool(state_dict["done"])
        self.seed = int(state_dict.get("seed", self.seed))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[self.LEGACY_KEY] = self.state_dict()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # runs before load_state_dict (which then wins); a checkpoint older than the flag counts the reset as done
        # once past the boundary
        self.load_state_dict(checkpoint.get(self.LEGACY_KEY)
                             or {"done": checkpoint.get("global_step", 0) > self.ae_steps})


class AggressiveEncoder(pl.Callback):
    """He et al. 2019: encoder-only inner updates before each training step, until validation MI stops rising."""

    LEGACY_KEY = "aggressive"

    def __init__(self, max_inner: int, check_every: int, max_steps: int = 0, has_encoder: bool = True,
                 seed: int | None = None) -> None:
        self.max_inner = max_inner
        self.check_every = check_every
        self.max_steps = max_steps
        self.has_encoder = has_encoder  # a model without one (the LM) never turns the mode on
        self.on = has_encoder
        self.mi_history: list[float] = []
        self.generator = torch.Generator().manual_seed((_run_seed() if seed is None else seed) + 1)
        self._optimizer: torch.optim.Optimizer | None = None
        self._optimizer_state: dict[str, Any] | None = None  # from a checkpoint, loaded when the optimiser is built
        self._watcher: Callable[[dict[str, float]], dict[str, float]] | None = None

    # ---- the run ----

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._watcher = lambda logs: self.watch_mutual_information(logs, trainer.global_step)
            pl_module.val_watchers.append(self._watcher)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._watcher is not None and self._watcher in pl_module.val_watchers:
            pl_module.val_watchers.remove(self._watcher)
        self._watcher = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.on and trainer.world_size > 1:
            raise PoetryVAEError("objective.aggressive=true runs on one device: set trainer.devices=1 "
                                 "(its encoder-only updates are not synchronised across ranks)")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Batch,
                             batch_idx: int) -> None:
        if self.on and not aggressive_stays_on([], trainer.global_step, self.max_steps):
            self.on = False
        inner = 0
        if self.on:
            # the context the training step runs in (autocast under mixed precision), as the updates are part of it
            with trainer.precision_plugin.train_step_context():
                inner = self.inner_updates(pl_module, batch, lambda: self._random_train_batch(trainer, pl_module),
                                           trainer.gradient_clip_val)
        pl_module.encoder_grad = not self.on
        pl_module.log_train({"train/aggressive": float(self.on), "train/inner_steps": float(inner)},
                            batch["tokens"].size(0))

    def inner_updates(self, pl_module: PoemModule, first: Batch, next_batch: Callable[[], Batch],
                      clip: float | None = None) -> int:
        """Encoder-only updates on ``first`` then on ``next_batch()`` draws; returns how many were made.

        Gradients are taken with ``torch.autograd.grad`` for the encoder's parameters only, so nothing else
        (decoder, shared embedding) receives a gradient or moves. Stops at ``max_inner`` updates, or when the mean
        loss of the latest ``check_every`` updates is not below the previous window's.
        """
        params = pl_module.model.encoder_parameters()
        optimizer = self._encoder_optimizer(pl_module, params)
        window: list[float] = []
        means: list[float] = []
        batch = first
        for done in range(1, self.max_inner + 1):
            loss = pl_module.loss_terms(batch)[0]["loss"]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad
            if clip:
                torch.nn.utils.clip_grad_norm_(params, float(clip))
            optimizer.step()
            for param in params:
                param.grad = None
            window.append(float(loss.detach()))
            if len(window) == self.check_every:
                means.append(sum(window) / len(window))
                window = []
                if inner_loop_should_stop(means):
                    return done
            if done < self.max_inner:
                batch = next_batch()
        return self.max_inner

    def _encoder_optimizer(self, pl_module: PoemModule, params: list[Tensor]) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = pl_module.build_optimizer(params)
            if self._optimizer_state is not None:
                self._optimizer.load_state_dict(self._optimizer_state)
                self._optimizer_state = None
        return self._optimizer

    def _random_train_batch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Batch:
        """A random training batch (He et al. draw one per inner update), from this recipe's own generator."""
        loader = trainer.train_dataloader
        dataset = loader.dataset
        rows = torch.randint(len(dataset), (loader.batch_size,), generator=self.generator).tolist()
        if hasattr(dataset, "__getitems__"):
            batch = dataset.__getitems__(rows)
        else:
            batch = torch.utils.data.default_collate([dataset[i] for i in rows])
        return {name: value.to(pl_module.device) for name, value in batch.items()}

    def watch_mutual_information(self, logs: dict[str, float], step: int) -> dict[str, float]:
        """After each validation of the run: the mode ends when MI stops rising; its flag is logged alongside."""
        if self.on and "val/mi" in logs:
            self.mi_history.append(logs["val/mi"])
            self.on = aggressive_stays_on(self.mi_history, step, self.max_steps)
        return {"val/aggressive": float(self.on)}

    # ---- checkpoints ----

    def state_dict(self) -> dict[str, Any]:
        optimizer = self._optimizer.state_dict() if self._optimizer is not None else self._optimizer_state
        return {"on": self.on, "mi_history": list(self.mi_history), "optimizer": optimizer,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.on = bool(state_dict["on"]) and self.has_encoder
        self.mi_history = [float(v) for v in state_dict["mi_history"]]
        self._optimizer_state, self._optimizer = state_dict["optimizer"], None
        self.generator.set_state(state_dict["generator"])

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[self.LEGACY_KEY] = self.state_dict()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        legacy = checkpoint.get(self.LEGACY_KEY)  # runs before load_state_dict, which then wins
        if legacy is not None:
            self.load_state_dict(legacy)


def recipe_callbacks(objective: ObjectiveConfig, has_encoder: bool, seed: int | None = None) -> list[pl.Callback]:
    """The callbacks ``objective`` asks for, in the order their per-batch work ran before they were callbacks.
    Build them right after the module (``seed`` defaults to the seed its weights were drawn under)."""
    seed = _run_seed() if seed is None else seed
    callbacks: list[pl.Callback] = []
    if objective.reset_decoder:
        callbacks.append(DecoderReset(objective.ae_steps, seed))
    if objective.aggressive:
        callbacks.append(AggressiveEncoder(objective.aggressive_max_inner, objective.aggressive_check_every,
                                           objective.aggressive_max_steps, has_encoder, seed))
    return callbacks
