"""Safe checkpoint loading: ``weights_only=True`` always, one-line errors for missing, corrupt or foreign files.

Torch only: sampling and evaluation rebuild the model from the checkpoint's plain hyper-parameters, as nanoGPT's
``sample.py`` does, without importing Lightning.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from poetry_vae.atomic import holds_saved_tensors
from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import CheckpointError, CorpusError, PoetryVAEError
from poetry_vae.model import PoemModel, build_model

CHECKPOINT_FORMAT = "poetry_vae.checkpoint/1"  # written into every checkpoint by the LightningModule
SHIPPED_MODEL = "poet.pt"  # in poetry_vae/resources: what every command opens by default
MODEL_PREFIX = "model."  # a checkpoint's state_dict keys for the PoemModel (the LightningModule's .model)


@dataclass
class LoadedCheckpoint:
    model: PoemModel  # in eval mode
    vocab: Vocabulary
    hparams: dict[str, Any]
    global_step: int
    path: Path
    data_hparams: dict[str, Any]  # the QuatrainDataModule's arguments: rebuilds the same split and vocabulary

    @property
    def form(self) -> dict[str, int]:
        """The poem shape the model was trained on, ``line_length`` and ``num_lines`` (5 and 4 for a checkpoint
        written before they were recorded)."""
        return {"line_length": int(self.data_hparams.get("line_length", 5)),
                "num_lines": int(self.data_hparams.get("num_lines", 4))}


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device, or a one-line error where it does not exist on this machine."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise CheckpointError(f"device={device!r} is not a device: use cpu, cuda or cuda:<index>") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CheckpointError(f"device={device}: no CUDA GPU is available on this machine; use device=cpu")
        if resolved.index is not None and resolved.index >= count:
            raise CheckpointError(f"device={device}: this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})")
    elif resolved.type != "cpu":
        raise CheckpointError(f"device={device}: only cpu and cuda devices are supported")
    elif resolved.index not in (None, 0):  # torch accepts cpu:3, then fails loading onto it
        raise CheckpointError(f"device={device}: the CPU has no numbered devices; use device=cpu")
    return torch.device("cpu") if resolved.type == "cpu" else resolved  # cpu:0 is the CPU (torch.load refuses it)


def shipped_model(name: str | None = None) -> Path:
    """The path of a model shipped with the package (see ``resources/*_SOURCE.md`` for how each was made); no name:
    the one every command opens by default."""
    from importlib import resources

    return Path(str(resources.files("poetry_vae.resources").joinpath(f"{name}.pt" if name else SHIPPED_MODEL)))


def shipped_names() -> list[str]:
    """The shipped models by name (``poet``, ``poet_lm``, ...): what ``ckpt_path=<name>`` opens."""
    return sorted(path.stem for path in shipped_model().parent.glob("*.pt"))


def resolve_checkpoint(value: str | Path | None, key: str = "ckpt_path") -> Path:
    """The checkpoint ``ckpt_path`` (or the command's ``key``) names: null is the default shipped model; a shipped
    model's name (``poet_lm``) that is no file or folder here opens that model; a run dir or its checkpoints/ folder
    opens its last.ckpt; anything else is a file. Errors name ``key``."""
    if value is None:
        return shipped_model()
    choices = f"a run dir (outputs/<run>), a .ckpt file or one of {', '.join(shipped_names())}"
    if not str(value).strip():  # Path("") is the current folder
        default = f" (or leave it out for the shipped {SHIPPED_MODEL})" if key == "ckpt_path" else ""
        raise CheckpointError(f"{key} is empty: pass {choices}{default}")
    path = Path(str(value)).expanduser()
    if not path.exists() and str(value) in shipped_names():
        return shipped_model(str(value))
    if not path.exists() and not path.suffix and len(path.parts) == 1:
        raise CheckpointError(f"{key}={value} is neither a file, a run dir nor a shipped model: pass {choices}")
    if not path.is_dir():
        if not path.is_file():
            raise no_checkpoint_file(path, key)
        return path
    for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{key}={value} is a folder with neither checkpoints/last.ckpt nor last.ckpt in it: "
                          "pass a run dir (outputs/<run>), its checkpoints/ folder or a .ckpt file")


def why_no_file(path: Path) -> str:
    """Why ``path`` is no file to read a model from, as an error says it: a device or a pipe exists, but holds none."""
    return "is not a file" if path.exists() else "not found"


def no_checkpoint_file(path: Path, key: str = "ckpt_path") -> CheckpointError:
    """The error for a checkpoint path that is no file (missing, a device, a pipe), naming the command's ``key``."""
    return CheckpointError(f"checkpoint {path} {why_no_file(path)}: pass {key}=<run dir>/checkpoints/last.ckpt")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, loaded without unpickling arbitrary objects."""
    path = Path(path)
    map_location = check_device(map_location)
    if not path.is_file():
        raise no_checkpoint_file(path)
    if not holds_saved_tensors(path):
        raise CheckpointError(f"{path} is not a checkpoint (not a file written by torch.save): give one written by "
                              "python -m poetry_vae.train, e.g. <run dir>/checkpoints/last.ckpt")
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


@contextmanager
def built_from(path: str | Path) -> Iterator[None]:
    """What building a model (or a training module) from checkpoint ``path``'s contents raises, as one
    :class:`CheckpointError`: a missing key, an unknown config key or mismatched weights all mean a checkpoint that
    is incomplete or written by another version."""
    try:
        yield
    except (KeyError, TypeError, RuntimeError, CorpusError, PoetryVAEError) as error:
        reason = str(error).splitlines()[0]
        raise CheckpointError(f"checkpoint {path} is incomplete or from another version ({reason})") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """The trained model (eval mode) and its vocabulary from a training checkpoint."""
    data = read_checkpoint(path, map_location)
    with built_from(path):
        hparams = data["hyper_parameters"]
        vocab = Vocabulary.from_dict(hparams["vocab"], f"the vocabulary inside {path}")
        model = build_model(hparams["model"], vocab)
        state = {k[len(MODEL_PREFIX) :]: v for k, v in data["state_dict"].items() if k.startswith(MODEL_PREFIX)}
        model.load_state_dict(state)
    model.to(map_location).eval()
    return LoadedCheckpoint(model, vocab, dict(hparams), int(data.get("global_step", 0)), Path(path),
                            dict(data.get("datamodule_hyper_parameters") or {}))
