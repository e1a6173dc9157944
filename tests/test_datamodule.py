from __future__ import annotations

import lzma
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from poetry_vae.data import word2vec
from poetry_vae.data.corpus import RESOURCES, SHIPPED_CORPORA
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


def _slice(source: str, out: Path, rows: int) -> Path:
    """The first `rows` rows of a shipped corpus file, as plain JSON lines (a quick stand-in for the whole)."""
    with lzma.open(RESOURCES / source, "rt", encoding="utf-8") as handle:
        out.write_text("".join(islice(handle, rows)), encoding="utf-8")
    return out


def test_seven_character_quatrains_end_to_end(tmp_path: Path) -> None:
    path = _slice(SHIPPED_CORPORA["qijue"][0], tmp_path / "qijue.jsonl", 3000)
    dm = QuatrainDataModule(corpus_path=str(path), line_length=7, cache_dir=str(tmp_path / "c"), batch_size=32)
    vocab = dm.prepare()
    batch = next(iter(dm.train_dataloader()))
    assert batch["tokens"].shape == (32, 28) and batch["dec_in"].shape == batch["target"].shape == (32, 29)
    assert (batch["form"] == 0).all()
    poem = dm.poems["train"][int(batch["index"][0])]
    assert vocab.decode(batch["tokens"][0].tolist()) == "".join(c if c in vocab else "" for c in poem.text)
    assert next(iter(dm.val_dataloader()))["target"].shape[1] == 29
    assert dm.embedding_matrix(8).shape == (len(vocab), 8)
    assert 0 < dm.unk_rate("val") < 0.05  # min_count 2 on 2,700 training poems


@pytest.fixture()
def blocks_file(tmp_path: Path) -> Path:
    return _slice(SHIPPED_CORPORA["wuyan"][0], tmp_path / "blocks.jsonl", 5000)


def test_fine_tuning_reuses_the_pretraining_vocabulary(tmp_path: Path, blocks_file: Path) -> None:
    cache = str(tmp_path / "cache")
    pretraining = QuatrainDataModule(pretrain_corpus=str(blocks_file), cache_dir=cache, limit_train_poems=2000)
    fine_tuning = QuatrainDataModule(vocab_from=str(blocks_file), cache_dir=cache, limit_train_poems=2000)
    alone = QuatrainDataModule(cache_dir=cache, limit_train_poems=2000)
    vocab = pretraining.prepare()
    assert len(pretraining.poems["train"]) == 2000 + len(pretraining.blocks["train"][:2000])
    assert len(fine_tuning.prepare()) == len(vocab) and fine_tuning.vocab.tokens == vocab.tokens  # same ids
    assert len(fine_tuning.poems["train"]) == 2000  # the blocks shape the vocabulary but are not trained on
    assert torch.equal(fine_tuning.tensors["test"]["tokens"], pretraining.tensors["test"]["tokens"])
    assert alone.prepare().tokens != vocab.tokens  # without vocab_from, ids would move
    assert len(list((tmp_path / "cache").glob("vocab-*.json"))) == 2  # one shared file, one of its own
    # An explicit vocab_path to the pretraining vocabulary passes the fingerprint check for fine-tuning
    shared = tmp_path / "cache" / f"vocab-{vocab.fingerprint}-min2.json"
    explicit = QuatrainDataModule(vocab_from=str(blocks_file), vocab_path=str(shared), cache_dir=cache,
                                  limit_train_poems=2000)
    assert explicit.prepare().tokens == vocab.tokens


def test_a_vocabulary_that_does_not_cover_the_corpus_is_one_line(tmp_path: Path, blocks_file: Path) -> None:
    small = QuatrainDataModule(cache_dir=str(tmp_path / "c"), limit_train_poems=300).prepare()
    dm = QuatrainDataModule(vocab_from=str(blocks_file), cache_dir=str(tmp_path / "c"), limit_train_poems=300)
    with pytest.raises(CorpusError) as info:
        dm.use_vocabulary(small, "checkpoint outputs/wujue300/checkpoints/last.ckpt")
    message = str(info.value)
    assert "\n" not in message and "outputs/wujue300/checkpoints/last.ckpt" in message
    assert "does not cover corpus wujue + " in message and str(blocks_file) in message
    covering = QuatrainDataModule(vocab_from=str(blocks_file), cache_dir=str(tmp_path / "c"),
                                  limit_train_poems=300).prepare()
    other = QuatrainDataModule(cache_dir=str(tmp_path / "c"), limit_train_poems=300)
    assert other.use_vocabulary(covering, "pretrained").tokens == covering.tokens  # a superset is fine
    assert other.tensors["train"]["tokens"].max() < len(covering)


def test_pretrain_corpus_and_vocab_from_must_agree() -> None:
    with pytest.raises(CorpusError, match="differ"):
        QuatrainDataModule(pretrain_corpus="wuyan", vocab_from="other.jsonl")


@pytest.mark.parametrize("config", ["wujue", "wuyan", "qijue"])
def test_data_configs_compose(config: str) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from poetry_vae.cli import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={config}"])
    dm = instantiate(cfg.data)
    assert dm.hparams.line_length == (7 if config == "qijue" else 5)
    assert dm.blocks_corpus == ("wuyan" if config == "wuyan" else None)
    assert dm.corpus_path == ("qijue" if config == "qijue" else "wujue")


def test_a_vocabulary_lacking_a_few_rare_characters_still_encodes(tmp_path: Path) -> None:
    """A checkpoint trained before its corpus file was rebuilt may lack a character or two that now reach
    min_count: they read as <unk>, as they did in its training, instead of refusing the checkpoint."""
    from poetry_vae.data.vocab import Vocabulary

    full = QuatrainDataModule(cache_dir=str(tmp_path / "c"), limit_train_poems=3000).prepare()
    rare = full.tokens[-1]  # the rarest kept character: seen min_count times
    lacking = Vocabulary([t for t in full.tokens if t != rare], min_count=full.min_count)
    dm = QuatrainDataModule(cache_dir=str(tmp_path / "c"), limit_train_poems=3000)
    assert dm.use_vocabulary(lacking, "an older checkpoint").tokens == lacking.tokens
