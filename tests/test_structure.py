"""The decoder's view of the poem's structure: place codes at the input and the rhyme pointer at the output."""

from __future__ import annotations

import pytest
import torch

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PoetryVAEError
from poetry_vae.model import ModelConfig, PoemModel, build_model
from poetry_vae.model.stepper import LogitStepper
from poetry_vae.prosody.tables import rhymes

L = 5  # five-character lines: steps 0..19 the characters, 20 <eos>


@pytest.fixture(scope="module")
def vocab(corpus) -> Vocabulary:
    return Vocabulary.build([p.text for p in corpus], min_count=5)


def structured(vocab: Vocabulary, use_latent: bool = True, **kw) -> PoemModel:
    torch.manual_seed(0)
    sizes = dict(embed_dim=16, encoder_hidden=16, latent_dim=8, decoder_hidden=16, dropout=0.2, line_length=L,
                 place_dim=6, rhyme_dim=5, adaptive_cutoffs=[len(vocab) // 4, len(vocab) // 2])  # fmt: skip
    model = build_model({**sizes, "use_latent": use_latent, **kw}, vocab)
    with torch.no_grad():  # the learned parts start at zero; make every path visible to the tests
        model.decoder.rhyme_from_char.weight.normal_()
    return model.eval()


def poems_of(corpus, vocab: Vocabulary, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    texts = [p.text for p in corpus if all(c in vocab for c in p.text) and len(p.text) == 4 * L][:n]
    tokens = torch.tensor([vocab.encode(t) for t in texts])
    dec_in = torch.cat([torch.full((len(texts), 1), vocab.bos_id), tokens], dim=1)
    target = torch.cat([tokens, torch.full((len(texts), 1), vocab.eos_id)], dim=1)
    return dec_in, target


def test_rhyme_table_rows_are_the_shipped_classes(vocab) -> None:
    model = structured(vocab)
    table = model.decoder.rhyme_classes
    a, b, c = (vocab.index[ch] for ch in "东同西")  # 东 同 share 上平一东; 西 is 上平八齐
    assert float(table[a] @ table[b]) > 0 and float(table[a] @ table[c]) == 0
    assert torch.allclose(table[a].sum(), torch.tensor(1.0)) and float(table[vocab.pad_id].sum()) == 0
    assert rhymes("东", "同") and not rhymes("东", "西")


@pytest.mark.parametrize("output_layer", ["softmax", "adaptive"])
@pytest.mark.parametrize(("use_latent", "place_dim"), [(True, 6), (False, 6), (True, 0)])
def test_stepping_reproduces_teacher_forcing(corpus, vocab, output_layer: str, use_latent: bool, place_dim: int):
    """model.step (anchors as the stepper keeps them) and the fast stepper both give teacher forcing's numbers
    (place_dim 0: the rhyme pointer without place codes)."""
    model = structured(vocab, use_latent, output_layer=output_layer, z_to_output=use_latent, position_codes=4,
                       place_dim=place_dim)  # fmt: skip
    dec_in, _ = poems_of(corpus, vocab, 3)
    z = torch.randn(3, 8) if use_latent else None
    with torch.no_grad():
        forced = model.next_token_log_probs(dec_in, z)
        slow, fast = LogitStepper(model, z, 3), LogitStepper(model, z, 3)
        slow.fast = False
        assert fast.fast
        for t in range(dec_in.size(1)):
            for stepper in (slow, fast):
                log_probs = torch.log_softmax(stepper(dec_in[:, t])[:, : len(vocab)], dim=1)
                torch.testing.assert_close(log_probs, forced[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("output_layer", ["softmax", "adaptive"])
def test_bf16_stepping_stays_near_teacher_forcing(corpus, vocab, output_layer: str) -> None:
    """precision=bf16 runs the recurrence's and the output layer's matmuls (the softmax, or the adaptive head and
    tails) in bf16 and the rest in fp32: the log-probabilities move by bf16 rounding only, the rhyme steps'
    included."""
    model = structured(vocab, True, output_layer=output_layer, z_to_output=True, position_codes=4, place_dim=6)
    dec_in, _ = poems_of(corpus, vocab, 3)
    z = torch.randn(3, 8)
    with torch.no_grad():
        forced = model.next_token_log_probs(dec_in, z)
        stepper = LogitStepper(model, z, 3, dtype=torch.bfloat16)
        for t in range(dec_in.size(1)):
            log_probs = torch.log_softmax(stepper(dec_in[:, t])[:, : len(vocab)], dim=1)
            assert log_probs.dtype == torch.float32
            torch.testing.assert_close(log_probs, forced[:, t], atol=0.05, rtol=0.02)


def test_rhyme_pointer_reaches_the_rhyme_steps_only(corpus, vocab) -> None:
    """Changing line 2's last character changes what line 4's last step reads, and no other step before it except
    through the recurrence: with the LSTM's view of that character held fixed, only step 19 moves."""
    model = structured(vocab, use_latent=False)
    dec_in, _ = poems_of(corpus, vocab, 2)
    with torch.no_grad():
        hidden, _ = model.decoder.hidden(model._embed(dec_in), model.initial_state(None, 2), None,
                                         anchors=model.anchors(dec_in))  # fmt: skip
        other = model.anchors(dec_in).clone()
        other[:, 1] = vocab.index["西"] if vocab.tokens[int(other[0, 1])] != "西" else vocab.index["东"]
        moved, _ = model.decoder.hidden(model._embed(dec_in), model.initial_state(None, 2), None, anchors=other)
    changed = (hidden != moved).any(dim=2).any(dim=0)
    assert changed.nonzero().flatten().tolist() == [4 * L - 1]


def test_rhyme_pointer_hears_the_true_line_end_under_word_dropout(corpus, vocab) -> None:
    model = structured(vocab, use_latent=False)
    dec_in, _ = poems_of(corpus, vocab, 4)
    assert model.anchors(dec_in).tolist() == dec_in[:, [L, 2 * L]].tolist()
    short = dec_in[:, : L + 1]  # line 2 not written yet: its anchor is pad
    assert model.anchors(short)[:, 1].eq(vocab.pad_id).all()


def test_beams_move_the_anchors(corpus, vocab) -> None:
    model = structured(vocab, output_layer="adaptive")
    dec_in, _ = poems_of(corpus, vocab, 3)
    z, perm = torch.randn(3, 8), torch.tensor([2, 0, 0])
    with torch.no_grad():
        moved, built = LogitStepper(model, z, 3), LogitStepper(model, z[perm], 3)
        for t in range(4 * L - 1):
            moved(dec_in[:, t]), built(dec_in[perm, t])
        moved.reorder(perm)
        torch.testing.assert_close(moved(dec_in[perm, 4 * L - 1]), built(dec_in[perm, 4 * L - 1]))


def test_structure_config_errors() -> None:
    with pytest.raises(PoetryVAEError, match="rhyme_dim > 0 needs line_length"):
        ModelConfig(vocab_size=50, rhyme_dim=8)
    with pytest.raises(PoetryVAEError, match="line_length=-1"):
        ModelConfig(vocab_size=50, line_length=-1)
    with pytest.raises(PoetryVAEError, match="place_dim=-2"):
        ModelConfig(vocab_size=50, line_length=5, place_dim=-2)


def test_a_model_without_structure_is_unchanged(vocab) -> None:
    """Checkpoints of the earlier layout hold no place or rhyme weights and build the same parameter set."""
    plain = build_model({"embed_dim": 16, "encoder_hidden": 16, "latent_dim": 8, "decoder_hidden": 16}, vocab)
    names = set(plain.state_dict())
    assert not any("place" in n or "rhyme" in n for n in names)
    assert plain.decoder.lstm.input_size == 16 + 8
