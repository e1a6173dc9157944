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

from poetry_vae.errors import PromptError
from poetry_vae.form import is_hanzi
from poetry_vae.prosody.tables import check_system, class_names, rhyme_classes, tones

ANY_TONE = "*"


@dataclass(frozen=True)
class ProsodyMasks:
    """Bool masks over a vocabulary of size ``V`` for one rhyme system with ``C`` classes.

    ``hanzi[V]``: token is one CJK ideograph; ``ping[V]`` / ``ze[V]``: token may be 平 / 仄 (a polyphonic
    character can be both); ``rhyme[C, V]``: token belongs to class ``c`` (``class_names[c]``).
    """

    system: str
    class_names: list[str]
    hanzi: Tensor
    ping: Tensor
    ze: Tensor
    rhyme: Tensor

    @property
    def vocab_size(self) -> int:
        return int(self.ping.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_id(self, name: str) -> int:
        """Row index of the rhyme class called ``name``."""
        try:
            return self.class_names.index(name)
        except ValueError:
            raise PromptError(f"unknown {self.system} rhyme class {name!r}") from None

    def tone_mask(self, tone: str) -> Tensor:
        """``[V]`` mask of tokens admitting ``tone``: ``"P"``, ``"Z"`` or ``"*"`` (any toned hanzi)."""
        if tone == "P":
            return self.ping
        if tone == "Z":
            return self.ze
        if tone == ANY_TONE:
            return self.ping | self.ze
        raise PromptError(f"unknown tone {tone!r}; use 'P' (平), 'Z' (仄) or '*'")

    def rhyme_mask(self, class_ids: Tensor | Sequence[int]) -> Tensor:
        """``[B, V]`` mask: row ``b`` allows the members of class ``class_ids[b]``; ``-1`` allows every token."""
        ids = torch.as_tensor(class_ids, dtype=torch.long, device=self.rhyme.device).reshape(-1)
        rows = self.rhyme[ids.clamp(min=0)]
        return rows | (ids < 0).unsqueeze(1)

    def classes_of(self, token_ids: Tensor | Sequence[int]) -> Tensor:
        """``[B, C]`` bool: the rhyme classes of each token (all False for specials / unknown characters)."""
        ids = torch.as_tensor(token_ids, dtype=torch.long, device=self.rhyme.device).reshape(-1)
        return self.rhyme[:, ids].T

    def rhyme_mask_like(self, token_ids: Tensor | Sequence[int]) -> Tensor:
        """``[B, V]`` mask of tokens sharing at least one rhyme class with ``token_ids[b]``."""
        classes = self.classes_of(token_ids)
        return (classes.to(torch.float32) @ self.rhyme.to(torch.float32)) > 0

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
    for token_id, token in enumerate(tokens):
        if not is_hanzi(token):
            continue
        hanzi[token_id] = True
        token_tones = tones(token, system)
        ping[token_id] = "P" in token_tones
        ze[token_id] = "Z" in token_tones
        for name in rhyme_classes(token, system):
            rhyme[index[name], token_id] = True
    return ProsodyMasks(system=system, class_names=names, hanzi=hanzi, ping=ping, ze=ze, rhyme=rhyme)
