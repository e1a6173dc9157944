"""What the study scripts open first: a VAE checkpoint in float32 eval mode with its data, or one line of error."""

from __future__ import annotations

from poetry_vae.checkpoint import LoadedCheckpoint, load_checkpoint, resolve_checkpoint
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.model.poem_model import PoemModel


def open_vae(ckpt: str, needs: str) -> tuple[LoadedCheckpoint, PoemModel, QuatrainDataModule]:
    """The checkpoint ``ckpt`` (a shipped name, a run directory or a .ckpt), its model and its data module (set up);
    a language model exits with one line saying it lacks ``needs``."""
    loaded = load_checkpoint(resolve_checkpoint(ckpt))
    model = loaded.model.float().eval()
    if model.encoder is None:
        raise SystemExit(f"error: {ckpt} is a language model: it has no {needs}")
    datamodule = QuatrainDataModule.for_checkpoint(loaded.data_hparams, loaded.vocab, ckpt)
    datamodule.setup()
    return loaded, model, datamodule
