"""Variant characters that OpenCC's t2s leaves in simplified text (Japanese shinjitai such as 隠, Taiwan and Hong
Kong variants such as 簷), mapped to the standard simplified character.

The mapping is derived from OpenCC's own variant tables, not listed by hand: a character is a variant when it is
not a standard simplified character (it is outside GB 2312) and OpenCC's ``jp2t``, ``tw2t`` or ``hk2t`` followed by
``t2s`` turns it into another character that is one (inside GB 2312). That rule keeps characters that are standard
in Chinese (翻, 郎, 著: all in GB 2312) whatever the Japanese or Taiwanese tables say of them. OpenCC's character
tables lack one variant common in the corpus, 疎 (it maps 疎 to 疏 only inside the phrase 疎通), so
:data:`SUPPLEMENT` adds it, from the 1955 First Table of Variant Characters (第一批异体字整理表), where 疎 is listed
under 疏.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Container

import opencc

VARIANT_CONFIGS = ("jp2t", "tw2t", "hk2t")  # the first that gives a standard character wins
SUPPLEMENT = {"疎": "疏"}
CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF))  # CJK Unified Ideographs and Extension A


def is_standard(char: str) -> bool:
    """Whether ``char`` is a standard simplified character (in GB 2312)."""
    try:
        char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


@functools.cache
def variant_map() -> dict[str, str]:
    """variant -> standard simplified character, for every CJK ideograph that t2s leaves as it is and the rule in
    the module docstring maps."""
    chars = "\n".join(chr(code) for low, high in CJK_RANGES for code in range(low, high + 1))
    to_simplified = opencc.OpenCC("t2s")
    # one character a line, so phrase tables never join neighbours; traditional characters that t2s converts
    # itself (盡 → 尽) are not variants: a prompt holding one gets the hint to write it simplified
    left = [char for char, simplified in zip(chars.split("\n"), to_simplified.convert(chars).split("\n"),
                                             strict=True) if char == simplified]
    candidates = [char for char in left if not is_standard(char)]
    mapping: dict[str, str] = {}
    for config in VARIANT_CONFIGS:
        converted = to_simplified.convert(opencc.OpenCC(config).convert("\n".join(candidates))).split("\n")
        for char, standard in zip(candidates, converted, strict=True):
            if char not in mapping and len(standard) == 1 and standard != char and is_standard(standard):
                mapping[char] = standard
    return {**mapping, **SUPPLEMENT}


def simplifier(standard_variants: bool = False) -> Callable[[str], str]:
    """The corpus build's conversion to simplified script: OpenCC t2s, then (``standard_variants``) the variant
    characters t2s leaves replaced by their standard forms."""
    convert = opencc.OpenCC("t2s").convert
    if not standard_variants:
        return convert
    return lambda text: standardise(convert(text))


def standardise(text: str) -> str:
    """``text`` with every variant character replaced by its standard simplified form (others unchanged)."""
    return text.translate(str.maketrans(variant_map()))


def variant_text(written: str, text: str) -> dict[str, str]:
    """A corpus row's ``{"variant_text": t2s's text}`` where the mapping changed it (the split is drawn by it, see
    data/split.py), else nothing."""
    return {"variant_text": written} if written != text else {}


def spellings() -> frozenset[str]:
    """Every character with another spelling: the variants and their standard forms."""
    return frozenset(variant_map()) | frozenset(variant_map().values())


@functools.cache
def _spellings() -> dict[str, tuple[str, ...]]:
    """standard character -> itself and its variants."""
    groups: dict[str, list[str]] = {}
    for variant, standard in variant_map().items():
        groups.setdefault(standard, [standard]).append(variant)
    return {standard: tuple(spellings) for standard, spellings in groups.items()}


def known_spelling(char: str, known: Container[str]) -> str:
    """``char`` as ``known`` (a model's vocabulary) writes it: its standard form if known (a model trained before
    the corpus mapping knows both and writes only that, see :func:`shadowed_variants`), else itself, else another
    variant of that form that is known; ``char`` unchanged when none is."""
    standard = variant_map().get(char, char)
    if standard in known:
        return standard
    if char in known:
        return char
    return next((spelling for spelling in _spellings().get(standard, (standard,)) if spelling in known), char)


def shadowed_variants(tokens: Collection[str]) -> frozenset[str]:
    """The variant characters among ``tokens`` whose standard form is a token too: decoding never writes them.
    Only vocabularies built before the shipped corpora mapped their variants hold any."""
    mapping, known = variant_map(), set(tokens)
    return frozenset(token for token in known if token in mapping and mapping[token] in known)


def known_spellings(text: str, known: Container[str]) -> str:
    """:func:`known_spelling` of every character of ``text``: typing 隐 or 隠 works whichever the model knows."""
    return "".join(known_spelling(char, known) for char in text)


def count_variants(corpus: str, line_length: int) -> dict[str, object]:
    """What the mapping changed in a shipped corpus, read from the file alone: before is the text as t2s wrote it
    (a row's ``variant_text`` where the mapping changed it), after the text shipped; ``variants_left`` counts the
    variant characters the shipped text still holds (0 by construction)."""
    from collections import Counter

    from poetry_vae.data.corpus import load_corpus

    mapping = variant_map()
    found: Counter[str] = Counter()
    poems = mapped = left = 0
    before: set[str] = set()
    after: set[str] = set()
    for poem in load_corpus(corpus, line_length=line_length):
        poems += 1
        mapped += bool(poem.variant_text)
        written = poem.variant_text or poem.text
        before.update(written)
        after.update(poem.text)
        found.update(char for char in written if char in mapping)
        left += sum(char in mapping for char in poem.text)
    return {"corpus": corpus, "poems": poems, "poems_mapped": mapped, "variant_chars": sum(found.values()),
            "distinct_variants": len(found), "variants_left": left, "vocabulary_before": len(before),
            "vocabulary_after": len(after), "commonest": found.most_common(25)}


def main() -> None:
    """Print the counts on every shipped corpus, as a Markdown table and the commonest variants."""
    rows = [count_variants(name, length) for name, length in (("wujue", 5), ("qijue", 7), ("wuyan", 5))]
    print("| corpus | poems | poems the mapping changed | variant characters mapped | distinct variants | "
          "variants left | distinct characters before → after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['corpus']} | {row['poems']:,} | {row['poems_mapped']:,} | {row['variant_chars']:,} | "
              f"{row['distinct_variants']} | {row['variants_left']} | {row['vocabulary_before']:,} → "
              f"{row['vocabulary_after']:,} |")
    for row in rows:
        mapping = variant_map()
        common = " ".join(f"{char}→{mapping[char]} {count}" for char, count in row["commonest"])  # type: ignore[union-attr]
        print(f"\n{row['corpus']}: {common}")


if __name__ == "__main__":
    main()
