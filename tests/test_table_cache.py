"""The decoding stepper's weight-only tables are made once per model and made again when its weights change."""

from __future__ import annotations

import pytest
import torch

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.model import build_model
from poetry_vae.model.stepper import LogitStepper
from poetry_vae.model.table_cache import cached_tables, weights_fingerprint


@pytest.fixture(scope="module")
def vocab(corpus) -> Vocabulary:
    return Vocabulary.build([p.text for p in corpus], min_count=5)


def small_model(vocab: Vocabulary):
    torch.manual_seed(0)
    sizes = dict(embed_dim=16, encoder_hidden=16, latent_dim=8, decoder_hidden=16, line_length=5, place_dim=6,
                 position_codes=4, z_to_output=True, output_layer="adaptive",
                 adaptive_cutoffs=[len(vocab) // 4, len(vocab) // 2])  # fmt: skip
    return build_model(sizes, vocab).eval()


def first_steps(model, z: torch.Tensor, steps: int = 3) -> list[torch.Tensor]:
    """A fresh stepper's log-probs for ``steps`` steps fed the same tokens, beside model.step's."""
    stepper = LogitStepper(model, z, z.shape[0])
    state, prev, out = model.initial_state(z, z.shape[0]), torch.full((z.shape[0],), 5), []
    for t in range(steps):
        got = stepper(prev)[:, : model.cfg.vocab_size]
        want, state = model.step(prev, state, z, position=t)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        out.append(got.clone())
    return out


def test_a_second_stepper_reads_the_same_tables(vocab) -> None:
    model, z = small_model(vocab), torch.randn(4, 8)
    with torch.no_grad():
        first, second = LogitStepper(model, z, 4), LogitStepper(model, z, 4)
    assert first.token_gates is second.token_gates and first.head_w is second.head_w
    assert first.head_b is not second.head_b  # z's share: per request


def test_tables_follow_a_weight_written_in_place(vocab) -> None:
    """An optimiser step or load_state_dict writes the weights in place: the next stepper sees the new weights."""
    model, z = small_model(vocab), torch.randn(4, 8)
    with torch.no_grad():
        before = first_steps(model, z)
        model.decoder.lstm.weight_hh_l0.mul_(1.5)  # the recurrent weight the cached tables transpose
        model.embed.weight.add_(0.3)  # the token table's input
        after = first_steps(model, z)  # each step checked against model.step's, with the new weights
    assert not torch.allclose(before[-1], after[-1])


def test_tables_follow_a_replaced_weight(vocab) -> None:
    model, z = small_model(vocab), torch.randn(4, 8)
    with torch.no_grad():
        first_steps(model, z)
        model.decoder.out.head.weight = torch.nn.Parameter(torch.randn_like(model.decoder.out.head.weight))
        first_steps(model, z)


def test_a_model_made_in_inference_mode_is_not_cached(vocab) -> None:
    """Inference tensors count no writes, so their tables are made for each request."""
    with torch.inference_mode():
        model = small_model(vocab)
        assert weights_fingerprint(model) is None
        made = []
        cached_tables(model, "k", lambda: made.append(1))
        cached_tables(model, "k", lambda: made.append(1))
    assert len(made) == 2
