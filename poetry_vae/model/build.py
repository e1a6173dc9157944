"""Build a PoemModel from plain hyper-parameters and its vocabulary: a checkpoint's contents suffice (no Lightning)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.model.config import ModelConfig
from poetry_vae.model.poem_model import PoemModel
from poetry_vae.prosody.masks import build_masks


def build_model(model: dict[str, Any], vocab: Vocabulary) -> PoemModel:
    """The PoemModel of a ``model`` hyper-parameter dict; sizes and special ids come from the vocabulary."""
    ids = {"pad_id": vocab.pad_id, "bos_id": vocab.bos_id, "eos_id": vocab.eos_id, "unk_id": vocab.unk_id}
    built = PoemModel(ModelConfig.from_dict({**model, **ids, "vocab_size": len(vocab)}))
    if built.cfg.rhyme_dim:
        for part in (built, built.lm) if built.lm is not None else (built,):  # a fused LM reads the table too
            part.decoder.rhyme_classes.copy_(rhyme_class_table(vocab.tokens))
    return built


def rhyme_class_table(tokens: list[str]) -> Tensor:
    """(len(tokens), 平水韵 classes): each character's classes, its row summing to 1 (zeros: no class known)."""
    table = build_masks(tokens, "pingshui").rhyme.t().float()
    return table / table.sum(dim=1, keepdim=True).clamp(min=1.0)
