"""The learned-rhyme measures, checked against a computation by another path (model.step and the string checker)."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.metrics.rhyme import learned_rhyme_rate, rhyme_mass
from poetry_vae.model import build_model
from poetry_vae.prosody.tables import rhymes

L = 5


@pytest.fixture(scope="module")
def vocab(corpus) -> Vocabulary:
    return Vocabulary.build([p.text for p in corpus], min_count=5)


def model_of(vocab: Vocabulary, **kw):
    torch.manual_seed(0)
    sizes = dict(embed_dim=16, encoder_hidden=16, latent_dim=8, decoder_hidden=16, line_length=L, rhyme_dim=4)
    model = build_model({**sizes, **kw}, vocab).eval()
    with torch.no_grad():
        model.decoder.rhyme_from_class.weight.normal_(std=3.0)  # a model with opinions about rhyme
    return model


def test_rhyme_mass_is_the_stepped_probability_of_rhyming_characters(corpus, vocab) -> None:
    # every line-2 end with a rhyme class, so the measure keeps every poem
    texts = [p.text for p in corpus if all(c in vocab for c in p.text) and rhymes(p.text[9], p.text[9])][:6]
    ids = torch.tensor([[vocab.bos_id, *vocab.encode(t)] for t in texts])
    model = model_of(vocab)
    mass = rhyme_mass(model, vocab, ids, L, torch.Generator().manual_seed(3))
    z = torch.randn(len(texts), 8, generator=torch.Generator().manual_seed(3))  # the same prior draws
    expected = []
    with torch.no_grad():
        state = model.initial_state(z, len(texts))
        anchors = torch.full((len(texts), 2), vocab.pad_id)
        for t in range(4 * L):
            if t in (L, 2 * L):
                anchors[:, t // L - 1] = ids[:, t]
            log_probs, state = model.step(ids[:, t], state, z, position=t, anchors=anchors)
        for row, text in enumerate(texts):
            rhyming = [i for i, tok in enumerate(vocab.tokens) if len(tok) == 1 and rhymes(tok, text[2 * L - 1])]
            expected.append(float(log_probs[row, rhyming].exp().sum()))
    assert 0 < mass < 1
    assert mass == pytest.approx(sum(expected) / len(expected), abs=1e-5)


def test_learned_rhyme_rate_moves_with_the_rhyme_pointer(vocab) -> None:
    """A decoder whose line-4 ending is pushed onto line 2's rhyme classes rhymes more than one pushed off them."""
    rates = []
    for sign in (1.0, -1.0):
        model = model_of(vocab, use_latent=False, output_layer="softmax", rhyme_dim=106)
        with torch.no_grad():  # the rhyme feature is the anchor's classes; the output adds sign * 20 * shared class
            classes = model.decoder.rhyme_classes  # (V, C), C = 106
            model.decoder.rhyme_from_class.weight.copy_(torch.cat([torch.eye(106), torch.eye(106)]))
            model.decoder.out.weight[:, -106:] = sign * 20 * (classes > 0).float()
        rates.append(learned_rhyme_rate(model, vocab, 100, L, torch.Generator().manual_seed(0)))
    assert rates[0] > 0.5 > rates[1]


def test_training_logs_the_rhyme_curve(tmp_path) -> None:
    out = tmp_path / "runs"
    overrides = ["debug=tiny", "callbacks=default", "logger=csv", "trainer.max_epochs=1", "model.line_length=5",
                 "model.rhyme_dim=4", f"paths.output_root={out}"]  # debug runs default to the checkpoints only
    subprocess.run([sys.executable, "-m", "poetry_vae.train", *overrides], check=True, capture_output=True)
    rows = [r for path in out.rglob("metrics.csv") for r in csv.DictReader(path.read_text("utf-8").splitlines())]
    logged = [r for r in rows if r.get("val/rhyme_rate")]
    assert logged and all(0 <= float(r["val/rhyme_rate"]) <= 1 and 0 <= float(r["val/rhyme_mass"]) <= 1
                          for r in logged)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_rhyme_measures_run_where_the_model_is(corpus, vocab) -> None:
    """The probe hands CPU data to a model on the GPU (a GPU run's first validation crashed on it once)."""
    texts = [p.text for p in corpus if all(c in vocab for c in p.text)][:6]
    ids = torch.tensor([[vocab.bos_id, *vocab.encode(t)] for t in texts])
    model = model_of(vocab).cuda()
    generator = torch.Generator(device="cuda").manual_seed(3)
    assert 0 <= rhyme_mass(model, vocab, ids, L, generator) <= 1
    assert 0 <= learned_rhyme_rate(model, vocab, 8, L, generator) <= 1
