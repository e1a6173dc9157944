"""Read and validate a corpus of fixed-form poems.

Two formats are accepted:
- `.jsonl` / `.jsonl.gz`: one JSON object per line with at least `lines` (the shipped corpus, see
  `resources/CORPUS_SOURCE.md`);
- `.txt`: one poem per line, punctuated, e.g. `白日依山尽，黄河入海流。欲穷千里目，更上一层楼。` — for users'
  own collections.
Every mistake is reported as one line naming the file, the line number and the fix.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from poetry_vae.errors import CorpusError
from poetry_vae.form import has_shape, is_hanzi, split_lines

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "resources" / "wujue.jsonl.gz"


@dataclass(frozen=True)
class Poem:
    lines: tuple[str, ...]
    dynasty: str = ""
    author: str = ""
    title: str = ""
    source_id: str = ""
    strains: tuple[str, ...] | None = None

    @property
    def text(self) -> str:
        """The characters alone, lines joined: the poem's identity."""
        return "".join(self.lines)


def resolve_corpus_path(path: str | Path | None) -> Path:
    return DEFAULT_CORPUS if path in (None, "", "default") else Path(path).expanduser()


def _open_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise CorpusError(
            f"corpus file {path} not found: set data.corpus_path to an existing file, "
            "or leave it at the default to use the shipped corpus (rebuild it with `make corpus`)"
        )
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return handle.read().splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise CorpusError(
            f"corpus file {path} cannot be read ({type(error).__name__}: {error}): "
            "it must be UTF-8 text or gzip of it; rebuild it with `make corpus`"
        ) from None


def _check_lines(lines: list[str], where: str, line_length: int, num_lines: int) -> tuple[str, ...]:
    if not has_shape(lines, line_length, num_lines):
        shape = " / ".join(f"{len(line)}" for line in lines) or "nothing"
        raise CorpusError(
            f"{where}: expected {num_lines} lines of {line_length} characters, found line lengths {shape}; "
            "fix or remove this row, or set data.line_length / data.num_lines to the corpus's form"
        )
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
    return Poem(
        lines=lines,
        dynasty=str(row.get("dynasty", "")),
        author=str(row.get("author", "")),
        title=str(row.get("title", "")),
        source_id=str(row.get("id", "")),
        strains=tuple(strains) if isinstance(strains, list) else None,
    )


def _parse_text_row(raw: str, where: str, line_length: int, num_lines: int) -> Poem:
    lines = split_lines(raw.strip())
    return Poem(lines=_check_lines(lines, where, line_length, num_lines))


def load_corpus(path: str | Path | None = None, line_length: int = 5, num_lines: int = 4) -> list[Poem]:
    """All poems of the corpus file, in file order. Blank lines are skipped."""
    path = resolve_corpus_path(path)
    is_json = ".jsonl" in path.suffixes or path.suffix == ".json"
    parse = _parse_json_row if is_json else _parse_text_row
    poems = [
        parse(raw, f"{path}:{number}", line_length, num_lines)
        for number, raw in enumerate(_open_lines(path), start=1)
        if raw.strip()
    ]
    if not poems:
        raise CorpusError(f"corpus file {path} holds no poems: point data.corpus_path at a non-empty corpus")
    return poems
