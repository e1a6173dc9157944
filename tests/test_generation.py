"""Batched constrained decoding and latent tools, on a tiny random model over the real corpus vocabulary.

A random model writes nonsense, which is the point: every guarantee here (form, rhyme, tone, prompts) must come
from the decoder's masks, and is checked by the independent checkers in metrics/prosody.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PromptError
from poetry_vae.generation import (
    DecodeRequest,
    encode_texts,
    generate,
    homotopy,
    interpolate,
    nearest,
    reconstruct,
    sample_prior,
    sampling,
)
from poetry_vae.generation.processors.prosody import PatternTracker, build_plan
from poetry_vae.generation.sampling import block_argmax, block_sample, nucleus_sample, pick_tokens
from poetry_vae.layout import is_format_valid, is_hanzi, split_lines
from poetry_vae.metrics.poetry import rhyme_rate
from poetry_vae.model.config import ModelConfig
from poetry_vae.model.poem_model import PoemModel
from poetry_vae.model.stepper import LogitStepper, padded_size
from poetry_vae.prosody import PATTERNS, fits_pattern, rhyme_classes, rhymes

N = 48
STRATEGIES = ("greedy", "sample", "top_k", "top_p", "beam")
POEM = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
POEM_B = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"


def tiny_model(vocab_size: int, use_latent: bool = True, seed: int = 0, **sizes: Any) -> PoemModel:
    """A small untrained model (latent 8, hidden 16, one decoder layer unless ``sizes`` say otherwise)."""
    torch.manual_seed(seed)
    fields = {"embed_dim": 16, "encoder_hidden": 16, "latent_dim": 8, "decoder_hidden": 16, "decoder_layers": 1,
              "dropout": 0.1, "output_layer": "softmax", **sizes}  # fmt: skip
    return PoemModel(ModelConfig(vocab_size=vocab_size, use_latent=use_latent, **fields))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is faster


@pytest.fixture(scope="module")
def model(vocab) -> PoemModel:
    return tiny_model(len(vocab))


@pytest.fixture(scope="module")
def z(model) -> torch.Tensor:
    return sample_prior(model, N, torch.Generator().manual_seed(0))


def run(model, vocab, z, generator_seed: int | None = 1, **kwargs):
    generator = torch.Generator().manual_seed(generator_seed) if generator_seed is not None else None
    return generate(model, vocab, z, DecodeRequest(**kwargs), generator)


def teacher_forced_log_prob(model: PoemModel, vocab: Vocabulary, z: torch.Tensor, poems) -> torch.Tensor:
    tokens = torch.tensor([vocab.encode("".join(p.lines)) for p in poems])
    bos = torch.full((len(poems), 1), vocab.bos_id)
    eos = torch.full((len(poems), 1), vocab.eos_id)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logp = model.token_log_probs(torch.cat([bos, tokens], 1), torch.cat([tokens, eos], 1), z)
    model.train(was_training)
    return logp[:, :-1].sum(dim=1)  # the final </s> position is not part of a fixed-length poem


def class_members(vocab: Vocabulary, name: str, system: str) -> set[str]:
    return {token for token in vocab.tokens[4:] if name in rhyme_classes(token, system)}


# ---- form, determinism, scoring ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_writes_valid_quatrains(model, vocab, z, strategy):
    poems = run(model, vocab, z[:16] if strategy == "beam" else z, strategy=strategy, beam_size=3)
    assert len(poems) == (16 if strategy == "beam" else N)
    for poem in poems:
        assert is_format_valid(poem.text), poem.text
        assert split_lines(poem.text) == poem.lines and all(len(line) == 5 for line in poem.lines)
        assert poem.constraints == {"format": True}
        assert poem.pattern is None
    assert model.training  # the previous mode is restored


def test_greedy_is_deterministic_and_sampling_reproducible(model, vocab, z):
    assert [p.text for p in run(model, vocab, z, None, strategy="greedy")] == [
        p.text for p in run(model, vocab, z, None, strategy="greedy")
    ]
    for strategy in ("sample", "top_k", "top_p"):
        a = [p.text for p in run(model, vocab, z, 7, strategy=strategy)]
        b = [p.text for p in run(model, vocab, z, 7, strategy=strategy)]
        c = [p.text for p in run(model, vocab, z, 8, strategy=strategy)]
        assert a == b
        assert a != c


def test_sampling_differs_across_poems_and_greedy_follows_z(model, vocab, z):
    sampled = {p.text for p in run(model, vocab, z, strategy="sample")}
    assert len(sampled) == N
    greedy = [p.text for p in run(model, vocab, z[:2], strategy="greedy")]
    assert greedy[0] != greedy[1]


def test_log_prob_matches_teacher_forcing(model, vocab, z):
    for strategy in ("greedy", "top_p"):
        poems = run(model, vocab, z[:8], strategy=strategy, rhyme="pingshui", tone="auto")
        recomputed = teacher_forced_log_prob(model, vocab, z[:8], poems)
        assert torch.allclose(torch.tensor([p.log_prob for p in poems]), recomputed, atol=1e-3)


def test_beam_scores_beat_greedy_on_average(model, vocab, z):
    """Beam search may lose the greedy prefix (a wider beam is not a superset of greedy), so ``beam >= greedy``
    cannot hold for every poem; it holds on the whole and is exact when the beam covers every prefix (below)."""
    greedy = run(model, vocab, z, strategy="greedy")
    beam = run(model, vocab, z, strategy="beam", beam_size=4)
    gain = torch.tensor([b.log_prob - g.log_prob for g, b in zip(greedy, beam, strict=True)])
    assert (gain >= -1e-4).float().mean() >= 0.9 and gain.mean() > 0.1
    recomputed = teacher_forced_log_prob(model, vocab, z, beam)
    assert torch.allclose(torch.tensor([p.log_prob for p in beam]), recomputed, atol=1e-3)
    # width 1 is greedy
    assert [p.text for p in run(model, vocab, z, strategy="beam", beam_size=1)] == [p.text for p in greedy]


def test_wide_beam_is_exact_search():
    """With beam_size >= V**(T-1) nothing is pruned: beam search must return the exhaustive argmax."""
    small = Vocabulary.build(["山水花月"])
    lm = tiny_model(len(small), use_latent=False, seed=3)
    chars = torch.arange(4, len(small))  # the four hanzi
    request = DecodeRequest(strategy="beam", beam_size=64, num_lines=2, line_length=2)
    best = generate(lm, small, None, request, num_poems=1)[0]
    grid = torch.cartesian_prod(*[chars] * 4)  # all 256 poems of 2 x 2 characters
    bos = torch.full((len(grid), 1), small.bos_id)
    lm.eval()
    with torch.no_grad():
        scores = lm.token_log_probs(torch.cat([bos, grid[:, :-1]], 1), grid).sum(1)
    assert small.decode(grid[scores.argmax()].tolist()) == "".join(best.lines)
    assert best.log_prob == pytest.approx(scores.max().item(), abs=1e-4)
    lm.train()
    smaller = generate(
        lm, small, None, DecodeRequest(strategy="beam", beam_size=2, num_lines=2, line_length=2), num_poems=1
    )[0]
    assert smaller.log_prob <= best.log_prob + 1e-5


def test_lm_baseline_decodes_without_z(vocab):
    lm = tiny_model(len(vocab), use_latent=False)
    assert sample_prior(lm, 5, torch.Generator().manual_seed(0)) is None
    poems = generate(
        lm, vocab, None, DecodeRequest(strategy="top_p", rhyme="xinyun"), torch.Generator().manual_seed(0), num_poems=6
    )
    assert len(poems) == 6 and all(is_format_valid(p.text) and p.constraints["rhyme"] for p in poems)
    with pytest.raises(PromptError, match="latent"):
        encode_texts(lm, vocab, [POEM])
    with pytest.raises(PromptError, match="latent"):
        homotopy(lm, vocab, POEM, POEM_B)


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        (torch.zeros(2, 7), r"z has shape \(2, 7\): give codes of shape \(n, 8\), n >= 1"),
        (torch.zeros(8), r"z has shape \(8,\): .* \(one code: z.unsqueeze\(0\)\)"),
        (torch.zeros(0, 8), r"z has shape \(0, 8\)"),
        (torch.full((2, 8), float("nan")), "z holds NaN or infinite values"),
        ("codes", r"z is a str: give a tensor of shape \(n, 8\)"),
    ],
)
def test_codes_of_the_wrong_shape_or_values_are_one_line(model, vocab, codes, expected):
    with pytest.raises(PromptError, match=expected) as error:
        generate(model, vocab, codes)
    assert "\n" not in str(error.value)


def test_codes_and_a_request_may_be_given_as_plain_python(model, vocab, z):
    as_given = generate(model, vocab, z[:3], DecodeRequest(strategy="greedy"))
    plain = generate(model, vocab, z[:3].double().tolist(), {"strategy": "greedy"})
    assert [p.text for p in plain] == [p.text for p in as_given]
    with pytest.raises(PromptError, match="unknown request field\\(s\\) 'temprature'"):
        generate(model, vocab, z[:3], {"temprature": 0.8})
    with pytest.raises(PromptError, match="request is a str: give a DecodeRequest"):
        generate(model, vocab, z[:3], "greedy")
    for draw in (lambda: generate(model, vocab, z[:3], None, 0), lambda: sample_prior(model, 2, "seed")):
        with pytest.raises(PromptError, match=r"generator=.*: give a torch.Generator"):
            draw()
    with pytest.raises(PromptError, match="num_poems=0: give a whole number >= 1"):
        generate(tiny_model(len(vocab), use_latent=False), vocab, None, num_poems=0)
    with pytest.raises(PromptError, match="n=0: give a whole number of codes >= 1"):
        sample_prior(model, 0)  # was torch's "cannot sample n_sample <= 0 samples"
    assert sample_prior(model, np.int64(2)).shape == (2, model.cfg.latent_dim)  # an integer of any kind
    with pytest.raises(PromptError, match=r"a whole number of at least 2 steps .* got 2\.5"):
        homotopy(model, vocab, POEM, POEM_B, steps=2.5)  # was linspace's TypeError


# ---- prosody constraints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["pingshui", "xinyun"])
@pytest.mark.parametrize("strategy", ["greedy", "top_p", "beam"])
def test_rhyme_always_holds(model, vocab, z, system, strategy):
    poems = run(model, vocab, z[:16], strategy=strategy, rhyme=system, beam_size=3)
    assert rhyme_rate([p.text for p in poems], system) == 1.0
    for poem in poems:
        assert poem.constraints["rhyme"] and poem.constraints["format"]
        assert poem.lines[1][-1] != poem.lines[3][-1]  # rhyme characters differ
        # line 2 ends in a character whose class leaves line 4 a choice: >= 2 other members in the vocabulary
        anchor = poem.lines[1][-1]
        assert any(len(class_members(vocab, name, system) - {anchor}) >= 2 for name in rhyme_classes(anchor, system))


def test_unconstrained_random_model_rarely_rhymes(model, vocab, z):
    """The rhyme test above is not vacuous: without the mask a random model's poems mostly do not rhyme."""
    poems = run(model, vocab, z, strategy="top_p")
    assert rhyme_rate([p.text for p in poems], "pingshui") < 0.5


@pytest.mark.parametrize("rhyme_first_line", [False, True])
def test_grouped_rhyme_masks_equal_the_per_pattern_union(vocab, rhyme_first_line):
    """At every rhyme step the grouped mask equals the union over patterns of each pattern's own mask (with
    its earlier rhyme characters removed), along random decodings that keep several patterns alive."""
    request = DecodeRequest(rhyme="pingshui", tone="auto", rhyme_first_line=rhyme_first_line)
    plan = build_plan(vocab, request, torch.device("cpu"))
    tracker = PatternTracker(plan, 300, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    rhyme_steps = 0
    for t in range(plan.length):
        keep, _ = tracker.keep(t)
        if any(tracker._rhyme_rows(t, p)[0] is not None for p in range(len(plan.patterns))):
            rhyme_steps += 1
            per_pattern = torch.stack([tracker._pattern_keep(t, p) for p in range(len(plan.patterns))]).amax(0)
            assert torch.equal(keep, per_pattern)
        # a draw among the allowed characters, tilted towards characters that ended earlier lines, so that
        # "no rhyme character twice" is exercised
        earlier = torch.zeros(300, keep.shape[1]).scatter_(1, tracker.tokens[:, :t], 1.0)
        weights = keep * (1.0 + 50.0 * earlier)
        tracker.update(t, torch.multinomial(weights, 1, generator=g).squeeze(1))
    assert rhyme_steps >= 2


@pytest.mark.parametrize("system", ["pingshui", "xinyun"])
def test_rhyme_first_line(model, vocab, z, system):
    for poem in run(model, vocab, z, rhyme=system, rhyme_first_line=True):
        ends = [line[-1] for line in poem.lines]
        assert rhymes(ends[0], ends[1], system) and rhymes(ends[1], ends[3], system)
        assert len({ends[0], ends[1], ends[3]}) == 3
        assert poem.constraints["rhyme"]


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_fixed_tone_pattern(model, vocab, z, pattern):
    for strict in (False, True):
        for poem in run(model, vocab, z[:16], tone=pattern, strict_tone=strict):
            assert fits_pattern(poem.lines, pattern, strict=strict)
            assert poem.pattern == pattern and poem.constraints["tone"]


def test_unconstrained_random_model_rarely_fits_a_pattern(model, vocab, z):
    poems = run(model, vocab, z, strategy="top_p")
    assert sum(any(fits_pattern(p.lines, name) for name in PATTERNS) for p in poems) < N // 4


@pytest.mark.parametrize("strategy", ["top_p", "beam"])
def test_auto_tone_fits_the_reported_pattern(model, vocab, z, strategy):
    for strict in (False, True):
        poems = run(model, vocab, z[:24], strategy=strategy, tone="auto", strict_tone=strict, beam_size=3)
        for poem in poems:
            assert poem.pattern in PATTERNS
            assert fits_pattern(poem.lines, poem.pattern, strict=strict), (poem.text, poem.pattern)
            assert poem.constraints["tone"]
    assert len({p.pattern for p in run(model, vocab, z, tone="auto")}) > 1  # not stuck on one pattern


@pytest.mark.parametrize("system", ["pingshui", "xinyun"])
def test_rhyme_and_tone_together(model, vocab, z, system):
    poems = run(model, vocab, z, rhyme=system, tone="auto", strict_tone=True, no_repeat=True)
    for poem in poems:
        assert fits_pattern(poem.lines, poem.pattern, strict=True, system=system)
        assert rhymes(poem.lines[1][-1], poem.lines[3][-1], system)
        if poem.pattern.endswith("rhymed_first"):
            assert rhymes(poem.lines[0][-1], poem.lines[1][-1], system)
        if system == "pingshui":  # the shared class is a 平 class
            shared = rhyme_classes(poem.lines[1][-1]) & rhyme_classes(poem.lines[3][-1])
            assert any("平" in name for name in shared), (poem.text, shared)
        assert all(poem.constraints.values()), poem.constraints


def test_fixed_rhymed_first_pattern_rhymes_line_one(model, vocab, z):
    for poem in run(model, vocab, z, rhyme="pingshui", tone="pingqi_rhymed_first"):
        ends = [line[-1] for line in poem.lines]
        assert rhymes(ends[0], ends[1]) and rhymes(ends[1], ends[3])
        assert fits_pattern(poem.lines, "pingqi_rhymed_first")


# ---- prompts and no_repeat --------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["greedy", "top_p", "beam"])
def test_first_line_and_acrostic(model, vocab, z, strategy):
    poems = run(model, vocab, z[:12], strategy=strategy, first_line="白日依山尽", beam_size=3)
    assert all(p.lines[0] == "白日依山尽" and p.constraints["first_line"] for p in poems)
    assert len({p.text for p in poems}) > 1
    poems = run(model, vocab, z[:12], strategy=strategy, acrostic="春夏秋冬", rhyme="pingshui", beam_size=3)
    for poem in poems:
        assert [line[0] for line in poem.lines] == list("春夏秋冬")
        assert poem.constraints == {"format": True, "rhyme": True, "acrostic": True}


def test_forced_chars_log_prob_counted(model, vocab, z):
    poems = run(model, vocab, z[:8], strategy="greedy", first_line="白日依山尽", acrostic="白黄欲更")
    recomputed = teacher_forced_log_prob(model, vocab, z[:8], poems)
    assert torch.allclose(torch.tensor([p.log_prob for p in poems]), recomputed, atol=1e-3)


def test_first_line_with_tone_and_rhyme(model, vocab, z):
    # 白日依山尽 fits zeqi (白 and 日 are 入声, so 仄): lines 2-4 must follow that pattern and rhyme
    for poem in run(model, vocab, z, first_line="白日依山尽", tone="zeqi", strict_tone=True, rhyme="pingshui"):
        assert fits_pattern(poem.lines, "zeqi", strict=True) and rhymes(poem.lines[1][-1], poem.lines[3][-1])
        assert all(poem.constraints.values())


@pytest.mark.parametrize("strategy", ["greedy", "top_p", "beam"])
def test_no_repeat(model, vocab, z, strategy):
    plain = run(model, vocab, z[:16], strategy="greedy")
    assert any(len(set("".join(p.lines))) < 20 for p in plain)  # the random model does repeat itself
    for poem in run(model, vocab, z[:16], strategy=strategy, no_repeat=True, rhyme="xinyun", beam_size=3):
        assert len(set("".join(poem.lines))) == 20
        assert poem.constraints["no_repeat"] and poem.constraints["rhyme"]


# ---- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first_line": "白日依山"}, "first_line='白日依山' has 4 characters: this model writes lines of 5"),
        ({"first_line": "白日依山盡盡"}, "has 6 characters.*give 5"),
        ({"first_line": "白日依山A"}, r"'A' is not a Chinese character; give 5 Chinese characters"),
        ({"acrostic": "春夏秋"}, "acrostic='春夏秋' has 3 characters.*give 4"),
        ({"acrostic": "春夏秋冬雪"}, "has 5 characters.*give 4"),
        ({"acrostic": "春x秋冬"}, r"acrostic='春x秋冬': 'x' is not a Chinese character"),
        ({"first_line": "白日依山尽", "tone": "pingqi", "strict_tone": True}, r"'白' at line 1, character 1.*平"),
        (
            {"first_line": "白日依山尽", "tone": "zeqi", "rhyme_first_line": True, "rhyme": "pingshui"},
            "does not rhyme its first line",
        ),
        ({"acrostic": "春春秋冬", "no_repeat": True}, "repeats '春'"),
        ({"tone": "qijue"}, "unknown tone pattern 'qijue'; choose auto or one of"),
        ({"rhyme": "cilin"}, "unknown rhyme system"),
        ({"rhyme_first_line": True}, "needs a rhyme system"),
        ({"strategy": "nucleus"}, "unknown strategy"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_prompt_errors(model, vocab, z, kwargs, message):
    with pytest.raises(PromptError, match=message) as info:
        run(model, vocab, z[:2], **kwargs)
    assert "\n" not in str(info.value)


def test_unknown_char_error_names_char_position_and_fix(model, vocab, z):
    rare = next(c for c in "龘靐齉爩麤" if c not in vocab)
    with pytest.raises(PromptError, match=f"character 3 '{rare}'.*pick another character"):
        run(model, vocab, z[:2], first_line=f"白日{rare}山尽")
    assert "書" not in vocab and "书" in vocab  # a traditional form: point at the simplified one
    with pytest.raises(PromptError, match=r"acrostic: character 2 '書'.*simplified form '书'"):
        run(model, vocab, z[:2], acrostic="春書秋冬")


def test_auto_tone_with_impossible_prompt_explains_every_pattern(model, vocab, z):
    # strict: 白 (仄) then 平 at position 2 fits no pattern's first line
    with pytest.raises(PromptError, match="no tone pattern fits"):
        run(model, vocab, z[:2], first_line="白天依山尽", tone="auto", strict_tone=True)


def test_unsatisfiable_rhyme_raises(corpus):
    chars = "山水花月"  # four different 平水韵 classes: no rhyming pair exists
    assert not any(rhymes(a, b) for a in chars for b in chars if a != b)
    small = Vocabulary.build([chars * 5])
    lm = tiny_model(len(small), use_latent=False)
    assert len(generate(lm, small, None, DecodeRequest(), num_poems=3)) == 3  # fine without rhyme
    for strategy in ("top_p", "beam"):
        with pytest.raises(PromptError, match="rhyme"):
            generate(lm, small, None, DecodeRequest(strategy=strategy, rhyme="pingshui"), num_poems=3)
    with pytest.raises(PromptError, match="no character satisfies"):  # 4 distinct chars cannot fill 20 slots
        generate(lm, small, None, DecodeRequest(no_repeat=True), num_poems=2)


# ---- latent tools -----------------------------------------------------------------------------------------


def test_encode_texts_accepts_punctuated_and_bare(model, vocab):
    mu, logvar = encode_texts(
        model, vocab, [POEM, POEM.replace("，", "").replace("。", ""), "白日依山尽 黄河入海流 欲穷千里目 更上一层楼"]
    )
    assert mu.shape == logvar.shape == (3, 8)
    assert torch.allclose(mu[0], mu[1]) and torch.allclose(mu[0], mu[2])
    assert model.training


def test_encode_texts_errors(model, vocab):
    with pytest.raises(PromptError, match=r"20 characters.*got 15"):
        encode_texts(model, vocab, ["白日依山尽，黄河入海流。欲穷千里目。"])
    with pytest.raises(PromptError, match=r"poem 2: .*character 7 'X'"):
        encode_texts(model, vocab, [POEM, "白日依山尽，黄X入海流。欲穷千里目，更上一层楼。"])


def test_reconstruct_and_homotopy(model, vocab):
    poems = reconstruct(model, vocab, [POEM, POEM_B])
    mu, _ = encode_texts(model, vocab, [POEM, POEM_B])
    assert [p.text for p in poems] == [p.text for p in generate(model, vocab, mu, DecodeRequest(strategy="greedy"))]
    path = homotopy(model, vocab, POEM, POEM_B, steps=5, request=DecodeRequest(strategy="greedy", rhyme="xinyun"))
    assert len(path) == 5 and all(is_format_valid(p.text) and p.constraints["rhyme"] for p in path)
    plain = homotopy(model, vocab, POEM, POEM_B, steps=5)
    assert plain[0].text == poems[0].text and plain[-1].text == poems[1].text


@pytest.mark.parametrize("spherical", [False, True])
def test_interpolate(spherical):
    a, b = torch.randn(8), torch.randn(8)
    path = interpolate(a, b, 7, spherical=spherical)
    assert path.shape == (7, 8)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    if spherical:  # slerp keeps the norm between the endpoints' on a unit-norm pair
        unit = interpolate(a / a.norm(), b / b.norm(), 5, spherical=True)
        assert torch.allclose(unit.norm(dim=1), torch.ones(5), atol=1e-5)
    else:
        assert torch.allclose(path[3], (a + b) / 2, atol=1e-6)
    with pytest.raises(PromptError):
        interpolate(a, b, 1)


def test_nearest():
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [0.9, 0.1]])
    assert nearest(torch.tensor([1.0, 0.0]), bank, k=2).tolist() == [1, 3]
    assert nearest(torch.tensor([[4.0, 4.0], [0.1, 0.0]]), bank, k=1).tolist() == [[2], [0]]
    assert nearest(torch.zeros(2), bank, k=10).shape == (4,)
    for z, bank_ in ((torch.zeros(3), bank), (torch.zeros(1, 1, 2), bank), (torch.zeros(2), bank[:0])):
        with pytest.raises(PromptError, match="nearest: z has shape"):
            nearest(z, bank_)


# ---- token pickers ----------------------------------------------------------------------------------------


def test_pickers_respect_mask_and_filters():
    torch.manual_seed(0)
    logp = torch.log_softmax(torch.randn(4000, 30), dim=1)
    allowed = torch.ones(30, dtype=torch.bool)
    allowed[[0, 5]] = False
    greedy = pick_tokens(logp, allowed, "greedy")
    assert torch.equal(greedy, logp.masked_fill(~allowed, -1e9).argmax(1))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(pick_tokens(logp, allowed, "top_k", top_k=1, generator=g), greedy)
    assert torch.equal(pick_tokens(logp, allowed, "top_p", top_p=1e-6, generator=g), greedy)
    for strategy in ("sample", "top_k", "top_p"):
        picked = pick_tokens(logp, allowed, strategy, top_k=5, top_p=0.6, generator=g)
        assert not bool(((picked == 0) | (picked == 5)).any())
    # top-p keeps exactly the nucleus computed by a plain sort
    probs = torch.softmax(logp.masked_fill(~allowed, float("-inf")), 1)
    values, order = probs.sort(1, descending=True)
    in_nucleus = torch.zeros_like(probs, dtype=torch.bool).scatter(1, order, (values.cumsum(1) - values) < 0.6)
    picked = pick_tokens(logp, allowed, "top_p", top_p=0.6, generator=g)
    assert bool(in_nucleus.gather(1, picked.unsqueeze(1)).all())
    # top-k keeps the k best; sampling follows the (renormalised) distribution
    top5 = logp.masked_fill(~allowed, float("-inf")).topk(5, 1).indices
    picked = pick_tokens(logp, allowed, "top_k", top_k=5, generator=g)
    assert bool((top5 == picked.unsqueeze(1)).any(1).all())
    row = logp[:1].expand(20000, -1)
    picked = pick_tokens(row, allowed, "sample", generator=g)
    freq = torch.bincount(picked, minlength=30).float() / len(picked)
    assert torch.allclose(freq, probs[0], atol=0.015)
    # temperature sharpens
    cold = pick_tokens(row, allowed, "sample", temperature=0.05, generator=g)
    assert (cold == greedy[0]).float().mean() > 0.9


# ---- exactness of the fast pickers against the sort-based reference (the implementation they replaced) ----


def reference_probs(log_probs, allowed, strategy, temperature=1.0, top_k=50, top_p=0.9):
    """The previous implementation's distribution: full-row softmax, a sorted nucleus (or the top k)."""
    logits = log_probs.masked_fill(~allowed, float("-inf")) / temperature
    if strategy == "top_k":
        values, index = logits.topk(min(top_k, logits.shape[1]), dim=1)
        return torch.zeros_like(logits).scatter_(1, index, torch.softmax(values, dim=1))
    probs = torch.softmax(logits, dim=1)
    if strategy == "top_p":
        ascending = probs.sort(dim=1).values
        cumulative = ascending.cumsum(dim=1)
        kept = ((cumulative[:, -1:] - cumulative) < top_p * cumulative[:, -1:]).sum(dim=1, keepdim=True)
        probs = probs.masked_fill(probs < ascending.gather(1, ascending.shape[1] - kept.clamp(min=1)), 0.0)
    return probs / probs.sum(dim=1, keepdim=True)


def reference_pick(log_probs, allowed, strategy, generator=None, **kwargs):
    return torch.multinomial(reference_probs(log_probs, allowed, strategy, **kwargs), 1, generator=generator)[:, 0]


def fixed_distribution(vocab_size: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """A skewed row (a few heavy tokens, a long tail) and a mask that removes some of the heavy ones."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(vocab_size, generator=g) * 2.0
    logits[:5] += 4.0
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[[1, 7, 50]] = False
    return torch.log_softmax(logits, 0), allowed


@pytest.mark.parametrize(
    ("strategy", "kwargs"),
    [
        ("sample", {}),
        ("sample", {"temperature": 0.7}),
        ("top_p", {"top_p": 0.9}),
        ("top_p", {"top_p": 0.5, "temperature": 1.5}),
        ("top_p", {"top_p": 0.05}),  # a one-token nucleus
        ("top_k", {"top_k": 10}),
    ],
)
def test_fast_pickers_match_reference_frequencies(strategy, kwargs):
    """Token frequencies of the new picker and of the reference agree within sampling noise (a total-variation
    bound that an off-by-one nucleus or a wrong renormalisation exceeds several times over)."""
    log_probs, allowed = fixed_distribution()
    draws = 60_000
    rows = log_probs.unsqueeze(0).expand(draws, -1)
    fast = pick_tokens(rows, allowed, strategy, generator=torch.Generator().manual_seed(1), **kwargs)
    ref = reference_pick(rows, allowed, strategy, generator=torch.Generator().manual_seed(2), **kwargs)
    exact = reference_probs(log_probs.unsqueeze(0), allowed, strategy, **kwargs)[0].double()
    f_fast = torch.bincount(fast, minlength=200).double() / draws
    f_ref = torch.bincount(ref, minlength=200).double() / draws
    assert not bool(((f_fast > 0) & (exact == 0)).any())  # never outside the reference's support
    assert 0.5 * (f_fast - exact).abs().sum() < 0.015  # sampling noise here is ~0.007 at most
    assert 0.5 * (f_fast - f_ref).abs().sum() < 0.025


def test_top_p_keeps_exactly_the_reference_nucleus():
    log_probs, allowed = fixed_distribution()
    ref = set(reference_pick(log_probs.expand(20_000, -1), allowed, "top_p", top_p=0.8).tolist())
    fast = set(pick_tokens(log_probs.expand(20_000, -1), allowed, "top_p", top_p=0.8).tolist())
    assert fast == ref


def test_rejection_fallback_is_exact(monkeypatch):
    """With no rejection rounds every row takes the sort-based path; with many, almost none: same law."""
    log_probs, allowed = fixed_distribution()
    weights = torch.softmax(log_probs.masked_fill(~allowed, float("-inf")), 0)
    weights = torch.nn.functional.pad(weights, (0, 56)).expand(40_000, -1).contiguous()
    counts = []
    for rounds in (0, 50):
        monkeypatch.setattr(sampling, "ROUNDS", rounds)
        drawn = nucleus_sample(weights, 0.3, torch.Generator().manual_seed(rounds))
        counts.append(torch.bincount(drawn, minlength=256).double() / len(drawn))
    assert 0.5 * (counts[0] - counts[1]).abs().sum() < 0.02


def test_top_k_rejection_and_exact_paths_agree(monkeypatch):
    """Top-k by rejection (a peaked row: the 10 best hold most of the mass) and by ``topk`` (no rounds, or a
    flat row that sends every row to it after one round) follow the reference law."""
    log_probs, allowed = fixed_distribution()
    flat = torch.log_softmax(torch.randn(200, generator=torch.Generator().manual_seed(9)) * 0.1, 0)
    for row, rounds in ((log_probs, 50), (log_probs, 0), (flat, 4)):
        monkeypatch.setattr(sampling, "ROUNDS", rounds)
        drawn = pick_tokens(
            row.expand(40_000, -1), allowed, "top_k", top_k=10, generator=torch.Generator().manual_seed(1)
        )
        exact = reference_probs(row.unsqueeze(0), allowed, "top_k", top_k=10)[0].double()
        freq = torch.bincount(drawn, minlength=200).double() / len(drawn)
        assert not bool(((freq > 0) & (exact == 0)).any())
        assert 0.5 * (freq - exact).abs().sum() < 0.02


def test_block_pickers_on_ties_and_padding():
    x = torch.full((3, 128), float("-inf"))
    x[0, [5, 70]] = 2.0  # a tie across blocks: the first index wins, like argmax
    x[1, 127] = 0.0
    x[2, 64:] = 1.0
    assert block_argmax(x).tolist() == [5, 127, 64]
    weights = torch.zeros(4, 128)
    weights[:, 127] = 1e-30  # a lone tiny weight at the very end is still found
    weights[1:, 3] = 1.0
    drawn, total = block_sample(weights, torch.Generator().manual_seed(0))
    assert drawn[0] == 127 and bool((drawn[1:] == 3).all()) and bool((total > 0).all())


def test_seeded_pickers_reproduce_a_batch():
    log_probs, allowed = fixed_distribution()
    rows = log_probs.expand(500, -1)
    for strategy in ("sample", "top_k", "top_p"):
        a = pick_tokens(rows, allowed, strategy, top_p=0.7, generator=torch.Generator().manual_seed(3))
        b = pick_tokens(rows, allowed, strategy, top_p=0.7, generator=torch.Generator().manual_seed(3))
        c = pick_tokens(rows, allowed, strategy, top_p=0.7, generator=torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    ("layers", "z_every", "output_layer", "z_out", "codes"),
    [(1, True, "softmax", False, 0), (2, False, "softmax", False, 0), (3, True, "softmax", False, 0),
     (2, True, "adaptive", False, 0), (1, False, "adaptive", False, 0), (2, True, "softmax", True, 0),
     (2, False, "adaptive", True, 0), (2, True, "softmax", True, 3), (1, False, "adaptive", False, 3),
     (2, True, "adaptive", True, 3), (2, False, "softmax", False, -3)],
)
def test_stepper_matches_model_step(vocab, layers, z_every, output_layer, z_out, codes):
    """The per-batch precomputed step gives the model's own next-token distribution, step after step (with
    position codes, also past the last coded position; codes < 0: the LM with a learned code per position)."""
    latent = codes >= 0
    lm = tiny_model(len(vocab), latent, decoder_layers=layers, z_to_every_input=z_every and latent,
                    output_layer=output_layer, z_to_output=z_out, z_to_initial_state=latent, position_codes=abs(codes),
                    position_code_dim=5, adaptive_cutoffs=[len(vocab) // 4, len(vocab) // 2]).eval()  # fmt: skip
    if not latent:
        with torch.no_grad():
            lm.decoder.position_table.normal_()
    z = torch.randn(6, 8) if latent else None
    prev = torch.full((6,), vocab.bos_id)
    with torch.no_grad():
        stepper, state = LogitStepper(lm, z, 6), lm.initial_state(z, 6)
        assert stepper.fast
        for t in range(5):
            log_probs, state = lm.step(prev, state, z, position=t)
            logits = stepper(prev)
            assert logits.shape[1] % 64 == 0 and bool(torch.isneginf(logits[:, len(vocab) :]).all())
            assert torch.allclose(torch.log_softmax(logits[:, : len(vocab)], 1), log_probs, atol=1e-5)
            prev = torch.multinomial(log_probs.exp(), 1).squeeze(1)


@pytest.mark.parametrize("output_layer", ["softmax", "adaptive"])
def test_stepper_reorder_moves_every_per_row_part(vocab, output_layer) -> None:
    """Reordering rows (beam search) moves the state and each row's z terms, including z's share of the output
    layer and its position codes: a reordered stepper steps exactly as one built on the reordered z."""
    model = tiny_model(len(vocab), decoder_layers=2, z_to_output=True, output_layer=output_layer, position_codes=4,
                       adaptive_cutoffs=[len(vocab) // 4, len(vocab) // 2]).eval()  # fmt: skip
    z, perm = 3 * torch.randn(5, 8), torch.tensor([3, 0, 4, 1, 1])
    first, second = torch.randint(4, len(vocab), (5,)), torch.randint(4, len(vocab), (5,))
    with torch.no_grad():
        moved, built = LogitStepper(model, z, 5), LogitStepper(model, z[perm], 5)
        moved(first), built(first[perm])
        moved.reorder(perm)
        torch.testing.assert_close(moved(second), built(second))


def test_form_is_decoded_as_asked(vocab) -> None:
    """A form-conditioned model: the fast stepper conditions on the requested form exactly as model.step does."""
    model = tiny_model(len(vocab), decoder_layers=2, highway_layers=1, num_forms=4).eval()
    with torch.no_grad():
        model.form_embed.weight.normal_(std=3.0)
    z = torch.randn(3, 8)
    poems = {
        form: generate(model, vocab, z, DecodeRequest(strategy="greedy", form=form)) for form in ("jueju", "gushi")
    }
    assert [p.text for p in poems["jueju"]] != [p.text for p in poems["gushi"]]
    # the same greedy poems, decoded step by step through model.step with the form's id
    hanzi = torch.tensor([is_hanzi(token) for token in vocab.tokens])
    state, prev, chars = model.initial_state(z, 3), torch.full((3,), vocab.bos_id), []
    with torch.no_grad():
        for _ in range(20):
            log_probs, state = model.step(prev, state, z, torch.full((3,), 3))
            prev = log_probs.masked_fill(~hanzi, float("-inf")).argmax(dim=1)
            chars.append(prev)
    expected = ["".join(vocab.tokens[i] for i in row) for row in torch.stack(chars, 1).tolist()]
    assert ["".join(p.lines) for p in poems["gushi"]] == expected
    plain = PoemModel(ModelConfig(vocab_size=len(vocab), embed_dim=16, encoder_hidden=16, latent_dim=8,
                                  decoder_hidden=16, output_layer="softmax"))
    with pytest.raises(PromptError, match="trained without form tags"):
        generate(plain, vocab, z, DecodeRequest(form="gushi"))


# ---- log-prob rows (an adaptive softmax's output) and decoding by row blocks ----------------------------------


@pytest.mark.parametrize(
    ("strategy", "kwargs"),
    [("sample", {}), ("sample", {"temperature": 0.7}), ("top_p", {"top_p": 0.9}),
     ("top_p", {"top_p": 0.5, "temperature": 1.5}), ("top_k", {"top_k": 10})],
)  # fmt: skip
def test_log_prob_rows_follow_the_reference_law(strategy, kwargs):
    """Rows that are log-probs already take the exp path (no softmax): the same law as the reference, including a
    far tail below exp's normal range (log-probs of -150 to -400) that is never drawn."""
    log_probs, allowed = fixed_distribution()
    log_probs = log_probs.clone()
    log_probs[150:] = -150.0 - 5.0 * torch.arange(50.0)  # mass ~e^-150: the floored region
    log_probs = torch.log_softmax(log_probs, 0)
    draws = 60_000
    rows = torch.nn.functional.pad(log_probs, (0, 56), value=float("-inf")).expand(draws, -1).contiguous()
    keep = torch.nn.functional.pad(allowed.float(), (0, 56)).unsqueeze(0)
    temperature = kwargs.get("temperature", 1.0)
    top = {k: v for k, v in kwargs.items() if k != "temperature"}
    generator = torch.Generator().manual_seed(1)
    fast, log_prob = sampling.choose(rows.clone(), keep, strategy, temperature, generator=generator, normalised=True,
                                     **top)
    exact = reference_probs(log_probs.unsqueeze(0), allowed, strategy, **kwargs)[0].double()
    freq = torch.bincount(fast, minlength=256)[:200].double() / draws
    assert not bool(((freq > 0) & (exact == 0)).any()) and int((fast >= 150).sum()) == 0
    assert 0.5 * (freq - exact).abs().sum() < 0.015
    torch.testing.assert_close(log_prob, log_probs[fast])  # the model's own log-probs, whatever the temperature


def test_log_prob_rows_whose_allowed_tokens_all_underflow_are_exact():
    """A row whose allowed tokens all lie hundreds of nats down (a hard constraint against the model) draws them
    in proportion to their probabilities, not uniformly from a floor; a mask banning many columns (multiplied)
    and one banning few (zeroed by index) give the same weights."""
    row = torch.full((1, 64), -300.0)
    row[0, :4] = torch.tensor([-1e-3, -8.0, -9.0, -10.0])
    row[0, 10], row[0, 11] = -400.0, -401.0  # e^1 : 1
    only = torch.zeros(1, 64)
    only[0, [10, 11]] = 1.0
    drawn, log_prob = sampling.choose(row.expand(40_000, -1).clone(), only, "sample",
                                      generator=torch.Generator().manual_seed(0), normalised=True)  # fmt: skip
    share = float((drawn == 10).double().mean())
    assert set(drawn.tolist()) == {10, 11} and abs(share - 1 / (1 + np.exp(-1.0))) < 0.015
    assert bool((log_prob <= -400.0).all())
    few, many = torch.ones(1, 64), torch.zeros(1, 64)
    few[0, [2, 5]] = 0.0
    many[0, :40] = 1.0
    many[0, [2, 5]] = 0.0
    logits = torch.log_softmax(torch.randn(3, 64), 1)
    for keep in (few, many):
        weights = sampling._masked_weights(logits, keep, 0.8, logits, sampling.Workspace(), log_probs=True)
        expected = torch.softmax(logits.masked_fill(keep <= 0, float("-inf")) / 0.8, 1)
        torch.testing.assert_close(weights / weights.sum(1, keepdim=True), expected)


def test_row_wise_passes_in_one_pass_and_in_chunks_agree(monkeypatch):
    """The sampler's fused row-wise passes (softmax and normaliser, masked weights, the heavier-mass sum) run over
    a small table at once and over a large one ``ROW_CHUNK`` rows at a time: both ways give the same values."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 256, generator=gen) * 3
    log_probs = torch.log_softmax(logits, 1)
    few = torch.ones(1, 256)
    few[0, [3, 9]] = 0.0
    many = (torch.rand(37, 256, generator=gen) > 0.5).float()
    drawn = torch.randint(256, (37,), generator=gen)
    results = {}
    for one_pass in (0, 1 << 21):  # 0: every table is chunked
        monkeypatch.setattr(sampling, "ONE_PASS", one_pass)
        assert len(sampling._row_chunks(logits)) == (1 if one_pass else 3)
        probs, log_norm = sampling._normalise(logits, sampling.Workspace())
        weights = [sampling._masked_weights(log_probs, keep, t, log_probs, sampling.Workspace(), log_probs=True)
                   for keep in (few, many) for t in (1.0, 0.7)]  # fmt: skip
        plain = sampling._masked_weights(logits, many, 0.7, logits.clone(), sampling.Workspace())
        above = sampling._mass_above(weights[0], drawn, torch.empty_like(weights[0]))
        results[one_pass] = [probs.clone(), log_norm, *[w.clone() for w in weights], plain.clone(), above]
    for chunked, whole in zip(results[0], results[1 << 21], strict=True):
        torch.testing.assert_close(chunked, whole)
    expected = (weights[0] * (weights[0] > weights[0].gather(1, drawn.unsqueeze(1)))).sum(1)
    torch.testing.assert_close(results[0][-1], expected)


@pytest.mark.parametrize("output_layer", ["softmax", "adaptive"])
def test_decoding_by_row_blocks_is_decoding_by_batch(vocab, monkeypatch, output_layer):
    """Rows are made and drawn from in blocks (decoding.ROW_BLOCK, LAZY_ROW_BLOCK for an adaptive softmax drawn
    from its head): blocks of 5 rows (the last one short) write the same greedy poems with the same scores as one
    block, and sampled poems score their own log-probs."""
    from poetry_vae.generation import decoding

    lm = tiny_model(len(vocab), decoder_layers=2, z_to_output=True, output_layer=output_layer, position_codes=4,
                    adaptive_cutoffs=[len(vocab) // 4, len(vocab) // 2]).eval()  # fmt: skip
    z = sample_prior(lm, 23, torch.Generator().manual_seed(0))
    poems = {}
    for block in (5, 1024):
        monkeypatch.setattr(decoding, "ROW_BLOCK", block)
        monkeypatch.setattr(decoding, "LAZY_ROW_BLOCK", block)
        poems[block] = run(lm, vocab, z, strategy="greedy")
        sampled = run(lm, vocab, z, 3, strategy="top_p", temperature=0.8)
        assert len({p.text for p in sampled}) > 20
        recomputed = teacher_forced_log_prob(lm, vocab, z, sampled)
        assert torch.allclose(torch.tensor([p.log_prob for p in sampled]), recomputed, atol=1e-3)
    assert [p.text for p in poems[5]] == [p.text for p in poems[1024]]
    assert np.allclose([p.log_prob for p in poems[5]], [p.log_prob for p in poems[1024]], atol=1e-4)


# ---- an adaptive softmax's tails made only for the rows that need them (generation.adaptive_draw) -------------


class FixedAdaptiveRows:
    """A stepper stand-in whose rows all hold one adaptive-softmax distribution: a 40-character shortlist (three
    heavy characters) and two clusters of 60 and 100 characters taking 10% and 6% of the mass, each with its
    first character heavy (so tail characters belong to a top-p nucleus) and a long light tail."""

    shortlist, vocab_size, tail_spans = 40, 200, [(40, 100), (100, 200)]
    width = padded_size(200)

    def __init__(self, heavy: tuple[float, ...] = (0.3, 0.25, 0.15), clusters: tuple[float, float] = (0.1, 0.06),
                 tail_heavy: tuple[tuple[float, ...], tuple[float, ...]] = ((0.6,), (0.5,))):
        g = torch.Generator().manual_seed(4)

        def spread(heavy: list[float], count: int, rest: float) -> torch.Tensor:
            light = torch.rand(count - len(heavy), generator=g) + 0.5
            return torch.cat([torch.tensor(heavy), rest * light / light.sum()]).log()

        rest = 1.0 - sum(heavy) - sum(clusters)
        self.head = torch.cat([spread(list(heavy), 40, rest), torch.tensor(clusters).log()])
        full = torch.full((self.width,), float("-inf"))
        full[:40] = self.head[:40]
        for c, (start, stop) in enumerate(self.tail_spans):
            full[start:stop] = self.head[40 + c] + spread(list(tail_heavy[c]), stop - start, 1 - sum(tail_heavy[c]))
        self.full = full
        self.clusters_made: list[int] = []  # the clusters made alone, one entry a call

    def head_log_probs(self, rows: slice | torch.Tensor) -> torch.Tensor:
        count = rows.stop - rows.start if isinstance(rows, slice) else len(rows)
        return self.head.expand(count, -1).clone()

    def project(self, rows: slice | torch.Tensor, out: torch.Tensor, head: torch.Tensor | None = None) -> torch.Tensor:
        return out.copy_(self.full.expand(out.shape[0], -1))

    def cluster_log_probs(self, rows: slice | torch.Tensor, cluster: int, head: torch.Tensor) -> torch.Tensor:
        self.clusters_made.append(cluster)
        start, stop = self.tail_spans[cluster]
        return self.full[start:stop].expand(head.shape[0], -1).clone()


def _lazy_draws(strategy: str, rows: int, keep: torch.Tensor, monkeypatch, stepper=None, **knobs: float):
    """``rows`` draws of one step of ``stepper`` (a :class:`FixedAdaptiveRows`) and the number of rows made
    whole."""
    from poetry_vae.generation import adaptive_draw
    from poetry_vae.generation.sampling import Workspace, no_phase

    stepper = stepper or FixedAdaptiveRows()
    made_whole = []
    whole_rows = adaptive_draw._whole_rows
    monkeypatch.setattr(adaptive_draw, "_whole_rows", lambda *a: made_whole.append(len(a[2])) or whole_rows(*a))
    chosen, log_prob = adaptive_draw.choose_lazily(
        stepper, slice(0, rows), keep, None, DecodeRequest(strategy=strategy, **knobs),
        torch.Generator().manual_seed(1), torch.empty(rows, stepper.width), Workspace(), no_phase)  # fmt: skip
    torch.testing.assert_close(log_prob, stepper.full[chosen])  # the model's own log-probs
    return stepper, chosen, sum(made_whole)


def _stage_on_and_off(monkeypatch, stage: str, strategy: str, knobs: dict, banned: tuple[int, ...] = (),
                      **tails) -> list[tuple]:
    """40,000 draws of a heavy cluster 0 (:class:`FixedAdaptiveRows` with ``tails``; ``banned`` masked) with
    ``adaptive_draw``'s ``stage`` as it is, then made a no-op: for each, the stepper, the draws, the rows made
    whole and :func:`_law_and_frequencies`."""
    from poetry_vae.generation import adaptive_draw

    runs = []
    for on in (True, False):
        if not on:
            monkeypatch.setattr(adaptive_draw, stage, lambda *a, **k: None)
        stepper = FixedAdaptiveRows(heavy=(0.3, 0.2), clusters=(0.3, 0.06), **tails)
        keep = torch.ones(1, stepper.width)
        keep[:, 200:] = 0.0
        keep[0, list(banned)] = 0.0
        _, chosen, whole = _lazy_draws(strategy, 40_000, keep, monkeypatch, stepper, **knobs)
        runs.append((stepper, chosen, whole, _law_and_frequencies(stepper, chosen, keep[0], strategy, **knobs)))
    return runs


def _law_and_frequencies(stepper, chosen: torch.Tensor, keep_row: torch.Tensor, strategy: str, **knobs: float):
    """The whole row's exact law under ``keep_row``, the draws' frequencies, and the expected sampling noise of
    their total variation (what a correct sampler stays within, 1.6x)."""
    exact = reference_probs(stepper.full[:200].unsqueeze(0), keep_row[:200] > 0, strategy, **knobs)[0].double()
    freq = torch.bincount(chosen, minlength=200).double() / len(chosen)
    noise = 0.5 * float((2 * exact * (1 - exact) / (math.pi * len(chosen))).sqrt().sum())
    return exact, freq, noise


@pytest.mark.parametrize(
    ("strategy", "knobs", "per_row_keep", "tails_drawn"),
    [("top_p", {"temperature": 1.0, "top_p": 0.9}, False, True),
     ("top_p", {"temperature": 0.7, "top_p": 0.9}, False, True),
     ("top_p", {"temperature": 0.8, "top_p": 0.95}, True, True),
     ("top_p", {"temperature": 1.0, "top_p": 0.3}, False, False),
     ("sample", {"temperature": 1.0}, False, True), ("sample", {"temperature": 0.6}, True, True)],
)  # fmt: skip
def test_lazy_tail_draws_follow_the_whole_row_law(monkeypatch, strategy, knobs, per_row_keep, tails_drawn):
    """Draws that make the tails only for the rows that need them keep the whole row's law, within 1.6x the
    expected sampling noise of the total variation (an off-by-one nucleus, a wrong cluster offset or a missing
    envelope test exceeds it several times over), and take both paths: rows decided from the head, rows made
    whole. Masks ban a heavy shortlist character and a tail's heaviest, one mask for all rows or two."""
    rows = 40_000
    keep = torch.ones(2 if per_row_keep else 1, FixedAdaptiveRows.width)
    keep[:, 200:] = 0.0
    keep[0, [0, 100]] = 0.0
    if per_row_keep:
        keep[1, [1, 40]] = 0.0
        keep = keep.repeat(rows // 2, 1)
    stepper, chosen, whole = _lazy_draws(strategy, rows, keep, monkeypatch, **knobs)
    for parity in (0, 1) if per_row_keep else (0,):
        picked = chosen[parity::2] if per_row_keep else chosen
        exact, freq, noise = _law_and_frequencies(stepper, picked, keep[parity], strategy, **knobs)
        assert not bool(((freq > 0) & (exact == 0)).any())
        assert 0.5 * float((freq - exact).abs().sum()) <= 1.6 * noise  # 0 for a one-character nucleus
        if parity == 0:  # tail characters are in the law, or not (the second mask bans the heavy ones)
            assert (float(exact[40:].sum()) > 0.01) == tails_drawn
    assert 0 < whole < rows


@pytest.mark.parametrize(
    ("rows_law", "knobs", "outside", "banned"),
    [  # below T = 1 a row's mass is known only within the clusters' bounds: a shortlist character whose heavier
       # mass lies between top_p x the two ends of that range is outside the nucleus, and the head must not admit it
     ({"heavy": (0.2, 0.15, 0.12, 0.1, 0.08, 0.07, 0.06), "clusters": (0.05, 0.04)},
      {"temperature": 0.7, "top_p": 0.6}, 4, (0, 100)),
       # the same for a tail character, decided with its own cluster made and the other one bounded
     ({"heavy": (0.45,), "clusters": (0.4, 0.08), "tail_heavy": ((0.5, 0.25), (0.5,))},
      {"temperature": 0.7, "top_p": 0.85}, 41, ()),
       # a light tail character with the other cluster's heavy one above it: only the whole row can decide
     ({"heavy": (0.45,), "clusters": (0.2, 0.3)}, {"temperature": 1.0, "top_p": 0.7}, 45, ()),
       # a light tail character below its own cluster's heavy one (the other cluster negligible)
     ({"heavy": (0.45,), "clusters": (0.5, 0.001)}, {"temperature": 1.0, "top_p": 0.7}, 45, ())],
)  # fmt: skip
def test_lazy_tail_nucleus_edges(monkeypatch, rows_law, knobs, outside, banned):
    """Where a nucleus's edge falls between what the head bounds, the lazy draw keeps exactly the reference's
    nucleus (character ``outside`` is just out of it; ``banned`` characters masked) and its law."""
    stepper = FixedAdaptiveRows(**rows_law)
    keep = torch.ones(1, stepper.width)
    keep[:, 200:] = 0.0
    keep[0, list(banned)] = 0.0
    _, chosen, _ = _lazy_draws("top_p", 20_000, keep, monkeypatch, stepper, **knobs)
    exact, freq, noise = _law_and_frequencies(stepper, chosen, keep[0], "top_p", **knobs)
    assert float(exact[outside]) == 0.0 and set(chosen.tolist()) == set(exact.nonzero().squeeze(1).tolist())
    assert 0.5 * float((freq - exact).abs().sum()) <= 1.6 * noise


@pytest.mark.parametrize(
    ("strategy", "knobs"),
    [("sample", {"temperature": 1.0}), ("top_p", {"temperature": 0.8, "top_p": 0.95}),
     ("top_p", {"temperature": 1.0, "top_p": 0.9})],
)  # fmt: skip
def test_lazy_tail_cluster_draws_keep_their_character(monkeypatch, strategy, knobs):
    """A draw inside cluster 0 that lands on its second character (column 41: the shortlist's 40 + 1, which is
    also where the head holds cluster 1's entry) stays that character, whether the cluster's tail alone decides
    it or the whole row does (the cluster-alone stage switched off). Cluster 0 is heavy and its second character
    holds 80% of it, so a wrong reading of the column moves a fifth of the mass. The cluster-alone stage spares
    a whole row to most draws that fall in a tail."""
    runs = _stage_on_and_off(monkeypatch, "_finish_in_clusters", strategy, knobs, tail_heavy=((0.1, 0.8), (0.5,)))
    for cluster_alone, (stepper, _, _, (exact, freq, noise)) in zip((True, False), runs, strict=True):
        assert float(exact[41]) > 0.2 and abs(float(freq[41] - exact[41])) < 0.01
        assert 0.5 * float((freq - exact).abs().sum()) <= 1.6 * noise
        assert (0 in stepper.clusters_made) == cluster_alone
    (_, _, whole_on, _), (_, chosen_off, whole_off, _) = runs
    assert whole_on <= whole_off - 0.7 * int((chosen_off >= 40).sum())


@pytest.mark.parametrize(
    ("strategy", "knobs"), [("sample", {"temperature": 0.6}), ("top_p", {"temperature": 0.7, "top_p": 0.9})]
)
def test_lazy_tail_rejected_cluster_draws_draw_again_not_whole(monkeypatch, strategy, knobs):
    """Below T = 1 a cluster's bound overstates its tempered mass, so many draws inside it are rejected. Each
    rejected row draws again from its envelope with that cluster's bound replaced by its characters' exact
    weights (adaptive rejection), not from its whole row: the law stays the whole row's, and far fewer rows are
    made whole than with the redraw switched off."""
    # a banned tail character (42): the cluster's allowed mass is below its bound at any T
    runs = _stage_on_and_off(monkeypatch, "_redraw_rejected", strategy, knobs, banned=(42,),
                             tail_heavy=((0.1, 0.1), (0.5,)))  # fmt: skip
    for _, _, _, (exact, freq, noise) in runs:
        assert 0.5 * float((freq - exact).abs().sum()) <= 1.6 * noise
    assert runs[0][2] < 0.7 * runs[1][2]


def test_lazy_tail_shortlist_draws_under_a_heavier_bound_decide_from_the_head(monkeypatch):
    """A shortlist draw lighter than some cluster's bound may have heavier characters in that cluster, but no
    more of them than the bound: counted whole, the bound still leaves most such draws (here the 37 light
    shortlist characters, 15% of draws) inside the nucleus, decided from the head. Same law; rows made whole
    5,861 of 40,000, where sending every such draw to its whole row made 9,590."""
    keep = torch.ones(1, FixedAdaptiveRows.width)
    keep[:, 200:] = 0.0
    knobs = {"temperature": 1.0, "top_p": 0.95}
    stepper, chosen, whole = _lazy_draws("top_p", 40_000, keep, monkeypatch, **knobs)
    exact, freq, noise = _law_and_frequencies(stepper, chosen, keep[0], "top_p", **knobs)
    assert 0.5 * float((freq - exact).abs().sum()) <= 1.6 * noise
    assert float(((chosen >= 3) & (chosen < 40)).float().mean()) > 0.1  # the light shortlist characters are drawn
    assert whole < 0.17 * len(chosen)


def test_lazy_tail_greedy_is_the_whole_row_argmax(monkeypatch):
    """The best shortlist character wins unless a cluster may hold a better one; then that cluster's tail alone
    decides, cluster after cluster (no whole row is made)."""
    keep = torch.ones(3, FixedAdaptiveRows.width)
    keep[:, 200:] = 0.0
    keep[1, :40] = 0.0  # no shortlist character: the tails must be made
    keep[2, :60] = 0.0  # neither, nor cluster 0's heavy character: cluster 1's heavy one beats what is left
    stepper, chosen, whole = _lazy_draws("greedy", 3, keep, monkeypatch)
    expected = stepper.full[:200].unsqueeze(0).masked_fill(keep[:, :200] <= 0, float("-inf")).argmax(dim=1)
    assert chosen.tolist() == expected.tolist() and whole == 0 and stepper.clusters_made == [0, 1]




def test_lazy_tail_decoding_keeps_per_row_constraints_and_scores(vocab, monkeypatch):
    """A small adaptive-softmax model decoding with rhyme and tone constraints (a mask per row) takes the lazy
    path at every step, holds every constraint, and scores each poem's own teacher-forced log-probs; rows picked
    out by index project to the same log-probs as the whole block."""
    from poetry_vae.generation import adaptive_draw

    lm = tiny_model(len(vocab), decoder_layers=2, output_layer="adaptive",
                    adaptive_cutoffs=[len(vocab) // 4, len(vocab) // 2]).eval()  # fmt: skip
    z = sample_prior(lm, 40, torch.Generator().manual_seed(0))
    calls = []
    choose_lazily = adaptive_draw.choose_lazily
    monkeypatch.setattr(adaptive_draw, "choose_lazily", lambda *a, **k: calls.append(1) or choose_lazily(*a, **k))
    for strategy in ("top_p", "greedy"):
        poems = run(lm, vocab, z, strategy=strategy, temperature=0.8, rhyme="pingshui", tone="auto")
        assert all(p.constraints["rhyme"] and p.constraints["tone"] for p in poems)
        recomputed = teacher_forced_log_prob(lm, vocab, z, poems)
        assert torch.allclose(torch.tensor([p.log_prob for p in poems]), recomputed, atol=1e-3)
    assert len(calls) == 2 * 20
    with torch.no_grad():
        stepper = LogitStepper(lm, z, 40)
        stepper.advance(torch.full((40,), vocab.bos_id))
        whole = stepper.project(slice(None), torch.empty(40, stepper.width)).clone()
        picked = torch.tensor([3, 17, 17, 39])
        part = stepper.project(picked, torch.empty(4, stepper.width), stepper.head_log_probs(picked))
        torch.testing.assert_close(part, whole[picked])
