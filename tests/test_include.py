"""``include``: every poem uses one of the given characters, under every strategy and with the prosody on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from poetry_vae.checkpoint import load_checkpoint
from poetry_vae.errors import PromptError
from poetry_vae.generation.decoding import generate, sample_prior
from poetry_vae.generation.request import DecodeRequest


@pytest.mark.parametrize("options", [
    {"strategy": "greedy"}, {"strategy": "top_p"}, {"strategy": "beam", "beam_size": 3},
    {"strategy": "top_p", "rhyme": "pingshui", "tone": "auto"},
    {"strategy": "top_p", "first_line": "白日依山尽", "no_repeat": True},
])
def test_every_poem_includes_a_marker(tiny_checkpoint: Path, options: dict) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    generator = torch.Generator().manual_seed(0)
    z = sample_prior(ckpt.model, 12, generator)
    poems = generate(ckpt.model, ckpt.vocab, z, DecodeRequest(include="月霜", **options), generator)
    assert all(set("月霜") & set("".join(p.lines)) for p in poems)
    assert all(all(p.constraints.values()) and "include" in p.constraints for p in poems)
    if "first_line" in options:
        assert all(p.lines[0] == "白日依山尽" for p in poems)


def test_without_include_the_marker_is_rare_and_unchecked(tiny_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    generator = torch.Generator().manual_seed(0)
    poems = generate(ckpt.model, ckpt.vocab, sample_prior(ckpt.model, 40, generator), DecodeRequest(), generator)
    assert "include" not in poems[0].constraints
    assert sum("霜" in "".join(p.lines) for p in poems) < 40


def test_an_unknown_include_character_is_one_line(tiny_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    with pytest.raises(PromptError, match="include"):
        generate(ckpt.model, ckpt.vocab, sample_prior(ckpt.model, 2), DecodeRequest(include="x"))
