"""Vocabulary-wide prosody masks for constrained decoding, precomputed once per vocabulary.

``build_masks(tokens, system)`` looks every token up once; the result holds plain bool tensors that a batched
decoder ANDs into its logits mask at each step. A token that is not a single CJK ideograph (``<pad>``, ``<s>``,
``</s>``, ``<unk>``, punctuation, multi-character pieces) gets all-False rows everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from poetry_vae.data.variants import shadowed_variants
from poetry_vae.errors import PromptError
from poetry_vae.layout import is_hanzi
from poetry_vae.prosody.tables import check_system, class_names, rhyme_classes, tones

ANY_TONE = "*"


@dataclass(frozen=True)
class ProsodyMasks:
    """Bool masks over a vocabulary of size ``V`` for one rhyme system with ``C`` classes.

    ``hanzi[V]``: token is one CJK ideograph decoding may write (see ``shadowed_variants``); ``ping[V]`` /
    ``ze[V]``: token may be 平 / 仄 (a polyphonic character can be both); ``rhyme[C, V]``: token belongs to class
    ``c`` (``class_names[c]``).
    """

    system: str
    class_names: list[str]
    hanzi: Tensor
    ping: Tensor
    ze: Tensor
    rhyme: Tensor

    def tone_mask(self, tone: str) -> Tensor:
        """``[V]`` mask of tokens admitting ``tone``: ``"P"``, ``"Z"`` or ``"*"`` (any toned hanzi)."""
        if tone == "P":
            return self.ping
        if tone == "Z":
            return self.ze
        if tone == ANY_TONE:
            return self.ping | self.ze
        raise PromptError(f"unknown tone {tone!r}; use 'P' (平), 'Z' (仄) or '*'")

    def to(self, device: torch.device | str) -> ProsodyMasks:
        """A copy with every tensor on ``device``."""
        return ProsodyMasks(
            system=self.system,
            class_names=list(self.class_names),
            hanzi=self.hanzi.to(device),
            ping=self.ping.to(device),
            ze=self.ze.to(device),
            rhyme=self.rhyme.to(device),
        )


def writable(tokens: Sequence[str]) -> list[bool]:
    """Per token: one CJK ideograph that decoding may write, i.e. not a variant whose standard form the vocabulary
    holds too (隠 beside 隐 is written 隐 only; see ``data.variants.shadowed_variants``)."""
    shadowed = shadowed_variants(tokens)
    return [is_hanzi(token) and token not in shadowed for token in tokens]


def build_masks(tokens: Sequence[str], system: str = "pingshui") -> ProsodyMasks:
    """Masks for the vocabulary ``tokens`` (``tokens[i]`` is the string of id ``i``) under ``system``."""
    check_system(system)
    names = list(class_names(system))
    index = {name: i for i, name in enumerate(names)}
    size = len(tokens)
    hanzi = torch.zeros(size, dtype=torch.bool)
    ping = torch.zeros(size, dtype=torch.bool)
    ze = torch.zeros(size, dtype=torch.bool)
    rhyme = torch.zeros(len(names), size, dtype=torch.bool)
    for token_id, (token, ok) in enumerate(zip(tokens, writable(tokens), strict=True)):
        if not ok:
            continue
        hanzi[token_id] = True
        token_tones = tones(token, system)
        ping[token_id] = "P" in token_tones
        ze[token_id] = "Z" in token_tones
        for name in rhyme_classes(token, system):
            rhyme[index[name], token_id] = True
    return ProsodyMasks(system=system, class_names=names, hanzi=hanzi, ping=ping, ze=ze, rhyme=rhyme)
