"""Shared fixtures: the real shipped corpus (loads in ~0.2 s) and a tiny corpus written to a temp dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from poetry_vae import precision
from poetry_vae.data.corpus import Poem, load_corpus
from poetry_vae.data.vocab import Vocabulary


@pytest.fixture(autouse=True)
def auto_precision_is_fp32(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """precision=auto (DecodeRequest's default) decodes in fp32 here whatever the host CPU, so that outputs pinned
    by the tests hold on a CPU with native bf16 too (the tests of auto itself, in test_precision, patch their own)."""
    if request.module.__name__.endswith("test_precision"):
        return
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    precision._cpu_bf16_pays.cache_clear()


TINY_POEMS = [
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
    "红豆生南国，春来发几枝。愿君多采撷，此物最相思。",
    "空山不见人，但闻人语响。返景入深林，复照青苔上。",
    "移舟泊烟渚，日暮客愁新。野旷天低树，江清月近人。",
    "松下问童子，言师采药去。只在此山中，云深不知处。",
]


@pytest.fixture(scope="session")
def corpus() -> list[Poem]:
    return load_corpus()


@pytest.fixture(scope="session")
def vocab(corpus: list[Poem]) -> Vocabulary:
    """The shipped 五绝 corpus's vocabulary (min_count 2), for tests that decode with a small untrained model."""
    return Vocabulary.build([p.text for p in corpus], min_count=2)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Decoding tests' batches are tiny: a second intra-op thread only adds sync overhead (and spins on a busy box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def tiny_corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(TINY_POEMS * 5) + "\n", encoding="utf-8")
    return path


TINY_TRAIN_OVERRIDES = ["debug=tiny", "trainer.enable_model_summary=false"]


def tiny_train_config(out: Path, cache: Path, *overrides: str):  # -> DictConfig
    """The train config of a tiny model on 32 poems (4 steps an epoch), writing into ``out``."""
    from hydra import compose, initialize_config_dir

    from poetry_vae.cli import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[*TINY_TRAIN_OVERRIDES, f"paths.output_dir={out}",
                                           f"paths.cache_dir={cache}", *overrides])


def train_tiny_checkpoint(factory: pytest.TempPathFactory, name: str, *overrides: str) -> Path:
    """A real (tiny, barely trained) checkpoint written by the training entry point: a vocabulary from 3,000
    poems (so prompts of famous poems are in it), then 4 training steps."""
    from poetry_vae.train import train

    root = factory.mktemp(name)
    train(tiny_train_config(root / "run", root / "cache", "trainer.max_epochs=1", "data.limit_train_poems=3000",
                            "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", *overrides))
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_checkpoint(tmp_path_factory, "tiny_run")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run's language model: the same corpus and vocabulary, no latent code."""
    return train_tiny_checkpoint(tmp_path_factory, "tiny_lm", "model.use_latent=false")
