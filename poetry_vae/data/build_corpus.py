"""Build the shipped corpus of strict quatrains from the chinese-poetry npm package.

Run through `make corpus`, which fetches `chinese-poetry@2.0.1` with `npm pack` (no other download) and calls

    python -m poetry_vae.data.build_corpus --source <unpacked package dir> --out poetry_vae/resources/wujue.jsonl.gz

Rule: the joined paragraphs of a poem are exactly `num_lines` lines of `line_length` CJK characters, each
closed by one punctuation mark; text converted to simplified script (OpenCC t2s); deduplicated on the
characters alone, first occurrence wins, Tang files before Song files, files in numeric order.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import opencc

from poetry_vae.atomic import atomic_path
from poetry_vae.form import CJK_CLASS, SOURCE_LINE_MARKS

CORPUS_SOURCE = "chinese-poetry@2.0.1 (npm, MIT licence)"


def line_pattern(line_length: int, num_lines: int) -> re.Pattern[str]:
    return re.compile(f"^(?:([{CJK_CLASS}]{{{line_length}}})([{SOURCE_LINE_MARKS}])){{{num_lines}}}$")


def poem_files(dist: Path, dynasty: str) -> list[Path]:
    """poet.<dynasty>.<offset>.json in numeric order of the offset (so the first occurrence is stable)."""
    files = (dist / "quantangshi").glob(f"poet.{dynasty}.*.json")
    return sorted(files, key=lambda path: int(path.name.split(".")[2]))


def load_strains(dist: Path) -> dict[str, list[str]]:
    strains: dict[str, list[str]] = {}
    for path in sorted((dist / "strains" / "json").glob("poet.*.json")):
        for row in json.loads(path.read_text(encoding="utf-8")):
            if "id" in row and "strains" in row:
                strains[row["id"]] = row["strains"]
    return strains


def strain_lines(raw: list[str] | None, line_length: int, num_lines: int) -> list[str] | None:
    """The tone pattern as `num_lines` strings of 平/仄, or None when it does not have the poem's shape."""
    if not raw:
        return None
    marks = re.findall("[平仄]", "".join(raw))
    if len(marks) != line_length * num_lines:
        return None
    joined = "".join(marks)
    return [joined[i * line_length : (i + 1) * line_length] for i in range(num_lines)]


def extract(dist: Path, line_length: int = 5, num_lines: int = 4) -> tuple[list[dict], Counter]:
    to_simplified = opencc.OpenCC("t2s")
    pattern = line_pattern(line_length, num_lines)
    strains = load_strains(dist)
    poems: list[dict] = []
    seen: set[str] = set()
    stats: Counter = Counter()
    line_split = re.compile(f"([{CJK_CLASS}]{{{line_length}}})([{SOURCE_LINE_MARKS}])")
    for dynasty in ("tang", "song"):
        for path in poem_files(dist, dynasty):
            for row in json.loads(path.read_text(encoding="utf-8")):
                text = "".join(row.get("paragraphs") or [])
                if not pattern.match(text):
                    continue
                stats[f"matched_{dynasty}"] += 1
                simplified = to_simplified.convert(text)
                if not pattern.match(simplified):  # a conversion that changes the shape is not kept
                    stats["shape_changed_by_t2s"] += 1
                    continue
                pairs = line_split.findall(simplified)
                key = "".join(line for line, _ in pairs)
                if key in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add(key)
                stats[dynasty] += 1
                poems.append(
                    {
                        "id": row.get("id", ""),
                        "dynasty": dynasty,
                        "author": to_simplified.convert(row.get("author", "")),
                        "title": to_simplified.convert(row.get("title", "")),
                        "lines": [line for line, _ in pairs],
                        "punctuation": "".join(mark for _, mark in pairs),
                        "strains": strain_lines(strains.get(row.get("id", "")), line_length, num_lines),
                    }
                )
    return poems, stats


def write_corpus(poems: list[dict], out: Path) -> None:
    """Deterministic bytes (gzip mtime 0) written whole: a temporary file renamed into place."""
    with atomic_path(out) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
        for poem in poems:
            gz.write((json.dumps(poem, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="unpacked chinese-poetry package directory")
    parser.add_argument("--out", type=Path, default=Path("poetry_vae/resources/wujue.jsonl.gz"))
    parser.add_argument("--line-length", type=int, default=5)
    parser.add_argument("--num-lines", type=int, default=4)
    args = parser.parse_args(argv)
    dist = args.source / "dist" if (args.source / "dist").is_dir() else args.source
    if not (dist / "quantangshi").is_dir():
        raise SystemExit(f"error: {dist}/quantangshi not found: pass the unpacked chinese-poetry package directory")
    poems, stats = extract(dist, args.line_length, args.num_lines)
    write_corpus(poems, args.out)
    chars = Counter(ch for poem in poems for line in poem["lines"] for ch in line)
    with_strains = sum(poem["strains"] is not None for poem in poems)
    print(f"source: {CORPUS_SOURCE}")
    print(f"matched (before dedup): tang {stats['matched_tang']}, song {stats['matched_song']}")
    print(f"removed: {stats['duplicates']} duplicates, {stats['shape_changed_by_t2s']} changed shape under t2s")
    print(f"poems: {len(poems)} (tang {stats['tang']}, song {stats['song']}), with tone pattern {with_strains}")
    print(f"characters: {sum(chars.values())} tokens, {len(chars)} distinct, "
          f"{sum(1 for c in chars.values() if c >= 2)} seen at least twice")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
