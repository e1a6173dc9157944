"""The written layout of a poem: what counts as a Chinese character, how lines are split, rendered and checked
(its verse form, 绝句 or a 律诗 half, is :mod:`poetry_vae.data.forms`).

A quatrain is ``num_lines`` lines of ``line_length`` characters (五绝 4 × 5, 七绝 4 × 7). It is written
``L1，L2。L3，L4。``: a comma after odd-numbered lines, a full stop after even ones. Readers are lenient (any
punctuation or space separates lines); writers and the format check are strict.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

LINE_LENGTH = 5  # 五言
NUM_LINES = 4  # 绝句

# Unified ideographs, Extension A, Extensions B–H, compatibility ideographs and their supplement: a filter on
# U+4E00–9FA5 alone drops ~120 real characters of the corpus.
CJK_CLASS = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002ebef\U00030000-\U000323af\U0002f800-\U0002fa1f"
)
CJK_CHAR = re.compile(f"[{CJK_CLASS}]")

SOURCE_LINE_MARKS = "，。？！；、："  # marks that close a line in the source texts (strict quatrains)
BLOCK_LINE_MARKS = "，。？！；"  # marks that close a line of a longer poem cut into four-line blocks
RENDER_MARKS = ("，", "。")  # what we write after odd- and even-numbered lines
_SEPARATORS = re.compile(r"[，。？！；、：,.?!;:\s]+")

PoemLike = str | Sequence[str]  # rendered text, or its lines without punctuation


def is_hanzi(char: str) -> bool:
    """True for exactly one CJK ideograph."""
    return len(char) == 1 and CJK_CHAR.match(char) is not None


def split_lines(poem: PoemLike) -> list[str]:
    """The lines of a poem: text split on CJK/ASCII punctuation and whitespace (lists pass through)."""
    if not isinstance(poem, str):
        return list(poem)
    return [line for line in _SEPARATORS.split(poem) if line]


def written_chars(text: str) -> str:
    """The characters of a poem or prompt as people type it, without its marks: CJK or ASCII punctuation
    (``，。,.;!?``) and spaces are dropped. The one normaliser of user input (poems, ``first_line``, ``acrostic``)."""
    return "".join(split_lines(text))


def as_written(text: str, line_length: int = LINE_LENGTH, num_lines: int = NUM_LINES) -> str | None:
    """``text`` in the project's layout ``L1，L2。L3，L4。``; None if it is not ``num_lines`` lines of
    ``line_length`` characters once its marks are dropped (where the user put them does not matter)."""
    chars = written_chars(text)
    if len(chars) != line_length * num_lines:
        return None
    return render([chars[i : i + line_length] for i in range(0, len(chars), line_length)])


def render(lines: Sequence[str]) -> str:
    """``"L1，L2。L3，L4。"``."""
    return "".join(line + RENDER_MARKS[i % 2] for i, line in enumerate(lines))


def has_shape(lines: Sequence[str], line_length: int = LINE_LENGTH, num_lines: int = NUM_LINES) -> bool:
    """True if there are ``num_lines`` lines of ``line_length`` characters each (characters not checked)."""
    return len(lines) == num_lines and all(len(line) == line_length for line in lines)


def line_length_of(lines: Sequence[str]) -> int | None:
    """The common length of ``lines`` (None if they differ or there are none)."""
    lengths = {len(line) for line in lines}
    return lengths.pop() if len(lengths) == 1 else None


def is_format_valid(text: str, line_length: int = LINE_LENGTH, num_lines: int = NUM_LINES) -> bool:
    """True if ``text`` is exactly ``num_lines`` lines of ``line_length`` ideographs punctuated ``，。，。``.

    Surrounding whitespace is ignored; anything else (special tokens such as ``<unk>``, ASCII, other
    punctuation, inner spaces) is invalid.
    """
    return _layout_pattern(line_length, num_lines).fullmatch(text.strip()) is not None


@functools.lru_cache(maxsize=16)
def _layout_pattern(line_length: int, num_lines: int) -> re.Pattern[str]:
    """The strict layout as one regular expression: a decoding request checks each of its poems (one match each,
    not a Python test per character)."""
    line = f"[{CJK_CLASS}]{{{line_length}}}"
    return re.compile("".join(line + RENDER_MARKS[i % 2] for i in range(num_lines)))
