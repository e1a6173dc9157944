from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from poetry_vae.data import word2vec
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.errors import CorpusError


@pytest.fixture()
def datamodule(tmp_path: Path) -> QuatrainDataModule:
    dm = QuatrainDataModule(cache_dir=str(tmp_path / "cache"), batch_size=64, limit_train_poems=1000)
    dm.prepare()
    return dm


def test_batches_have_decoder_input_and_target_shapes(datamodule: QuatrainDataModule) -> None:
    batch = next(iter(datamodule.train_dataloader()))
    vocab = datamodule.vocab
    assert batch["tokens"].shape == (64, 20)
    assert batch["dec_in"].shape == batch["target"].shape == (64, 21)
    assert (batch["dec_in"][:, 0] == vocab.bos_id).all() and (batch["target"][:, -1] == vocab.eos_id).all()
    assert torch.equal(batch["dec_in"][:, 1:], batch["tokens"])
    assert torch.equal(batch["target"][:, :-1], batch["tokens"])
    first = datamodule.poems["train"][int(batch["index"][0])]
    assert vocab.decode(batch["tokens"][0].tolist()) == "".join(c if c in vocab else "" for c in first.text)


def test_fresh_shuffle_each_epoch_and_partial_last_batch(datamodule: QuatrainDataModule) -> None:
    loader = datamodule.train_dataloader()
    epoch1 = torch.cat([b["index"] for b in loader])
    epoch2 = torch.cat([b["index"] for b in loader])
    assert sorted(epoch1.tolist()) == list(range(1000)) == sorted(epoch2.tolist())  # nothing dropped
    assert not torch.equal(epoch1, epoch2)
    assert len(list(loader)[-1]["index"]) == 1000 % 64


def test_line_form_comes_from_config(tmp_path: Path) -> None:
    path = tmp_path / "seven.txt"
    path.write_text("朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。\n" * 60, encoding="utf-8")
    dm = QuatrainDataModule(corpus_path=str(path), line_length=7, cache_dir=str(tmp_path / "c"),
                            val_fraction=0.3, test_fraction=0.3, split_seed=3)
    with pytest.raises(CorpusError, match=r"split .* is empty"):  # one repeated poem: one group, one split
        dm.prepare()


def test_vocabulary_is_cached_and_mismatch_is_caught(tmp_path: Path, datamodule: QuatrainDataModule) -> None:
    files = list((tmp_path / "cache").glob("vocab-*.json"))
    assert len(files) == 1
    other = QuatrainDataModule(cache_dir=str(tmp_path / "cache"), limit_train_poems=500, vocab_path=str(files[0]))
    with pytest.raises(CorpusError, match="another corpus"):
        other.prepare()


def test_word2vec_is_deterministic_cached_and_centred(tmp_path: Path, datamodule: QuatrainDataModule,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    first = datamodule.embedding_matrix(16)
    texts = [p.text for p in datamodule.poems["train"]]
    retrained = word2vec.train_word2vec(texts, datamodule.vocab, 16)
    assert np.array_equal(first, retrained)
    assert first.shape == (len(datamodule.vocab), 16)
    assert np.abs(first[:4]).max() <= 0.1  # specials: small centred init, not uniform [0, 1)
    monkeypatch.setattr(word2vec, "train_word2vec", lambda *a, **k: pytest.fail("cache was not reused"))
    assert np.array_equal(datamodule.embedding_matrix(16), first)
