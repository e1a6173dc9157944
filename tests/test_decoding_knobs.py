"""The Hugging Face style decoding knobs: repetition_penalty, no_repeat_ngram_size, top_k with top_p, min_p and
num_return_sequences, on the tiny random model of test_generation (which loops badly: good for the first two)
and on a fixed distribution (exact sets for the filters).
"""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from test_generation import fixed_distribution, reference_probs, teacher_forced_log_prob, tiny_model

from poetry_vae.cli import CONFIG_DIR
from poetry_vae.errors import PromptError
from poetry_vae.generation import DecodeRequest, generate, sample_prior, sampling
from poetry_vae.generation.processors.ngram import repeated_ngrams, without_banned
from poetry_vae.generation.request import REQUEST_FIELDS
from poetry_vae.generation.sampling import choose, penalize_repeats, pick_tokens
from poetry_vae.prosody import fits_pattern, rhymes
from poetry_vae.schema import ConfigError, check_sample_config

N = 32


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is faster


@pytest.fixture(scope="module")
def model(vocab):
    return tiny_model(len(vocab))


@pytest.fixture(scope="module")
def z(model) -> torch.Tensor:
    return sample_prior(model, N, torch.Generator().manual_seed(0))


def run(model, vocab, z, seed: int = 1, **kwargs):
    return generate(model, vocab, z, DecodeRequest(**kwargs), torch.Generator().manual_seed(seed))


def repeated_chars(poems) -> int:
    """Characters beyond the first use of each, over all poems."""
    return sum(20 - len(set("".join(p.lines))) for p in poems)


def repeated_ngram_count(poems, n: int) -> int:
    """n-grams (over the whole poem, across line breaks) that occur again after their first occurrence."""
    total = 0
    for poem in poems:
        text = "".join(poem.lines)
        grams = [text[i : i + n] for i in range(len(text) - n + 1)]
        total += len(grams) - len(set(grams))
    return total


# ---- repetition_penalty -----------------------------------------------------------------------------------


def test_repetition_penalty_is_ctrls_rule():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [2.0, -1.0, 0.5, 3.0]])
    history = torch.tensor([[0, 1, 0], [3, 3, 3]])
    raw = penalize_repeats(logits, history, 2.0)
    # positive / 2, negative * 2, once however often a character was seen; the rest untouched
    assert logits.tolist() == [[1.0, -2.0, 0.5, 3.0], [2.0, -1.0, 0.5, 1.5]]
    assert raw.tolist() == [[2.0, -1.0, 2.0], [3.0, 3.0, 3.0]]


def test_penalty_changes_the_choice_but_not_the_reported_log_prob():
    raw = torch.full((1, 64), float("-inf"))
    raw[0, :3] = torch.tensor([2.0, 1.5, -0.5])
    keep = torch.zeros(1, 64)
    keep[0, :3] = 1.0
    history = torch.tensor([[0]])
    chosen, log_prob = choose(raw.clone(), keep, "greedy", repetition_penalty=2.0, history=history)
    assert chosen.tolist() == [1]  # 2.0 / 2 = 1.0 < 1.5
    assert log_prob.item() == pytest.approx(torch.log_softmax(raw[0, :3], 0)[1].item(), abs=1e-6)
    assert choose(raw.clone(), keep, "greedy", history=history)[0].tolist() == [0]  # off: the model's argmax


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_repetition_penalty_stops_a_looping_model(model, vocab, z, strategy):
    plain = run(model, vocab, z, strategy=strategy, beam_size=3)
    penalised = run(model, vocab, z, strategy=strategy, beam_size=3, repetition_penalty=2.0)
    assert repeated_chars(plain) > 10 * N  # the random model loops: more than 10 repeats a poem on average
    assert repeated_chars(penalised) < repeated_chars(plain) / 4
    # the reported score is still the model's own log-probability of the poem
    recomputed = teacher_forced_log_prob(model, vocab, z, penalised)
    assert torch.allclose(torch.tensor([p.log_prob for p in penalised]), recomputed, atol=1e-3)


def test_repetition_penalty_below_one_encourages_repeats(model, vocab, z):
    some = run(model, vocab, z, strategy="greedy", repetition_penalty=1.5)
    more = run(model, vocab, z, strategy="greedy", repetition_penalty=0.5)
    assert repeated_chars(more) > repeated_chars(some)


# ---- no_repeat_ngram_size ---------------------------------------------------------------------------------


def test_repeated_ngrams_bans_what_would_repeat():
    tokens = torch.tensor([[5, 6, 5, 0, 0], [5, 6, 7, 5, 0]])
    ban = repeated_ngrams(tokens, 3, 2, 8)  # step 3 follows 5 in row 0 (5 6 seen: ban 6), 7 in row 1 (none)
    assert ban[0].nonzero().flatten().tolist() == [6] and not bool(ban[1].any())
    ban = repeated_ngrams(tokens, 4, 2, 8)  # row 1 now ends in 5: 6 is banned there
    assert ban[1].nonzero().flatten().tolist() == [6]
    assert repeated_ngrams(tokens, 2, 2, 8).nonzero().tolist() == []  # row 0: 6 5 is new
    assert repeated_ngrams(tokens, 2, 3, 8) is None  # no complete trigram before step 3
    assert repeated_ngrams(tokens, 3, 1, 8)[0].nonzero().flatten().tolist() == [5, 6]  # n = 1: every used id


def test_ban_yields_where_it_would_leave_nothing():
    keep = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    ban = torch.tensor([[True, False, False, False], [True, True, False, False]])
    assert without_banned(keep, ban).tolist() == [[0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]
    assert without_banned(keep > 0, ban).tolist() == [[False, True, False, False], [True, True, False, False]]


@pytest.mark.parametrize("strategy", ["greedy", "top_p", "top_k_top_p", "beam"])
def test_no_bigram_twice(model, vocab, z, strategy):
    plain = run(model, vocab, z, strategy="greedy")
    assert repeated_ngram_count(plain, 2) > 0  # without the ban the model repeats bigrams
    poems = run(model, vocab, z, strategy=strategy, no_repeat_ngram_size=2, beam_size=3)
    assert repeated_ngram_count(poems, 2) == 0
    assert all(p.constraints == {"format": True} for p in poems)


def test_trigram_ban_allows_repeated_bigrams(model, vocab, z):
    poems = run(model, vocab, z, strategy="greedy", no_repeat_ngram_size=3)
    assert repeated_ngram_count(poems, 3) == 0 < repeated_ngram_count(poems, 2)


# ---- top_k_top_p and min_p on a fixed distribution ------------------------------------------------------------


def knob_reference(log_probs, allowed, strategy, min_p=0.0, **kwargs):
    """Hugging Face's order: top-k, then top-p on what is left, then min_p against the allowed maximum."""
    if strategy == "top_k_top_p":
        probs = reference_probs(log_probs, allowed, "top_k", **kwargs)
        probs = reference_probs(probs.log(), probs > 0, "top_p", top_p=kwargs.get("top_p", 0.9))
    else:
        probs = reference_probs(log_probs, allowed, strategy, **kwargs)
    tempered = reference_probs(log_probs, allowed, "sample", temperature=kwargs.get("temperature", 1.0))
    probs = probs.masked_fill(tempered < min_p * tempered.amax(dim=1, keepdim=True), 0.0)
    return probs / probs.sum(dim=1, keepdim=True)


def drawn_frequencies(strategy, draws=60_000, **kwargs):
    log_probs, allowed = fixed_distribution()
    rows = log_probs.unsqueeze(0).expand(draws, -1)
    picked = pick_tokens(rows, allowed, strategy, generator=torch.Generator().manual_seed(1), **kwargs)
    exact = knob_reference(log_probs.unsqueeze(0), allowed, strategy, **kwargs)[0].double()
    return torch.bincount(picked, minlength=200).double() / draws, exact


@pytest.mark.parametrize(
    ("strategy", "kwargs", "kept"),
    [
        ("sample", {"min_p": 0.02}, {4, 0, 16, 143, 58}),  # 0.0114 >= 0.02 x 0.467; the next (0.0071) is not
        ("sample", {"min_p": 0.05}, {4, 0, 16, 143}),
        ("sample", {"min_p": 1.0}, {4}),
        ("top_p", {"top_p": 0.8, "min_p": 0.05}, {4, 0, 16}),  # the nucleus first (min_p first would keep 2)
        ("top_p", {"top_p": 0.95, "min_p": 0.05}, {4, 0, 16, 143}),  # a wide nucleus: min_p cuts it
        ("top_k", {"top_k": 3, "min_p": 0.05}, {4, 0, 16}),
        ("top_k_top_p", {"top_k": 2, "top_p": 0.6}, {4, 0}),  # top_p of the two kept (0.59 of them is token 4)
        ("top_p", {"top_p": 0.8}, {4, 0, 16}),  # 4 and 0 hold 0.79 of the allowed mass: 16 is needed
        ("top_k_top_p", {"top_k": 4, "top_p": 0.8}, {4, 0}),  # renormalised over the 4 best they hold 0.93
        ("top_k_top_p", {"top_k": 10, "top_p": 0.95, "min_p": 0.02}, {4, 0, 16, 143}),  # the nucleus binds
        ("top_k_top_p", {"top_k": 10, "top_p": 0.99, "min_p": 0.02}, {4, 0, 16, 143, 58}),  # min_p binds
    ],
)
def test_filters_keep_exactly_the_expected_tokens(strategy, kwargs, kept):
    freq, exact = drawn_frequencies(strategy, **kwargs)
    assert set(exact.nonzero().flatten().tolist()) == kept  # the reference itself, spelled out
    assert set(freq.nonzero().flatten().tolist()) == kept  # every kept token drawn, nothing else
    assert 0.5 * (freq - exact).abs().sum() < 0.015


@pytest.mark.parametrize("rounds", [0, 50])
def test_nucleus_with_min_p_is_exact_on_both_paths(monkeypatch, rounds):
    """No rejection rounds (every row takes the sort-based path) or many (almost none does): the same law."""
    monkeypatch.setattr(sampling, "ROUNDS", rounds)
    freq, exact = drawn_frequencies("top_p", draws=30_000, top_p=0.8, min_p=0.05)
    assert set(freq.nonzero().flatten().tolist()) == {4, 0, 16}
    assert 0.5 * (freq - exact).abs().sum() < 0.02


def test_min_p_follows_temperature():
    """min_p compares tempered probabilities: a hotter row keeps more tokens at the same min_p."""
    cold, exact = drawn_frequencies("sample", min_p=0.05, temperature=0.7)
    hot, _ = drawn_frequencies("sample", min_p=0.05, temperature=2.0)
    assert int((cold > 0).sum()) < int((hot > 0).sum())
    assert 0.5 * (cold - exact).abs().sum() < 0.015


def test_min_p_and_top_k_top_p_in_generation(model, vocab, z):
    a = [p.text for p in run(model, vocab, z, strategy="top_k_top_p", top_k=5, top_p=0.9, min_p=0.3)]
    b = [p.text for p in run(model, vocab, z, strategy="top_k_top_p", top_k=5, top_p=0.9, min_p=0.3)]
    c = [p.text for p in run(model, vocab, z, strategy="top_p", top_p=0.9)]
    assert a == b and a != c
    # min_p = 1 keeps only the top allowed token: sampling becomes greedy
    greedy = [p.text for p in run(model, vocab, z, strategy="greedy")]
    assert [p.text for p in run(model, vocab, z, strategy="sample", min_p=1.0)] == greedy


# ---- num_return_sequences -----------------------------------------------------------------------------------


def test_beams_come_back_distinct_and_best_first(model, vocab, z):
    k = 3
    poems = run(model, vocab, z[:8], strategy="beam", beam_size=5, num_return_sequences=k)
    best = run(model, vocab, z[:8], strategy="beam", beam_size=5)
    assert len(poems) == 8 * k
    for i in range(8):
        group = poems[i * k : (i + 1) * k]
        assert len({p.text for p in group}) == k
        scores = [p.log_prob for p in group]
        assert scores == sorted(scores, reverse=True)
        assert group[0].text == best[i].text
    recomputed = teacher_forced_log_prob(model, vocab, z[:8].repeat_interleave(k, 0), poems)
    assert torch.allclose(torch.tensor([p.log_prob for p in poems]), recomputed, atol=1e-3)


def test_sampling_returns_k_draws_per_code(model, vocab, z):
    poems = run(model, vocab, z[:4], strategy="top_p", num_return_sequences=3)
    assert len(poems) == 12 and len({p.text for p in poems}) == 12
    # the draws of one code share it: teacher forcing with the repeated codes gives their scores
    recomputed = teacher_forced_log_prob(model, vocab, z[:4].repeat_interleave(3, 0), poems)
    assert torch.allclose(torch.tensor([p.log_prob for p in poems]), recomputed, atol=1e-3)


def test_lm_baseline_returns_k_poems_each(vocab):
    lm = tiny_model(len(vocab), use_latent=False)
    request = DecodeRequest(strategy="beam", beam_size=4, num_return_sequences=2)
    assert len(generate(lm, vocab, None, request, num_poems=3)) == 6


# ---- everything at once, with the hard constraints ------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["top_k_top_p", "top_p", "greedy", "beam"])
def test_constraints_hold_with_every_knob_on(model, vocab, z, strategy):
    knobs = {"repetition_penalty": 1.5, "no_repeat_ngram_size": 2, "min_p": 0.05, "top_k": 20, "beam_size": 3,
             "num_return_sequences": 1 if strategy == "greedy" else 2}  # fmt: skip
    toned = run(model, vocab, z[:12], strategy=strategy, rhyme="pingshui", tone="auto", acrostic="春夏秋冬", **knobs)
    prompted = run(model, vocab, z[:12], strategy=strategy, rhyme="xinyun", first_line="白日依山尽", **knobs)
    assert len(toned) == len(prompted) == 12 * knobs["num_return_sequences"]
    for poem in toned:
        assert poem.constraints == {"format": True, "tone": True, "rhyme": True, "acrostic": True}, poem.text
        assert fits_pattern(poem.lines, poem.pattern) and rhymes(poem.lines[1][-1], poem.lines[3][-1], "pingshui")
        assert [line[0] for line in poem.lines] == list("春夏秋冬")
    for poem in prompted:
        assert poem.constraints == {"format": True, "rhyme": True, "first_line": True}, poem.text
        assert poem.lines[0] == "白日依山尽" and rhymes(poem.lines[1][-1], poem.lines[3][-1], "xinyun")
    assert repeated_ngram_count(toned + prompted, 2) == 0


# ---- errors and the config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repetition_penalty": 0.0}, r"repetition_penalty must be > 0 \(1.0 = off\), got 0.0"),
        ({"repetition_penalty": float("inf")}, "repetition_penalty must be > 0"),
        ({"no_repeat_ngram_size": -1}, r"no_repeat_ngram_size must be >= 0 \(0 = off\), got -1"),
        ({"min_p": 1.5}, r"min_p must be in \[0, 1\] \(0 = off\), got 1.5"),
        ({"min_p": -0.1}, "min_p must be in"),
        ({"num_return_sequences": 0}, "num_return_sequences must be >= 1, got 0"),
        ({"num_return_sequences": 2, "strategy": "greedy"}, "num_return_sequences=2 needs strategy=beam"),
        ({"num_return_sequences": 6, "strategy": "beam"}, r"num_return_sequences must be in \[1, beam_size=5\]"),
        ({"strategy": "top_k_top_p", "top_k": 0}, "top_k must be >= 1"),
    ],
)
def test_knob_errors_are_one_line(model, vocab, z, kwargs, message):
    with pytest.raises(PromptError, match=message) as info:
        run(model, vocab, z[:2], **kwargs)
    assert "\n" not in str(info.value)


def sample_config(*overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("sample", overrides=list(overrides))


def test_sample_config_has_every_knob_with_its_default():
    cfg = sample_config()
    defaults = DecodeRequest()
    for key in ("min_p", "repetition_penalty", "no_repeat_ngram_size", "num_return_sequences", "top_k", "top_p"):
        assert key in REQUEST_FIELDS and cfg[key] == getattr(defaults, key)
    check_sample_config(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["repetition_penalty=-1"], "repetition_penalty must be > 0"),
        (["min_p=2"], "min_p must be in"),
        (["strategy=beam", "num_return_sequences=9"], "beam_size=5"),
        (["strategy=beam", "beam_size=0"], r"beam_size must be in \[1, 1024\], got 0"),
        (["strategy=beam", "beam_size=100000"], r"beam_size must be in \[1, 1024\], got 100000"),  # was out of memory
        (["no_repeat_ngram_size=two"], "no_repeat_ngram_size='two': expected an integer"),
    ],
)
def test_sample_config_checks_knobs_before_loading(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_sample_config(sample_config(*overrides))


@pytest.mark.parametrize(("strategy", "temperature"), [("greedy", 1.0), ("top_p", 0.8), ("top_p", 1.0),
                                                       ("sample", 1.0), ("top_k", 0.7)])
def test_log_prob_rows_skip_the_softmax_and_draw_the_same(strategy, temperature):
    """``normalised=True`` (an adaptive softmax's log-probs) skips the normaliser: the same draws from the same
    generator and the same reported log-probs."""
    log_probs, allowed = fixed_distribution()
    rows = 20_000
    logits = torch.nn.functional.pad(log_probs, (0, 56), value=float("-inf")).expand(rows, -1).contiguous()
    keep = torch.nn.functional.pad(allowed.float(), (0, 56)).unsqueeze(0)
    picked, reported = {}, {}
    for normalised in (False, True):
        picked[normalised], reported[normalised] = choose(
            logits.clone(), keep, strategy, temperature, top_k=5, generator=torch.Generator().manual_seed(3),
            normalised=normalised)
    assert torch.equal(picked[True], picked[False])
    assert torch.allclose(reported[True], reported[False], atol=1e-5)
    assert torch.allclose(reported[True], log_probs[picked[True]], atol=1e-5)
    shifted, _ = choose(logits[:8] + 3.0, keep, "greedy", normalised=True)  # trusted as log-probs: no normaliser
    assert torch.allclose(choose(logits[:8] + 3.0, keep, "greedy", normalised=True)[1], log_probs[shifted] + 3.0)
