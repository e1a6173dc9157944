"""What a run says: plain progress lines where no terminal is attached (``make train > log``, a SLURM job: the rich
progress bar draws only on a terminal), each validation's metrics, a summary at the end, and all of it (with
Lightning's notices) in the run's ``train.log``."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, Timer

# The run's own lines (progress, validation, summary): printed by `say`, and written to train.log by `run_log`.
# Not passed on to the root logger, whose console handler (Hydra's) would print them a second time.
RUN_LOG = logging.getLogger("poetry_vae.run")
RUN_LOG.setLevel(logging.INFO)
RUN_LOG.propagate = False
# Lightning's loggers (rank-zero notices: devices, why fit stopped): they print to stderr by themselves.
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric")
FILE_FORMAT = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")  # as in conf/hydra/job_logging/

_TRAIN_KEYS = (("loss", "train/loss"), ("kl", "train/kl"), ("beta", "train/beta"))
_VAL_KEYS = (("iw_nll/char", "val/iw_nll_char"), ("ppl", "val/iw_ppl"), ("kl", "val/kl"), ("mi", "val/mi"),
             ("au", "val/active_units"))


def _fmt(metrics: dict[str, Any], keys: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{label} {float(metrics[key]):.4g}" for label, key in keys if key in metrics)


def _not_an_advert(record: logging.LogRecord) -> bool:
    """False for Lightning's tips that advertise its cloud services ("💡 Tip: For seamless cloud ...")."""
    return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    """Drop Lightning's warnings and notices that say nothing about a run (no FLOPs per batch; a torch deprecation
    inside Lightning's own code, which only Lightning can fix; that its model summary sizes a bf16 run's weights at
    32 bits, as they are stored; that no validation has logged val/elbo yet; its tips advertising its cloud
    services)."""
    warnings.filterwarnings("ignore", message=".*flops_per_batch.*")
    warnings.filterwarnings("ignore", message=".*is not supported by the model summary.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # the best checkpoint's metric is logged at every validation, so it is missing only before the first one, which
    # the run's summary says ("validation none ran"); Lightning's hint to log it would mislead. Another monitor warns
    warnings.filterwarnings("ignore", message=r"`ModelCheckpoint\(monitor='val/elbo'\)` could not find the monitored")
    notices = logging.getLogger("pytorch_lightning.utilities.rank_zero")  # where rank_zero_info writes
    if _not_an_advert not in notices.filters:
        notices.addFilter(_not_an_advert)


def say(line: str, console: bool = True) -> None:
    """A line of the run: printed (unless ``console`` is False: a progress bar shows it already), and in train.log
    while :func:`run_log` is open."""
    if console:
        print(line, flush=True)
    RUN_LOG.info(line)


@contextmanager
def run_log(path: Path) -> Iterator[None]:
    """Send the run's lines and Lightning's notices to ``path`` (the run's train.log) while the run lasts: through
    Hydra's file handler when Hydra opened that file, else through one of ours (``train()`` called directly)."""
    handler = _hydra_file_handler(path)
    owned = handler is None
    if handler is None:
        handler = _file_handler(path)
    loggers = [logging.getLogger(name) for name in (RUN_LOG.name, *LIGHTNING_LOGGERS)]
    attached = [logger for logger in loggers if not _reaches(logger, handler)]  # never the same line twice
    for logger in attached:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in attached:
            logger.removeHandler(handler)
        if owned:
            handler.close()


class RunLogHandler(logging.FileHandler):
    """train.log's handler (conf/hydra/job_logging/train_log.yaml names it too): a line that cannot be written, on
    a full disk, is dropped without a word; the run's own one-line error says what happened, where logging would
    print a traceback for every line."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def _hydra_file_handler(path: Path) -> logging.FileHandler | None:
    """The root logger's handler of this file (Hydra's job logging opens train.log), if there is one."""
    target = os.path.abspath(path)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    return next((handler for handler in handlers if handler.baseFilename == target), None)


def _file_handler(path: Path) -> logging.FileHandler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RunLogHandler(path, encoding="utf-8")  # appends: a resumed run's log goes on
    handler.setFormatter(FILE_FORMAT)
    return handler


def _reaches(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether ``logger``'s records already get to ``handler`` (its own, or a parent's it propagates to)."""
    current: logging.Logger | None = logger
    while current is not None:
        if handler in current.handlers:
            return True
        current = current.parent if current.propagate else None
    return False


def trained_seconds(checkpoint: dict[str, Any]) -> float | None:
    """The training time a checkpoint has used, as Lightning's Timer (``trainer.max_time``) counts it; None when
    the run had no time limit."""
    timer = next((state for name, state in checkpoint.get("callbacks", {}).items() if name.startswith("Timer")), None)
    elapsed = (timer or {}).get("time_elapsed", {}).get("train")
    return float(elapsed) if elapsed is not None else None


def max_time_seconds(max_time: object) -> float | None:
    """``trainer.max_time`` (DD:HH:MM:SS, as the schema checked it) in seconds; None for no limit."""
    if not isinstance(max_time, str):
        return None
    days, hours, minutes, seconds = (int(part) for part in max_time.split(":"))
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def max_time_of(seconds: float) -> str:
    """``seconds`` as ``trainer.max_time`` takes it, DD:HH:MM:SS (a day or more included)."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"


def clock(seconds: float) -> str:
    """H:MM:SS."""
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
            line += f" left {clock(timer.time_remaining('train'))}"
        say(line)
        self._last, self._poems = now, 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the module's epoch-end hook has logged the epoch's metrics
        if not self.active or trainer.sanity_checking or not trainer.is_global_zero:
            return
        say(validation_line(trainer, pl_module))


def validation_line(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
    """``validation after epoch 2 (step 12): iw_nll/char 6.81 ppl 908 kl 3.2 mi 1.1 au 5``."""
    return (f"validation after epoch {trainer.current_epoch} (step {trainer.global_step}): "
            f"{_fmt(validation_metrics(trainer, pl_module), _VAL_KEYS)}")


def validation_metrics(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
    """This validation's metrics; the IW bound only where it was computed (callback_metrics would still hold an
    older epoch's)."""
    fresh_iw = getattr(pl_module, "iw_this_eval", True)
    return {name: float(value) for name, value in trainer.callback_metrics.items()
            if name.startswith("val/") and (fresh_iw or "/iw_" not in name)}


class RunReport(pl.Callback):
    """What every run says, whatever its callbacks config: each validation's metrics (printed where no progress bar
    or :class:`PlainProgress` shows them, always in train.log) and a summary at the end (:meth:`summary`)."""

    def __init__(self) -> None:
        self.validations: list[dict[str, float]] = []  # each with its "epoch" and "step"
        self.last_train: dict[str, float] = {}  # the last training batch's metrics (a test run clears them)
        self._started = time.monotonic()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.monotonic()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.last_train = {name: float(value) for name, value in trainer.callback_metrics.items()
                           if name.startswith("train/")}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = validation_metrics(trainer, pl_module)
        self.validations.append({**metrics, "epoch": trainer.current_epoch, "step": trainer.global_step})
        if not any(isinstance(callback, PlainProgress) and callback.active for callback in trainer.callbacks):
            say(validation_line(trainer, pl_module), console=trainer.progress_bar_callback is None)

    def summary(self, trainer: pl.Trainer, pl_module: pl.LightningModule, run_dir: Path) -> list[str]:
        """The run in a few lines: steps and time, the best validation bound, the final KL, the test bound (if
        tested), the checkpoints and the run directory."""
        epochs = trainer.current_epoch
        rows = [("steps", f"{trainer.global_step} in {epochs} epoch{'s' * (epochs != 1)} "
                          f"({clock(time.monotonic() - self._started)})"),
                best_validation(self.validations, int(pl_module.hparams.get("iw_samples_val", 0))),
                final_kl(self.validations, self.last_train)]
        test = trainer.callback_metrics.get("test/iw_nll_char")
        if test is not None:
            rows.append(("test IW-NLL", _per_char(float(test), int(pl_module.hparams.get("iw_samples_test", 0)))))
        rows += checkpoint_rows(trainer)
        rows.append(("run directory", str(run_dir)))
        return ["summary:"] + [f"  {label:<16} {value}" for label, value in rows if value]


def _per_char(nats: float, samples: int = 0) -> str:
    """``6.8123 nats/char (perplexity 910.3, K=10)``."""
    k = f", K={samples}" if samples else ""
    return f"{nats:.4f} nats/char (perplexity {math.exp(min(50.0, nats)):.1f}{k})"


def best_validation(validations: list[dict[str, float]], samples: int) -> tuple[str, str]:
    """The lowest validation IW-NLL per character, or the lowest -ELBO per character where no IW bound was
    computed (an upper bound on the NLL too)."""
    with_iw = [v for v in validations if "val/iw_nll_char" in v]
    if with_iw:
        best = min(with_iw, key=lambda v: v["val/iw_nll_char"])
        return "best val IW-NLL", f"{_per_char(best['val/iw_nll_char'], samples)} after epoch {best['epoch']:.0f}"
    bounds = [(neg_elbo_per_char(v), v) for v in validations]
    bounds = [(bound, v) for bound, v in bounds if bound is not None]
    if not bounds:
        return "validation", "none ran"
    bound, best = min(bounds, key=lambda pair: pair[0])
    return "best val -ELBO", f"{_per_char(bound)} after epoch {best['epoch']:.0f} (no IW bound computed)"


def neg_elbo_per_char(metrics: dict[str, float]) -> float | None:
    """-ELBO per character from the logged terms: nll_char = rec / positions, and -elbo = rec + kl, so
    -elbo / positions = -elbo * nll_char / rec (positions themselves are not logged)."""
    rec, per_char, elbo = (metrics.get(f"val/{name}") for name in ("rec", "nll_char", "elbo"))
    if rec is None or per_char is None or elbo is None or rec <= 0:
        return None
    return -elbo * per_char / rec


def final_kl(validations: list[dict[str, float]], last_train: dict[str, float]) -> tuple[str, str]:
    """The last validation's KL (nats per poem); the last training batch's where no validation ran."""
    if validations and "val/kl" in validations[-1]:
        last = validations[-1]
        return "final KL", f"{last['val/kl']:.3f} nats (validation after epoch {last['epoch']:.0f})"
    if "train/kl" in last_train:
        return "final KL", f"{last_train['train/kl']:.3f} nats (last training batch)"
    return "final KL", ""


def checkpoint_rows(trainer: pl.Trainer) -> list[tuple[str, str]]:
    """Where the best (by the monitored metric) and the last checkpoints are."""
    callbacks = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    # only files that exist (a callback can name a path it skipped writing)
    best = next((c.best_model_path for c in callbacks if c.monitor and Path(c.best_model_path).is_file()), "")
    last = next((c.last_model_path for c in callbacks if Path(c.last_model_path).is_file()), "")
    if not best and not last:
        return [("checkpoints", "none written")]
    return [("best checkpoint", best or "none"), ("last checkpoint", last or "none")]
