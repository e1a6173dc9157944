"""The five-character pretraining blocks: no leakage into the 五绝 evaluation, split by source poem, form tags."""

from __future__ import annotations

import json
import lzma
from collections import defaultdict
from itertools import islice
from pathlib import Path

import pytest
import torch

from poetry_vae.data import pretrain
from poetry_vae.data.corpus import RESOURCES, SHIPPED_CORPORA, Poem, load_corpus
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.data.forms import FORM_IDS, FORMS
from poetry_vae.data.split import split_poems

SLICE = 40_000  # blocks of the shipped wuyan for the default suite; the whole corpus runs under -m slow


@pytest.fixture(scope="module")
def wuyan(tmp_path_factory: pytest.TempPathFactory) -> QuatrainDataModule:
    """The wuyan data config on the shipped 五绝 and the first SLICE shipped blocks (~2 s)."""
    root = tmp_path_factory.mktemp("wuyan_slice")
    with lzma.open(RESOURCES / SHIPPED_CORPORA["wuyan"][0], "rt", encoding="utf-8") as handle:
        (root / "blocks.jsonl").write_text("".join(islice(handle, SLICE)), encoding="utf-8")
    dm = QuatrainDataModule(pretrain_corpus=str(root / "blocks.jsonl"), cache_dir=str(root / "cache"))
    dm.prepare()
    return dm


@pytest.fixture(scope="module")
def wuyan_full(tmp_path_factory: pytest.TempPathFactory) -> QuatrainDataModule:
    """The wuyan data config on the full shipped corpora (~10 s)."""
    dm = QuatrainDataModule(pretrain_corpus="wuyan", cache_dir=str(tmp_path_factory.mktemp("wuyan_cache")))
    dm.prepare()
    return dm


def _assert_no_leak(dm: QuatrainDataModule, corpus: list[Poem]) -> None:
    # The 五绝 split recomputed independently, exactly as split_poems computes it by default.
    reference = split_poems(corpus)
    assert [p.text for p in dm.poems["test"]] == [p.text for p in reference["test"]]
    assert [p.text for p in dm.poems["val"]] == [p.text for p in reference["val"]]
    held_out = {line for name in ("val", "test") for poem in reference[name] for line in poem.lines}
    training_blocks = [p for p in dm.poems["train"] if p.form != "jueju"]
    assert len(training_blocks) == len(dm.blocks["train"])
    leaks = [p.text for p in training_blocks if held_out & set(p.lines)]
    assert leaks == [], f"training blocks sharing a line with a 五绝 val/test poem: {leaks[:3]}"
    assert dm.unk_rate("test") < 0.004  # the shared vocabulary covers the 五绝 test split


def test_no_training_block_shares_a_line_with_a_wujue_held_out_poem(wuyan: QuatrainDataModule,
                                                                    corpus: list[Poem]) -> None:
    _assert_no_leak(wuyan, corpus)
    assert len(wuyan.blocks["train"]) > 0.85 * SLICE and wuyan.blocks_dropped > 10  # the filter removed some


@pytest.mark.slow
def test_no_block_of_the_whole_corpus_leaks(wuyan_full: QuatrainDataModule, corpus: list[Poem]) -> None:
    _assert_no_leak(wuyan_full, corpus)
    assert len(wuyan_full.blocks["train"]) > 250_000
    # ~10% of the ~3,000 blocks sharing a line with any 五绝 share it with a held-out one
    assert 150 < wuyan_full.blocks_dropped < 600


def test_blocks_of_one_source_poem_land_in_one_split(wuyan: QuatrainDataModule) -> None:
    split_of: dict[str, set[str]] = defaultdict(set)
    halves: dict[str, set[str]] = defaultdict(set)
    for name, blocks in wuyan.blocks.items():
        for block in blocks:
            split_of[block.source_id].add(name)
            if block.form.startswith("lushi"):
                halves[block.source_id].add(block.form)
    assert all(len(names) == 1 for names in split_of.values())
    assert sum(len(forms) == 2 for forms in halves.values()) > SLICE // 20  # both halves of many 五律 kept
    sizes = {name: len(blocks) for name, blocks in wuyan.blocks.items()}
    assert 0.88 < sizes["train"] / sum(sizes.values()) < 0.92


def test_form_tags_reach_the_batches(wuyan: QuatrainDataModule) -> None:
    forms = {form: sum(1 for p in wuyan.poems["train"] if p.form == form) for form in FORMS}
    assert forms["jueju"] == len(split_poems(load_corpus())["train"])
    assert min(forms["lushi_head"], forms["lushi_tail"], forms["gushi"]) > SLICE // 20
    ids = wuyan.tensors["train"]["form"]
    assert ids.dtype == torch.long and ids.shape == (len(wuyan.poems["train"]),)
    assert ids.tolist() == [FORM_IDS[p.form] for p in wuyan.poems["train"]]
    assert all((wuyan.tensors[name]["form"] == FORM_IDS["jueju"]).all() for name in ("val", "test"))
    batch = next(iter(wuyan.train_dataloader()))
    assert batch["form"].shape == batch["index"].shape and set(batch["form"].tolist()) <= set(range(len(FORMS)))


def _poem(text: str, source_id: str = "", form: str = "jueju") -> Poem:
    return Poem(lines=tuple(text[i : i + 5] for i in range(0, 20, 5)), source_id=source_id, form=form)


def test_leak_filter_drops_only_blocks_sharing_a_held_out_line() -> None:
    evaluation = {"train": [_poem("白日依山尽黄河入海流欲穷千里目更上一层楼")],
                  "val": [_poem("床前明月光疑是地上霜举头望明月低头思故乡")],
                  "test": [_poem("春眠不觉晓处处闻啼鸟夜来风雨声花落知多少")]}
    blocks = [_poem("白日依山尽千山鸟飞绝万径人踪灭孤舟蓑笠翁", "a", "gushi"),  # shares a training line: kept
              _poem("红豆生南国疑是地上霜愿君多采撷此物最相思", "b", "lushi_head"),  # a val line: dropped
              _poem("空山不见人但闻人语响返景入深林花落知多少", "c", "gushi")]  # a test line: dropped
    result = pretrain.leak_free_blocks(blocks, evaluation, 0.0, 0.0, 0)
    assert result.dropped == 2 and [p.source_id for p in result.splits["train"]] == ["a"]


def test_block_split_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"id": f"p{i // 2}", "form": ("lushi_head", "lushi_tail")[i % 2],
             "lines": [f"{chr(0x4E00 + 20 * i + 5 * k)}{chr(0x4E01 + 20 * i + 5 * k)}{chr(0x4E02 + 20 * i + 5 * k)}"
                       f"{chr(0x4E03 + 20 * i + 5 * k)}{chr(0x4E04 + 20 * i + 5 * k)}" for k in range(4)]}
            for i in range(200)]
    path = tmp_path / "blocks.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    evaluation = {"train": [], "val": [], "test": []}
    first = pretrain.cached_leak_free_blocks(str(path), evaluation, 5, 4, 0.2, 0.2, 0, tmp_path / "cache")
    monkeypatch.setattr(pretrain, "load_corpus", lambda *a, **k: pytest.fail("cache was not reused"))
    again = pretrain.cached_leak_free_blocks(str(path), evaluation, 5, 4, 0.2, 0.2, 0, tmp_path / "cache")
    assert again == first and sum(len(v) for v in first.splits.values()) == 200
    assert all(len({p.source_id for p in first.splits[n]} & {p.source_id for p in first.splits["train"]}) == 0
               for n in ("val", "test"))  # the two halves of a source poem stay together
