"""Safe checkpoint loading: ``weights_only=True`` always, one-line errors for missing, corrupt or foreign files."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import CheckpointError, CorpusError, PoetryVAEError
from poetry_vae.lit_module import CHECKPOINT_FORMAT, build_model
from poetry_vae.model import PoemVAE

_MODEL_PREFIX = "model."


@dataclass
class LoadedCheckpoint:
    model: PoemVAE  # in eval mode
    vocab: Vocabulary
    hparams: dict[str, Any]
    global_step: int
    path: Path
    data_hparams: dict[str, Any]  # the QuatrainDataModule's arguments: rebuilds the same split and vocabulary


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, loaded without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found: pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()[0] if str(error) else "unsupported object"
        raise CheckpointError(
            f"checkpoint {path} holds objects that are unsafe to unpickle ({reason}); refusing to load it"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason}): use another checkpoint") from None
    if not isinstance(data, dict) or data.get("poetry_vae_format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a poetry_vae checkpoint (no '{CHECKPOINT_FORMAT}' tag; a bare state_dict or another "
            "project's file?): pass a checkpoint written by python -m poetry_vae.train"
        )
    return data


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """The trained model (eval mode) and its vocabulary from a training checkpoint."""
    data = read_checkpoint(path, map_location)
    try:
        hparams = data["hyper_parameters"]
        vocab = Vocabulary.from_dict(hparams["vocab"], f"the vocabulary inside {path}")
        model = build_model(hparams["model"], vocab)
        state = {k[len(_MODEL_PREFIX) :]: v for k, v in data["state_dict"].items() if k.startswith(_MODEL_PREFIX)}
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, CorpusError, PoetryVAEError) as error:
        reason = str(error).splitlines()[0]
        raise CheckpointError(f"checkpoint {path} is incomplete or from another version ({reason})") from None
    model.to(map_location).eval()
    return LoadedCheckpoint(model, vocab, dict(hparams), int(data.get("global_step", 0)), Path(path),
                            dict(data.get("datamodule_hyper_parameters") or {}))
