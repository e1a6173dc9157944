"""What the latent does: reconstruction, homotopy and prior diversity, on hand-made models whose answers are known
(a perfect autoencoder, a decoder that ignores z), on the LM baseline, and on a real tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY_POEMS
from hydra import compose, initialize_config_dir
from torch import Tensor, nn

from poetry_vae.checkpoint import load_checkpoint
from poetry_vae.cli import CONFIG_DIR
from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PromptError
from poetry_vae.evaluate import evaluate
from poetry_vae.layout import split_lines
from poetry_vae.metrics.latent_use import (
    char_accuracy,
    char_difference,
    forced_accuracy,
    homotopy_stats,
    homotopy_walks,
    latent_measures,
    mean_bleu2,
    poem_chars,
    posterior_means,
    prior_diversity,
    reconstruction_accuracy,
)
from poetry_vae.model import ModelConfig, PoemModel, build_model

POEMS = ["".join(split_lines(p)) for p in TINY_POEMS]


class StubVAE(nn.Module):
    """A 'model' for the decoding loop: z holds the 20 token ids of a poem (as floats) and the decoder spells them
    out (``copy=True``, a perfect autoencoder), or spells one fixed poem whatever z (``copy=False``). With
    ``hashed`` each coordinate of z picks a character by hashing it (random codes give random poems)."""

    def __init__(self, vocab: Vocabulary, copy: bool, fixed: str = POEMS[0], hashed: bool = False) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(use_latent=True, latent_dim=20, bos_id=vocab.bos_id, num_forms=0,
                                   vocab_size=len(vocab))
        self.dummy = nn.Parameter(torch.zeros(1))  # the decoding loop reads the device from a parameter
        self.copy, self.hashed, self.vocab_size = copy, hashed, len(vocab)
        self.fixed = torch.tensor(vocab.encode(fixed), dtype=torch.float)

    def encode(self, tokens: Tensor, form: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return tokens.float(), torch.zeros(tokens.shape)

    encode_in_batches = PoemModel.encode_in_batches  # the model's batching over the stub's encode

    def initial_state(self, z: Tensor, n: int) -> tuple[Tensor, Tensor]:
        return z.clone(), torch.zeros(n, dtype=torch.long)

    def step(self, prev: Tensor, state: tuple[Tensor, Tensor], z: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        codes, t = state
        source = codes if self.copy else self.fixed.expand_as(codes)
        wanted = source.gather(1, t.unsqueeze(1))
        if self.hashed:
            wanted = 4 + (wanted.abs() * 9973).floor() % (self.vocab_size - 4)
        wanted = wanted.round().long().clamp(0, self.vocab_size - 1)
        log_probs = torch.full((len(prev), self.vocab_size), -30.0).scatter(1, wanted, 0.0)
        return log_probs, (codes, t + 1)


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.build(POEMS)


# ---- the pure scores ----


def test_char_accuracy_and_difference() -> None:
    assert char_accuracy(["abcd", "wxyz"], ["abcd", "wxqq"]) == pytest.approx(6 / 8)
    assert char_accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        char_accuracy(["a"], [])
    assert char_difference("abcd", "abed") == 1
    assert char_difference(POEMS[0], POEMS[1]) == sum(a != b for a, b in zip(POEMS[0], POEMS[1], strict=True))


def test_bleu2_is_one_for_copies_and_low_for_strangers() -> None:
    assert mean_bleu2(POEMS, POEMS) == pytest.approx(1.0)
    assert mean_bleu2(POEMS[:4], POEMS[4:]) < 0.2


# ---- hand-made models with known answers ----


def test_perfect_autoencoder_reconstructs_everything(vocab: Vocabulary) -> None:
    result = reconstruction_accuracy(StubVAE(vocab, copy=True), vocab, TINY_POEMS)
    assert result == {"recon_char_acc": pytest.approx(1.0), "recon_bleu2": pytest.approx(1.0)}


def test_perfect_autoencoder_walks_between_its_endpoints(vocab: Vocabulary) -> None:
    model = StubVAE(vocab, copy=True)
    walks = homotopy_walks(model, vocab, TINY_POEMS, pairs=10, steps=7, seed=3)
    assert len(walks) == 10 and all(len(w) == 7 for w in walks)
    for walk in walks:
        assert walk[0] in POEMS and walk[-1] in POEMS and walk[0] != walk[-1]  # the endpoints are the two poems
    stats = homotopy_stats(model, vocab, TINY_POEMS, pairs=10, steps=7, seed=3)
    expected = sum(char_difference(w[0], w[-1]) for w in walks) / 10
    assert stats["homotopy_endpoint_diff"] == pytest.approx(expected) and expected >= 15
    assert stats["homotopy_distinct"] > 2


def test_decoder_ignoring_z_gives_one_poem(vocab: Vocabulary) -> None:
    model = StubVAE(vocab, copy=False, fixed=POEMS[2])
    stats = homotopy_stats(model, vocab, TINY_POEMS, pairs=5)
    assert stats == {"homotopy_distinct": 1.0, "homotopy_endpoint_diff": 0.0}
    diversity = prior_diversity(model, vocab, n=20)
    lines = split_lines(TINY_POEMS[2])
    assert diversity["prior_distinct_2"] == pytest.approx(len({ln[i:i + 2] for ln in lines for i in range(4)}) / 320)
    assert diversity["prior_self_bleu"] == pytest.approx(1.0)
    recon = reconstruction_accuracy(model, vocab, TINY_POEMS)
    assert recon["recon_char_acc"] == pytest.approx(char_accuracy([POEMS[2]] * 8, POEMS))


def test_prior_diversity_of_a_copying_decoder_is_high(vocab: Vocabulary) -> None:
    """A decoder that turns every random prior code into its own random poem: little in common."""
    diversity = prior_diversity(StubVAE(vocab, copy=True, hashed=True), vocab, n=50)
    assert diversity["prior_distinct_2"] > 0.5 and diversity["prior_self_bleu"] < 0.5


# ---- real models ----


def test_lm_baseline_measures_are_defined(tiny_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    lm = build_model({**ckpt.hparams["model"], "use_latent": False, "z_to_initial_state": False,
                      "z_to_every_input": False}, ckpt.vocab).eval()
    measures = latent_measures(lm, ckpt.vocab, TINY_POEMS, homotopy_pairs=4, prior_samples=10)
    assert measures["homotopy_distinct"] == 1.0 and measures["homotopy_endpoint_diff"] == 0.0
    assert measures["prior_self_bleu"] == pytest.approx(1.0)
    assert 0.0 <= measures["recon_char_acc"] <= 1.0 and measures["prior_distinct_2"] <= 16 / 160 + 1e-9


def test_tiny_checkpoint_measures_in_range(tiny_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    measures = latent_measures(ckpt.model, ckpt.vocab, TINY_POEMS, homotopy_pairs=6, prior_samples=12, seed=1)
    assert 0.0 <= measures["recon_char_acc"] <= 1.0 and 0.0 <= measures["recon_bleu2"] <= 1.0
    assert 1.0 <= measures["homotopy_distinct"] <= 7.0 and 0.0 <= measures["homotopy_endpoint_diff"] <= 20.0
    assert 0.0 < measures["prior_distinct_2"] <= 1.0
    again = latent_measures(ckpt.model, ckpt.vocab, TINY_POEMS, homotopy_pairs=6, prior_samples=12, seed=1)
    assert again == measures  # greedy and seeded: reproducible


def test_evaluate_writes_the_latent_measures(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt_path={tiny_checkpoint.parents[1]}", "iw_samples=2", "split=val",
                                             "homotopy_pairs=3", "prior_samples=8", f"out={out}"])
    metrics = evaluate(cfg)  # a run dir: its last.ckpt, named where it loads and in the file
    assert capsys.readouterr().out.startswith(f"loading {tiny_checkpoint} and the val split")
    assert json.loads(out.read_text("utf-8"))["checkpoint"] == str(tiny_checkpoint)
    saved = json.loads(out.read_text("utf-8"))["metrics"]
    for key in ("recon_char_acc", "recon_bleu2", "recon_forced_acc", "homotopy_distinct", "homotopy_endpoint_diff",
                "prior_distinct_2",
                "prior_self_bleu"):
        assert f"val/{key}" in saved and saved[f"val/{key}"] == metrics[f"val/{key}"]
    assert "val/iw_nll_char" in saved


@pytest.mark.parametrize("use_latent", [True, False])
def test_forced_accuracy_is_the_argmax_of_each_step_given_the_true_prefix(vocab: Vocabulary, use_latent: bool) -> None:
    """Teacher-forced accuracy equals stepping model.step along each poem's true characters from its posterior
    mean (or without z for the LM) and counting the steps whose most likely character is the poem's."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(vocab), embed_dim=16, encoder_hidden=16, latent_dim=8, decoder_hidden=16,
                    use_latent=use_latent, z_to_initial_state=use_latent, z_to_every_input=use_latent,
                    position_codes=8, output_layer="softmax")  # fmt: skip
    model = PoemModel(cfg)
    tokens = torch.tensor([vocab.encode(poem_chars(p)) for p in TINY_POEMS])
    dec_in = torch.cat([torch.full_like(tokens[:, :1], vocab.bos_id), tokens[:, :-1]], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(15):  # a few steps, so that some argmaxes are right and some are not
        optimizer.zero_grad()
        model(tokens, dec_in, tokens).rec.mean().backward()
        optimizer.step()
    model.eval()
    z = model.encode(tokens)[0] if use_latent else None
    state, prev, right = model.initial_state(z, len(tokens)), torch.full((len(tokens),), vocab.bos_id), 0
    with torch.no_grad():
        for t in range(tokens.size(1)):
            log_probs, state = model.step(prev, state, z, position=t)
            right += int((log_probs.argmax(1) == tokens[:, t]).sum())
            prev = tokens[:, t]
    measured = forced_accuracy(model, vocab, TINY_POEMS)["recon_forced_acc"]
    assert measured == pytest.approx(right / tokens.numel()) and 0.0 < measured < 1.0


def test_poems_to_encode_are_one_or_more_of_one_form(vocab: Vocabulary) -> None:
    model = PoemModel(ModelConfig(vocab_size=len(vocab), embed_dim=8, encoder_hidden=8, latent_dim=4,
                                  decoder_hidden=8, output_layer="softmax"))
    with pytest.raises(PromptError, match=r"^no poems to encode"):
        posterior_means(model, vocab, [])
    with pytest.raises(PromptError, match=r"^poems of 10, 20 characters to encode"):
        posterior_means(model, vocab, ["床前明月光疑是地上霜举头望明月低头思故乡", "床前明月光疑是地上霜"])
