"""The four standard 五言绝句 tone patterns (平起/仄起, 首句入韵 or not) and pattern matching.

``P`` = 平, ``Z`` = 仄. Positions 1 and 3 of a line (0-based 0 and 2, ``FREE_POSITIONS``) are customarily free
(一三五不论 for five-character lines, minus the fifth); they are skipped unless ``strict=True``. A character
matches a required tone if its tone set (see :mod:`poetry_vae.prosody.tables`) admits it — so a polyphonic
character with both tones matches either, and an unknown character matches neither.
"""

from __future__ import annotations

from collections.abc import Sequence

from poetry_vae.errors import PromptError
from poetry_vae.form import LINE_LENGTH, NUM_LINES, has_shape
from poetry_vae.prosody.tables import tones

FREE_POSITIONS: tuple[int, ...] = (0, 2)

PATTERNS: dict[str, tuple[str, str, str, str]] = {
    "zeqi": ("ZZPPZ", "PPZZP", "PPPZZ", "ZZZPP"),  # 仄起首句不入韵
    "zeqi_rhymed_first": ("ZZZPP", "PPZZP", "PPPZZ", "ZZZPP"),  # 仄起首句入韵
    "pingqi": ("PPPZZ", "ZZZPP", "ZZPPZ", "PPZZP"),  # 平起首句不入韵
    "pingqi_rhymed_first": ("PPZZP", "ZZZPP", "ZZPPZ", "PPZZP"),  # 平起首句入韵
}


def check_pattern(pattern: str) -> tuple[str, str, str, str]:
    """The four line templates of ``pattern``; :class:`PromptError` for an unknown name."""
    try:
        return PATTERNS[pattern]
    except KeyError:
        raise PromptError(f"unknown tone pattern {pattern!r}; choose one of {', '.join(PATTERNS)}") from None


def pattern_tones(pattern: str, line: int, pos: int) -> str:
    """Required tone (``"P"`` or ``"Z"``) at 0-based ``line``/``pos`` of ``pattern`` (free or not)."""
    return check_pattern(pattern)[line][pos]


def is_free(pos: int, strict: bool = False) -> bool:
    """True if 0-based position ``pos`` in a line is unconstrained (never when ``strict``)."""
    return not strict and pos in FREE_POSITIONS


def _check_lines(lines: Sequence[str]) -> None:
    if not has_shape(lines, LINE_LENGTH, NUM_LINES):
        raise ValueError(f"expected {NUM_LINES} lines of {LINE_LENGTH} characters, got {list(lines)!r}")


def _counts(lines: Sequence[str], pattern: str, strict: bool, system: str) -> tuple[int, int]:
    templates = check_pattern(pattern)
    _check_lines(lines)
    hits = total = 0
    for line, template in zip(lines, templates, strict=True):
        for pos, (char, required) in enumerate(zip(line, template, strict=True)):
            if is_free(pos, strict):
                continue
            total += 1
            hits += required in tones(char, system)
    return hits, total


def pattern_match(lines: Sequence[str], pattern: str, strict: bool = False, system: str = "pingshui") -> float:
    """Share of constrained positions whose character admits the tone ``pattern`` requires there."""
    hits, total = _counts(lines, pattern, strict, system)
    return hits / total


def fits_pattern(lines: Sequence[str], pattern: str, strict: bool = False, system: str = "pingshui") -> bool:
    """True if every constrained position of ``lines`` matches ``pattern``."""
    hits, total = _counts(lines, pattern, strict, system)
    return hits == total


def best_pattern(lines: Sequence[str], strict: bool = False, system: str = "pingshui") -> tuple[str, float]:
    """The pattern with the highest :func:`pattern_match` score (ties: first in ``PATTERNS`` order)."""
    scores = {name: pattern_match(lines, name, strict, system) for name in PATTERNS}
    name = max(scores, key=lambda key: scores[key])
    return name, scores[name]


def rhyme_lines(pattern: str) -> tuple[int, ...]:
    """0-based lines that must rhyme in ``pattern``: those ending in 平 ((1, 3), plus 0 when 首句入韵)."""
    return tuple(i for i, template in enumerate(check_pattern(pattern)) if template[-1] == "P")
