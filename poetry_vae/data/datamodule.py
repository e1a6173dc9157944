"""The LightningDataModule: corpus → leakage-free split → vocabulary → token tensors → batches.

With `pretrain_corpus` (e.g. `wuyan`) the leak-free training blocks of that corpus join the training split,
while validation and test stay the evaluation corpus's own (so numbers compare with every run on it). With
`vocab_from` the same blocks only shape the vocabulary and word2vec: fine-tuning with `vocab_from: wuyan`
builds exactly the vocabulary of pretraining on `wuyan`, so ids stay stable from one to the other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from poetry_vae.data.corpus import Poem, corpus_name, load_corpus
from poetry_vae.data.forms import FORM_IDS
from poetry_vae.data.pretrain import cached_leak_free_blocks
from poetry_vae.data.split import SPLITS, split_poems
from poetry_vae.data.vocab import Vocabulary, text_fingerprint
from poetry_vae.errors import CorpusError

Batch = dict[str, torch.Tensor]


# The share of a corpus's characters that a given vocabulary (a checkpoint's) may leave as <unk>: a handful of rare
# characters, as when a corpus file was rebuilt after the checkpoint was trained, not another corpus.
MAX_UNCOVERED = 1e-4


def encode_poems(poems: list[Poem], vocab: Vocabulary, length: int) -> Batch:
    """Encoder input `tokens` (N, L), decoder input `<s>`+tokens and target tokens+`</s>` (N, L+1), the form
    id of each poem (`forms.FORMS`) and its index in the split; L = `length` characters a poem."""
    tokens = torch.from_numpy(vocab.encode_many([poem.text for poem in poems], length))
    column = torch.full((len(poems), 1), vocab.bos_id, dtype=torch.long)
    return {
        "tokens": tokens,
        "dec_in": torch.cat([column, tokens], dim=1),
        "target": torch.cat([tokens, column.fill_(vocab.eos_id)], dim=1),
        "form": torch.tensor([FORM_IDS[poem.form] for poem in poems], dtype=torch.long),
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
        pretrain_corpus: str | None = None,
        vocab_from: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.corpus_path = corpus_name(corpus_path)
        self.cache_dir = Path(cache_dir)
        if pretrain_corpus and vocab_from and pretrain_corpus != vocab_from:
            raise CorpusError(
                f"data.pretrain_corpus={pretrain_corpus} and data.vocab_from={vocab_from} differ: pretraining "
                "blocks always shape the vocabulary, so set only one of them (or both to the same corpus)"
            )
        self.blocks_corpus = pretrain_corpus or vocab_from or None
        self.poems: dict[str, list[Poem]] = {}  # the evaluation corpus; "train" plus the blocks when pretraining
        self.blocks: dict[str, list[Poem]] = {}  # the leak-free pretraining blocks by split (when any)
        self.blocks_dropped = 0  # blocks sharing a line with an evaluation validation or test poem
        self.vocab_texts: list[str] = []  # the text the vocabulary and word2vec are built from
        self.tensors: dict[str, Batch] = {}
        self.vocab: Vocabulary | None = None

    def load(self) -> None:
        """Read and split the corpus and the pretraining blocks once (idempotent); no vocabulary yet."""
        if self.poems:
            return
        hp = self.hparams
        poems = load_corpus(hp.corpus_path, hp.line_length, hp.num_lines)
        splits = split_poems(poems, hp.val_fraction, hp.test_fraction, hp.split_seed)
        for name in SPLITS:
            if not splits[name]:
                raise CorpusError(
                    f"the {name} split of {self.corpus_path} is empty ({len(poems)} poems in all): "
                    "use a larger corpus or raise data.val_fraction / data.test_fraction"
                )
        if hp.limit_train_poems:
            splits["train"] = splits["train"][: hp.limit_train_poems]
        training_blocks: list[Poem] = []
        if self.blocks_corpus:
            blocks = cached_leak_free_blocks(self.blocks_corpus, splits, hp.line_length, hp.num_lines,
                                             hp.val_fraction, hp.test_fraction, hp.split_seed, self.cache_dir)
            self.blocks, self.blocks_dropped = blocks.splits, blocks.dropped
            training_blocks = self.blocks["train"][: hp.limit_train_poems or None]
        # Identical for pretraining and for fine-tuning with vocab_from: the same vocabulary, the same ids.
        self.vocab_texts = [poem.text for poem in splits["train"] + training_blocks]
        if hp.pretrain_corpus:
            splits["train"] = splits["train"] + training_blocks
        self.poems = splits

    def prepare(self) -> Vocabulary:
        """Read, split and tokenise once (idempotent); the model needs the vocabulary before it is built."""
        if self.vocab is not None:
            return self.vocab
        self.load()
        hp = self.hparams
        fingerprint = text_fingerprint(self.vocab_texts)
        if hp.vocab_path:
            vocab = Vocabulary.load(hp.vocab_path, expected_fingerprint=fingerprint)
        else:
            cached = self.cache_dir / f"vocab-{fingerprint}-min{hp.min_count}.json"
            if cached.is_file():
                vocab = Vocabulary.load(cached, expected_fingerprint=fingerprint)
            else:
                vocab = Vocabulary.build(self.vocab_texts, hp.min_count)
                vocab.save(cached)
        self._encode(vocab)
        return vocab

    @classmethod
    def for_checkpoint(cls, data_hparams: dict, vocab: Vocabulary, source: str) -> QuatrainDataModule:
        """The data a checkpoint was trained on (same split), encoded with the checkpoint's own vocabulary."""
        datamodule = cls(**data_hparams)
        datamodule.use_vocabulary(vocab, source)
        return datamodule

    def use_vocabulary(self, vocab: Vocabulary, source: str) -> Vocabulary:
        """Encode with a given vocabulary (a pretrained checkpoint's, when fine-tuning), keeping its ids.

        It must hold the characters this config's own vocabulary would (seen `min_count` times in the vocabulary
        text), but for a few rare ones (at most MAX_UNCOVERED of the text, read as <unk>: a checkpoint trained
        before its corpus file was rebuilt); else a one-line CorpusError names the vocabulary's source and the corpus.
        """
        self.load()
        missing = vocab.missing(self.vocab_texts, self.hparams.min_count)
        counts = Counter(char for text in self.vocab_texts for char in text) if missing else Counter()
        share = sum(counts[char] for char in missing) / max(1, sum(counts.values()))
        if share > MAX_UNCOVERED:
            corpus = self.corpus_path + (f" + {self.blocks_corpus} blocks" if self.blocks_corpus else "")
            raise CorpusError(
                f"the vocabulary of {source} ({len(vocab)} tokens) does not cover corpus {corpus}: it lacks "
                f"{len(missing)} characters seen at least {self.hparams.min_count} times in its training text "
                f"({share:.2%} of it; most frequent: {''.join(missing[:10])}); fine-tune with the data config it "
                "was trained on, or pretrain with a vocabulary that includes this corpus (e.g. data.vocab_from=wuyan)"
            )
        self._encode(vocab)
        return vocab

    def _encode(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        length = self.hparams.line_length * self.hparams.num_lines
        self.tensors = {name: encode_poems(self.poems[name], vocab, length) for name in SPLITS}

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def embedding_matrix(self, dim: int) -> np.ndarray:
        """Word2Vec vectors for every vocabulary id (trained once per inputs, then read from the cache)."""
        vocab = self.prepare()
        hp = self.hparams
        from poetry_vae.data.word2vec import cached_embeddings  # gensim: only a fresh start needs it

        return cached_embeddings(self.vocab_texts, vocab, dim, self.cache_dir, window=hp.word2vec_window,
                                 epochs=hp.word2vec_epochs, seed=hp.word2vec_seed)

    def unk_rate(self, split: str = "val") -> float:
        """Share of a split's characters that the vocabulary maps to ``<unk>``."""
        return float((self.tensors[split]["tokens"] == Vocabulary.unk_id).float().mean())

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if self.vocab is None:
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
