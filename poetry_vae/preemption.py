"""A preempted run (SIGTERM from SLURM or Kubernetes) saves where it stopped and exits 143, so it gets requeued.

Lightning already handles the signal: its handler sets ``trainer.received_sigterm`` and the loops raise
``SIGTERMException`` at the next batch boundary. That exception is a ``SystemExit`` with status 0, and nothing is
saved, so a scheduler would think the job finished. We save last.ckpt from the ``on_exception`` hook, as Lightning's
``OnExceptionCheckpoint`` does (but on SIGTERM only, and without deleting the file at teardown as it does), and turn
the exit into a one-line error with status 128 + 15.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from poetry_vae.errors import PoetryVAEError


class Terminated(PoetryVAEError):
    """The run was stopped by SIGTERM; its process exits with the shell's status for that signal."""

    exit_code = 128 + signal.SIGTERM


class CheckpointOnSigterm(Callback):
    """Save ``<dirpath>/last.ckpt`` when training stops on SIGTERM (other errors leave last.ckpt as it was).

    A plain Callback, not a ``Checkpoint``: Lightning would count one as the run's checkpointing (no default
    ModelCheckpoint without a checkpoint config; an error under ``trainer.enable_checkpointing=false``)."""

    def __init__(self, dirpath: str | Path) -> None:
        self.ckpt_path = Path(dirpath) / "last.ckpt"
        self.saved: Path | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING:
            trainer.save_checkpoint(self.ckpt_path, weights_only=False)  # all of it: a resume point
            self.saved = self.ckpt_path


def terminated(trainer: pl.Trainer, saver: CheckpointOnSigterm) -> Terminated:
    """The one line a SIGTERM'd run ends with: where it stopped and what to resume from."""
    where = f"at epoch {trainer.current_epoch}, step {trainer.global_step}"
    if saver.saved is not None:
        return Terminated(f"terminated by SIGTERM {where}; checkpoint saved to {saver.saved}: resume with "
                          "ckpt_path=last")
    last = saver.ckpt_path
    kept = f"its last checkpoint is {last}" if last.is_file() else "no checkpoint was saved"
    during = " during the test after training," if trainer.state.fn == TrainerFn.TESTING else ""
    return Terminated(f"terminated by SIGTERM{during} {where}; {kept}")
