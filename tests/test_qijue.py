"""七言绝句 end to end: a tiny model trained on data=qijue writes 4 × 7 poems that hold every requested constraint."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import train_tiny_checkpoint

from poetry_vae.checkpoint import load_checkpoint
from poetry_vae.errors import PromptError
from poetry_vae.generation import DecodeRequest, generate, sample_prior
from poetry_vae.layout import is_format_valid
from poetry_vae.prosody import fits_pattern, rhymes


@pytest.fixture(scope="module")
def qijue_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_checkpoint(tmp_path_factory, "qijue", "data=qijue")


def _request(ckpt, **kwargs) -> DecodeRequest:
    return DecodeRequest(line_length=int(ckpt.data_hparams["line_length"]), **kwargs)


@pytest.mark.parametrize("strategy", ["top_p", "beam"])
def test_rhymed_regulated_qijue(qijue_checkpoint: Path, strategy: str) -> None:
    ckpt = load_checkpoint(qijue_checkpoint)
    assert ckpt.data_hparams["line_length"] == 7
    request = _request(ckpt, strategy=strategy, rhyme="pingshui", tone="auto", beam_size=2)
    poems = generate(ckpt.model, ckpt.vocab, sample_prior(ckpt.model, 12), request)
    for poem in poems:
        assert is_format_valid(poem.text, 7, 4) and all(len(line) == 7 for line in poem.lines)
        assert poem.constraints == {"format": True, "tone": True, "rhyme": True}
        assert fits_pattern(poem.lines, poem.pattern, line_length=7)  # checked again, independently
        assert rhymes(poem.lines[1][-1], poem.lines[3][-1], "pingshui")


def test_qijue_prompts(qijue_checkpoint: Path) -> None:
    ckpt = load_checkpoint(qijue_checkpoint)
    first = "朝辞白帝彩云间"
    poems = generate(ckpt.model, ckpt.vocab, sample_prior(ckpt.model, 4),
                     _request(ckpt, first_line=first, rhyme="pingshui", tone="auto"))
    assert all(p.lines[0] == first and all(p.constraints.values()) for p in poems)
    poems = generate(ckpt.model, ckpt.vocab, sample_prior(ckpt.model, 4), _request(ckpt, acrostic="春夏秋冬"))
    assert all([line[0] for line in p.lines] == list("春夏秋冬") for p in poems)
    with pytest.raises(PromptError, match="this model writes lines of 7 characters"):
        generate(ckpt.model, ckpt.vocab, sample_prior(ckpt.model, 1), _request(ckpt, first_line="白日依山尽"))
