"""Plain progress lines where no terminal is attached (``make train > log``, a SLURM job): the rich progress bar
draws only on a terminal, so a redirected run would otherwise print nothing between start and the final table."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer

_TRAIN_KEYS = (("loss", "train/loss"), ("kl", "train/kl"), ("beta", "train/beta"))
_VAL_KEYS = (("iw_nll/char", "val/iw_nll_char"), ("ppl", "val/iw_ppl"), ("kl", "val/kl"), ("mi", "val/mi"),
             ("au", "val/active_units"))


def _fmt(metrics: dict[str, Any], keys: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{label} {float(metrics[key]):.4g}" for label, key in keys if key in metrics)


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainProgress(pl.Callback):
    """A line every ``interval_s`` seconds (step, epoch, loss, KL, β, poems/s, time left under ``max_time``) and
    the validation metrics after each epoch; silent on a terminal unless ``always``."""

    def __init__(self, interval_s: float = 30.0, always: bool = False) -> None:
        self.interval_s = interval_s
        self.active = always or not sys.stdout.isatty()
        self._last = 0.0
        self._poems = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.monotonic()
        self._poems = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.active or not trainer.is_global_zero:
            return
        self._poems += int(batch["tokens"].shape[0])
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        rate = self._poems / max(now - self._last, 1e-9)
        line = (f"step {trainer.global_step} epoch {trainer.current_epoch} "
                f"{_fmt(trainer.callback_metrics, _TRAIN_KEYS)} poems/s {rate:.0f}")
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None and timer.time_remaining("train") is not None:
            line += f" left {_clock(timer.time_remaining('train'))}"
        print(line, flush=True)
        self._last, self._poems = now, 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the module's epoch-end hook has logged the epoch's metrics
        if not self.active or trainer.sanity_checking or not trainer.is_global_zero:
            return
        keys = _VAL_KEYS
        if not getattr(pl_module, "iw_this_eval", True):  # callback_metrics would still hold an older epoch's bound
            keys = tuple(key for key in keys if "iw_" not in key[1])
        print(f"validation after epoch {trainer.current_epoch} (step {trainer.global_step}): "
              f"{_fmt(trainer.callback_metrics, keys)}", flush=True)
