"""Read and validate a corpus of fixed-form poems.

Two formats are accepted:
- `.jsonl` / `.jsonl.gz` / `.jsonl.xz`: one JSON object per line with at least `lines`, optionally `form` (one
  of `forms.FORMS`, default `jueju`) and `id` (the source poem; the shipped corpora, see
  `resources/CORPUS_SOURCE.md`, named `wujue`, `qijue`, `wuyan` in `data.corpus_path`);
- `.txt`: one poem per line, punctuated, e.g. `白日依山尽，黄河入海流。欲穷千里目，更上一层楼。` — for users'
  own collections.
Every mistake is reported as one line naming the file, the line number and the fix.
"""

from __future__ import annotations

import functools
import gzip
import json
import lzma
import re
from dataclasses import dataclass
from pathlib import Path

from poetry_vae.data.forms import JUEJU, form_tag_id
from poetry_vae.errors import CorpusError
from poetry_vae.layout import CJK_CLASS, has_shape, is_hanzi, split_lines

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
# Shipped corpora by name (built by `make corpus`, see resources/CORPUS_SOURCE.md); data.corpus_path takes a name.
# wuyan comes in two parts: one xz file of its 288k blocks is 12 MB, over the 10 MB limit on a shipped file.
SHIPPED_CORPORA: dict[str, tuple[str, ...]] = {
    "wujue": ("wujue.jsonl.gz",),
    "qijue": ("qijue.jsonl.xz",),
    "wuyan": ("wuyan.1.jsonl.xz", "wuyan.2.jsonl.xz"),
}
DEFAULT_CORPUS = RESOURCES / SHIPPED_CORPORA["wujue"][0]


@dataclass(frozen=True)
class Poem:
    lines: tuple[str, ...]
    dynasty: str = ""
    author: str = ""
    title: str = ""
    source_id: str = ""
    strains: tuple[str, ...] | None = None
    form: str = JUEJU
    variant_text: str = ""  # the text before the variant mapping, where it changed it (data/variants.py)

    @property
    def text(self) -> str:
        """The characters alone, lines joined: the poem's identity."""
        return "".join(self.lines)

    @property
    def split_name(self) -> str:
        """The text the poem's split is drawn by: as first shipped (before the variant mapping), so the mapping
        moved no poem from one split to another."""
        return self.variant_text or self.text


def corpus_files(path: str | Path | None) -> tuple[Path, ...]:
    """The files of a shipped corpus by name (`wujue`, `qijue`, `wuyan`; None or `default` is `wujue`), or one path."""
    if path in (None, "", "default"):
        path = "wujue"
    if isinstance(path, str) and path in SHIPPED_CORPORA:
        return tuple(RESOURCES / name for name in SHIPPED_CORPORA[path])
    return (Path(path).expanduser(),)


def corpus_name(path: str | Path | None) -> str:
    """How to name a corpus in messages: its shipped name, or its file path."""
    return "wujue" if path in (None, "", "default") else str(path)


def _open_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise CorpusError(
            f"corpus file {path} not found: set data.corpus_path to an existing file, "
            "or leave it at the default to use the shipped corpus (rebuild it with `make corpus`)"
        )
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix)
    try:
        if opener is not None:
            with opener(path, "rt", encoding="utf-8") as handle:
                return handle.read().splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError, lzma.LZMAError) as error:
        raise CorpusError(
            f"corpus file {path} cannot be read ({type(error).__name__}: {error}): "
            "it must be UTF-8 text, or gzip / xz of it; rebuild it with `make corpus`"
        ) from None


@functools.cache
def _line_regex(line_length: int) -> re.Pattern[str]:
    return re.compile(f"[{CJK_CLASS}]{{{line_length}}}")


def _check_lines(lines: list[str], where: str, line_length: int, num_lines: int) -> tuple[str, ...]:
    if not has_shape(lines, line_length, num_lines):
        shape = " / ".join(f"{len(line)}" for line in lines) or "nothing"
        raise CorpusError(
            f"{where}: expected {num_lines} lines of {line_length} characters, found line lengths {shape}; "
            "fix or remove this row, or set data.line_length / data.num_lines to the corpus's form"
        )
    if all(_line_regex(line_length).fullmatch(line) for line in lines):
        return tuple(lines)  # the usual case, checked a line at a time (300k-row corpora load in seconds)
    for line in lines:
        for position, char in enumerate(line, start=1):
            if not is_hanzi(char):
                raise CorpusError(
                    f"{where}: stray character {char!r} (U+{ord(char):04X}) in line {line!r} at position "
                    f"{position}: poems may hold only Chinese characters and line punctuation; fix or remove this row"
                )
    return tuple(lines)


def _parse_json_row(raw: str, where: str, line_length: int, num_lines: int) -> Poem:
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CorpusError(f"{where}: not valid JSON ({error.msg}); fix or remove this row") from None
    if not isinstance(row, dict) or not isinstance(row.get("lines"), list):
        raise CorpusError(f"{where}: a row must be a JSON object with a 'lines' list; fix or remove this row")
    lines = _check_lines([str(line) for line in row["lines"]], where, line_length, num_lines)
    strains = row.get("strains")
    form = str(row.get("form", JUEJU))
    form_tag_id(form, where)  # an unknown tag is a one-line error naming the row and the valid tags
    return Poem(
        lines=lines,
        dynasty=str(row.get("dynasty", "")),
        author=str(row.get("author", "")),
        title=str(row.get("title", "")),
        source_id=str(row.get("id", "")),
        strains=tuple(strains) if isinstance(strains, list) else None,
        form=form,
        variant_text=str(row.get("variant_text", "")),
    )


def _parse_text_row(raw: str, where: str, line_length: int, num_lines: int) -> Poem:
    lines = split_lines(raw.strip())
    return Poem(lines=_check_lines(lines, where, line_length, num_lines))


def load_corpus(path: str | Path | None = None, line_length: int = 5, num_lines: int = 4) -> list[Poem]:
    """All poems of the corpus (every file of it, in order), in file order. Blank lines are skipped."""
    poems: list[Poem] = []
    for file in corpus_files(path):
        is_json = ".jsonl" in file.suffixes or file.suffix == ".json"
        parse = _parse_json_row if is_json else _parse_text_row
        poems.extend(
            parse(raw, f"{file}:{number}", line_length, num_lines)
            for number, raw in enumerate(_open_lines(file), start=1)
            if raw.strip()
        )
    if not poems:
        raise CorpusError(f"corpus {corpus_name(path)} holds no poems: point data.corpus_path at a non-empty corpus")
    return poems
