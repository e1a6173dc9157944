"""The decoding processor interface, the registry every processor joins, and the pipeline that composes them.

A processor is one decoding option (a constraint such as rhyme or a prompt, or a logit rule such as the
repetition penalty), in the manner of Hugging Face's ``LogitsProcessor``. Defining a subclass registers it:
:class:`Pipeline` builds every registered processor from the request (each returns None when its option is
off), runs them in ``order`` at every step, and :func:`check_constraints` asks each afterwards whether a poem
keeps its option. Every hook has a do-nothing default, so a processor writes only the ones it needs.

Masks are 0/1 floats of the padded vocabulary width (see :class:`~poetry_vae.model.stepper.LogitStepper`),
one row for the whole batch or one per row, with an optional additive 0/-inf ``bias`` that a greedy step adds
to the logits; a processor that narrows ``keep`` row by row returns ``bias=None``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PromptError
from poetry_vae.generation.request import DecodeRequest
from poetry_vae.layout import is_format_valid, render
from poetry_vae.model.stepper import padded_size
from poetry_vae.prosody.masks import ProsodyMasks

MasksCache = MutableMapping[tuple[str, str], ProsodyMasks]
Mask = tuple[Tensor | None, Tensor | None]  # (keep, bias); keep is None only before the first processor


def where(t: int, line_length: int) -> str:
    """Step ``t`` as people count it: line 2, character 3."""
    return f"line {t // line_length + 1}, character {t % line_length + 1}"


@dataclass
class Setup:
    """What processors are built from: the request, the vocabulary, and what earlier processors decided."""

    request: DecodeRequest
    vocab: Vocabulary
    device: torch.device
    masks_cache: MasksCache | None = None
    forced: dict[int, int] = field(default_factory=dict)  # step -> prompt token id, written by prompt processors

    @property
    def length(self) -> int:
        return self.request.num_lines * self.request.line_length

    @property
    def width(self) -> int:
        """Columns of the decoder's logits: the vocabulary padded to whole sampling blocks."""
        return padded_size(len(self.vocab.tokens))


class Processor:
    """One decoding option. Subclasses register themselves; override only the hooks the option needs."""

    order: ClassVar[int] = 100  # build and apply order (lower first); also the order of the checks' keys
    soft: ClassVar[bool] = False  # a soft rule: skipped at prompt steps and applied after the hard ones
    registry: ClassVar[list[type[Processor]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Processor.registry.append(cls)
        Processor.registry.sort(key=lambda c: c.order)

    @classmethod
    def from_request(cls, request: DecodeRequest, setup: Setup) -> Processor | None:
        """The processor for ``request``, or None when its option is off; :class:`PromptError` (one line) when
        the request is impossible (checks needing only the request belong in :meth:`DecodeRequest.validate`)."""
        return None

    def start(self, rows: int) -> None:
        """Allocate per-row state for ``rows`` decoding rows (every processor is built before this runs)."""

    def mask(self, t: int, tokens: Tensor, keep: Tensor | None, bias: Tensor | None) -> Mask:
        """Narrow the allowed tokens at step ``t``; ``tokens`` (R, T) holds the rows' choices before ``t``."""
        return keep, bias

    def logit_args(self, t: int, tokens: Tensor) -> dict[str, Any]:
        """Keyword arguments for the strategy at step ``t`` (for rules that reshape the logits)."""
        return {}

    def update(self, t: int, chosen: Tensor) -> None:
        """Record the (R,) tokens chosen at step ``t``."""

    def reorder(self, index: Tensor) -> None:
        """Beam search: row ``i`` continues row ``index[i]``."""

    def patterns(self) -> list[str | None] | None:
        """Per row, the tone pattern the poem follows, for a processor that tracks one."""
        return None

    @classmethod
    def check(cls, lines: list[str], request: DecodeRequest, pattern: str | None) -> dict[str, bool]:
        """Whether finished ``lines`` keep this option, by an independent checker: {name: holds}, {} if off."""
        return {}


def without(keep: Tensor, bias: Tensor | None, ids: Tensor) -> Mask:
    """``keep`` (and ``bias``) with the token ``ids`` (a LongTensor) disallowed in every row."""
    keep = keep.clone()
    keep[:, ids] = 0
    if bias is not None:
        bias = bias.clone()
        bias[:, ids] = float("-inf")
    return keep, bias


class Pipeline:
    """The processors a request turns on, composed: one mask per step, one update per choice."""

    def __init__(
        self, vocab: Vocabulary, request: DecodeRequest, device: torch.device, masks_cache: MasksCache | None = None
    ) -> None:
        n, m = request.num_lines, request.line_length
        if n < 1 or m < 1:
            raise PromptError(f"num_lines and line_length must be >= 1, got {n} and {m}")
        self.setup = Setup(request, vocab, device, masks_cache)
        built = (cls.from_request(request, self.setup) for cls in Processor.registry)
        self.processors = [p for p in built if p is not None]
        self.hard = [p for p in self.processors if not p.soft]
        self.soft = [p for p in self.processors if p.soft]
        self.forced = self.setup.forced
        self.length = self.setup.length
        self.tokens = torch.empty(0)

    def start(self, rows: int) -> None:
        self.tokens = torch.zeros(rows, self.length, dtype=torch.long, device=self.setup.device)
        for p in self.processors:
            p.start(rows)

    def keep(self, t: int, live: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The allowed tokens at step ``t`` as a 0/1 float mask (R or 1, W) and, when every row shares it, a
        0/-inf bias. Raises :class:`PromptError` if a ``live`` row (all by default) is left no token or its
        prompt character."""
        keep, bias = None, None
        for p in self.hard:
            keep, bias = p.mask(t, self.tokens, keep, bias)
        assert keep is not None, "no processor gave the step's allowed tokens"
        self._check_nonempty(t, keep, live)
        token = self.forced.get(t)
        if token is not None:
            self._check_forced(t, token, keep, live)
            return keep, bias
        for p in self.soft:
            keep, bias = p.mask(t, self.tokens, keep, bias)
        return keep, bias

    def logit_args(self, t: int) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for p in self.processors:
            args.update(p.logit_args(t, self.tokens))
        return args

    def update(self, t: int, chosen: Tensor) -> None:
        self.tokens[:, t] = chosen
        for p in self.processors:
            p.update(t, chosen)

    def reorder(self, index: Tensor) -> None:
        self.tokens = self.tokens.index_select(0, index)
        for p in self.processors:
            p.reorder(index)

    def patterns(self) -> list[str | None]:
        for p in self.processors:
            found = p.patterns()
            if found is not None:
                return found
        return [None] * self.tokens.shape[0]

    def _check_nonempty(self, t: int, keep: Tensor, live: Tensor | None) -> None:
        empty = keep.amax(dim=1) <= 0
        if live is not None:
            empty = empty & live
        if bool(empty.any()):
            raise PromptError(
                f"no character satisfies every constraint at {where(t, self.setup.request.line_length)}: "
                "relax the rhyme, tone, no_repeat or prompt constraints"
            )

    def _check_forced(self, t: int, token: int, keep: Tensor, live: Tensor | None) -> None:
        ok = keep[:, token] > 0
        if live is not None:
            ok = ok | ~live
        if not bool(ok.all()):
            raise PromptError(
                f"the prompt character at {where(t, self.setup.request.line_length)} cannot be used there "
                "with the other constraints (rhyme or no_repeat): change it or drop a constraint"
            )


def check_constraints(lines: list[str], request: DecodeRequest, pattern: str | None = None) -> dict[str, bool]:
    """Which requested constraints ``lines`` satisfies, by the independent metric/prosody checkers."""
    result = {"format": is_format_valid(render(lines), request.line_length, request.num_lines)}
    for cls in Processor.registry:
        result.update(cls.check(lines, request, pattern))
    return result
