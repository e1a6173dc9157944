"""Build every shipped corpus from the chinese-poetry npm package.

Run through `make corpus`, which fetches `chinese-poetry@2.0.1` with `npm pack` (no other download) and calls

    python -m poetry_vae.data.build_corpus --source <unpacked package dir> --out-dir poetry_vae/resources

It writes (see resources/CORPUS_SOURCE.md for counts and sizes):
- `wujue.jsonl.gz`: strict 五言绝句; `qijue.jsonl.xz`: strict 七言绝句. Rule: the joined paragraphs of a poem
  are exactly 4 lines of 5 (7) CJK characters, each closed by one punctuation mark; text converted to
  simplified script (OpenCC t2s), then the variant characters t2s leaves (隠, 疎, 簷) mapped to their standard
  forms (data/variants.py; a row the mapping changed keeps t2s's text as `variant_text`, which the split is
  drawn by, so every poem stays in the split it had before the mapping); deduplicated on the characters alone,
  first occurrence wins, Tang files before Song files, files in numeric order.
- `wuyan.jsonl.xz`: four-line blocks of longer five-character poems, by the rule in `build_blocks`, minus
  every block identical to a 五绝 poem. Leakage into the 五绝 evaluation splits is removed when loading
  (`pretrain.py`), because it depends on the split's seed and fractions.
Outputs are byte-identical across runs (gzip mtime 0 and no file name; xz has no timestamp).
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import re
from collections import Counter
from pathlib import Path

from poetry_vae.atomic import atomic_path
from poetry_vae.data.build_blocks import extract_blocks
from poetry_vae.data.corpus import SHIPPED_CORPORA
from poetry_vae.data.source import CORPUS_SOURCE, load_strains, source_dist, source_rows
from poetry_vae.data.variants import simplifier, standardise, variant_text
from poetry_vae.layout import CJK_CLASS, SOURCE_LINE_MARKS

MAX_SHIPPED_BYTES = 10_000_000


def line_pattern(line_length: int, num_lines: int) -> re.Pattern[str]:
    return re.compile(f"^(?:([{CJK_CLASS}]{{{line_length}}})([{SOURCE_LINE_MARKS}])){{{num_lines}}}$")


def strain_lines(raw: list[str] | None, line_length: int, num_lines: int) -> list[str] | None:
    """The tone pattern as `num_lines` strings of 平/仄, or None when it does not have the poem's shape."""
    if not raw:
        return None
    marks = re.findall("[平仄]", "".join(raw))
    if len(marks) != line_length * num_lines:
        return None
    joined = "".join(marks)
    return [joined[i * line_length : (i + 1) * line_length] for i in range(num_lines)]


def extract(dist: Path, line_length: int = 5, num_lines: int = 4,
            standard_variants: bool = True) -> tuple[list[dict], Counter]:
    """Strict quatrains (or any fixed `num_lines` × `line_length` shape), by the rule in the module docstring;
    `standard_variants=False` keeps the variant characters t2s leaves (the files shipped before the mapping)."""
    to_simplified, t2s = simplifier(standard_variants), simplifier(False)
    pattern = line_pattern(line_length, num_lines)
    strains = load_strains(dist)
    poems: list[dict] = []
    seen: set[str] = set()
    stats: Counter = Counter()
    line_split = re.compile(f"([{CJK_CLASS}]{{{line_length}}})([{SOURCE_LINE_MARKS}])")
    for dynasty, row in source_rows(dist):
        text = "".join(row.get("paragraphs") or [])
        if not pattern.match(text):
            continue
        stats[f"matched_{dynasty}"] += 1
        converted = t2s(text)
        if not pattern.match(converted):  # a conversion that changes the shape is not kept
            stats["shape_changed_by_t2s"] += 1
            continue
        # one character for one: the variant mapping never changes the shape
        pairs = line_split.findall(standardise(converted) if standard_variants else converted)
        key = "".join(line for line, _ in pairs)
        if key in seen:
            stats["duplicates"] += 1
            continue
        seen.add(key)
        stats[dynasty] += 1
        written = "".join(line for line, _ in line_split.findall(converted))
        poems.append(
            {
                "id": row.get("id", ""),
                "dynasty": dynasty,
                "author": to_simplified(row.get("author", "")),
                "title": to_simplified(row.get("title", "")),
                "lines": [line for line, _ in pairs],
                "punctuation": "".join(mark for _, mark in pairs),
                "strains": strain_lines(strains.get(row.get("id", "")), line_length, num_lines),
                **variant_text(written, key),
            }
        )
    return poems, stats


def write_corpus(rows: list[dict], out: Path) -> None:
    """JSON lines, gzip or xz by the file's suffix, deterministic bytes, written whole: a temporary file renamed."""
    data = "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows).encode()
    with atomic_path(out) as tmp:
        if out.suffix == ".xz":
            tmp.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        else:  # gzip without the file name or mtime in its header
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0,
                                                       compresslevel=9) as gz:
                gz.write(data)


def _char_summary(rows: list[dict]) -> str:
    chars = Counter(ch for row in rows for line in row["lines"] for ch in line)
    twice = sum(1 for c in chars.values() if c >= 2)
    return f"characters: {sum(chars.values())} tokens, {len(chars)} distinct, {twice} seen at least twice"


def write_parts(rows: list[dict], outs: list[Path]) -> None:
    """Rows in order across `outs`, in near-equal consecutive parts (a corpus too large for one file)."""
    size = -(-len(rows) // len(outs))
    for part, out in enumerate(outs):
        write_corpus(rows[part * size : (part + 1) * size], out)


def build_strict(name: str, dist: Path, outs: list[Path], line_length: int,
                 standard_variants: bool = True) -> list[dict]:
    poems, stats = extract(dist, line_length, 4, standard_variants)
    write_parts(poems, outs)
    with_strains = sum(poem["strains"] is not None for poem in poems)
    print(f"[{name}] matched (before dedup): tang {stats['matched_tang']}, song {stats['matched_song']}")
    print(f"[{name}] removed: {stats['duplicates']} duplicates, "
          f"{stats['shape_changed_by_t2s']} changed shape under t2s")
    print(f"[{name}] variant characters mapped in {sum('variant_text' in poem for poem in poems)} poems")
    print(f"[{name}] poems: {len(poems)} (tang {stats['tang']}, song {stats['song']}), "
          f"with tone pattern {with_strains}")
    print(f"[{name}] {_char_summary(poems)}")
    return poems


def build_blocks(name: str, dist: Path, outs: list[Path], line_length: int, exclude: list[dict],
                 standard_variants: bool = True) -> list[dict]:
    rows, stats = extract_blocks(dist, line_length, {"".join(poem["lines"]) for poem in exclude}, standard_variants)
    write_parts(rows, outs)
    forms = ", ".join(f"{form} {stats[form]}" for form in ("lushi_head", "lushi_tail", "gushi"))
    print(f"[{name}] blocks: {len(rows)} from {len({row['id'] for row in rows})} poems ({forms}; "
          f"tang {stats['tang']}, song {stats['song']})")
    print(f"[{name}] removed: {stats['duplicates']} duplicate blocks, {stats['identical_to_excluded']} identical "
          f"to a strict quatrain, {stats['shape_changed_by_t2s']} poems changed shape under t2s")
    print(f"[{name}] {_char_summary(rows)}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="unpacked chinese-poetry package directory")
    parser.add_argument("--out-dir", type=Path, default=Path("poetry_vae/resources"))
    parser.add_argument("--only", choices=sorted(SHIPPED_CORPORA), action="append",
                        help="build only this corpus (repeatable; default: all)")
    parser.add_argument("--keep-variants", action="store_true",
                        help="keep the variant characters t2s leaves (隠, 疎, 簷) instead of mapping them to their "
                             "standard simplified forms: rebuilds the files shipped before the mapping "
                             "(docs/corpus_variants.md)")
    args = parser.parse_args(argv)
    dist = source_dist(args.source)
    wanted = args.only or list(SHIPPED_CORPORA)
    print(f"source: {CORPUS_SOURCE}")
    outs = {name: [args.out_dir / file for file in files] for name, files in SHIPPED_CORPORA.items()}
    # the blocks corpus leaves out every 五绝 poem, so it needs them even when wujue is not rewritten
    wujue: list[dict] = []
    if "wujue" in wanted:
        wujue = build_strict("wujue", dist, outs["wujue"], 5, not args.keep_variants)
    elif "wuyan" in wanted:
        wujue = extract(dist, 5, 4, not args.keep_variants)[0]
    if "qijue" in wanted:
        build_strict("qijue", dist, outs["qijue"], 7, not args.keep_variants)
    if "wuyan" in wanted:
        build_blocks("wuyan", dist, outs["wuyan"], 5, wujue, not args.keep_variants)
    for name in wanted:
        for out in outs[name]:
            size = out.stat().st_size
            print(f"[{name}] wrote {out} ({size / 1e6:.2f} MB)")
            if size > MAX_SHIPPED_BYTES:
                print(f"[{name}] warning: {out} is over {MAX_SHIPPED_BYTES / 1e6:.0f} MB, the limit for a shipped "
                      "file: give it more parts in corpus.SHIPPED_CORPORA")

if __name__ == "__main__":
    main()
