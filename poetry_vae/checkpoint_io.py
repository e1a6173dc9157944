"""Checkpoints written whole or not at all, next to where they belong.

Lightning's own writer stages the file in the system temp folder and moves it: across filesystems that move is a
copy over the old checkpoint, so a disk that fills mid-copy destroys the previous last.ckpt. Here the bytes go
to a temporary sibling that replaces the checkpoint by an atomic rename; if the write fails, the previous one
stays as it was.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from poetry_vae.atomic import atomic_write


def write_checkpoint_file(checkpoint: dict[str, Any], path: Path) -> None:
    """Serialise in memory, then write with plain file I/O: a full disk raises ``OSError(ENOSPC)`` naming no
    C++ internals (torch's own file writer reports it as a RuntimeError)."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


class AtomicCheckpointIO(TorchCheckpointIO):
    """The Trainer's checkpoint writer (loading is Lightning's own)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        try:
            atomic_write(path, lambda tmp: write_checkpoint_file(checkpoint, tmp))
        except OSError as error:
            error.filename = str(path)  # the checkpoint, not its temporary sibling (a failed write() names none)
            raise
