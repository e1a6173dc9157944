"""Four-line blocks cut from longer poems whose lines all have one length: the pretraining corpus.

Rule (stated once here and in resources/CORPUS_SOURCE.md): a poem's joined paragraphs are split after every
，。？！； and every piece must be `line_length` CJK characters (the text ends with a mark). Then
- 8 lines (律诗): two blocks, lines 1–4 tagged `lushi_head` and lines 5–8 `lushi_tail`;
- 9 lines or more (mostly 古体): non-overlapping blocks from the first line (lines 1–4, 5–8, …), a remainder of
  fewer than four lines dropped, tagged `gushi`. Blocks start on odd lines, so no couplet is cut in two;
- 4 lines are the strict 绝句 corpus itself, and 5–7 lines are skipped.
Text is converted with OpenCC t2s before splitting; blocks are deduplicated on their characters (first
occurrence wins, Tang before Song, files in numeric order) and a block identical to a poem of `exclude` (the
strict 绝句 corpus) is left out.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from poetry_vae.data.source import source_rows
from poetry_vae.data.variants import simplifier, standardise, variant_text
from poetry_vae.layout import BLOCK_LINE_MARKS, CJK_CLASS

BLOCK_LINES = 4


def poem_lines(text: str, line_length: int) -> list[str] | None:
    """The lines of `text` when every one has `line_length` CJK characters and ends with a mark, else None."""
    if not text or text[-1] not in BLOCK_LINE_MARKS:
        return None
    lines = re.split(f"[{BLOCK_LINE_MARKS}]", text)[:-1]
    line = re.compile(f"[{CJK_CLASS}]{{{line_length}}}")
    return lines if all(line.fullmatch(piece) for piece in lines) else None


def cut_blocks(lines: list[str]) -> list[tuple[str, list[str]]]:
    """(form, four lines) for each block of a poem, by the rule in the module docstring."""
    if len(lines) == 8:
        return [("lushi_head", lines[:4]), ("lushi_tail", lines[4:])]
    if len(lines) > 8:
        return [("gushi", lines[i : i + BLOCK_LINES]) for i in range(0, len(lines) - BLOCK_LINES + 1, BLOCK_LINES)]
    return []


def extract_blocks(dist: Path, line_length: int, exclude: set[str],
                   standard_variants: bool = True) -> tuple[list[dict], Counter]:
    """One row per distinct block: id (source poem), block (its index in the poem), dynasty, author, form, lines
    (and variant_text); `standard_variants` as in build_corpus.extract."""
    to_simplified, t2s = simplifier(standard_variants), simplifier(False)
    rows: list[dict] = []
    seen = set(exclude)
    stats: Counter = Counter()
    for dynasty, row in source_rows(dist):
        text = "".join(row.get("paragraphs") or [])
        lines = poem_lines(text, line_length)
        if lines is None or len(lines) <= BLOCK_LINES:
            continue
        converted = poem_lines(t2s(text), line_length)
        if converted is None or len(converted) != len(lines):  # a conversion that changes the shape
            stats["shape_changed_by_t2s"] += 1
            continue
        # one character for one: the variant mapping never changes the shape, so the blocks line up
        written_blocks = cut_blocks(converted)
        blocks = cut_blocks([standardise(line) for line in converted] if standard_variants else converted)
        stats["poems_with_blocks"] += bool(blocks)
        author = to_simplified(row.get("author", ""))
        for index, ((form, block), (_, written)) in enumerate(zip(blocks, written_blocks, strict=True)):
            key = "".join(block)
            if key in seen:
                stats["identical_to_excluded" if key in exclude else "duplicates"] += 1
                continue
            seen.add(key)
            stats[form] += 1
            stats[dynasty] += 1
            rows.append({"id": row.get("id", ""), "block": index, "dynasty": dynasty, "author": author,
                         "form": form, "lines": block, **variant_text("".join(written), key)})
    return rows, stats
