"""``include``: the poem uses at least one of the given characters. A row that has none when its last line
starts is made to take one there (or at the next character of that line where the other constraints allow one);
this is lexically constrained decoding, the hard way to put a theme's marker into every poem."""

from __future__ import annotations

import torch
from torch import Tensor

from poetry_vae.generation.processors.base import Mask, Processor, Setup
from poetry_vae.generation.processors.prompts import check_prompt_chars
from poetry_vae.generation.request import DecodeRequest
from poetry_vae.layout import written_chars


class Include(Processor):
    order = 45  # after prosody, prompts and no_repeat: it only chooses among what they allow

    def __init__(self, ids: list[int], setup: Setup) -> None:
        self.wanted = torch.zeros(setup.width, dtype=torch.bool, device=setup.device)
        self.wanted[ids] = True
        m = setup.request.line_length
        last_line = setup.length - m
        # the last line's characters but its end (the rhyme's place), prompt steps excepted
        self.window = {t for t in range(last_line, setup.length - 1) if t not in setup.forced}
        self.has = torch.zeros(0, dtype=torch.bool, device=setup.device)

    @classmethod
    def from_request(cls, request: DecodeRequest, setup: Setup) -> Include | None:
        if not request.include:
            return None
        chars = "".join(dict.fromkeys(written_chars(str(request.include))))
        return cls(check_prompt_chars(setup.vocab, chars, "include"), setup)

    def start(self, rows: int) -> None:
        self.has = torch.zeros(rows, dtype=torch.bool, device=self.wanted.device)

    def mask(self, t: int, tokens: Tensor, keep: Tensor | None, bias: Tensor | None) -> Mask:
        if t not in self.window or keep is None or bool(self.has.all()):
            return keep, bias
        rows = keep.expand(self.has.numel(), -1)
        narrowed = rows * self.wanted.to(rows.dtype)
        force = ~self.has & (narrowed.sum(1) > 0)  # rows still without one, where one is allowed here
        if not bool(force.any()):
            return keep, bias
        return torch.where(force.unsqueeze(1), narrowed, rows), None

    def update(self, t: int, chosen: Tensor) -> None:
        self.has |= self.wanted[chosen]

    def reorder(self, index: Tensor) -> None:
        self.has = self.has.index_select(0, index)

    @classmethod
    def check(cls, lines: list[str], request: DecodeRequest, pattern: str | None) -> dict[str, bool]:
        if not request.include:
            return {}
        return {"include": any(char in "".join(lines) for char in written_chars(str(request.include)))}
