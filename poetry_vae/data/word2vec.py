"""Character embeddings from a gensim Word2Vec trained on the training split, cached on disk.

The matrix is aligned to vocabulary ids and saved as a plain `.npy` (loaded with `allow_pickle=False`), under a
file name that hashes every input (text, vocabulary, settings, gensim version): a cache hit is always valid,
and any change retrains. One worker plus a seed makes training deterministic.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import gensim
import numpy as np
from gensim.models import Word2Vec

from poetry_vae.atomic import atomic_write
from poetry_vae.data.vocab import SPECIALS, Vocabulary

log = logging.getLogger(__name__)
logging.getLogger("gensim").setLevel(logging.WARNING)  # its per-epoch INFO lines drown the training log


def _cache_key(vocab: Vocabulary, dim: int, window: int, epochs: int, sg: int, seed: int) -> str:
    settings = {"fingerprint": vocab.fingerprint, "tokens": vocab.tokens, "dim": dim, "window": window,
                "epochs": epochs, "sg": sg, "seed": seed, "gensim": gensim.__version__}
    return hashlib.sha256(json.dumps(settings, ensure_ascii=False).encode()).hexdigest()[:16]


def train_word2vec(texts: list[str], vocab: Vocabulary, dim: int, window: int = 5, epochs: int = 5,
                   sg: int = 1, seed: int = 0) -> np.ndarray:
    """A (len(vocab), dim) float32 matrix; tokens without a vector get a small centred random init."""
    model = Word2Vec(sentences=[list(text) for text in texts], vector_size=dim, window=window, min_count=1,
                     sg=sg, epochs=epochs, workers=1, seed=seed)
    rng = np.random.default_rng(seed)
    # Rows without a vector (specials, characters unseen by Word2Vec): the original program used uniform [0, 1), which
    # shifts every such row away from the others; centred and small keeps them neutral.
    matrix = rng.uniform(-0.1, 0.1, size=(len(vocab), dim)).astype(np.float32)
    for token_id, token in enumerate(vocab.tokens):
        if token not in SPECIALS and token in model.wv.key_to_index:
            matrix[token_id] = model.wv[token]
    return matrix


def cached_embeddings(texts: list[str], vocab: Vocabulary, dim: int, cache_dir: str | Path,
                      window: int = 5, epochs: int = 5, sg: int = 1, seed: int = 0) -> np.ndarray:
    path = Path(cache_dir) / f"word2vec-{_cache_key(vocab, dim, window, epochs, sg, seed)}.npy"
    if path.is_file():
        try:
            matrix = np.load(path, allow_pickle=False)
            if matrix.shape == (len(vocab), dim):
                return matrix
        except (OSError, ValueError):
            pass  # a damaged cache file is rebuilt below
        log.warning("word2vec cache %s is damaged; retraining", path)
    log.info("training word2vec (%d-d) on %d poems; cached in %s", dim, len(texts), path)
    matrix = train_word2vec(texts, vocab, dim, window, epochs, sg, seed)
    atomic_write(path, lambda tmp: np.save(tmp, matrix))
    return matrix
