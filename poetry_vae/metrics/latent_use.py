"""What the latent code does, measured by greedy decoding (so every difference between outputs comes from z).

- reconstruction: greedy decoding from the posterior mean of each poem; share of characters right position by
  position, and character BLEU-2 against the poem; and the same share under teacher forcing (each character
  predicted from the poem's true prefix and the mean): what z and the prefix know, without greedy decoding's
  compounding errors;
- homotopy: greedy decoding at evenly spaced points between the posterior means of random pairs of poems; distinct
  poems along each walk, and characters that differ between the walk's two endpoint decodes (two random human
  poems differ in ~19 of 20);
- prior diversity: distinct-2 and self-BLEU of greedy samples from the prior.

The LM baseline has no z: its one unconditional greedy poem stands for every reconstruction, every point of every
walk and every prior sample, so the measures are defined (1 distinct poem, 0 differing characters) rather than
errors.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import Tensor

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PromptError
from poetry_vae.generation.decoding import generate, sample_prior
from poetry_vae.generation.latent_ops import interpolate
from poetry_vae.generation.request import DecodeRequest
from poetry_vae.layout import PoemLike, line_length_of, split_lines
from poetry_vae.metrics.poetry import distinct_n, self_bleu, sentence_bleu
from poetry_vae.model.modes import evaluating
from poetry_vae.model.poem_model import PoemModel

DECODE_BATCH = 512  # rows decoded at once: greedy decoding is batched, so this only bounds memory


def poem_chars(poem: PoemLike) -> str:
    """The characters of a poem without punctuation (rendered text or a list of lines)."""
    return "".join(split_lines(poem))


def char_accuracy(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share of reference characters matched at the same position, over all poems (0.0 for none)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    total = sum(len(r) for r in references)
    right = sum(sum(h == r for h, r in zip(hyp, ref, strict=False)) for hyp, ref in zip(hypotheses, references,
                                                                                        strict=True))
    return right / total if total else 0.0


def mean_bleu2(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean character BLEU-2 of each hypothesis against its own reference."""
    if not references:
        return 0.0
    return sum(sentence_bleu(h, [r], max_n=2) for h, r in zip(hypotheses, references, strict=True)) / len(references)


def char_difference(a: str, b: str) -> int:
    """Positions at which two poems differ (the longer one's extra characters count as different)."""
    return sum(x != y for x, y in zip(a, b, strict=False)) + abs(len(a) - len(b))


@torch.no_grad()
def greedy_decode(
    model: PoemModel, vocab: Vocabulary, z: Tensor | None, n: int = 1, line_length: int = 5
) -> list[list[str]]:
    """Greedy poems (their lines) for each row of ``z``, or ``n`` unconditional ones for the LM baseline."""
    request = DecodeRequest(strategy="greedy", line_length=line_length, precision="fp32")  # exact on every CPU
    if z is None:
        return [p.lines for p in generate(model, vocab, None, request, num_poems=n)]
    return [p.lines for chunk in z.split(DECODE_BATCH) for p in generate(model, vocab, chunk, request)]


@torch.no_grad()
def posterior_means(model: PoemModel, vocab: Vocabulary, poems: Sequence[PoemLike]) -> Tensor:
    """mu of q(z|x) for each poem (N, Z), in eval mode (BN-VAE uses its running statistics)."""
    return model.encode_in_batches(_char_ids(model, vocab, poems), batch_size=DECODE_BATCH)[0]


def _char_ids(model: PoemModel, vocab: Vocabulary, poems: Sequence[PoemLike]) -> Tensor:
    """(N, characters) ids of the poems' characters, on the model's device."""
    device = next(model.parameters()).device
    chars = [poem_chars(p) for p in poems]
    lengths = sorted({len(c) for c in chars})
    if len(lengths) != 1:  # none, or a batch torch cannot stack
        given = f"poems of {', '.join(map(str, lengths))} characters" if lengths else "no poems"
        raise PromptError(f"{given} to encode: give one or more poems of one form (poems as text: "
                          "poetry_vae.generation.latent_ops.encode_texts checks each)")
    return torch.tensor([vocab.encode(c) for c in chars], device=device)


def line_length_of_poems(poems: Sequence[PoemLike]) -> int:
    """The line length of a split's poems (五言 5, 七言 7), read from the first one."""
    return line_length_of(split_lines(poems[0])) or 5 if poems else 5


def _chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def reconstruction_accuracy(model: PoemModel, vocab: Vocabulary, poems: Sequence[PoemLike]) -> dict[str, float]:
    """Greedy decoding from each poem's posterior mean: ``recon_char_acc`` (share of characters right, position by
    position) and ``recon_bleu2``. The LM baseline's single greedy poem is scored against every poem."""
    references = [poem_chars(p) for p in poems]
    m = line_length_of_poems(poems)
    z = posterior_means(model, vocab, poems) if model.cfg.use_latent else None
    decoded = (greedy_decode(model, vocab, z, line_length=m) if z is not None
               else greedy_decode(model, vocab, None, line_length=m) * len(poems))
    hypotheses = [poem_chars(p) for p in decoded]
    return {"recon_char_acc": char_accuracy(hypotheses, references), "recon_bleu2": mean_bleu2(hypotheses, references)}


@torch.no_grad()
def forced_accuracy(model: PoemModel, vocab: Vocabulary, poems: Sequence[PoemLike]) -> dict[str, float]:
    """``recon_forced_acc``: share of characters that are the decoder's most likely next character given the
    poem's true prefix and its posterior mean (no z for the LM baseline); punctuation-free, ``<eos>`` not counted."""
    right = total = 0
    with evaluating(model):
        for chunk in _chunks(poems, DECODE_BATCH // 4):  # (rows, T, V) log-probabilities at once
            tokens = _char_ids(model, vocab, chunk)
            z = model.encode(tokens)[0] if model.cfg.use_latent else None
            dec_in = torch.cat([torch.full_like(tokens[:, :1], vocab.bos_id), tokens[:, :-1]], dim=1)
            best = model.next_token_log_probs(dec_in, z).argmax(dim=-1)
            right += int((best == tokens).sum())
            total += tokens.numel()
    return {"recon_forced_acc": right / total if total else 0.0}


def homotopy_pairs(n_poems: int, pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """``pairs`` random pairs of distinct poem indices, drawn with ``random.Random(seed)``."""
    if n_poems < 2 or pairs < 1:
        raise ValueError(f"homotopy needs at least 2 poems and 1 pair, got {n_poems} poems and {pairs} pairs")
    rng = random.Random(seed)
    return [tuple(rng.sample(range(n_poems), 2)) for _ in range(pairs)]


def homotopy_walks(model: PoemModel, vocab: Vocabulary, poems: Sequence[PoemLike], pairs: int = 100, steps: int = 7,
                   seed: int = 0) -> list[list[str]]:
    """Greedy poems at ``steps`` evenly spaced points between the posterior means of ``pairs`` random pairs of
    distinct poems (:func:`homotopy_pairs`); one list of ``steps`` poems (characters only) per pair."""
    chosen = homotopy_pairs(len(poems), pairs, seed)
    m = line_length_of_poems(poems)
    if not model.cfg.use_latent:
        only = poem_chars(greedy_decode(model, vocab, None, line_length=m)[0])
        return [[only] * steps for _ in chosen]
    used = sorted({i for pair in chosen for i in pair})
    mu = dict(zip(used, posterior_means(model, vocab, [poems[i] for i in used]), strict=True))
    path = torch.cat([interpolate(mu[a], mu[b], steps) for a, b in chosen])
    decoded = [poem_chars(p) for p in greedy_decode(model, vocab, path, line_length=m)]
    return [decoded[k * steps : (k + 1) * steps] for k in range(pairs)]


def homotopy_stats(model: PoemModel, vocab: Vocabulary, poems: Sequence[PoemLike], pairs: int = 100, steps: int = 7,
                   seed: int = 0) -> dict[str, float]:
    """``homotopy_distinct``: mean distinct poems along a walk (1..steps); ``homotopy_endpoint_diff``: mean
    characters that differ between a walk's first and last decode."""
    walks = homotopy_walks(model, vocab, poems, pairs, steps, seed)
    return {
        "homotopy_distinct": sum(len(set(walk)) for walk in walks) / len(walks),
        "homotopy_endpoint_diff": sum(char_difference(walk[0], walk[-1]) for walk in walks) / len(walks),
    }


def prior_diversity(
    model: PoemModel, vocab: Vocabulary, n: int = 500, seed: int = 0, line_length: int = 5
) -> dict[str, float]:
    """Distinct-2 and self-BLEU of ``n`` greedy samples from the prior (greedy, so the diversity is z's alone)."""
    if n < 2:
        raise ValueError(f"prior diversity needs at least 2 samples, got {n}")
    z = sample_prior(model, n, torch.Generator().manual_seed(seed))
    poems = (greedy_decode(model, vocab, z, line_length=line_length) if z is not None
             else greedy_decode(model, vocab, None, line_length=line_length) * n)
    return {"prior_distinct_2": distinct_n(poems, 2), "prior_self_bleu": self_bleu(poems, sample=n)}


def latent_measures(model: PoemModel, vocab: Vocabulary, poems: Sequence[PoemLike], homotopy_pairs: int = 100,
                    prior_samples: int = 500, steps: int = 7, seed: int = 0) -> dict[str, float]:
    """All three measures at once (what ``python -m poetry_vae.evaluate`` reports)."""
    return {
        **reconstruction_accuracy(model, vocab, poems),
        **forced_accuracy(model, vocab, poems),
        **homotopy_stats(model, vocab, poems, homotopy_pairs, steps, seed),
        **prior_diversity(model, vocab, prior_samples, seed, line_length_of_poems(poems)),
    }
