from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import opencc
import pytest

from poetry_vae.data.build_blocks import extract_blocks
from poetry_vae.data.build_corpus import extract, write_corpus
from poetry_vae.data.corpus import RESOURCES, SHIPPED_CORPORA, Poem, load_corpus
from poetry_vae.errors import CorpusError
from poetry_vae.layout import is_hanzi


def test_shipped_corpus_counts(corpus: list[Poem]) -> None:
    assert len(corpus) == 16_762
    assert sum(p.dynasty == "tang" for p in corpus) == 3_734
    assert sum(p.dynasty == "song" for p in corpus) == 13_028
    assert len({ch for p in corpus for ch in p.text}) == 5_830


def test_every_poem_is_four_lines_of_five_cjk_simplified_characters(corpus: list[Poem]) -> None:
    assert all(len(p.lines) == 4 and all(len(line) == 5 for line in p.lines) for p in corpus)
    assert all(is_hanzi(ch) for p in corpus for ch in p.text)
    to_simplified = opencc.OpenCC("t2s")
    # t2s converts phrases in context, so a second pass may still touch a rare word (乾闼婆 → 干闼婆): allow 0.1%.
    changed = [p.text for p in corpus if to_simplified.convert(p.text) != p.text]
    assert len(changed) <= len(corpus) // 1000, changed[:5]
    assert not set("國來時東風雲無與為見門長馬鳥說") & {ch for p in corpus for ch in p.text}
    assert len({p.text for p in corpus}) == len(corpus)  # deduplicated on the 20 characters
    assert any(not "\u4e00" <= ch <= "\u9fa5" for p in corpus for ch in p.text)  # Ext A/B kept, not dropped


def _write_source(root: Path, tang: list[dict], song: list[dict], strains: list[dict]) -> Path:
    (root / "dist" / "quantangshi").mkdir(parents=True)
    (root / "dist" / "strains" / "json").mkdir(parents=True)
    (root / "dist" / "quantangshi" / "poet.tang.0.json").write_text(json.dumps(tang, ensure_ascii=False))
    (root / "dist" / "quantangshi" / "poet.song.0.json").write_text(json.dumps(song, ensure_ascii=False))
    (root / "dist" / "strains" / "json" / "poet.tang.0.json").write_text(json.dumps(strains, ensure_ascii=False))
    return root / "dist"


def test_build_rule_on_a_small_source(tmp_path: Path) -> None:
    quatrain = {"author": "王之渙", "title": "登鸛雀樓", "id": "a",
                "paragraphs": ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"]}
    ext_b = {"author": "x", "title": "y", "id": "b", "paragraphs": ["𠀋日依山盡，黃河入海流。欲窮千里目，更上一層樓？"]}
    jueju7 = {"author": "x", "title": "seven", "id": "c", "paragraphs": ["朝辭白帝彩雲間，千里江陵一日還。"] * 2}
    five_lines = {"author": "x", "title": "long", "id": "d",
                  "paragraphs": ["白日依山盡，黃河入海流。"] * 2 + ["欲窮千里目，"]}
    strains = [{"id": "a", "strains": ["仄仄平平仄，平平仄仄平。", "仄平平仄仄，仄仄仄平平。"]}]
    dist = _write_source(tmp_path, [quatrain, ext_b, jueju7, five_lines], [dict(quatrain, id="song-dup")], strains)
    poems, stats = extract(dist)
    assert [p["id"] for p in poems] == ["a", "b"]  # Tang first; the Song duplicate is dropped
    assert stats["duplicates"] == 1
    assert poems[0]["lines"] == ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]  # t2s applied
    assert poems[0]["strains"] == ["仄仄平平仄", "平平仄仄平", "仄平平仄仄", "仄仄仄平平"]
    assert poems[1]["punctuation"] == "，。，？" and poems[1]["strains"] is None


def _error(path: Path) -> str:
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_corpus_names_the_file_and_the_fix(tmp_path: Path) -> None:
    message = _error(tmp_path / "nope.jsonl.gz")
    assert "nope.jsonl.gz" in message and "not found" in message and "data.corpus_path" in message


def test_malformed_json_row_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"lines": ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]}, ensure_ascii=False)
    path.write_text(good + "\n" + '{"lines": [\n', encoding="utf-8")
    assert f"{path}:2" in _error(path)


def test_wrong_shape_and_stray_characters(tmp_path: Path) -> None:
    path = tmp_path / "shape.txt"
    path.write_text("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n白日依山，黄河入海流。欲穷千里目，更上一层楼。\n")
    message = _error(path)
    assert f"{path}:2" in message and "4 lines of 5 characters" in message
    path.write_text("白日依山尽，黄河入海流。欲穷千里目，更上一层A。\n")
    message = _error(path)
    assert f"{path}:1" in message and "'A'" in message
    gz = tmp_path / "row.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"lines": ["白日依山尽", "黄河入海流", "欲穷千里目"]}) + "\n")
    assert f"{gz}:1" in _error(gz)


def test_empty_and_undecodable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert "holds no poems" in _error(empty)
    binary = tmp_path / "binary.jsonl.gz"
    binary.write_bytes(b"not gzip at all")
    assert "cannot be read" in _error(binary)


def test_plain_text_corpus(tiny_corpus_file: Path) -> None:
    poems = load_corpus(tiny_corpus_file)
    assert len(poems) == 40 and poems[0].lines == ("白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼")


def test_shipped_qijue_counts_and_shape() -> None:
    poems = load_corpus("qijue", line_length=7)
    assert len(poems) == 82_619
    assert sum(p.dynasty == "tang" for p in poems) == 10_309 and sum(p.dynasty == "song" for p in poems) == 72_310
    assert all(len(p.lines) == 4 and all(len(line) == 7 for line in p.lines) for p in poems)
    assert all(p.form == "jueju" for p in poems) and len({p.text for p in poems}) == len(poems)
    assert not set("國來時東風雲無與為見門長馬鳥說") & {ch for p in poems[:5000] for ch in p.text}
    assert sum(p.strains is not None for p in poems) > 75_000


def test_every_shipped_file_is_at_most_10_mb() -> None:
    files = [RESOURCES / name for names in SHIPPED_CORPORA.values() for name in names]
    assert len(files) == 4 and all(path.is_file() for path in files)
    assert max(path.stat().st_size for path in files) <= 10_000_000


BLOCK_SOURCE = [
    {"id": "q", "author": "王之渙", "paragraphs": ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"]},
    {"id": "lu", "author": "杜甫", "paragraphs": ["國破山河在，城春草木深。感時花濺淚，恨別鳥驚心。",
                                                "烽火連三月，家書抵萬金。白頭搔更短，渾欲不勝簪。"]},
    {"id": "gu10", "author": "x", "paragraphs": ["一二三四五，" * 4 + "六七八九十，" * 4 + "甲乙丙丁戊，己庚辛壬癸。"]},
    {"id": "six", "author": "x", "paragraphs": ["春眠不覺曉，處處聞啼鳥。" * 3]},
    {"id": "mixed", "author": "x",
     "paragraphs": ["春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。", "長短句不齊啊，八句之後。"]},
]


def test_block_rule_on_a_small_source(tmp_path: Path) -> None:
    song = [{"id": "dup", "author": "y", "paragraphs": BLOCK_SOURCE[1]["paragraphs"][::-1] * 2},  # 8 lines twice
            {"id": "q12", "author": "y", "paragraphs": ["白日依山盡，黃河入海流。欲窮千里目，更上一層樓。"] * 3}]
    dist = _write_source(tmp_path, BLOCK_SOURCE, song, [])
    rows, stats = extract_blocks(dist, 5, exclude={"白日依山尽黄河入海流欲穷千里目更上一层楼"})
    assert [(row["id"], row["block"], row["form"]) for row in rows] == [
        ("lu", 0, "lushi_head"), ("lu", 1, "lushi_tail"), ("gu10", 0, "gushi"), ("gu10", 1, "gushi")]
    assert rows[0]["lines"] == ["国破山河在", "城春草木深", "感时花溅泪", "恨别鸟惊心"] and rows[0]["author"] == "杜甫"
    assert rows[3]["lines"] == ["六七八九十"] * 4  # lines 9–10 of a 10-line poem are a remainder: dropped
    assert stats["duplicates"] == 4  # the Song 8-line poem repeats the two halves, twice
    assert stats["identical_to_excluded"] == 3  # each block of q12 is the excluded quatrain


def test_written_corpora_are_deterministic_and_load(tmp_path: Path) -> None:
    rows = [{"id": "a", "form": "gushi", "lines": ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]}]
    for name in ("a.jsonl.xz", "b.jsonl.xz", "a.jsonl.gz", "b.jsonl.gz"):
        write_corpus(rows, tmp_path / name)
    assert (tmp_path / "a.jsonl.xz").read_bytes() == (tmp_path / "b.jsonl.xz").read_bytes()
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()  # no name in header
    assert lzma.decompress((tmp_path / "a.jsonl.xz").read_bytes()).decode().count("\n") == 1
    for name in ("a.jsonl.xz", "a.jsonl.gz"):
        poem = load_corpus(tmp_path / name)[0]
        assert poem.form == "gushi" and poem.source_id == "a"
        assert poem.text == "白日依山尽黄河入海流欲穷千里目更上一层楼"
    assert not list(tmp_path.glob(".*tmp"))


def test_bad_form_tag_and_broken_xz(tmp_path: Path) -> None:
    path = tmp_path / "forms.jsonl"
    row = {"lines": ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]}
    path.write_text(json.dumps(row) + "\n" + json.dumps(dict(row, form="lvshi")) + "\n", encoding="utf-8")
    message = _error(path)
    assert f"{path}:2" in message and "'lvshi'" in message and "lushi_head" in message
    broken = tmp_path / "broken.jsonl.xz"
    broken.write_bytes(lzma.compress(b'{"lines": []}\n')[:-8])
    assert "cannot be read" in _error(broken)
