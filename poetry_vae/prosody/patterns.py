"""The four standard 绝句 tone patterns for 五言 and 七言 lines (平起/仄起, 首句入韵 or not) and pattern matching.

``P`` = 平, ``Z`` = 仄. The 五言 templates (``PATTERNS``) are written out; the 七言 ones are derived from them by
one rule (:func:`extend_line`): a 七言 line is two characters of the tone opposite to the 五言 line's opening
pair, followed by the 五言 line (ZZZPP -> PPZZZPP). Because a pattern is named after the tone of the *second*
character of its first line, the rule flips the label: 五言 仄起首句入韵 becomes 七言 平起首句入韵, and so on.
The names are the same four for both lengths (``zeqi``, ``zeqi_rhymed_first``, ``pingqi``,
``pingqi_rhymed_first``), each naming the 平起/仄起 of the lines as written; 首句入韵 (the first line ends in 平
and rhymes) is the norm for 七绝 and the exception for 五绝.

Customarily free positions (一三五不论, :func:`free_positions`): 0-based 0 and 2 for 五言, 0, 2 and 4 for 七言
(the prefixed pair's first character, plus the 五言 free positions shifted by two). They are skipped unless
``strict=True``. A character matches a required tone if its tone set (see :mod:`poetry_vae.prosody.tables`)
admits it — so a polyphonic character with both tones matches either, and an unknown character matches neither.

Every function that takes a pattern name takes ``line_length`` (default 5, 五言); the checkers of actual lines
(:func:`pattern_match`, :func:`fits_pattern`, :func:`best_pattern`) read it from the lines unless it is given.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from poetry_vae.errors import PromptError
from poetry_vae.layout import LINE_LENGTH, NUM_LINES, has_shape, line_length_of
from poetry_vae.prosody.tables import tones

Templates = tuple[str, str, str, str]

LINE_LENGTHS: tuple[int, ...] = (5, 7)  # 五言, 七言

FREE_POSITIONS: tuple[int, ...] = (0, 2)  # 五言; see free_positions() for any length

PATTERNS: dict[str, Templates] = {
    "zeqi": ("ZZPPZ", "PPZZP", "PPPZZ", "ZZZPP"),  # 仄起首句不入韵
    "zeqi_rhymed_first": ("ZZZPP", "PPZZP", "PPPZZ", "ZZZPP"),  # 仄起首句入韵
    "pingqi": ("PPPZZ", "ZZZPP", "ZZPPZ", "PPZZP"),  # 平起首句不入韵
    "pingqi_rhymed_first": ("PPZZP", "ZZZPP", "ZZPPZ", "PPZZP"),  # 平起首句入韵
}

_QIYAN_ORDER: tuple[str, ...] = ("zeqi_rhymed_first", "zeqi", "pingqi_rhymed_first", "pingqi")

_OPPOSITE = {"P": "Z", "Z": "P"}


def extend_line(template: str) -> str:
    """The 七言 line template built on a 五言 one: two characters of the opposite tone, then the 五言 line.

    The opposite of the 五言 line's second character (its first one is free) keeps the 七言 line alternating
    in pairs (PPZZ.. / ZZPP..), which is what the standard templates do.
    """
    return _OPPOSITE[template[1]] * 2 + template


def pattern_name(templates: Sequence[str]) -> str:
    """The name a set of templates gets: 平起/仄起 from line 1's second character, 首句入韵 if line 1 ends in 平."""
    start = "pingqi" if templates[0][1] == "P" else "zeqi"
    return start + ("_rhymed_first" if templates[0][-1] == "P" else "")


def _derive_qiyan() -> dict[str, Templates]:
    derived: dict[str, Templates] = {}
    for templates in PATTERNS.values():
        first, second, third, fourth = (extend_line(template) for template in templates)
        lines = (first, second, third, fourth)
        derived[pattern_name(lines)] = lines
    # Name order = tie-break order (best_pattern, the decoder's reported pattern). A line 1 ending in a
    # polyphonic character fits both the 首句入韵 and the 不入韵 pattern; the form's norm should win, which for
    # 七绝 is 首句入韵 (五言 lists 不入韵 first).
    return {name: derived[name] for name in _QIYAN_ORDER}


PATTERNS_7: dict[str, Templates] = _derive_qiyan()

_BY_LENGTH: dict[int, dict[str, Templates]] = {5: PATTERNS, 7: PATTERNS_7}
_FREE_BY_LENGTH: dict[int, tuple[int, ...]] = {
    5: FREE_POSITIONS,
    7: (0, *(pos + 2 for pos in FREE_POSITIONS)),  # the prefixed pair's first character + the shifted 五言 ones
}


def check_line_length(line_length: int) -> int:
    """``line_length`` if tone patterns exist for it (5 or 7); :class:`PromptError` otherwise."""
    if line_length not in _BY_LENGTH:
        lengths = " or ".join(map(str, LINE_LENGTHS))
        raise PromptError(f"tone patterns are defined for lines of {lengths} characters, not {line_length}")
    return line_length


def patterns(line_length: int = LINE_LENGTH) -> dict[str, Templates]:
    """The four patterns ``{name: line templates}`` for ``line_length`` (``PATTERNS`` for 5, ``PATTERNS_7`` for 7).

    Iteration order is the tie-break order: 不入韵 before 入韵 for 五言, 首句入韵 first for 七言 (each form's norm).
    """
    return _BY_LENGTH[check_line_length(line_length)]


def free_positions(line_length: int = LINE_LENGTH) -> tuple[int, ...]:
    """0-based positions customarily left free in a line of ``line_length``: (0, 2) or (0, 2, 4)."""
    return _FREE_BY_LENGTH[check_line_length(line_length)]


def check_pattern(pattern: str, line_length: int = LINE_LENGTH) -> Templates:
    """The four line templates of ``pattern`` for ``line_length``; :class:`PromptError` for an unknown name."""
    table = patterns(line_length)
    try:
        return table[pattern]
    except KeyError:
        raise PromptError(f"unknown tone pattern {pattern!r}; choose one of {', '.join(table)}") from None


def pattern_tones(pattern: str, line: int, pos: int, line_length: int = LINE_LENGTH) -> str:
    """Required tone (``"P"`` or ``"Z"``) at 0-based ``line``/``pos`` of ``pattern`` (free or not)."""
    return check_pattern(pattern, line_length)[line][pos]


def is_free(pos: int, strict: bool = False, line_length: int = LINE_LENGTH) -> bool:
    """True if 0-based position ``pos`` in a line of ``line_length`` is unconstrained (never when ``strict``)."""
    return not strict and pos in free_positions(line_length)


def rhyme_lines(pattern: str, line_length: int = LINE_LENGTH) -> tuple[int, ...]:
    """0-based lines that must rhyme in ``pattern``: those ending in 平 ((1, 3), plus 0 when 首句入韵)."""
    return tuple(i for i, template in enumerate(check_pattern(pattern, line_length)) if template[-1] == "P")


def quatrain_line_length(lines: Sequence[str]) -> int | None:
    """The line length of ``lines`` if they are a 绝句 with tone patterns (4 lines of 5 or 7), else None."""
    length = line_length_of(lines)
    return length if length in _BY_LENGTH and has_shape(lines, length, NUM_LINES) else None


def _line_length(lines: Sequence[str], line_length: int | None) -> int:
    length = quatrain_line_length(lines) if line_length is None else check_line_length(line_length)
    if length is None or not has_shape(lines, length, NUM_LINES):
        want = " or ".join(map(str, LINE_LENGTHS)) if line_length is None else str(line_length)
        raise ValueError(f"expected {NUM_LINES} lines of {want} characters, got {list(lines)!r}")
    return length


def _counts(lines: Sequence[str], pattern: str, strict: bool, system: str, line_length: int | None) -> tuple[int, int]:
    length = _line_length(lines, line_length)
    templates = check_pattern(pattern, length)
    counts = [_line_counts(line, template, strict, system, length) for line, template in zip(lines, templates,
                                                                                            strict=True)]
    return sum(hits for hits, _ in counts), sum(total for _, total in counts)


def _line_counts(line: str, template: str, strict: bool, system: str, length: int) -> tuple[int, int]:
    """(constrained positions of ``line`` whose character admits ``template``'s tone there, constrained positions)."""
    hits = total = 0
    for pos, (char, required) in enumerate(zip(line, template, strict=True)):
        if is_free(pos, strict, length):
            continue
        total += 1
        hits += required in tones(char, system)
    return hits, total


@functools.cache
def _line_forms(length: int) -> frozenset[str]:
    """The distinct line templates the patterns of ``length`` are made of."""
    return frozenset(template for templates in patterns(length).values() for template in templates)


def fits_line_form(
    line: str, strict: bool = False, system: str = "pingshui", line_length: int | None = None
) -> bool:
    """True if one line alone keeps a regulated line form: its constrained positions match one of the line
    templates the patterns are made of (whatever the other lines do)."""
    length = check_line_length(len(line) if line_length is None else line_length)
    if len(line) != length:
        raise ValueError(f"expected a line of {length} characters, got {line!r}")
    for form in _line_forms(length):
        hits, total = _line_counts(line, form, strict, system, length)
        if hits == total:
            return True
    return False


def pattern_match(
    lines: Sequence[str],
    pattern: str,
    strict: bool = False,
    system: str = "pingshui",
    line_length: int | None = None,
) -> float:
    """Share of constrained positions whose character admits the tone ``pattern`` requires there.

    ``line_length`` defaults to the lines' own (5 or 7); :class:`ValueError` if they are not 4 lines of it.
    """
    hits, total = _counts(lines, pattern, strict, system, line_length)
    return hits / total


def fits_pattern(
    lines: Sequence[str],
    pattern: str,
    strict: bool = False,
    system: str = "pingshui",
    line_length: int | None = None,
) -> bool:
    """True if every constrained position of ``lines`` matches ``pattern`` (line length as in pattern_match)."""
    hits, total = _counts(lines, pattern, strict, system, line_length)
    return hits == total


def best_pattern(
    lines: Sequence[str], strict: bool = False, system: str = "pingshui", line_length: int | None = None
) -> tuple[str, float]:
    """The pattern with the highest :func:`pattern_match` score (ties: first in ``patterns(line_length)`` order)."""
    length = _line_length(lines, line_length)
    scores = {name: pattern_match(lines, name, strict, system, length) for name in patterns(length)}
    name = max(scores, key=lambda key: scores[key])
    return name, scores[name]
