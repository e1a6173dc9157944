"""A language model fused beside the decoder (model.lm_fusion): the mixture a step draws from, the frozen LM, and
that every decoding path gives teacher forcing's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_train_config, train_tiny_checkpoint
from hydra import compose, initialize_config_dir

from poetry_vae.checkpoint import load_checkpoint, read_checkpoint
from poetry_vae.checkpoint_io import write_checkpoint_file
from poetry_vae.cli import CONFIG_DIR
from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import CheckpointError, PoetryVAEError
from poetry_vae.fuse_lm import fuse_lm
from poetry_vae.generation import DecodeRequest, generate, sample_prior
from poetry_vae.model import ModelConfig, PoemModel, build_model, poem_model
from poetry_vae.model.stepper import LogitStepper
from poetry_vae.train import train

L = 5


@pytest.fixture(scope="module")
def vocab(corpus) -> Vocabulary:
    return Vocabulary.build([p.text for p in corpus], min_count=5)


def fused(vocab: Vocabulary, **kw) -> PoemModel:
    torch.manual_seed(0)
    sizes = dict(embed_dim=16, encoder_hidden=16, latent_dim=8, decoder_hidden=16, dropout=0.2, line_length=L,
                 place_dim=6, rhyme_dim=5, z_to_output=True, position_codes=4, num_forms=2,
                 adaptive_cutoffs=[len(vocab) // 4, len(vocab) // 2])  # fmt: skip
    model = build_model({**sizes, "lm_fusion": True, **kw}, vocab)
    with torch.no_grad():  # distinct per-place weights, so a step that reads the wrong place is caught
        model.decoder.fusion.uniform_(-0.5, 1.5)
        for part in (model, model.lm):
            part.decoder.rhyme_from_char.weight.normal_()
    return model.eval()


def poems_of(corpus, vocab: Vocabulary, n: int) -> torch.Tensor:
    texts = [p.text for p in corpus if all(c in vocab for c in p.text) and len(p.text) == 4 * L][:n]
    tokens = torch.tensor([vocab.encode(t) for t in texts])
    return torch.cat([torch.full((len(texts), 1), vocab.bos_id), tokens], dim=1)


@pytest.mark.parametrize("block", [7, 448])
def test_a_step_draws_from_the_weighted_mixture(corpus, vocab, block: int, monkeypatch) -> None:
    """log p = log_softmax(a_t * log p_LM + b_t * log p_decoder), a_t and b_t the place's weights, scored in
    blocks of positions that need not start a poem."""
    monkeypatch.setattr(poem_model, "FUSED_ROWS", block)
    model = fused(vocab)
    dec_in = poems_of(corpus, vocab, 3)
    z, form = torch.randn(3, 8), torch.tensor([0, 1, 1])
    with torch.no_grad():
        mixed = model.next_token_log_probs(dec_in, z, form)
        lm = model.lm.next_token_log_probs(dec_in, None, form)
        hidden = model._forced_hidden(dec_in, z, form, model.anchors(dec_in))
        own = model.decoder.log_probs(hidden).view(*dec_in.shape, -1)
    w = model.decoder.fusion.detach()[: dec_in.size(1)]
    expected = torch.log_softmax(w[:, :1] * lm + w[:, 1:] * own, dim=-1)
    torch.testing.assert_close(mixed, expected)
    target = torch.cat([dec_in[:, 1:], torch.full((3, 1), vocab.eos_id)], dim=1)
    assert_scores_targets(model, dec_in, target, z, form, mixed)


def assert_scores_targets(model: PoemModel, dec_in: torch.Tensor, target: torch.Tensor, z: torch.Tensor,
                          form: torch.Tensor, mixed: torch.Tensor) -> None:
    """token_log_probs gives the whole distributions' (``mixed``) target entries, and K codes a poem (the IW bound's
    layout, where the language model scores each poem once for all K copies) score as each copy alone."""
    scored = model.token_log_probs(dec_in, target, z, form=form)
    torch.testing.assert_close(scored, mixed.gather(-1, target.unsqueeze(-1)).squeeze(-1))
    n = dec_in.size(0)
    codes = torch.randn(2 * n, z.size(1))
    with torch.no_grad():
        shared = model.token_log_probs(dec_in.repeat(2, 1), target.repeat(2, 1), codes, form=form.repeat(2), copies=2)
        alone = torch.cat([model.token_log_probs(dec_in, target, codes[k * n : (k + 1) * n], form=form)
                           for k in range(2)])  # fmt: skip
    torch.testing.assert_close(shared, alone)


@pytest.mark.parametrize("output_layer", ["softmax", "adaptive"])
def test_stepping_reproduces_teacher_forcing(corpus, vocab, output_layer: str) -> None:
    """model.step and the stepper (the decoder's and the LM's laid-out steps, mixed) give teacher forcing's
    numbers, whole or a block of rows at a time (the sampler's row blocks); beams that reorder move both
    recurrences."""
    model = fused(vocab, output_layer=output_layer)
    dec_in = poems_of(corpus, vocab, 3)
    z = torch.randn(3, 8)
    with torch.no_grad():
        forced = model.next_token_log_probs(dec_in, z)
        stepper, state = LogitStepper(model, z, 3), model.initial_state(z, 3)
        assert stepper.lm_part is not None and stepper.fast and not stepper.normalised
        block = torch.empty(2, stepper.width)
        for t in range(dec_in.size(1)):
            log_probs, state = model.step(dec_in[:, t], state, z, position=t, anchors=model.anchors(dec_in[:, :t]))
            torch.testing.assert_close(log_probs, forced[:, t], atol=1e-5, rtol=1e-5)
            stepped = torch.log_softmax(stepper(dec_in[:, t])[:, : len(vocab)], dim=1)
            torch.testing.assert_close(stepped, forced[:, t], atol=1e-5, rtol=1e-5)
            rows = torch.log_softmax(stepper.project(slice(1, 3), block)[:, : len(vocab)], dim=1)
            torch.testing.assert_close(rows, forced[1:, t], atol=1e-5, rtol=1e-5)
        perm = torch.tensor([2, 0, 0])
        moved, built = LogitStepper(model, z, 3), LogitStepper(model, z[perm], 3)
        for t in range(4 * L - 1):
            moved(dec_in[:, t]), built(dec_in[perm, t])
        moved.reorder(perm)
        torch.testing.assert_close(moved(dec_in[perm, 4 * L - 1]), built(dec_in[perm, 4 * L - 1]))


def test_a_fusion_by_cluster_mixes_each_part_of_the_adaptive_softmax(corpus, vocab) -> None:
    """fusion_by_cluster: log p(v) = H(c) + T_c(v), the heads' and each cluster's tails' mixtures each normalised;
    scoring targets (each tail target inside its own cluster only, K codes with one LM pass) gives its numbers."""
    model = fused(vocab, fusion_by_cluster=True, output_layer="adaptive")
    dec_in = poems_of(corpus, vocab, 3)
    z, form = torch.randn(3, 8), torch.tensor([0, 1, 1])
    with torch.no_grad():
        mixed = model.next_token_log_probs(dec_in, z, form)
        hidden = model._forced_hidden(dec_in, z, form, model.anchors(dec_in))
        lm_hidden = model.lm._forced_hidden(dec_in, None, form, model.lm.anchors(dec_in))
    out, lm_out = model.decoder.out, model.lm.decoder.out
    w = model.decoder.fusion.detach()[: dec_in.size(1)].repeat(3, 1)
    a, b = w[:, :1], w[:, 1:]
    head = torch.log_softmax(a * torch.log_softmax(lm_out.head(lm_hidden), -1)
                             + b * torch.log_softmax(out.head(hidden), -1), -1)  # fmt: skip
    short = out.shortlist_size
    expected = [head[:, :short]]
    for c, (tail, lm_tail) in enumerate(zip(out.tail, lm_out.tail, strict=True)):
        inside = torch.log_softmax(a * torch.log_softmax(lm_tail(lm_hidden), -1)
                                   + b * torch.log_softmax(tail(hidden), -1), -1)  # fmt: skip
        expected.append(head[:, short + c : short + c + 1] + inside)
    torch.testing.assert_close(mixed.view(-1, len(vocab)), torch.cat(expected, dim=1).detach())
    torch.testing.assert_close(mixed.logsumexp(-1), torch.zeros(3, dec_in.size(1)), atol=1e-5, rtol=0)
    # not the whole-vocabulary mixture of the same weights
    whole = fused(vocab, output_layer="adaptive").next_token_log_probs(dec_in, z, form)
    assert not torch.allclose(mixed, whole, atol=1e-3)
    target = torch.cat([dec_in[:, 1:], torch.full((3, 1), vocab.eos_id)], dim=1)
    assert (target >= short).any()  # some targets in the tails
    assert_scores_targets(model, dec_in, target, z, form, mixed)


def test_a_fusion_by_cluster_steps_and_draws_lazily_as_teacher_forcing_scores(corpus, vocab, monkeypatch) -> None:
    """model.step and the stepper (its heads mixed, then each cluster's tails) give teacher forcing's normalised
    log-probs, whole or rows picked out; sampling takes the lazy path (tails only where a draw needs them) and
    each poem's score is its teacher-forced log-prob."""
    from poetry_vae.generation import adaptive_draw

    model = fused(vocab, fusion_by_cluster=True, output_layer="adaptive")
    dec_in = poems_of(corpus, vocab, 3)
    z = torch.randn(3, 8)
    with torch.no_grad():
        forced = model.next_token_log_probs(dec_in, z)
        stepper, state = LogitStepper(model, z, 3), model.initial_state(z, 3)
        assert stepper.by_cluster and stepper.fast and stepper.normalised
        for t in range(dec_in.size(1)):
            log_probs, state = model.step(dec_in[:, t], state, z, position=t, anchors=model.anchors(dec_in[:, :t]))
            torch.testing.assert_close(log_probs, forced[:, t], atol=1e-5, rtol=1e-5)
            stepped = stepper(dec_in[:, t])[:, : len(vocab)]
            torch.testing.assert_close(stepped, forced[:, t], atol=1e-5, rtol=1e-5)
            picked = torch.tensor([2, 0])
            rows = stepper.project(picked, torch.empty(2, stepper.width), stepper.head_log_probs(picked))
            torch.testing.assert_close(rows[:, : len(vocab)], forced[picked, t], atol=1e-5, rtol=1e-5)
    calls = []
    choose_lazily = adaptive_draw.choose_lazily
    monkeypatch.setattr(adaptive_draw, "choose_lazily", lambda *a, **k: calls.append(1) or choose_lazily(*a, **k))
    codes = sample_prior(model, 16, torch.Generator().manual_seed(0))
    for strategy in ("top_p", "greedy"):
        poems = generate(model, vocab, codes, DecodeRequest(strategy=strategy, temperature=0.8),
                         torch.Generator().manual_seed(0))  # fmt: skip
        tokens = torch.tensor([[vocab.bos_id, *vocab.encode("".join(p.lines))] for p in poems])
        target = torch.cat([tokens[:, 1:], torch.full((16, 1), vocab.eos_id)], dim=1)
        with torch.no_grad():  # a fixed-length poem's score has no final </s>
            expected = model.token_log_probs(tokens, target, codes)[:, :-1].sum(dim=1)
        torch.testing.assert_close(torch.tensor([p.log_prob for p in poems]), expected, atol=1e-3, rtol=1e-4)
    assert len(calls) == 2 * 4 * L


def test_a_fusion_by_cluster_needs_a_fused_adaptive_softmax(vocab) -> None:
    for wrong in ({"lm_fusion": True, "output_layer": "softmax"}, {"lm_fusion": False}):
        with pytest.raises(PoetryVAEError, match="fusion_by_cluster=true needs lm_fusion=true and output_layer"):
            ModelConfig(vocab_size=50, fusion_by_cluster=True, **wrong)
    assert not ModelConfig.from_dict({"vocab_size": 50, "lm_fusion": True}).fusion_by_cluster  # v6 and v7's files


def test_the_language_model_is_frozen_while_the_rest_trains(corpus, vocab) -> None:
    model = fused(vocab).train()
    assert not model.lm.training and model.decoder.training
    dec_in = poems_of(corpus, vocab, 4)
    target = torch.cat([dec_in[:, 1:], torch.full((4, 1), vocab.eos_id)], dim=1)
    out = model(dec_in[:, 1:], dec_in, target, word_dropout_rate=0.5)
    (out.rec.sum() + out.kl.sum()).backward()
    assert all(p.grad is None and not p.requires_grad for p in model.lm.parameters())
    assert model.decoder.fusion.grad is not None and model.decoder.fusion.grad.abs().sum() > 0


def test_fusion_needs_a_latent_and_old_configs_build_without_it(vocab) -> None:
    with pytest.raises(PoetryVAEError, match="lm_fusion=true needs a VAE"):
        ModelConfig(vocab_size=50, use_latent=False, lm_fusion=True)
    plain = build_model({"embed_dim": 16, "encoder_hidden": 16, "latent_dim": 8, "decoder_hidden": 16}, vocab)
    assert plain.lm is None and plain.decoder.fusion is None
    assert not any(name.startswith("lm.") or "fusion" in name for name in plain.state_dict())


def _fuse_config(*overrides: str):  # -> DictConfig
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("fuse_lm", overrides=list(overrides))


def test_fuse_lm_writes_the_two_models_side_by_side(tiny_checkpoint: Path, tiny_lm: Path, tmp_path: Path) -> None:
    out = tmp_path / "fused.ckpt"
    fuse_lm(_fuse_config(f"ckpt_path={tiny_checkpoint}", f"lm={tiny_lm}", f"out={out}"))
    vae, lm, both = load_checkpoint(tiny_checkpoint), load_checkpoint(tiny_lm), load_checkpoint(out)
    assert both.model.cfg.lm_fusion and both.vocab.tokens == vae.vocab.tokens
    state = both.model.state_dict()
    for name, value in vae.model.state_dict().items():
        assert torch.equal(state[name], value), name
    for name, value in lm.model.state_dict().items():
        assert torch.equal(state[f"lm.{name}"], value), name
    assert both.model.decoder.fusion.tolist()[0] == pytest.approx([0.4, 0.8])
    assert read_checkpoint(out)["lm_fusion"]["command"].startswith("python -m poetry_vae.fuse_lm")
    z = sample_prior(both.model, 3, torch.Generator().manual_seed(0))
    for strategy in ("top_p", "beam"):
        poems = generate(both.model, both.vocab, z, DecodeRequest(strategy=strategy), torch.Generator().manual_seed(0))
        assert len(poems) == 3 and all(poem.text for poem in poems)


def test_fuse_lm_swaps_the_language_model_of_a_fused_vae(tiny_checkpoint: Path, tiny_lm: Path, tmp_path_factory,
                                                        tmp_path: Path) -> None:
    """A fused VAE given another LM keeps its decoder and fusion weights, and holds the new LM's weights."""
    fused_file, swapped_file = tmp_path / "fused.ckpt", tmp_path / "swapped.ckpt"
    fuse_lm(_fuse_config(f"ckpt_path={tiny_checkpoint}", f"lm={tiny_lm}", f"out={fused_file}"))
    raw = read_checkpoint(fused_file)
    raw["state_dict"]["model.decoder.fusion"] = torch.full_like(raw["state_dict"]["model.decoder.fusion"], 0.3)
    write_checkpoint_file(raw, fused_file)  # fusion weights a fresh fuse would not give
    other = train_tiny_checkpoint(tmp_path_factory, "tiny_other_lm", "model.use_latent=false", "seed=7")
    fuse_lm(_fuse_config(f"ckpt_path={fused_file}", f"lm={other}", f"out={swapped_file}"))
    before, lm, after = (load_checkpoint(p).model for p in (fused_file, other, swapped_file))
    state = after.state_dict()
    for name, value in before.state_dict().items():
        if not name.startswith("lm."):
            assert torch.equal(state[name], value), name
    for name, value in lm.state_dict().items():
        assert torch.equal(state[f"lm.{name}"], value), name
    assert not torch.equal(before.lm.decoder.lstm.weight_hh_l0, after.lm.decoder.lstm.weight_hh_l0)


def test_fuse_lm_refuses_what_it_cannot_fuse(tiny_checkpoint: Path, tiny_lm: Path, tmp_path: Path) -> None:
    out = tmp_path / "fused.ckpt"
    notes = tmp_path / "notes.txt"  # a file of the user's that is no model
    notes.write_text("keep\n", encoding="utf-8")
    cases = [
        ((f"ckpt_path={tiny_lm}", f"lm={tiny_lm}", f"out={out}"), "is a language model: give a VAE"),
        ((f"ckpt_path={tiny_checkpoint}", f"lm={tiny_checkpoint}", f"out={out}"), "is a VAE: give a language model"),
        ((f"ckpt_path={tiny_checkpoint}", f"lm={tiny_lm}"), "no out given"),
        ((f"ckpt_path={tiny_checkpoint}", f"lm={tiny_lm}", f"out={tiny_lm}"), "holds a saved model or tensors: choose"),
        ((f"ckpt_path={tiny_checkpoint}", f"lm={tiny_lm}", f"out={notes}"), "exists: choose a new file"),
        ((f"ckpt_path={tiny_checkpoint}", f"lm={tiny_lm}", "out="), "^out is empty: give a file path"),
        # each path's error names its own key: the language model's is lm=, not ckpt_path=
        ((f"ckpt_path={tiny_checkpoint}", f"lm={tmp_path / 'missing.ckpt'}", f"out={out}"),
         "not found: pass lm=<run dir>"),
        ((f"ckpt_path={tiny_checkpoint}", "lm=/dev/null", f"out={out}"), "is not a file: pass lm="),
        ((f"ckpt_path={tiny_checkpoint}", "lm=", f"out={out}"), "^lm is empty: pass a run dir"),
        ((f"ckpt_path={tmp_path / 'missing.ckpt'}", f"lm={tiny_lm}", f"out={out}"), "not found: pass ckpt_path="),
    ]
    for overrides, message in cases:
        with pytest.raises(PoetryVAEError, match=message):
            fuse_lm(_fuse_config(*overrides))
    assert not out.exists()
    assert notes.read_text(encoding="utf-8") == "keep\n"


def test_fuse_lm_refuses_a_language_model_of_another_vocabulary(tiny_checkpoint: Path, tiny_lm: Path,
                                                                 tmp_path: Path) -> None:
    raw = read_checkpoint(tiny_lm)
    tokens = list(raw["hyper_parameters"]["vocab"]["tokens"])
    tokens[-1], tokens[-2] = tokens[-2], tokens[-1]  # the same characters, two ids swapped
    hparams = raw["hyper_parameters"]
    raw["hyper_parameters"] = {**hparams, "vocab": {**hparams["vocab"], "tokens": tokens}}
    other = tmp_path / "other_vocab.ckpt"
    write_checkpoint_file(raw, other)
    with pytest.raises(PoetryVAEError, match="has another vocabulary"):
        fuse_lm(_fuse_config(f"ckpt_path={tiny_checkpoint}", f"lm={other}", f"out={tmp_path / 'x.ckpt'}"))


def test_fuse_lm_refuses_a_language_model_of_other_sizes(tiny_checkpoint: Path, tmp_path_factory, tmp_path) -> None:
    wide = train_tiny_checkpoint(tmp_path_factory, "tiny_wide_lm", "model.use_latent=false", "model.decoder_hidden=24")
    with pytest.raises(PoetryVAEError, match="decoder differs from the VAE's"):
        fuse_lm(_fuse_config(f"ckpt_path={tiny_checkpoint}", f"lm={wide}", f"out={tmp_path / 'x.ckpt'}"))


def test_training_keeps_the_language_model_as_fused(tiny_checkpoint: Path, tiny_lm: Path, tmp_path: Path) -> None:
    """A fused run trains the decoder and the fusion weights; the language model's weights come out as they went in.
    A run asking for fusion from a checkpoint without it is refused in one line."""
    fused_file = tmp_path / "fused.ckpt"
    fuse_lm(_fuse_config(f"ckpt_path={tiny_checkpoint}", f"lm={tiny_lm}", f"out={fused_file}"))
    run = tmp_path / "run"
    train(tiny_train_config(run, tmp_path / "cache", f"init_from={fused_file}", "model.lm_fusion=true",
                            "trainer.max_steps=2", "trainer.limit_val_batches=1", "test_after_fit=false"))
    before, after = load_checkpoint(fused_file).model, load_checkpoint(run / "checkpoints" / "last.ckpt").model
    assert after.cfg.lm_fusion
    for name, value in before.lm.state_dict().items():
        assert torch.equal(after.lm.state_dict()[name], value), name
    assert not torch.equal(after.decoder.fusion, before.decoder.fusion)
    with pytest.raises(CheckpointError, match="has no language model beside its decoder"):
        train(tiny_train_config(tmp_path / "refused", tmp_path / "cache", f"init_from={tiny_checkpoint}",
                                "model.lm_fusion=true", "trainer.max_steps=1"))
