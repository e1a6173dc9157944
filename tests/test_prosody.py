"""Prosody look-ups (平水韵 / 中华新韵), tone patterns and decoding masks.

Expected tones and rhyme classes come from the standard 平水韵 / 中华新韵 references; the pattern fits of the
famous poems below were worked out by hand (comments give the 平仄 of each line, ``*`` = polyphonic).
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from poetry_vae.errors import PromptError
from poetry_vae.layout import is_hanzi
from poetry_vae.prosody import (
    FREE_POSITIONS,
    LINE_LENGTHS,
    PATTERNS,
    PATTERNS_7,
    best_pattern,
    build_masks,
    check_line_length,
    check_pattern,
    class_names,
    extend_line,
    fits_pattern,
    free_positions,
    in_table,
    is_free,
    pattern_match,
    pattern_name,
    pattern_tones,
    patterns,
    quatrain_line_length,
    rhyme_classes,
    rhyme_lines,
    rhymes,
    tones,
)


def lines_of(text: str) -> list[str]:
    """The four lines of a quatrain written without punctuation (五绝: 20 characters, 七绝: 28)."""
    length = len(text) // 4
    return [text[i : i + length] for i in range(0, len(text), length)]


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

# 五绝
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

# 七绝 (平水韵 tones; misses at free positions 1, 3, 5 noted)
# 李白《早发白帝城》: PPZZZP* / PZPPZZP / ZZPPP*Z / *PZ*Z*P — 平起首句入韵 (千 平 at free position 1)
ZAO_FA_BAI_DI_CHENG = lines_of("朝辞白帝彩云间千里江陵一日还两岸猿声啼不住轻舟已过万重山")
# 王昌龄《出塞》: PPPZ*PP / ZZ**PZP / ZZ*PP*Z / **PZZPP — 平起首句入韵 (明 at 3, 人 at 5, 飞 at 5)
CHU_SAI = lines_of("秦时明月汉时关万里长征人未还但使龙城飞将在不教胡马度阴山")
# 杜牧《山行》: ZZPPZZP / ZPPZZPP / PPZZPPZ / PZPPZZP — 仄起首句入韵 (白 at 1, 生 at 3, 霜 at 1)
SHAN_XING = lines_of("远上寒山石径斜白云生处有人家停车坐爱枫林晚霜叶红于二月花")
# 张继《枫桥夜泊》: ZZPPPZP / PPPZZPP / PPPZPPZ / ZZPPZZP — 仄起首句入韵 (霜 at 5, 渔 at 3, 城 at 3)
FENG_QIAO_YE_BO = lines_of("月落乌啼霜满天江枫渔火对愁眠姑苏城外寒山寺夜半钟声到客船")
# 王维《九月九日忆山东兄弟》: ZZZ**ZZ / ZPPZZ** / PPPZPPZ / ZZPPZZP — 仄起首句不入韵 (异 at 3, 每 at 1, 佳 兄 at 3)
JIU_YUE_JIU_RI = lines_of("独在异乡为异客每逢佳节倍思亲遥知兄弟登高处遍插茱萸少一人")
# 杜牧《清明》: PPPZZPP / ZZ*PZZP / ZZZPPZZ / ZPPZZPP — 平起首句入韵 (时 at 3, 酒 at 3, 牧 at 1, 遥 at 3)
QING_MING = lines_of("清明时节雨纷纷路上行人欲断魂借问酒家何处有牧童遥指杏花村")
# 王之涣《凉州词》: PPZZZP* / ZZPPZZP / PZPP*PZ / PP*ZZPP — the famous 拗句 羌笛何须怨杨柳: 杨 平 at 6
LIANG_ZHOU_CI = lines_of("黄河远上白云间一片孤城万仞山羌笛何须怨杨柳春风不度玉门关")

FAMOUS = [DENG_GUAN_QUE_LOU, XIANG_SI, TING_ZHENG, SAI_XIA_QU, JING_YE_SI]
FAMOUS_QIYAN = [ZAO_FA_BAI_DI_CHENG, CHU_SAI, SHAN_XING, FENG_QIAO_YE_BO, JIU_YUE_JIU_RI, QING_MING, LIANG_ZHOU_CI]

# The standard 七绝 templates, written out independently of the derivation in patterns.py.
STANDARD_QIYAN = {
    "pingqi_rhymed_first": ("PPZZZPP", "ZZPPZZP", "ZZPPPZZ", "PPZZZPP"),  # 平起首句入韵
    "pingqi": ("PPZZPPZ", "ZZPPZZP", "ZZPPPZZ", "PPZZZPP"),  # 平起首句不入韵
    "zeqi_rhymed_first": ("ZZPPZZP", "PPZZZPP", "PPZZPPZ", "ZZPPZZP"),  # 仄起首句入韵
    "zeqi": ("ZZPPPZZ", "PPZZZPP", "PPZZPPZ", "ZZPPZZP"),  # 仄起首句不入韵
}


def test_hand_checked_tones_of_the_examples() -> None:
    expected = {
        "P": "依山黄河流穷千层楼鸣筝金前时郎周弦飞高逃弓刀床光霜头明"
        + "辞云江陵猿啼舟山秦关胡阴寒斜停车枫林红于乌啼天愁眠姑苏钟船",
        "Z": "白日尽入海欲里目上一粟柱素手玉得顾误拂月黑雁夜遁逐大雪满是地故"
        + "帝彩两岸住已万里未使在马度石径叶二落火外寺半到客独异节插",
    }
    for tone, chars in expected.items():
        for char in chars:
            assert tones(char) == frozenset(tone), char
    assert "P" in tones("乡")  # 下平声七阳 (and 去声漾 as 鄉 = 嚮)


def test_qiyan_templates_are_the_standard_ones() -> None:
    assert PATTERNS_7 == STANDARD_QIYAN and patterns(7) is PATTERNS_7 and patterns() is PATTERNS is patterns(5)
    # the one rule: two characters opposite to the 五言 line's opening pair, then the 五言 line
    assert extend_line("ZZZPP") == "PPZZZPP" and extend_line("PPZZP") == "ZZPPZZP" and extend_line("PPPZZ") == "ZZPPPZZ"
    flipped = {"zeqi": "pingqi", "pingqi": "zeqi"}
    for name, templates in PATTERNS.items():
        # prefixing the opposite pair flips 平起/仄起 (named by line 1's second character) and keeps 首句入韵
        start, _, rest = name.partition("_")
        assert PATTERNS_7[flipped[start] + (_ + rest if rest else "")] == tuple(map(extend_line, templates))
    for table in (PATTERNS, PATTERNS_7):
        assert all(pattern_name(templates) == name for name, templates in table.items())
    assert free_positions(5) == FREE_POSITIONS == (0, 2) and free_positions(7) == (0, 2, 4)
    # tie-break order: each form's norm first (五绝 首句不入韵, 七绝 首句入韵)
    assert list(PATTERNS)[:2] == ["zeqi", "zeqi_rhymed_first"]
    assert list(PATTERNS_7)[:2] == ["zeqi_rhymed_first", "zeqi"]


@pytest.mark.parametrize(
    ("lines", "pattern", "strict_fit"),
    [
        (DENG_GUAN_QUE_LOU, "zeqi", False),
        (XIANG_SI, "zeqi", False),
        (TING_ZHENG, "pingqi", True),
        (SAI_XIA_QU, "zeqi_rhymed_first", False),
        (CHU_SAI, "pingqi_rhymed_first", False),
        (SHAN_XING, "zeqi_rhymed_first", False),
        (FENG_QIAO_YE_BO, "zeqi_rhymed_first", False),
        (JIU_YUE_JIU_RI, "zeqi", False),
        (QING_MING, "pingqi_rhymed_first", False),
    ],
)
def test_famous_poems_fit_their_pattern(lines: list[str], pattern: str, strict_fit: bool) -> None:
    length = len(lines[0])
    assert fits_pattern(lines, pattern)
    assert fits_pattern(lines, pattern, line_length=length)
    assert fits_pattern(lines, pattern, strict=True) is strict_fit
    assert [name for name in patterns(length) if fits_pattern(lines, name)] == [pattern]
    assert best_pattern(lines) == (pattern, 1.0)
    assert pattern_match(lines, pattern) == 1.0


def test_deng_guan_que_lou_strict_score() -> None:
    # strict: 20 positions, only 欲 (line 3, position 1, 仄 where 平 is asked) misses
    assert pattern_match(DENG_GUAN_QUE_LOU, "zeqi", strict=True) == pytest.approx(19 / 20)
    assert best_pattern(DENG_GUAN_QUE_LOU, strict=True) == ("zeqi", pytest.approx(19 / 20))


def test_zao_fa_bai_di_cheng_needs_rusheng() -> None:
    lines = ZAO_FA_BAI_DI_CHENG
    # 间 (line 1's end) is 平/仄, so both 平起 patterns fit loosely; the 七绝 norm 首句入韵 wins the tie
    assert [name for name in PATTERNS_7 if fits_pattern(lines, name)] == ["pingqi_rhymed_first", "pingqi"]
    assert best_pattern(lines) == ("pingqi_rhymed_first", 1.0)
    # strict, 平水韵: 28 positions, only 千 (line 2, position 1, 平 where 仄 is asked) misses
    assert pattern_match(lines, "pingqi_rhymed_first", strict=True) == pytest.approx(27 / 28)
    # 白 and 一 are 入声 (仄), but modern Mandarin reads them 平: under 新韵 tones 白 misses too
    assert tones("白") == frozenset("Z") and tones("白", "xinyun") == frozenset("P")
    assert "P" in tones("一", "xinyun") and tones("一") == frozenset("Z")
    assert pattern_match(lines, "pingqi_rhymed_first", strict=True, system="xinyun") == pytest.approx(26 / 28)
    # ... and where a 入声 character sits at a fixed position, only the 平水韵 checker sees the fit:
    # 节 (jié, 入声) at position 4 of 清明's line 1 and of 九月九日's line 2
    assert tones("节") == frozenset("Z") and tones("节", "xinyun") == frozenset("P")
    for poem, name in ((QING_MING, "pingqi_rhymed_first"), (JIU_YUE_JIU_RI, "zeqi")):
        assert fits_pattern(poem, name) and not fits_pattern(poem, name, system="xinyun")
        assert pattern_match(poem, name, system="xinyun") == pytest.approx(15 / 16)


def test_jing_ye_si_fits_nothing() -> None:
    assert not any(fits_pattern(JING_YE_SI, name) for name in PATTERNS)
    # best is 平起首句入韵 PPZZP/ZZZPP/ZZPPZ/PPZZP: misses 上 (line 2, pos 4) and 头 (line 3, pos 2): 10 / 12
    assert best_pattern(JING_YE_SI) == ("pingqi_rhymed_first", pytest.approx(10 / 12))
    # 仄起首句入韵 ZZZPP/PPZZP/PPPZZ/ZZZPP: 前 月 | 是 | 明 | 头 故 miss: 6 / 12
    assert pattern_match(JING_YE_SI, "zeqi_rhymed_first") == pytest.approx(6 / 12)


def test_liang_zhou_ci_fits_nothing() -> None:
    # 羌笛何须怨杨柳 is a 拗句: 杨 (平) at position 6 where 平起首句入韵 asks 仄, the only miss of 16
    assert not any(fits_pattern(LIANG_ZHOU_CI, name) for name in PATTERNS_7)
    assert best_pattern(LIANG_ZHOU_CI) == ("pingqi_rhymed_first", pytest.approx(15 / 16))


PING_CHARS, ZE_CHARS = "山花东西天江风", "国白竹十石木月"  # single-tone under 平水韵


@pytest.mark.parametrize("length", [5, 7])
def test_synthetic_poems_one_per_pattern(length: int) -> None:
    ping, ze = PING_CHARS[:length], ZE_CHARS[:length]
    assert all(tones(c) == frozenset("P") for c in ping) and all(tones(c) == frozenset("Z") for c in ze)
    table = patterns(length)
    fixed = 4 * (length - len(free_positions(length)))  # 12 or 16 constrained positions
    for name, templates in table.items():
        lines = ["".join((ping if tone == "P" else ze)[i] for i, tone in enumerate(t)) for t in templates]
        assert [other for other in table if fits_pattern(lines, other, strict=True)] == [name]
        assert best_pattern(lines, strict=True) == (name, 1.0)
        # flipping a free position breaks only the strict fit; flipping a fixed one breaks both
        for pos in free_positions(length):
            flipped_free = [_flip(lines[0], pos, ping, ze), *lines[1:]]
            assert fits_pattern(flipped_free, name) and not fits_pattern(flipped_free, name, strict=True)
        flipped = [_flip(lines[0], 1, ping, ze), *lines[1:]]
        assert not fits_pattern(flipped, name)
        assert pattern_match(flipped, name) == pytest.approx((fixed - 1) / fixed)
        assert pattern_match(flipped, name, strict=True) == pytest.approx((4 * length - 1) / (4 * length))


def _flip(line: str, pos: int, ping: str, ze: str) -> str:
    char = (ze if line[pos] in ping else ping)[pos]
    return line[:pos] + char + line[pos + 1 :]


@pytest.mark.parametrize(("lines", "expected"), [(TING_ZHENG, 9 / 12), (CHU_SAI, 12 / 16)])
def test_unknown_character_matches_no_tone(lines: list[str], expected: float) -> None:
    unknown = "ＡＢＣＤＥＦＧ"[: len(lines[0])]
    assert pattern_match([unknown, *lines[1:]], best_pattern(lines)[0]) == pytest.approx(expected)


@pytest.mark.parametrize("length", [5, 7])
def test_pattern_helpers(length: int) -> None:
    table = patterns(length)
    for first in ("zeqi", "pingqi"):
        assert rhyme_lines(first, length) == (1, 3)
        assert rhyme_lines(first + "_rhymed_first", length) == (0, 1, 3)
    assert all(len(t) == length for templates in table.values() for t in templates)
    for name in table:  # the name says the tone of line 1's second character
        assert pattern_tones(name, 0, 1, length) == ("P" if name.startswith("pingqi") else "Z")
    assert pattern_tones("zeqi", 1, length - 1, length) == "P" and pattern_tones("pingqi", 2, length - 1, length) == "Z"
    free = free_positions(length)
    for pos in range(length):
        assert is_free(pos, line_length=length) is (pos in free) and not is_free(pos, True, length)
    assert is_free(4, line_length=7) and not is_free(4)  # 一三五不论 only for 七言; 5 is the default
    beats = range(1, length, 2)  # the 节奏点: 2nd, 4th (and 6th) characters
    for templates in table.values():
        for template in templates:
            # 二四(六)分明: the beats alternate within a line
            assert all(template[a] != template[b] for a, b in itertools.pairwise(beats))
        for pos in beats:
            # 对 (line pairs opposite on the beats) and 粘 (line 3 agrees with line 2 on the beats)
            assert templates[0][pos] != templates[1][pos] and templates[2][pos] != templates[3][pos]
            assert templates[1][pos] == templates[2][pos]
    with pytest.raises(PromptError, match="unknown tone pattern"):
        check_pattern("七律", length)
    five, seven = ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"], ZAO_FA_BAI_DI_CHENG
    with pytest.raises(ValueError):
        fits_pattern(five[:3], "zeqi", line_length=length)
    with pytest.raises(ValueError):
        pattern_match(["白日依山", *five[1:]], "zeqi", line_length=length)
    with pytest.raises(ValueError):  # the lines' own length must be the one asked for
        fits_pattern(seven if length == 5 else five, "zeqi", line_length=length)
    with pytest.raises(ValueError):  # mixed lengths
        best_pattern([seven[0], *five[1:]])


def test_line_lengths() -> None:
    assert LINE_LENGTHS == (5, 7)
    assert quatrain_line_length(DENG_GUAN_QUE_LOU) == 5 and quatrain_line_length(CHU_SAI) == 7
    for lines in (
        DENG_GUAN_QUE_LOU[:3],
        [CHU_SAI[0], *DENG_GUAN_QUE_LOU[1:]],
        ["一二三四五六"] * 4,
        [],
        ["", "", "", ""],
    ):
        assert quatrain_line_length(lines) is None
    for call in (
        lambda: check_line_length(6),
        lambda: patterns(6),
        lambda: check_pattern("zeqi", 4),
        lambda: is_free(0, line_length=6),
        lambda: rhyme_lines("zeqi", 9),
        lambda: free_positions(0),
    ):
        with pytest.raises(PromptError, match="5 or 7"):
            call()
    with pytest.raises(PromptError):
        fits_pattern(["一二三四五六"] * 4, "zeqi", line_length=6)
    with pytest.raises(ValueError):  # 6-character lines: no patterns to infer
        fits_pattern(["一二三四五六"] * 4, "zeqi")


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
