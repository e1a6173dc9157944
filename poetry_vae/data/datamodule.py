"""The LightningDataModule: corpus → leakage-free split → vocabulary → token tensors → batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from poetry_vae.data.corpus import Poem, load_corpus, resolve_corpus_path
from poetry_vae.data.split import SPLITS, split_poems
from poetry_vae.data.vocab import Vocabulary, text_fingerprint
from poetry_vae.data.word2vec import cached_embeddings
from poetry_vae.errors import CorpusError

Batch = dict[str, torch.Tensor]


def encode_poems(poems: list[Poem], vocab: Vocabulary) -> Batch:
    """Encoder input `tokens` (N, L), decoder input `<s>`+tokens and target tokens+`</s>` (N, L+1)."""
    tokens = torch.tensor([vocab.encode(poem.text) for poem in poems], dtype=torch.long).reshape(len(poems), -1)
    column = torch.full((len(poems), 1), vocab.bos_id, dtype=torch.long)
    return {
        "tokens": tokens,
        "dec_in": torch.cat([column, tokens], dim=1),
        "target": torch.cat([tokens, column.fill_(vocab.eos_id)], dim=1),
        "index": torch.arange(len(poems)),
    }


class PoemTensors(Dataset):
    """A split held as a few tensors; batches are sliced at once (`__getitems__`), not collated per poem."""

    def __init__(self, tensors: Batch) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["tokens"])

    def __getitem__(self, index: int) -> Batch:
        return {name: value[index] for name, value in self.tensors.items()}

    def __getitems__(self, indices: list[int]) -> Batch:
        rows = torch.as_tensor(indices)
        return {name: value[rows] for name, value in self.tensors.items()}


def _batch_as_is(batch: Batch) -> Batch:
    return batch


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation every epoch, drawn from (seed, epoch) alone.

    Lightning calls ``set_epoch`` before each epoch (also after a resume), so the order of epoch k never
    depends on how much global randomness was consumed before it: a resumed run sees the same batches.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1  # a plain loop outside Lightning still gets a new order each pass
        return iter(torch.randperm(self.size, generator=generator).tolist())


class QuatrainDataModule(pl.LightningDataModule):
    def __init__(
        self,
        corpus_path: str | None = None,
        line_length: int = 5,
        num_lines: int = 4,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        min_count: int = 2,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        cache_dir: str = ".cache/poetry_vae",
        vocab_path: str | None = None,
        word2vec_epochs: int = 5,
        word2vec_window: int = 5,
        word2vec_seed: int = 0,
        limit_train_poems: int | None = None,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.corpus_path = resolve_corpus_path(corpus_path)
        self.cache_dir = Path(cache_dir)
        self.poems: dict[str, list[Poem]] = {}
        self.tensors: dict[str, Batch] = {}
        self.vocab: Vocabulary | None = None

    def prepare(self) -> Vocabulary:
        """Read, split and tokenise once (idempotent); the model needs the vocabulary before it is built."""
        if self.vocab is not None:
            return self.vocab
        hp = self.hparams
        poems = load_corpus(self.corpus_path, hp.line_length, hp.num_lines)
        self.poems = split_poems(poems, hp.val_fraction, hp.test_fraction, hp.split_seed)
        if hp.limit_train_poems:
            self.poems["train"] = self.poems["train"][: hp.limit_train_poems]
        for name in SPLITS:
            if not self.poems[name]:
                raise CorpusError(
                    f"the {name} split of {self.corpus_path} is empty ({len(poems)} poems in all): "
                    "use a larger corpus or raise data.val_fraction / data.test_fraction"
                )
        train_texts = [poem.text for poem in self.poems["train"]]
        fingerprint = text_fingerprint(train_texts)
        if hp.vocab_path:
            self.vocab = Vocabulary.load(hp.vocab_path, expected_fingerprint=fingerprint)
        else:
            cached = self.cache_dir / f"vocab-{fingerprint}-min{hp.min_count}.json"
            if cached.is_file():
                self.vocab = Vocabulary.load(cached, expected_fingerprint=fingerprint)
            else:
                self.vocab = Vocabulary.build(train_texts, hp.min_count)
                self.vocab.save(cached)
        self.tensors = {name: encode_poems(self.poems[name], self.vocab) for name in SPLITS}
        return self.vocab

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def embedding_matrix(self, dim: int) -> np.ndarray:
        """Word2Vec vectors for every vocabulary id (trained once per inputs, then read from the cache)."""
        vocab = self.prepare()
        hp = self.hparams
        texts = [poem.text for poem in self.poems["train"]]
        return cached_embeddings(texts, vocab, dim, self.cache_dir, window=hp.word2vec_window,
                                 epochs=hp.word2vec_epochs, seed=hp.word2vec_seed)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.prepare()
        hp = self.hparams
        # The data is a few MB of tensors in memory: slicing a batch costs microseconds, so worker
        # processes only add start-up time. num_workers > 0 is honoured for corpora that need it.
        dataset = PoemTensors(self.tensors[split])
        return DataLoader(
            dataset,
            batch_size=hp.batch_size if split == "train" else hp.eval_batch_size,
            sampler=EpochShuffleSampler(len(dataset), hp.shuffle_seed) if shuffle else None,
            # Its own generator: creating an iterator then draws no number from the global RNG, which a
            # resumed run must find exactly where the interrupted one left it.
            generator=torch.Generator().manual_seed(hp.shuffle_seed),
            drop_last=False,
            collate_fn=_batch_as_is,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def batch_size_of(batch: Batch) -> int:
    """Poems in a batch (for Lightning's ThroughputMonitor)."""
    return int(batch["tokens"].size(0))
