"""Deterministic train/validation/test split without leakage between variant texts.

About 370 poems of the corpus share two or more lines with another poem (variant texts of one poem). Poems
that share any pair of lines are joined into one group (union-find), and a whole group goes to one split, so
no held-out poem has a line pair that the model saw in training. A group's split comes from a hash of its
name and a seed: stable across runs, machines and Python hash randomisation, and a poem keeps its split when
unrelated poems are added or the corpus is reordered (a group is named by its smallest text, as first shipped:
`Poem.split_name`, so mapping variant characters moved no poem between splits).

Blocks cut from one source poem (the two halves of a 律诗, the blocks of a 古体) are joined too when
`by_source` is set, so a source poem lands in one split. Each poem adds six keys (its line pairs, plus its
source id), so grouping is linear in the corpus size.
"""

from __future__ import annotations

import hashlib
from itertools import combinations

from poetry_vae.data.corpus import Poem

SPLITS = ("train", "val", "test")


def _find(parent: list[int], item: int) -> int:
    while parent[item] != item:
        parent[item] = parent[parent[item]]
        item = parent[item]
    return item


def _keys(poem: Poem, by_source: bool) -> list[tuple[str, str]]:
    keys = list(combinations(sorted(set(poem.lines)), 2))
    if by_source and poem.source_id:
        keys.append(("", poem.source_id))  # "" is never a line, so a source key never equals a line pair
    return keys


def variant_groups(poems: list[Poem], by_source: bool = False) -> list[int]:
    """For each poem, the index of the first poem of its group (poems linked by a shared pair of lines, and
    by a shared source poem when `by_source`)."""
    parent = list(range(len(poems)))
    first_with_key: dict[tuple[str, str], int] = {}
    for index, poem in enumerate(poems):
        for key in _keys(poem, by_source):
            other = first_with_key.setdefault(key, index)
            root_a, root_b = _find(parent, index), _find(parent, other)
            if root_a != root_b:
                parent[max(root_a, root_b)] = min(root_a, root_b)
    return [_find(parent, index) for index in range(len(poems))]


def _unit_interval(text: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_poems(poems: list[Poem], val_fraction: float = 0.05, test_fraction: float = 0.05,
                seed: int = 0, by_source: bool = False) -> dict[str, list[Poem]]:
    """{"train": [...], "val": [...], "test": [...]}, each in corpus order."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError("data.val_fraction and data.test_fraction must be in [0, 1) and sum to less than 1")
    roots = variant_groups(poems, by_source)
    group_name: dict[int, str] = {}
    for poem, root in zip(poems, roots, strict=True):
        group_name[root] = min(group_name.get(root, poem.split_name), poem.split_name)
    splits: dict[str, list[Poem]] = {name: [] for name in SPLITS}
    for poem, root in zip(poems, roots, strict=True):
        u = _unit_interval(group_name[root], seed)
        name = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
        splits[name].append(poem)
    return splits
