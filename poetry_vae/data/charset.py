"""Which characters count as Chinese characters (CJK ideographs) in a poem."""

from __future__ import annotations

import re

# Unified ideographs, Extension A, Extensions B–H, compatibility ideographs and their supplement: a filter on
# U+4E00–9FA5 alone drops ~120 real characters of this corpus.
CJK_CLASS = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002ebef\U00030000-\U000323af\U0002f800-\U0002fa1f"
)
CJK_CHAR = re.compile(f"[{CJK_CLASS}]")


def is_cjk(char: str) -> bool:
    return len(char) == 1 and CJK_CHAR.match(char) is not None
