"""Latent-space tools: encode poems, reconstruct them, interpolate and walk between them (Bowman's homotopy),
and find nearest neighbours in a bank of codes. All of them need a model with a latent code."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PromptError
from poetry_vae.generation.decoding import generate
from poetry_vae.generation.processors.prompts import check_prompt_chars
from poetry_vae.generation.request import DecodeRequest, GeneratedPoem, whole_number
from poetry_vae.layout import written_chars
from poetry_vae.model.modes import evaluating
from poetry_vae.model.poem_model import PoemModel


def _require_latent(model: PoemModel, what: str) -> None:
    if not model.cfg.use_latent:
        raise PromptError(
            f"{what} needs a model with a latent code; this checkpoint is the language-model "
            "baseline (use_latent=False)"
        )


def poem_ids(vocab: Vocabulary, text: str, line_length: int = 5, num_lines: int = 4) -> list[int]:
    """Token ids of one poem given with or without punctuation; :class:`PromptError` if it cannot be encoded."""
    chars = written_chars(text)
    expected = line_length * num_lines
    if len(chars) != expected:
        raise PromptError(
            f"a poem must have {expected} characters ({num_lines} lines of {line_length}) without "
            f"punctuation, got {len(chars)}: {text!r}"
        )
    return check_prompt_chars(vocab, chars, "poem")


def encode_texts(
    model: PoemModel, vocab: Vocabulary, texts: Sequence[str], line_length: int = 5, num_lines: int = 4
) -> tuple[Tensor, Tensor]:
    """Posterior (mu, logvar), each (N, Z), of poems given with or without punctuation."""
    _require_latent(model, "encoding poems")
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise PromptError("no poems to encode")
    rows = []
    for i, text in enumerate(texts, start=1):
        try:
            rows.append(poem_ids(vocab, text, line_length, num_lines))
        except PromptError as error:
            raise PromptError(f"poem {i}: {error}" if len(texts) > 1 else str(error)) from None
    device = next(model.parameters()).device
    tokens = torch.tensor(rows, dtype=torch.long, device=device)
    with evaluating(model), torch.no_grad():
        return model.encode(tokens)


def reconstruct(
    model: PoemModel,
    vocab: Vocabulary,
    texts: Sequence[str],
    request: DecodeRequest | None = None,
    generator: torch.Generator | None = None,
) -> list[GeneratedPoem]:
    """Decode each poem from its posterior mean (greedy unless ``request`` says otherwise)."""
    request = request or DecodeRequest(strategy="greedy")
    mu, _ = encode_texts(model, vocab, texts, request.line_length, request.num_lines)
    return generate(model, vocab, mu, request, generator)


def path_weights(steps: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
    """The ``steps`` positions t of a homotopy, 0.0 (the first poem) to 1.0 (the second) inclusive."""
    steps = whole_number(steps, 2, "interpolation needs a whole number of at least 2 steps (the two endpoints), "
                                   "got {value}")
    return torch.linspace(0.0, 1.0, steps, dtype=dtype, device=device)


def interpolate_at(z_a: Tensor, z_b: Tensor, weights: Tensor, spherical: bool = False) -> Tensor:
    """(K, Z) codes at positions ``weights`` (K,) between ``z_a`` (t = 0) and ``z_b`` (t = 1): linear, or slerp
    when ``spherical``. Any slice of :func:`path_weights` gives the same codes as the whole path (for batching)."""
    a, b = z_a.reshape(-1), z_b.reshape(-1)
    if a.shape != b.shape:
        raise PromptError(f"codes of different sizes: {tuple(a.shape)} and {tuple(b.shape)}")
    w = weights.to(device=a.device, dtype=a.dtype).unsqueeze(1)
    out = (1 - w) * a + w * b
    if spherical:
        cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
        omega = torch.arccos(cos.clamp(-1.0, 1.0))
        if float(omega.sin()) > 1e-6:  # (anti)parallel codes: slerp is undefined, keep the straight line
            out = (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / omega.sin()
    out[w[:, 0] == 0], out[w[:, 0] == 1] = a, b  # exact endpoints, whatever the rounding
    return out


def interpolate(z_a: Tensor, z_b: Tensor, steps: int, spherical: bool = False) -> Tensor:
    """(steps, Z) codes from ``z_a`` to ``z_b`` inclusive: linear, or slerp when ``spherical``."""
    return interpolate_at(z_a, z_b, path_weights(steps, z_a.dtype, z_a.device), spherical)


def homotopy(
    model: PoemModel,
    vocab: Vocabulary,
    text_a: str,
    text_b: str,
    steps: int = 5,
    request: DecodeRequest | None = None,
    spherical: bool = False,
    generator: torch.Generator | None = None,
) -> list[GeneratedPoem]:
    """Bowman et al.'s homotopy: poems decoded (greedy by default) along the line between two posterior means."""
    request = request or DecodeRequest(strategy="greedy")
    mu, _ = encode_texts(model, vocab, [text_a, text_b], request.line_length, request.num_lines)
    path = interpolate(mu[0], mu[1], steps, spherical)
    return generate(model, vocab, path, request, generator)


def nearest(z: Tensor, bank_z: Tensor, k: int = 5) -> Tensor:
    """Indices of the ``k`` nearest rows of ``bank_z`` (M, Z) by euclidean distance: (N, k), or (k,) for z (Z,)."""
    single = z.dim() == 1
    query = z.reshape(1, -1) if single else z
    if query.dim() != 2 or bank_z.dim() != 2 or query.shape[1] != bank_z.shape[1] or not len(bank_z):
        raise PromptError(f"nearest: z has shape {tuple(z.shape)} and the bank {tuple(bank_z.shape)}: give codes of "
                          "the bank's width, (Z,) or (N, Z), and a bank (M, Z) with M >= 1")
    k = min(k, bank_z.shape[0])
    index = torch.cdist(query.to(bank_z.dtype), bank_z).topk(k, dim=1, largest=False).indices
    return index[0] if single else index
