"""The pretraining blocks next to an evaluation corpus: leakage removed, then split by source poem.

The evaluation corpus's validation and test splits stay the only sets any reported number comes from, so a
block that shares even one line with a held-out poem is dropped (computed against the split the DataModule
actually uses: same seed and fractions). The rest is split like any corpus, with the blocks of one source
poem kept together; only its training part is ever trained on or counted into the vocabulary.

Reading ~300k blocks and grouping them takes several seconds, so the result is cached under `cache_dir` in
a file named by a hash of every input (the corpus files' bytes, the form, the split settings and the
held-out poems): a hit is always valid, and any change recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from poetry_vae.atomic import atomic_write_text
from poetry_vae.data.corpus import Poem, corpus_files, load_corpus
from poetry_vae.data.split import SPLITS, split_poems

log = logging.getLogger(__name__)
CACHE_FORMAT = "poetry_vae.blocks/1"


@dataclass(frozen=True)
class PretrainBlocks:
    splits: dict[str, list[Poem]]
    dropped: int  # blocks sharing a line with an evaluation validation or test poem


def held_out_lines(evaluation: dict[str, list[Poem]]) -> set[str]:
    return {line for name in ("val", "test") for poem in evaluation[name] for line in poem.lines}


def leak_free_blocks(blocks: list[Poem], evaluation: dict[str, list[Poem]], val_fraction: float,
                     test_fraction: float, seed: int) -> PretrainBlocks:
    banned = held_out_lines(evaluation)
    kept = [block for block in blocks if banned.isdisjoint(block.lines)]
    splits = split_poems(kept, val_fraction, test_fraction, seed, by_source=True)
    return PretrainBlocks(splits, len(blocks) - len(kept))


def _cache_key(corpus: str, evaluation: dict[str, list[Poem]], settings: tuple) -> str:
    digest = hashlib.sha256(json.dumps([CACHE_FORMAT, *settings]).encode())
    for path in corpus_files(corpus):
        digest.update(path.read_bytes() if path.is_file() else str(path).encode())  # missing: load_corpus says so
    for name in ("val", "test"):
        for poem in evaluation[name]:
            digest.update(f"{name}:{poem.text}\n".encode())
    return digest.hexdigest()[:16]


def _to_rows(poems: list[Poem]) -> list[list[str]]:
    return [[poem.text, poem.source_id, poem.form, poem.dynasty, poem.author] for poem in poems]


def _from_rows(rows: list[list[str]], line_length: int) -> list[Poem]:
    return [
        Poem(lines=tuple(text[i : i + line_length] for i in range(0, len(text), line_length)),
             source_id=source_id, form=form, dynasty=dynasty, author=author)
        for text, source_id, form, dynasty, author in rows
    ]


def cached_leak_free_blocks(corpus: str, evaluation: dict[str, list[Poem]], line_length: int, num_lines: int,
                            val_fraction: float, test_fraction: float, seed: int,
                            cache_dir: str | Path) -> PretrainBlocks:
    """`leak_free_blocks` of the corpus named `corpus` (a shipped name or a path), read from the cache if there."""
    settings = (line_length, num_lines, val_fraction, test_fraction, seed)
    path = Path(cache_dir) / f"blocks-{_cache_key(corpus, evaluation, settings)}.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            splits = {name: _from_rows(data["splits"][name], line_length) for name in SPLITS}
            return PretrainBlocks(splits, int(data["dropped"]))
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("pretraining block cache %s is damaged; rebuilding it", path)
    blocks = leak_free_blocks(load_corpus(corpus, line_length, num_lines), evaluation, val_fraction,
                              test_fraction, seed)
    data = {"format": CACHE_FORMAT, "dropped": blocks.dropped,
            "splits": {name: _to_rows(blocks.splits[name]) for name in SPLITS}}
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    return blocks
