from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from poetry_vae.data.vocab import SPECIALS, Vocabulary
from poetry_vae.errors import CorpusError

TEXTS = ["白日依山尽黄河入海流", "欲穷千里目更上一层楼", "白日白日"]


def test_specials_first_then_by_count_then_code_point() -> None:
    vocab = Vocabulary.build(TEXTS)
    assert tuple(vocab.tokens[:4]) == SPECIALS
    assert vocab.tokens[4:6] == ["日", "白"]  # 3 each: ties broken by code point (日 U+65E5 < 白 U+767D)
    assert vocab.counts[4] == 3


def test_ids_do_not_depend_on_input_order() -> None:
    shuffled = TEXTS[:]
    random.Random(0).shuffle(shuffled)
    assert Vocabulary.build(TEXTS).tokens == Vocabulary.build(reversed(TEXTS)).tokens


def test_min_count_and_unknown() -> None:
    vocab = Vocabulary.build(TEXTS, min_count=2)
    assert "日" in vocab and "楼" not in vocab
    assert vocab.encode("楼日") == [vocab.unk_id, vocab.index["日"]]
    assert vocab.decode([vocab.bos_id, vocab.index["日"], vocab.unk_id, vocab.eos_id]) == "日"


def test_json_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.build(TEXTS)
    vocab.save(tmp_path / "v.json")
    data = json.loads((tmp_path / "v.json").read_text(encoding="utf-8"))
    assert data["tokens"] == vocab.tokens  # plain JSON
    loaded = Vocabulary.load(tmp_path / "v.json", expected_fingerprint=vocab.fingerprint)
    assert loaded.tokens == vocab.tokens and loaded.counts == vocab.counts and loaded.min_count == 1


def test_vocabulary_of_another_corpus_is_refused(tmp_path: Path) -> None:
    Vocabulary.build(TEXTS).save(tmp_path / "v.json")
    with pytest.raises(CorpusError, match="another corpus") as info:
        Vocabulary.load(tmp_path / "v.json", expected_fingerprint=Vocabulary.build(["春眠不觉晓"]).fingerprint)
    assert "v.json" in str(info.value) and "delete it" in str(info.value)
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(CorpusError, match="not valid JSON"):
        Vocabulary.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(CorpusError, match="not a poetry_vae vocabulary"):
        Vocabulary.load(tmp_path / "other.json")
