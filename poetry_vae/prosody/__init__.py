"""Prosody of 五言 and 七言绝句: 平仄 and rhyme classes (平水韵 / 中华新韵), tone patterns, decoding masks.

The torch-based masks (``ProsodyMasks``, ``build_masks``) are imported lazily so that the pure-Python parts
(used by :mod:`poetry_vae.metrics.poetry`) do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from poetry_vae.prosody.patterns import (
    FREE_POSITIONS,
    LINE_LENGTHS,
    PATTERNS,
    PATTERNS_7,
    best_pattern,
    check_line_length,
    check_pattern,
    extend_line,
    fits_line_form,
    fits_pattern,
    free_positions,
    is_free,
    pattern_match,
    pattern_name,
    pattern_tones,
    patterns,
    quatrain_line_length,
    rhyme_lines,
)
from poetry_vae.prosody.tables import (
    RHYME_SYSTEMS,
    XINYUN_CLASSES,
    check_system,
    class_names,
    in_table,
    rhyme_classes,
    rhymes,
    tones,
)

if TYPE_CHECKING:
    from poetry_vae.prosody.masks import ProsodyMasks, build_masks

__all__ = [
    "FREE_POSITIONS",
    "LINE_LENGTHS",
    "PATTERNS",
    "PATTERNS_7",
    "RHYME_SYSTEMS",
    "XINYUN_CLASSES",
    "ProsodyMasks",
    "best_pattern",
    "build_masks",
    "check_line_length",
    "check_pattern",
    "check_system",
    "class_names",
    "extend_line",
    "fits_line_form",
    "fits_pattern",
    "free_positions",
    "in_table",
    "is_free",
    "pattern_match",
    "pattern_name",
    "pattern_tones",
    "patterns",
    "quatrain_line_length",
    "rhyme_classes",
    "rhyme_lines",
    "rhymes",
    "tones",
]


def __getattr__(name: str) -> Any:
    if name in ("ProsodyMasks", "build_masks"):
        from poetry_vae.prosody import masks

        return getattr(masks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
