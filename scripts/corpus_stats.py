"""Measure the shipped corpora as the DataModule uses them: forms, splits, vocabularies, <unk> rates, sizes.

    python scripts/corpus_stats.py [--cache-dir .cache/poetry_vae]

Prints one Markdown-ready block per data config (wujue, wuyan, wujue with vocab_from=wuyan, qijue); the
figures in resources/CORPUS_SOURCE.md come from it. Default split settings (seed 0, 5% / 5%, min_count 2).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch

from poetry_vae.data.corpus import RESOURCES, SHIPPED_CORPORA
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.data.forms import FORMS
from poetry_vae.data.split import SPLITS
from poetry_vae.data.vocab import Vocabulary


def unk_rates(tokens: torch.Tensor) -> str:
    unk = tokens == Vocabulary.unk_id
    return f"{100 * unk.float().mean():.3f}% of characters, {100 * unk.any(dim=1).float().mean():.2f}% of rows"


def describe(label: str, dm: QuatrainDataModule) -> None:
    started = time.perf_counter()
    vocab = dm.prepare()
    print(f"## {label}  (prepare {time.perf_counter() - started:.1f} s)")
    print(f"- vocabulary: {len(vocab)} tokens (min_count {vocab.min_count}) from {len(dm.vocab_texts)} texts")
    for name in SPLITS:
        forms = Counter(FORMS[i] for i in dm.tensors[name]["form"].tolist())
        shown = ", ".join(f"{form} {forms[form]}" for form in FORMS if forms[form])
        print(f"- {name}: {len(dm.poems[name])} ({shown}); <unk> {unk_rates(dm.tensors[name]['tokens'])}")
    if dm.blocks:
        print(f"- pretraining blocks after leakage removal ({dm.blocks_dropped} dropped):")
        for name in SPLITS:
            forms = Counter(block.form for block in dm.blocks[name])
            rates = unk_rates(torch.from_numpy(vocab.encode_many([b.text for b in dm.blocks[name]],
                                                                 len(dm.blocks[name][0].text))))
            shown = ", ".join(f"{form} {forms[form]}" for form in FORMS if forms[form])
            print(f"  - {name}: {len(dm.blocks[name])} ({shown}); <unk> {rates}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", default=".cache/poetry_vae")
    args = parser.parse_args()
    for files in SHIPPED_CORPORA.values():
        for name in files:
            print(f"- {name}: {(RESOURCES / name).stat().st_size / 1e6:.2f} MB")
    describe("wujue", QuatrainDataModule(cache_dir=args.cache_dir))
    describe("wuyan", QuatrainDataModule(pretrain_corpus="wuyan", cache_dir=args.cache_dir))
    describe("wujue, vocab_from=wuyan", QuatrainDataModule(vocab_from="wuyan", cache_dir=args.cache_dir))
    describe("qijue", QuatrainDataModule(corpus_path="qijue", line_length=7, cache_dir=args.cache_dir))


if __name__ == "__main__":
    main()
