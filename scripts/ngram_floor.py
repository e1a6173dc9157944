"""The count-model floor: an interpolated Kneser-Ney character trigram, trained on a data config's training split
and scored on the 五绝 test split, in nats per character (the 20 characters and <eos>, as the models are scored).

    python scripts/ngram_floor.py --data wuyan      # the 五绝 training split plus the five-character blocks
    python scripts/ngram_floor.py --data wujue      # the 五绝 training split alone

A neural model trained on the same data has to beat this by far to be worth its cost. Discount 0.75 at every
order (Chen & Goodman's interpolated form); characters never seen in training share one <unk> slot.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter, defaultdict

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from poetry_vae.cli import CONFIG_DIR

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
DISCOUNT = 0.75


class KneserNeyTrigram:
    def __init__(self, texts: list[str]) -> None:
        self.vocab = {char for text in texts for char in text} | {EOS, UNK}
        self.tri: Counter[tuple[str, str, str]] = Counter()
        for text in texts:
            chars = [BOS, BOS, *text, EOS]
            self.tri.update(zip(chars, chars[1:], chars[2:], strict=False))
        self.context = Counter()  # c(u v .)
        self.followers: Counter[tuple[str, str]] = Counter()  # N1+(u v .)
        self.middle_count: Counter[tuple[str, str]] = Counter()  # N1+(. v w): continuation counts of bigrams
        for (u, v, w), count in self.tri.items():
            self.context[u, v] += count
            self.followers[u, v] += 1
            self.middle_count[v, w] += 1
        self.middle_context: Counter[str] = Counter()  # N1+(. v .)
        self.middle_followers: Counter[str] = Counter()  # N1+ of distinct w after v among continuation bigrams
        self.unigram_count: Counter[str] = Counter()  # N1+(. w)
        for (v, w), count in self.middle_count.items():
            self.middle_context[v] += count
            self.middle_followers[v] += 1
            self.unigram_count[w] += 1
        self.bigram_types = sum(self.unigram_count.values())
        self.cache: dict[tuple[str, str], float] = defaultdict(float)

    def unigram(self, w: str) -> float:
        uniform = 1.0 / len(self.vocab)
        return (max(self.unigram_count[w] - DISCOUNT, 0) + DISCOUNT * len(self.unigram_count) * uniform) / (
            self.bigram_types
        )

    def bigram(self, v: str, w: str) -> float:
        total = self.middle_context[v]
        if not total:
            return self.unigram(w)
        mass = DISCOUNT * self.middle_followers[v] / total
        return max(self.middle_count[v, w] - DISCOUNT, 0) / total + mass * self.unigram(w)

    def prob(self, u: str, v: str, w: str) -> float:
        total = self.context[u, v]
        if not total:
            return self.bigram(v, w)
        mass = DISCOUNT * self.followers[u, v] / total
        return max(self.tri[u, v, w] - DISCOUNT, 0) / total + mass * self.bigram(v, w)

    def nll_per_char(self, texts: list[str]) -> float:
        nll, count = 0.0, 0
        for text in texts:
            chars = [BOS, BOS, *(c if c in self.vocab else UNK for c in text), EOS]
            for u, v, w in zip(chars, chars[1:], chars[2:], strict=False):
                nll -= math.log(self.prob(u, v, w))
                count += 1
        return nll / count


def splits(data: str) -> tuple[list[str], list[str]]:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={data}"])
    datamodule = instantiate(cfg.data)
    datamodule.load()
    return ["".join(p.lines) for p in datamodule.poems["train"]], ["".join(p.lines) for p in datamodule.poems["test"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="wuyan", help="a config in conf/data/ (its training split)")
    args = parser.parse_args()
    train, test = splits(args.data)
    nll = KneserNeyTrigram(train).nll_per_char(test)
    print(f"data={args.data}: {len(train):,} training poems, {len(test):,} test poems; "
          f"KN trigram test NLL {nll:.3f} nats/char, perplexity {math.exp(nll):.0f}")


if __name__ == "__main__":
    main()
