"""Build a PoemVAE from plain hyper-parameters and its vocabulary: what a checkpoint stores is enough (no Lightning)."""

from __future__ import annotations

from typing import Any

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.model.config import VAEConfig
from poetry_vae.model.vae import PoemVAE


def build_model(model: dict[str, Any], vocab: Vocabulary) -> PoemVAE:
    """The PoemVAE of a ``model`` hyper-parameter dict; sizes and special ids come from the vocabulary."""
    ids = {"pad_id": vocab.pad_id, "bos_id": vocab.bos_id, "eos_id": vocab.eos_id, "unk_id": vocab.unk_id}
    return PoemVAE(VAEConfig.from_dict({**model, **ids, "vocab_size": len(vocab)}))
