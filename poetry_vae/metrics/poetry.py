"""Poem-level metrics for generated and human 绝句 (五言 or 七言): format, rhyme, 平仄, diversity, novelty.

Pure Python (no torch). A poem is either a list of line strings without punctuation
(``["白日依山尽", "黄河入海流", ...]``) or rendered text (``"白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"``);
:mod:`poetry_vae.layout` converts between the two.

The form-aware metrics take ``line_length``: ``None`` (default) accepts each poem in either form (4 lines of 5,
or 4 lines of 7 characters), 5 or 7 accepts only that form — pass the checkpoint's line length to count a poem of
the other form as malformed. Rates are over *all* poems given: a malformed poem counts as not format-valid, not
rhyming and not fitting any pattern.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence

from poetry_vae.layout import NUM_LINES, PoemLike, is_format_valid, render, split_lines
from poetry_vae.prosody.patterns import (
    LINE_LENGTHS,
    check_line_length,
    fits_line_form,
    pattern_match,
    patterns,
    quatrain_line_length,
)
from poetry_vae.prosody.tables import check_system, rhymes

BLEU_EPSILON = 0.1


def _accepted_lengths(line_length: int | None) -> tuple[int, ...]:
    """The line lengths a poem may have: both forms for None; :class:`PromptError` for an unsupported one."""
    return LINE_LENGTHS if line_length is None else (check_line_length(line_length),)


def _quatrain(poem: PoemLike, line_length: int | None) -> tuple[list[str], int] | None:
    """The poem's lines and line length if it is a 绝句 of an accepted form, else None."""
    lines = split_lines(poem)
    length = quatrain_line_length(lines)
    return None if length is None or length not in _accepted_lengths(line_length) else (lines, length)


def is_valid_poem(poem: PoemLike, line_length: int | None = None) -> bool:
    """True if ``poem`` is written exactly as a 绝句 of an accepted shape (:func:`~poetry_vae.layout.is_format_valid`).

    Lists of lines are rendered first, so they are checked for their characters and line lengths only.
    """
    text = poem if isinstance(poem, str) else render(poem)
    return any(is_format_valid(text, length, NUM_LINES) for length in _accepted_lengths(line_length))


def format_valid_rate(poems: Sequence[PoemLike], line_length: int | None = None) -> float:
    """Share of poems that are format-valid (:func:`is_valid_poem`; 0.0 for no poems)."""
    _accepted_lengths(line_length)  # an unsupported length fails even with no poems
    if not poems:
        return 0.0
    return sum(is_valid_poem(poem, line_length) for poem in poems) / len(poems)


def poem_rhymes(poem: PoemLike, system: str = "pingshui", line_length: int | None = None) -> bool:
    """True if the last characters of lines 2 and 4 share a rhyme class (False for a malformed poem)."""
    quatrain = _quatrain(poem, line_length)
    if quatrain is None:
        return False
    lines, _ = quatrain
    return rhymes(lines[1][-1], lines[3][-1], system)


def rhyme_rate(poems: Sequence[PoemLike], system: str = "pingshui", line_length: int | None = None) -> float:
    """Share of poems whose lines 2 and 4 end in a shared rhyme class (0.0 for no poems)."""
    check_system(system)
    _accepted_lengths(line_length)
    if not poems:
        return 0.0
    return sum(poem_rhymes(poem, system, line_length) for poem in poems) / len(poems)


def fits_a_pattern(poem: PoemLike, line_length: int | None = None) -> bool:
    """Whether one poem fits a regulated tone pattern fully (近体): what :func:`tone_compliance`'s fit rate counts."""
    return tone_compliance([poem], line_length=line_length)["fit_rate"] == 1.0


def tone_compliance(
    poems: Sequence[PoemLike], strict: bool = False, system: str = "pingshui", line_length: int | None = None
) -> dict[str, float]:
    """``fit_rate``: share of poems fitting some pattern fully; ``position_rate``: mean best-pattern score;
    ``cross_line_rate``: share of poems each of whose lines keeps a regulated line form (:func:`fits_line_form`)
    though together they fit no pattern: the lines' tones do not chain (粘对). The rest of the misfits break a
    line's own form.

    Each poem is scored against the patterns of its own line length. Free positions (0-based 0 and 2, and 4 for
    七言) are skipped unless ``strict``. Malformed poems score 0.
    """
    check_system(system)
    _accepted_lengths(line_length)
    if not poems:
        return {"fit_rate": 0.0, "position_rate": 0.0, "cross_line_rate": 0.0}
    fits = cross = 0
    score_sum = 0.0
    for poem in poems:
        quatrain = _quatrain(poem, line_length)
        if quatrain is None:
            continue
        lines, length = quatrain
        best = max(pattern_match(lines, name, strict, system, length) for name in patterns(length))
        score_sum += best
        fits += best == 1.0
        cross += best < 1.0 and all(fits_line_form(line, strict, system, length) for line in lines)
    n = len(poems)
    return {"fit_rate": fits / n, "position_rate": score_sum / n, "cross_line_rate": cross / n}


def distinct_n(poems: Sequence[PoemLike], n: int) -> float:
    """Distinct / total character n-grams over all poems, n-grams taken inside lines only (0.0 if none)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams: Counter[str] = Counter()
    for poem in poems:
        for line in split_lines(poem):
            grams.update(line[i : i + n] for i in range(len(line) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def _ngrams(tokens: str, max_n: int) -> list[Counter[str]]:
    return [Counter(tokens[i : i + n] for i in range(len(tokens) - n + 1)) for n in range(1, max_n + 1)]


def _bleu_from_counts(
    hyp_grams: list[Counter[str]], hyp_len: int, max_ref: dict[str, int], ref_len: int, max_n: int
) -> float:
    orders = min(max_n, hyp_len)
    if orders == 0:
        return 0.0
    log_sum = 0.0
    for n in range(orders):
        total = sum(hyp_grams[n].values())
        matched = sum(min(count, max_ref.get(gram, 0)) for gram, count in hyp_grams[n].items())
        log_sum += math.log((matched if matched else BLEU_EPSILON) / total)
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_sum / orders)


def sentence_bleu(hypothesis: str, references: Iterable[str], max_n: int = 4) -> float:
    """Character-level BLEU of ``hypothesis`` against ``references``.

    Uniform weights over orders ``1..min(max_n, len(hypothesis))``; clipped counts use the maximum count
    over references; brevity penalty uses the reference length closest to the hypothesis length (ties: the
    shorter); smoothing is Chen & Cherry (2014) method 1 — a zero match count is replaced by 0.1.
    """
    references = [references] if isinstance(references, str) else list(references)
    if not references or not hypothesis:
        return 0.0
    max_ref: dict[str, int] = {}
    for reference in references:
        for grams in _ngrams(reference, max_n):
            for gram, count in grams.items():
                max_ref[gram] = max(max_ref.get(gram, 0), count)
    ref_len = min((len(r) for r in references), key=lambda length: (abs(length - len(hypothesis)), length))
    return _bleu_from_counts(_ngrams(hypothesis, max_n), len(hypothesis), max_ref, ref_len, max_n)


def self_bleu(poems: Sequence[PoemLike], max_n: int = 4, sample: int | None = 1000, seed: int = 0) -> float:
    """Mean BLEU of each poem against all the others (characters of its lines joined, no punctuation).

    With more than ``sample`` poems a deterministic random subset of ``sample`` poems (``random.Random(seed)``)
    plays both roles. Uses :func:`sentence_bleu`; the max-over-references count of each n-gram excluding the
    hypothesis itself is read from a top-two index, so the cost is linear in the number of n-grams.
    Returns ``nan`` for fewer than two poems.
    """
    texts = ["".join(split_lines(poem)) for poem in poems]
    if sample is not None and len(texts) > sample:
        picked = sorted(random.Random(seed).sample(range(len(texts)), sample))
        texts = [texts[i] for i in picked]
    if len(texts) < 2:
        return math.nan
    grams = [_ngrams(text, max_n) for text in texts]
    # gram -> [(best count, poem), (second best count, poem)]
    top: dict[str, list[tuple[int, int]]] = {}
    for index, per_order in enumerate(grams):
        for counter in per_order:
            for gram, count in counter.items():
                entry = top.setdefault(gram, [])
                entry.append((count, index))
                entry.sort(reverse=True)
                del entry[2:]
    lengths = Counter(len(text) for text in texts)
    scores = []
    for index, text in enumerate(texts):
        if not text:
            scores.append(0.0)
            continue
        max_ref = {}
        for counter in grams[index]:
            for gram in counter:
                others = [count for count, owner in top[gram] if owner != index]
                if others:
                    max_ref[gram] = others[0]
        lengths[len(text)] -= 1
        ref_len = min((k for k, v in lengths.items() if v > 0), key=lambda k: (abs(k - len(text)), k))
        lengths[len(text)] += 1
        scores.append(_bleu_from_counts(grams[index], len(text), max_ref, ref_len, max_n))
    return sum(scores) / len(scores)


def novelty(poems: Sequence[PoemLike], train_poems: Sequence[PoemLike]) -> dict[str, float]:
    """``copied_poem_rate``: share of poems equal (line by line) to a training poem; ``copied_line_rate``:
    share of all lines that occur as a line of some training poem."""
    train_sets = [tuple(split_lines(poem)) for poem in train_poems]
    train_poem_set = set(train_sets)
    train_line_set = {line for lines in train_sets for line in lines}
    copied_poems = copied_lines = total_lines = 0
    for poem in poems:
        lines = split_lines(poem)
        copied_poems += tuple(lines) in train_poem_set
        copied_lines += sum(line in train_line_set for line in lines)
        total_lines += len(lines)
    return {
        "copied_poem_rate": copied_poems / len(poems) if poems else 0.0,
        "copied_line_rate": copied_lines / total_lines if total_lines else 0.0,
    }


def poetry_report(
    poems: Sequence[PoemLike],
    train_poems: Sequence[PoemLike] | None = None,
    system: str = "pingshui",
    self_bleu_sample: int | None = 1000,
    line_length: int | None = None,
) -> dict[str, float]:
    """All metrics for a set of poems (generated or human) as one flat ``{name: float}`` dict.

    ``line_length`` (5, 7 or None = either form per poem) decides which poems are well-formed; see the module doc.
    """
    check_system(system)
    n = len(poems)
    loose = tone_compliance(poems, strict=False, system=system, line_length=line_length)
    strict = tone_compliance(poems, strict=True, system=system, line_length=line_length)
    report = {
        "n_poems": float(n),
        "format_valid_rate": format_valid_rate(poems, line_length),
        "rhyme_rate": rhyme_rate(poems, system, line_length),
        "tone_fit_rate": loose["fit_rate"],
        "tone_position_rate": loose["position_rate"],
        "tone_cross_line_rate": loose["cross_line_rate"],
        "tone_fit_rate_strict": strict["fit_rate"],
        "tone_position_rate_strict": strict["position_rate"],
        "distinct_1": distinct_n(poems, 1),
        "distinct_2": distinct_n(poems, 2),
        "self_bleu": self_bleu(poems, sample=self_bleu_sample),
    }
    if train_poems is not None:
        report.update(novelty(poems, train_poems))
    return report
