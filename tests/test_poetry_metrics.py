"""Poem-level metrics (format, rhyme, 平仄, diversity, novelty) on hand-checked 五绝 and 七绝 and the human split."""

from __future__ import annotations

import math
import random

import pytest

from poetry_vae.data.corpus import load_corpus
from poetry_vae.data.split import split_poems
from poetry_vae.errors import PromptError
from poetry_vae.layout import is_format_valid, render, split_lines
from poetry_vae.metrics.poetry import (
    distinct_n,
    format_valid_rate,
    is_valid_poem,
    novelty,
    poem_rhymes,
    poetry_report,
    rhyme_rate,
    self_bleu,
    sentence_bleu,
    tone_compliance,
)
from poetry_vae.prosody.patterns import fits_line_form

DENG = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"  # 流/楼 rhyme; fits 仄起 loosely, not strictly
JING = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"  # 霜/乡 rhyme; fits no pattern (best 10/12)
JIANG = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"  # 灭/雪 rhyme (入声九屑; 新韵 三皆)
ZHENG = "鸣筝金粟柱，素手玉房前。欲得周郎顾，时时误拂弦。"  # 前/弦 rhyme; fits 平起 even strictly
NO_RHYME = "白日依山尽，黄河入海流。欲穷千里目，更上一层山。"  # 流 / 山: no shared class in either system
QIYAN = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"  # 间/还/山 rhyme; 平起首句入韵

# 七绝, hand-checked in tests/test_prosody.py: all rhyme lines 2/4 in both systems; tone fit under 平水韵 / 新韵
SHAN_XING = "远上寒山石径斜，白云生处有人家。停车坐爱枫林晚，霜叶红于二月花。"  # fits / fits
QING_MING = "清明时节雨纷纷，路上行人欲断魂。借问酒家何处有，牧童遥指杏花村。"  # fits / 节 at position 4: 15/16
LIANG_ZHOU = "黄河远上白云间，一片孤城万仞山。羌笛何须怨杨柳，春风不度玉门关。"  # 杨: 15/16 / 笛 杨: 14/16
NO_RHYME_7 = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重楼。"  # 还 / 楼: no shared class
QIYAN_FAMOUS = [
    QIYAN,
    SHAN_XING,
    QING_MING,
    LIANG_ZHOU,
    "秦时明月汉时关，万里长征人未还。但使龙城飞将在，不教胡马度阴山。",  # 出塞: fits / fits
    "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。",  # 枫桥夜泊: fits / fits
    "独在异乡为异客，每逢佳节倍思亲。遥知兄弟登高处，遍插茱萸少一人。",  # 九月九日: fits / 节: 15/16
    "日照香炉生紫烟，遥看瀑布挂前川。飞流直下三千尺，疑是银河落九天。",  # 望庐山瀑布: fits / fits
    "葡萄美酒夜光杯，欲饮琵琶马上催。醉卧沙场君莫笑，古来征战几人回。",  # 凉州词 (王翰): fits / fits
    "寒雨连江夜入吴，平明送客楚山孤。洛阳亲友如相问，一片冰心在玉壶。",  # 芙蓉楼送辛渐: fits / fits
    "李白乘舟将欲行，忽闻岸上踏歌声。桃花潭水深千尺，不及汪伦送我情。",  # 赠汪伦: fits / 白 及: 14/16
]

# the same checks on each form: (poems, their line length, a poem of the other form)
FORMS = {
    5: ([DENG, JING, JIANG, NO_RHYME], QIYAN),
    7: ([QIYAN, SHAN_XING, QING_MING, NO_RHYME_7], DENG),
}


# ---- format ----


def test_is_format_valid() -> None:
    assert is_format_valid(DENG)
    assert is_format_valid("  " + DENG + "\n")  # surrounding whitespace ignored
    assert is_format_valid("𠀀" * 5 + "，" + DENG[6:])  # CJK extension B counts as an ideograph
    bad = [
        DENG.replace("。", "，", 1),  # wrong punctuation
        DENG.replace("，", "。", 1),
        DENG.replace("，", ",", 1),  # ASCII comma
        DENG[:-1] + "！",
        DENG.replace("依山", "<unk>", 1)[:-3] + "。",  # <unk> inside, same length
        "<unk>，黄河入海流。欲穷千里目，更上一层楼。",  # a special token exactly as long as a line
        DENG.replace("尽", "", 1),  # 19 characters
        DENG.replace("山", "s", 1),  # ASCII letter
        DENG.replace("依", " ", 1),  # inner space
        DENG.replace("，", "", 1).replace("。", "", 1),  # missing punctuation
        DENG + DENG,
        "",
        "白日依山尽黄河入海流欲穷千里目更上一层楼",
        "白日依山尽，黄河入海流。",
    ]
    for text in bad:
        assert not is_format_valid(text), text
    assert is_format_valid("白日依山尽，黄河入海流。", num_lines=2)
    assert is_format_valid(QIYAN, line_length=7)


@pytest.mark.parametrize("length", [5, 7])
def test_format_valid_rate(length: int) -> None:
    poems, other = FORMS[length]
    good = poems[0]
    bad = [
        good.replace("。", "，", 1),
        good[:-1] + "！",
        good.replace(good[2], "<unk>", 1),
        good[1:],  # one character short
        good[: 2 * (length + 1)],  # two lines only
        render([line + line[-1] for line in split_lines(good)]),  # one character too many per line (6 or 8)
    ]
    for text in bad:
        assert not is_valid_poem(text) and not is_valid_poem(text, length), text
    assert is_valid_poem(good, length) and is_valid_poem(split_lines(good), length)
    # the poem's own form: either by default, only the given one otherwise
    assert is_valid_poem(other) and not is_valid_poem(other, length)
    assert format_valid_rate([*poems, other, *bad]) == pytest.approx(5 / 11)
    assert format_valid_rate([*poems, other, *bad], length) == pytest.approx(4 / 11)
    assert format_valid_rate([], length) == 0.0
    with pytest.raises(PromptError):
        format_valid_rate(poems, 6)


def test_split_render_round_trip() -> None:
    lines = ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]
    assert split_lines(DENG) == lines
    assert render(lines) == DENG
    assert render(split_lines(DENG)) == DENG
    assert split_lines(lines) == lines  # lists pass through
    assert split_lines("白日依山尽, 黄河入海流.\n欲穷千里目！更上一层楼？") == lines
    assert render(["一二三四五", "六七八九十"]) == "一二三四五，六七八九十。"


# ---- rhyme ----


@pytest.mark.parametrize("length", [5, 7])
def test_rhyme_rate_hand_labelled(length: int) -> None:
    poems, _ = FORMS[length]
    for system in ("pingshui", "xinyun"):
        assert rhyme_rate(poems, system) == pytest.approx(3 / 4)
        assert rhyme_rate(poems, system, line_length=length) == pytest.approx(3 / 4)
        assert rhyme_rate([split_lines(p) for p in poems], system) == pytest.approx(3 / 4)
    assert [poem_rhymes(p) for p in poems] == [True, True, True, False]
    assert rhyme_rate([]) == 0.0
    with pytest.raises(PromptError):
        rhyme_rate(poems, "cilin")
    with pytest.raises(PromptError):
        rhyme_rate(poems, line_length=6)


@pytest.mark.parametrize("length", [5, 7])
def test_malformed_poem_does_not_rhyme(length: int) -> None:
    # the module contract: a poem that is not 4 lines of an accepted length counts as not rhyming
    poems, other = FORMS[length]
    good = poems[0]
    assert poem_rhymes(other) and not poem_rhymes(other, line_length=length)  # the other form
    assert not poem_rhymes(good[: 2 * (length + 1) + 2])
    lines = split_lines(good)
    assert not poem_rhymes([lines[0][:-1], *lines[1:]])  # a short line
    assert not poem_rhymes([lines[0], *split_lines(other)[1:]])  # mixed lengths
    assert not poem_rhymes([line + line[-1] for line in lines])  # 6 or 8 characters
    assert rhyme_rate([*poems, other]) == pytest.approx(4 / 5)
    assert rhyme_rate([*poems, other], line_length=length) == pytest.approx(3 / 5)


# ---- 平仄 ----


def test_tone_compliance_hand_checked() -> None:
    malformed = "白日依山尽，黄河入海流。"
    poems = [ZHENG, DENG, JING, malformed]
    loose = tone_compliance(poems)
    assert loose["fit_rate"] == pytest.approx(2 / 4)
    assert loose["position_rate"] == pytest.approx((1.0 + 1.0 + 10 / 12 + 0.0) / 4)
    strict = tone_compliance(poems, strict=True)
    assert strict["fit_rate"] == pytest.approx(1 / 4)  # only 听筝 is on pattern at every position
    assert loose["cross_line_rate"] == 0.0  # 静夜思's lines 2 and 3 break their own line form
    assert tone_compliance([malformed]) == {"fit_rate": 0.0, "position_rate": 0.0, "cross_line_rate": 0.0}
    assert tone_compliance([QIYAN], line_length=5) == {"fit_rate": 0.0, "position_rate": 0.0, "cross_line_rate": 0.0}
    assert tone_compliance([]) == {"fit_rate": 0.0, "position_rate": 0.0, "cross_line_rate": 0.0}
    with pytest.raises(PromptError):
        tone_compliance(poems, system="cilin")


def test_tone_compliance_qiyan_hand_checked() -> None:
    malformed = QIYAN[:16]  # two lines
    poems = [QIYAN, SHAN_XING, QING_MING, LIANG_ZHOU, malformed]
    loose = tone_compliance(poems)
    assert loose["fit_rate"] == pytest.approx(3 / 5)  # 凉州词's 拗句 misses 1 of 16 positions
    assert loose["position_rate"] == pytest.approx((3 + 15 / 16) / 5)
    # strict, 平水韵: 早发白帝城 misses only 千 (27/28); 平起 and 仄起 scored against the 七言 templates
    assert tone_compliance([QIYAN], strict=True) == {"fit_rate": 0.0, "position_rate": pytest.approx(27 / 28),
                                                     "cross_line_rate": 0.0}
    # modern tones read the 入声 节 as 平: 清明 no longer fits
    xinyun = tone_compliance(poems, system="xinyun")
    assert xinyun["fit_rate"] == pytest.approx(2 / 5)
    assert xinyun["position_rate"] == pytest.approx((2 + 15 / 16 + 14 / 16) / 5)
    # each poem is scored against its own form; a set of both forms mixes them, unless the form is given
    mixed = [QIYAN, DENG, ZHENG]
    assert tone_compliance(mixed)["fit_rate"] == pytest.approx(3 / 3)
    assert tone_compliance(mixed, line_length=5)["fit_rate"] == pytest.approx(2 / 3)
    assert tone_compliance(mixed, line_length=7)["fit_rate"] == pytest.approx(1 / 3)
    with pytest.raises(PromptError):
        tone_compliance(mixed, line_length=6)


def test_cross_line_misfits_are_told_from_broken_lines() -> None:
    # 听筝 fits 平起 line by line; its first two lines swapped still keep their own forms but no longer chain (粘对)
    lines = split_lines(ZHENG)
    assert all(fits_line_form(line) for line in lines)
    swapped = [lines[1], lines[0], *lines[2:]]
    assert tone_compliance([ZHENG, swapped]) == {"fit_rate": 0.5, "position_rate": pytest.approx((1 + 7 / 12) / 2),
                                                 "cross_line_rate": 0.5}
    # 静夜思: 疑是地上霜 breaks its own line form (地 where 平 is due), so its misfit is not a cross-line one
    assert not fits_line_form(split_lines(JING)[1])
    assert tone_compliance([JING])["cross_line_rate"] == 0.0
    assert fits_line_form("朝辞白帝彩云间")  # a 七言 line, by its own length
    with pytest.raises(ValueError, match="expected a line of 5"):
        fits_line_form("朝辞白帝彩云间", line_length=5)


# ---- diversity ----


def test_distinct_n_hand_computed() -> None:
    assert distinct_n(["明月明月明"], 1) == pytest.approx(2 / 5)  # 明 x3, 月 x2
    assert distinct_n(["明月明月明"], 2) == pytest.approx(2 / 4)  # 明月 月明 明月 月明
    assert distinct_n(["明月明月明"], 3) == pytest.approx(2 / 3)  # 明月明 月明月 明月明
    # n-grams do not cross line boundaries: 明月|月明 has bigrams 明月, 月明 only (not 月月)
    assert distinct_n(["明月，月明。"], 2) == pytest.approx(2 / 2)
    assert distinct_n([["明月"], ["明月"]], 2) == pytest.approx(1 / 2)
    assert distinct_n([DENG], 1) == pytest.approx(1.0)  # 20 different characters
    assert distinct_n([DENG, DENG], 2) == pytest.approx(16 / 32)
    assert distinct_n([["明"]], 2) == 0.0 and distinct_n([], 1) == 0.0
    with pytest.raises(ValueError):
        distinct_n([DENG], 0)


def test_sentence_bleu_hand_computed() -> None:
    assert sentence_bleu("春风又绿江南岸", ["春风又绿江南岸"]) == pytest.approx(1.0)
    # 1-4 gram precisions 3/4, 2/3, 1/2, 0 -> 0.1/1 (method 1); equal lengths: no brevity penalty
    assert sentence_bleu("春风又绿", ["春风又到"]) == pytest.approx((0.75 * 2 / 3 * 0.5 * 0.1) ** 0.25)
    # hypothesis shorter than the reference: brevity penalty exp(1 - 6/4)
    expected = math.exp(1 - 6 / 4) * (1.0 * 1.0 * 1.0 * 1.0) ** 0.25
    assert sentence_bleu("春风又绿", ["春风又绿江南"]) == pytest.approx(expected)
    # two orders only for a 2-character hypothesis
    assert sentence_bleu("春风", "春风") == pytest.approx(1.0)
    assert sentence_bleu("", ["春风"]) == 0.0 and sentence_bleu("春风", []) == 0.0


def test_self_bleu_identical_and_disjoint() -> None:
    assert self_bleu([DENG, DENG, DENG]) == pytest.approx(1.0)
    # no shared character at all: every precision is smoothed 0.1 / count
    disjoint = ["一二三四五，六七八九十。", "甲乙丙丁戊，己庚辛壬癸。"]
    assert self_bleu(disjoint) < 0.02
    assert math.isnan(self_bleu([DENG])) and math.isnan(self_bleu([]))
    assert 0.0 < self_bleu([DENG, NO_RHYME, JING]) < 1.0


def test_self_bleu_equals_brute_force() -> None:
    rng = random.Random(0)
    alphabet = "春夏秋冬山水风月花鸟"  # small alphabet so that higher-order n-grams repeat across poems
    poems = ["".join(rng.choice(alphabet) for _ in range(rng.choice((10, 20, 20, 15)))) for _ in range(25)]
    texts = [render(split_lines([p[i : i + 5] for i in range(0, len(p), 5)])) for p in poems]
    brute = sum(
        sentence_bleu("".join(split_lines(t)), ["".join(split_lines(o)) for j, o in enumerate(texts) if j != i])
        for i, t in enumerate(texts)
    ) / len(texts)
    assert self_bleu(texts) == pytest.approx(brute)
    # sampling: deterministic for a seed, and the full set when sample >= len
    assert self_bleu(texts, sample=10, seed=3) == self_bleu(texts, sample=10, seed=3)
    assert self_bleu(texts, sample=100) == pytest.approx(brute)


# ---- novelty ----


def test_novelty() -> None:
    train = [DENG, split_lines(JING), JIANG]
    mixed = render([*split_lines(DENG)[:2], "春风又绿江", "明月何时照"])
    poems = [split_lines(DENG), mixed, ZHENG]  # copied poem, 2 copied lines, novel poem
    out = novelty(poems, train)
    assert out["copied_poem_rate"] == pytest.approx(1 / 3)
    assert out["copied_line_rate"] == pytest.approx((4 + 2 + 0) / 12)
    assert novelty([], train) == {"copied_poem_rate": 0.0, "copied_line_rate": 0.0}
    assert novelty([ZHENG], []) == {"copied_poem_rate": 0.0, "copied_line_rate": 0.0}


# ---- report ----


def test_poetry_report() -> None:
    poems = [DENG, JING, JIANG, ZHENG]
    report = poetry_report(poems, train_poems=[DENG])
    assert report["n_poems"] == 4.0
    assert report["format_valid_rate"] == 1.0
    assert report["rhyme_rate"] == pytest.approx(1.0)
    assert report["tone_fit_rate"] == pytest.approx(2 / 4)  # 听筝, 登鹳雀楼 (江雪 is a 仄韵 古绝)
    assert report["tone_fit_rate_strict"] == pytest.approx(1 / 4)
    assert report["distinct_1"] == pytest.approx(distinct_n(poems, 1))
    assert report["copied_poem_rate"] == pytest.approx(1 / 4)
    assert all(isinstance(v, float) for v in report.values())
    assert poetry_report(poems, train_poems=[DENG], line_length=5) == report
    lists = poetry_report([split_lines(p) for p in poems] + [["白日依山", "黄河入海流"]])
    assert lists["format_valid_rate"] == pytest.approx(4 / 5)
    assert "copied_poem_rate" not in lists
    with pytest.raises(PromptError):
        poetry_report(poems, system="cilin")
    with pytest.raises(PromptError):
        poetry_report(poems, line_length=6)


def test_poetry_report_qiyan() -> None:
    poems = [QIYAN, SHAN_XING, QING_MING, LIANG_ZHOU]
    report = poetry_report(poems, train_poems=[SHAN_XING], line_length=7)
    assert report["format_valid_rate"] == 1.0
    assert report["rhyme_rate"] == 1.0
    assert report["tone_fit_rate"] == pytest.approx(3 / 4)
    assert report["tone_position_rate"] == pytest.approx((3 + 15 / 16) / 4)
    assert report["copied_poem_rate"] == pytest.approx(1 / 4)
    assert poetry_report(poems, train_poems=[SHAN_XING]) == report  # inferred from the poems
    # a 七言 checkpoint's report counts a 五绝 as malformed everywhere
    mixed = poetry_report([*poems, DENG], line_length=7)
    assert mixed["format_valid_rate"] == pytest.approx(4 / 5) and mixed["rhyme_rate"] == pytest.approx(4 / 5)
    assert mixed["tone_fit_rate"] == pytest.approx(3 / 5)
    assert poetry_report([*poems, DENG])["format_valid_rate"] == 1.0


def test_famous_qiyan_human_rows() -> None:
    # no 七绝 corpus is shipped yet: a handful of famous 七绝 as the human row (fits hand-checked in test_prosody)
    report = poetry_report(QIYAN_FAMOUS, line_length=7)
    assert report["format_valid_rate"] == 1.0
    assert report["rhyme_rate"] == 1.0 and rhyme_rate(QIYAN_FAMOUS, "xinyun", 7) == 1.0
    assert report["tone_fit_rate"] == pytest.approx(10 / 11)  # all but 凉州词 (王之涣)
    assert report["tone_fit_rate_strict"] < 0.5 < report["tone_fit_rate"]
    assert report["tone_position_rate_strict"] < report["tone_position_rate"]
    # 入声 read as modern 平 (节 白 及 笛) costs the 新韵 tones 4 of the 11 fits
    assert tone_compliance(QIYAN_FAMOUS, system="xinyun")["fit_rate"] == pytest.approx(7 / 11)
    assert report["distinct_1"] > 0.6 and 0.0 < report["self_bleu"] < 0.2


# ---- the human test split ----


@pytest.fixture(scope="module")
def human_test() -> list[tuple[str, ...]]:
    return [poem.lines for poem in split_poems(load_corpus())["test"]]


@pytest.fixture(scope="module")
def human_report(human_test) -> dict[str, float]:
    return poetry_report(human_test, self_bleu_sample=200)


def test_human_test_split_metrics(human_test, human_report) -> None:
    report = human_report
    assert len(human_test) > 500
    assert report["format_valid_rate"] == 1.0
    assert 0.6 <= report["rhyme_rate"] <= 0.95
    assert 0.6 <= rhyme_rate(human_test, "xinyun") <= 0.95
    assert report["distinct_2"] > 0.8
    assert 0.05 < report["distinct_1"] < 0.5
    assert 0.2 < report["tone_fit_rate"] < 0.9
    assert report["tone_fit_rate_strict"] < report["tone_fit_rate"]
    assert 0.75 < report["tone_position_rate"] <= 1.0
    assert report["tone_position_rate_strict"] < report["tone_position_rate"]
    assert 0.0 < report["self_bleu"] < 0.2


def test_human_test_split_is_novel_to_train(human_test) -> None:
    train = [poem.lines for poem in split_poems(load_corpus())["train"]]
    out = novelty(human_test, train)
    assert out["copied_poem_rate"] == 0.0  # the split keeps variant texts together
    assert out["copied_line_rate"] < 0.1
