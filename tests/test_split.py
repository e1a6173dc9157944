from __future__ import annotations

import random
from itertools import combinations

from poetry_vae.data.corpus import Poem
from poetry_vae.data.split import split_poems, variant_groups


def _pairs(poem: Poem) -> set[tuple[str, str]]:
    return set(combinations(sorted(set(poem.lines)), 2))


def test_split_sizes_are_about_90_5_5(corpus: list[Poem]) -> None:
    splits = split_poems(corpus)
    sizes = {name: len(poems) for name, poems in splits.items()}
    assert sum(sizes.values()) == len(corpus)
    assert 0.88 < sizes["train"] / len(corpus) < 0.92
    assert 0.04 < sizes["val"] / len(corpus) < 0.06 and 0.04 < sizes["test"] / len(corpus) < 0.06


def test_split_is_deterministic_and_order_independent(corpus: list[Poem]) -> None:
    first = split_poems(corpus)
    again = split_poems(corpus)
    assert all([p.text for p in first[n]] == [p.text for p in again[n]] for n in first)
    shuffled = corpus[:]
    random.Random(1).shuffle(shuffled)
    reordered = split_poems(shuffled)
    for name in first:
        assert {p.text for p in reordered[name]} == {p.text for p in first[name]}
    other_seed = split_poems(corpus, seed=1)
    assert {p.text for p in other_seed["test"]} != {p.text for p in first["test"]}


def test_variant_texts_exist_and_are_grouped(corpus: list[Poem]) -> None:
    roots = variant_groups(corpus)
    grouped = sum(1 for i, root in enumerate(roots) if root != i)
    assert 300 < grouped < 450  # ~370 poems share two or more lines with an earlier poem


def test_no_held_out_poem_shares_a_line_pair_with_training(corpus: list[Poem]) -> None:
    splits = split_poems(corpus)
    train_pairs = set().union(*(_pairs(p) for p in splits["train"]))
    for name in ("val", "test"):
        leaks = [p.text for p in splits[name] if _pairs(p) & train_pairs]
        assert leaks == [], f"{name} poems sharing a line pair with training: {leaks[:3]}"


def _halves(sources: int) -> list[Poem]:
    """Two blocks per source poem with no line in common: only their source id links them."""
    def line(n: int) -> str:
        return "".join(chr(0x4E00 + 5 * n + k) for k in range(5))
    return [Poem(lines=tuple(line(8 * s + 4 * half + k) for k in range(4)), source_id=f"s{s}",
                 form=("lushi_head", "lushi_tail")[half]) for s in range(sources) for half in range(2)]


def test_by_source_keeps_the_blocks_of_a_poem_together() -> None:
    blocks = _halves(300)

    def split_of(splits: dict[str, list[Poem]]) -> dict[str, set[str]]:
        where: dict[str, set[str]] = {}
        for name, poems in splits.items():
            for poem in poems:
                where.setdefault(poem.source_id, set()).add(name)
        return where

    assert all(len(v) == 1 for v in split_of(split_poems(blocks, 0.2, 0.2, by_source=True)).values())
    assert any(len(v) > 1 for v in split_of(split_poems(blocks, 0.2, 0.2)).values())  # the link matters
    roots = variant_groups(blocks, by_source=True)
    assert roots == [2 * (i // 2) for i in range(len(blocks))]
