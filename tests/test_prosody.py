"""Prosody look-ups (平水韵 / 中华新韵), tone patterns and decoding masks.

Expected tones and rhyme classes come from the standard 平水韵 / 中华新韵 references; the pattern fits of the
famous poems below were worked out by hand (comments give the 平仄 of each line, ``*`` = polyphonic).
"""

from __future__ import annotations

from collections import Counter

import pytest

from poetry_vae.errors import PromptError
from poetry_vae.form import is_hanzi
from poetry_vae.prosody import (
    PATTERNS,
    best_pattern,
    build_masks,
    check_pattern,
    class_names,
    fits_pattern,
    in_table,
    is_free,
    pattern_match,
    pattern_tones,
    rhyme_classes,
    rhyme_lines,
    rhymes,
    tones,
)


def lines_of(text: str) -> list[str]:
    return [text[i : i + 5] for i in range(0, 20, 5)]


# ---- 平仄 and rhyme classes ----


@pytest.mark.parametrize("char", list("国白竹十石一黑"))
def test_rusheng_characters_are_ze_under_pingshui(char: str) -> None:
    # 入声 characters: 仄 in 平水韵 although tone 1/2 (平) in Mandarin
    assert tones(char) == frozenset("Z")
    assert all(name.startswith("入声") for name in rhyme_classes(char))
    assert rhyme_classes(char)


def test_rusheng_characters_are_modern_tones_under_xinyun() -> None:
    for char in "国白竹黑":  # guó bái zhú hēi: only one modern reading each, all 平
        assert tones(char, "xinyun") == frozenset("P")


def test_dong_is_ping_in_first_class() -> None:
    assert tones("东") == frozenset("P")
    assert "上平声一东" in rhyme_classes("东")
    assert rhyme_classes("東") == rhyme_classes("东")  # traditional key works too


@pytest.mark.parametrize("char", list("中看思"))
def test_polyphonic_characters_have_both_tones(char: str) -> None:
    assert tones(char) == frozenset("PZ")
    names = rhyme_classes(char)
    assert any("平声" in name for name in names) and any(name.startswith("去声") for name in names)


def test_pingshui_class_inventory() -> None:
    names = class_names("pingshui")
    assert len(names) == 106 and len(set(names)) == 106
    ping = [name for name in names if name.startswith(("上平声", "下平声"))]
    assert len(ping) == 30
    assert names[0] == "上平声一东"


@pytest.mark.parametrize(
    ("chars", "name"),
    [("花家", "一麻"), ("是知", "十三支"), ("衣西", "十二齐"), ("山间看", "八寒"), ("楼流", "七尤"), ("灭雪", "三皆")],
)
def test_xinyun_classes(chars: str, name: str) -> None:
    for char in chars:
        assert name in rhyme_classes(char, "xinyun"), char


def test_rhymes() -> None:
    for system in ("pingshui", "xinyun"):
        assert rhymes("山", "间", system)
        assert rhymes("流", "楼", system)
        assert not rhymes("山", "花", system)
        assert not rhymes("山", "a", system)
    assert rhymes("东", "中")  # 上平声一东
    assert not rhymes("东", "冬")  # 一东 and 二冬 are distinct classes in 平水韵 ...
    assert rhymes("东", "冬", "xinyun")  # ... but both dōng in 中华新韵 (十一庚)
    assert rhymes("是", "知", "xinyun") and not rhymes("是", "知")  # 上声四纸 vs 上平声四支


def test_non_hanzi_and_unknown_system() -> None:
    for token in ("a", "<unk>", "，", "", "国国"):
        assert tones(token) == frozenset() and rhyme_classes(token) == frozenset()
        assert not is_hanzi(token)
    assert is_hanzi("国") and not in_table("a") and in_table("国")
    for call in (lambda: tones("东", "cilin"), lambda: rhyme_classes("东", "x"), lambda: rhymes("山", "间", "")):
        with pytest.raises(PromptError):
            call()


def test_pingshui_table_covers_corpus(corpus) -> None:
    counts = Counter(char for poem in corpus for char in poem.text)
    total = sum(counts.values())
    covered = sum(n for char, n in counts.items() if in_table(char))
    assert covered / total >= 0.99


# ---- tone patterns ----

# 王之涣《登鹳雀楼》: ZZPPZ / PPZZP / ZPPZZ / *ZZPP (欲 仄 at free position 1 of line 3; 更 平/仄)
DENG_GUAN_QUE_LOU = lines_of("白日依山尽黄河入海流欲穷千里目更上一层楼")
# 王维《相思》: PZPPZ / PPZ*P / ZPPZZ / ZZZ** (红 and 愿 off-pattern, both at free position 1)
XIANG_SI = lines_of("红豆生南国春来发几枝愿君多采撷此物最相思")
# 李端《听筝》: PPPZZ / ZZZPP / ZZPPZ / PPZZP — 平起首句不入韵, every position on pattern
TING_ZHENG = lines_of("鸣筝金粟柱素手玉房前欲得周郎顾时时误拂弦")
# 卢纶《塞下曲》其三: ZZZPP / *PZZP / Z***Z / ZZZPP — 仄起首句入韵 (欲 at free position 1 of line 3)
SAI_XIA_QU = lines_of("月黑雁飞高单于夜遁逃欲将轻骑逐大雪满弓刀")
# 李白《静夜思》, a 古绝: PPPZP / PZZZP / ZP*PZ / PP*ZP — fits no regulated pattern
JING_YE_SI = lines_of("床前明月光疑是地上霜举头望明月低头思故乡")


def test_hand_checked_tones_of_the_examples() -> None:
    expected = {
        "P": "依山黄河流穷千层楼鸣筝金前时郎周弦飞高逃弓刀床光霜头明",
        "Z": "白日尽入海欲里目上一粟柱素手玉得顾误拂月黑雁夜遁逐大雪满是地故",
    }
    for tone, chars in expected.items():
        for char in chars:
            assert tones(char) == frozenset(tone), char
    assert "P" in tones("乡")  # 下平声七阳 (and 去声漾 as 鄉 = 嚮)


@pytest.mark.parametrize(
    ("lines", "pattern", "strict_fit"),
    [
        (DENG_GUAN_QUE_LOU, "zeqi", False),
        (XIANG_SI, "zeqi", False),
        (TING_ZHENG, "pingqi", True),
        (SAI_XIA_QU, "zeqi_rhymed_first", False),
    ],
)
def test_famous_poems_fit_their_pattern(lines: list[str], pattern: str, strict_fit: bool) -> None:
    assert fits_pattern(lines, pattern)
    assert fits_pattern(lines, pattern, strict=True) is strict_fit
    assert [name for name in PATTERNS if fits_pattern(lines, name)] == [pattern]
    assert best_pattern(lines) == (pattern, 1.0)
    assert pattern_match(lines, pattern) == 1.0


def test_deng_guan_que_lou_strict_score() -> None:
    # strict: 20 positions, only 欲 (line 3, position 1, 仄 where 平 is asked) misses
    assert pattern_match(DENG_GUAN_QUE_LOU, "zeqi", strict=True) == pytest.approx(19 / 20)
    assert best_pattern(DENG_GUAN_QUE_LOU, strict=True) == ("zeqi", pytest.approx(19 / 20))


def test_jing_ye_si_fits_nothing() -> None:
    assert not any(fits_pattern(JING_YE_SI, name) for name in PATTERNS)
    # best is 平起首句入韵 PPZZP/ZZZPP/ZZPPZ/PPZZP: misses 上 (line 2, pos 4) and 头 (line 3, pos 2): 10 / 12
    assert best_pattern(JING_YE_SI) == ("pingqi_rhymed_first", pytest.approx(10 / 12))
    # 仄起首句入韵 ZZZPP/PPZZP/PPPZZ/ZZZPP: 前 月 | 是 | 明 | 头 故 miss: 6 / 12
    assert pattern_match(JING_YE_SI, "zeqi_rhymed_first") == pytest.approx(6 / 12)


def test_synthetic_poems_one_per_pattern() -> None:
    # single-tone characters: 平 = 山 花 东 西 天, 仄 = 国 白 竹 十 石
    ping, ze = "山花东西天", "国白竹十石"
    for name, templates in PATTERNS.items():
        lines = ["".join((ping if tone == "P" else ze)[i] for i, tone in enumerate(t)) for t in templates]
        assert [other for other in PATTERNS if fits_pattern(lines, other, strict=True)] == [name]
        # flipping a free position breaks only the strict fit; flipping a fixed one breaks both
        flipped_free = [(ze if lines[0][0] in ping else ping)[0] + lines[0][1:], *lines[1:]]
        assert fits_pattern(flipped_free, name) and not fits_pattern(flipped_free, name, strict=True)
        flipped = [lines[0][:1] + (ze if lines[0][1] in ping else ping)[1] + lines[0][2:], *lines[1:]]
        assert not fits_pattern(flipped, name)
        assert pattern_match(flipped, name) == pytest.approx(11 / 12)
        assert pattern_match(flipped, name, strict=True) == pytest.approx(19 / 20)


def test_unknown_character_matches_no_tone() -> None:
    lines = ["ＡＢＣＤＥ", *TING_ZHENG[1:]]
    assert pattern_match(lines, "pingqi") == pytest.approx(9 / 12)


def test_pattern_helpers() -> None:
    assert rhyme_lines("zeqi") == (1, 3) and rhyme_lines("pingqi") == (1, 3)
    assert rhyme_lines("zeqi_rhymed_first") == (0, 1, 3) and rhyme_lines("pingqi_rhymed_first") == (0, 1, 3)
    assert pattern_tones("pingqi", 0, 0) == "P" and pattern_tones("zeqi", 1, 4) == "P"
    assert is_free(0) and is_free(2) and not is_free(1) and not is_free(4) and not is_free(0, strict=True)
    for templates in PATTERNS.values():
        # 对 (line pairs opposite at positions 2, 4) and 粘 (line 3 agrees with line 2 at position 2)
        assert templates[0][1] != templates[1][1] and templates[2][1] != templates[3][1]
        assert templates[1][1] == templates[2][1]
    with pytest.raises(PromptError):
        check_pattern("七律")
    with pytest.raises(ValueError):
        fits_pattern(["白日依山尽", "黄河入海流", "欲穷千里目"], "zeqi")
    with pytest.raises(ValueError):
        pattern_match(["白日依山", "黄河入海流", "欲穷千里目", "更上一层楼"], "zeqi")


# ---- masks ----

TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "，", "。", "国", "东", "中", "山", "间", "花", "家", "ab", "冬"]


@pytest.mark.parametrize("system", ["pingshui", "xinyun"])
def test_build_masks_consistent_with_lookups(system: str) -> None:
    masks = build_masks(TOKENS, system)
    names = list(class_names(system))
    assert masks.rhyme.shape == (len(names), len(TOKENS)) and masks.ping.shape == (len(TOKENS),)
    assert masks.class_names == names
    for i, token in enumerate(TOKENS):
        if not is_hanzi(token):
            assert not masks.hanzi[i] and not masks.ping[i] and not masks.ze[i] and not masks.rhyme[:, i].any()
            continue
        assert masks.hanzi[i]
        assert bool(masks.ping[i]) == ("P" in tones(token, system))
        assert bool(masks.ze[i]) == ("Z" in tones(token, system))
        assert {names[c] for c in masks.rhyme[:, i].nonzero().flatten().tolist()} == set(rhyme_classes(token, system))
    assert (masks.tone_mask("*") == (masks.ping | masks.ze)).all()


def test_masks_queries() -> None:
    masks = build_masks(TOKENS, "pingshui")
    shan, jian, dong, zhong, guo = (TOKENS.index(c) for c in "山间东中国")
    assert masks.ze[guo] and not masks.ping[guo]
    assert masks.ping[zhong] and masks.ze[zhong]
    row = masks.rhyme[masks.class_names.index("上平声一东")]
    assert {TOKENS[i] for i in row.nonzero().flatten().tolist()} == {"东", "中"}
    shared = masks.rhyme[:, shan].float() @ masks.rhyme.float() > 0  # tokens sharing a class with 山
    assert shared[jian] and shared[shan] and not shared[dong]
    assert not masks.rhyme[:, TOKENS.index("<unk>")].any()
    assert "一麻" not in masks.class_names  # a 新韵 class name is not a 平水韵 class
    with pytest.raises(PromptError):
        masks.tone_mask("X")


def test_build_masks_unknown_system() -> None:
    with pytest.raises(PromptError):
        build_masks(TOKENS, "cilin")
