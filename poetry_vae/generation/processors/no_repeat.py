"""``no_repeat``: no character twice in a poem (a hard constraint; prompt characters count, and may not be
drawn elsewhere). The rhyme counting in :mod:`.prosody` knows of it too: under no_repeat a rhyme class must
keep enough *unused* members for the rhyme positions left."""

from __future__ import annotations

import torch
from torch import Tensor

from poetry_vae.errors import PromptError
from poetry_vae.generation.processors.base import Mask, Processor, Setup, where
from poetry_vae.generation.request import DecodeRequest


class NoRepeat(Processor):
    order = 40

    def __init__(self, setup: Setup) -> None:
        self.device = setup.device
        self.width = setup.width
        self.forced = setup.forced
        reserved = torch.zeros(self.width, dtype=torch.bool, device=self.device)
        if self.forced:
            reserved[list(self.forced.values())] = True
        self.unreserved_f = (~reserved).to(torch.float32).unsqueeze(0)
        self.free_f = torch.empty(0)

    @classmethod
    def from_request(cls, request: DecodeRequest, setup: Setup) -> NoRepeat | None:
        if not request.no_repeat:
            return None
        seen: dict[int, int] = {}
        m = request.line_length
        for t, token in sorted(setup.forced.items()):
            if token in seen and seen[token] != t:
                raise PromptError(
                    f"no_repeat is set but the prompt repeats {setup.vocab.tokens[token]!r} "
                    f"({where(seen[token], m)} and {where(t, m)})"
                )
            seen[token] = t
        return cls(setup)

    def start(self, rows: int) -> None:
        self.free_f = torch.ones(rows, self.width, device=self.device)

    def mask(self, t: int, tokens: Tensor, keep: Tensor | None, bias: Tensor | None) -> Mask:
        assert keep is not None
        shared = keep if t in self.forced else keep * self.unreserved_f
        return shared * self.free_f, None

    def update(self, t: int, chosen: Tensor) -> None:
        self.free_f.scatter_(1, chosen.unsqueeze(1), 0.0)

    def reorder(self, index: Tensor) -> None:
        self.free_f = self.free_f.index_select(0, index)

    @classmethod
    def check(cls, lines: list[str], request: DecodeRequest, pattern: str | None) -> dict[str, bool]:
        if not request.no_repeat:
            return {}
        chars = "".join(lines)
        return {"no_repeat": len(set(chars)) == len(chars)}
