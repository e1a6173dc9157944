"""A training run's directory: which of its checkpoints is the best one."""

from __future__ import annotations

from pathlib import Path

import torch


def best_checkpoint(run: Path) -> Path:
    """The ``best-*.ckpt`` with the highest validation ELBO it was saved with (``last.ckpt`` where there is none).
    A run copied to a new directory and resumed there restarts ModelCheckpoint's tracking, so it may hold two such
    files, the newer one not the better."""
    best = list((Path(run) / "checkpoints").glob("best-*.ckpt"))
    if not best:
        return Path(run) / "checkpoints" / "last.ckpt"
    return max(best, key=lambda path: (saved_elbo(path), path.stat().st_mtime))  # ties: the newest


def saved_elbo(ckpt: Path) -> float:
    """The monitored validation ELBO stored by the ModelCheckpoint that wrote ``ckpt`` (-inf if none)."""
    states = torch.load(ckpt, weights_only=True, map_location="cpu").get("callbacks", {})
    scores = [state["current_score"] for name, state in states.items() if name.startswith("ModelCheckpoint")
              and state.get("monitor") == "val/elbo" and state.get("current_score") is not None]
    return float(scores[0]) if scores else float("-inf")
