"""Reading the chinese-poetry npm package: which files, in which order, and the tone patterns by poem id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

CORPUS_SOURCE = "chinese-poetry@2.0.1 (npm, MIT licence)"
DYNASTIES = ("tang", "song")


def source_dist(source: Path) -> Path:
    """The package's `dist` folder, given the unpacked package directory or `dist` itself."""
    dist = source / "dist" if (source / "dist").is_dir() else source
    if not (dist / "quantangshi").is_dir():
        raise SystemExit(f"error: {dist}/quantangshi not found: pass the unpacked chinese-poetry package directory")
    return dist


def poem_files(dist: Path, dynasty: str) -> list[Path]:
    """poet.<dynasty>.<offset>.json in numeric order of the offset (so the first occurrence is stable)."""
    files = (dist / "quantangshi").glob(f"poet.{dynasty}.*.json")
    return sorted(files, key=lambda path: int(path.name.split(".")[2]))


def source_rows(dist: Path) -> Iterator[tuple[str, dict]]:
    """(dynasty, raw poem row) for every poem: Tang files before Song files, each file in order."""
    for dynasty in DYNASTIES:
        for path in poem_files(dist, dynasty):
            for row in json.loads(path.read_text(encoding="utf-8")):
                yield dynasty, row


def load_strains(dist: Path) -> dict[str, list[str]]:
    strains: dict[str, list[str]] = {}
    for path in sorted((dist / "strains" / "json").glob("poet.*.json")):
        for row in json.loads(path.read_text(encoding="utf-8")):
            if "id" in row and "strains" in row:
                strains[row["id"]] = row["strains"]
    return strains
