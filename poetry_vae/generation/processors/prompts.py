"""Prompt characters the decoder must write: a given first line, and an acrostic (藏头, one character starting
each line). Both write into :attr:`Setup.forced`; the decoding loop takes a forced character without drawing,
after checking the hard constraints allow it, and still counts its log-probability."""

from __future__ import annotations

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PromptError
from poetry_vae.generation.processors.base import Processor, Setup
from poetry_vae.generation.request import DecodeRequest
from poetry_vae.layout import is_hanzi
from poetry_vae.prosody.tables import to_simplified


def check_prompt_chars(vocab: Vocabulary, text: str, name: str) -> list[int]:
    """Token ids of ``text``; :class:`PromptError` naming the first character the model cannot write."""
    ids = []
    for i, char in enumerate(text, start=1):
        if not is_hanzi(char):
            raise PromptError(f"{name}: character {i} {char!r} is not a Chinese character; give Chinese characters")
        if char not in vocab:
            hint = _suggest(vocab, char)
            raise PromptError(f"{name}: character {i} {char!r} is not in the model's vocabulary; {hint}")
        ids.append(vocab.index[char])
    return ids


def _suggest(vocab: Vocabulary, char: str) -> str:
    """The nearest allowed use: the simplified form when the vocabulary has it, else a general hint."""
    simplified = to_simplified(char)
    if simplified != char and simplified in vocab:
        return f"use its simplified form {simplified!r} (the corpus is in simplified Chinese)"
    return "pick another character (rare characters, seen fewer than min_count times in training, are not kept)"


class FirstLine(Processor):
    """``first_line``: the model writes the rest of the poem."""

    order = 20

    @classmethod
    def from_request(cls, request: DecodeRequest, setup: Setup) -> FirstLine | None:
        text, m = request.first_line, request.line_length
        if text is None:
            return None
        if len(text) != m:
            raise PromptError(f"first_line must be {m} characters, got {len(text)}: {text!r}")
        setup.forced.update(enumerate(check_prompt_chars(setup.vocab, text, "first_line")))
        return cls()

    @classmethod
    def check(cls, lines: list[str], request: DecodeRequest, pattern: str | None) -> dict[str, bool]:
        if request.first_line is None:
            return {}
        return {"first_line": bool(lines) and lines[0] == request.first_line}


class Acrostic(Processor):
    """``acrostic``: line ``i`` starts with the prompt's character ``i``."""

    order = 30

    @classmethod
    def from_request(cls, request: DecodeRequest, setup: Setup) -> Acrostic | None:
        text, n, m = request.acrostic, request.num_lines, request.line_length
        if text is None:
            return None
        if len(text) != n:
            raise PromptError(f"acrostic must be exactly {n} characters (one per line), got {len(text)}: {text!r}")
        forced = setup.forced
        for line, token in enumerate(check_prompt_chars(setup.vocab, text, "acrostic")):
            t = line * m
            if t in forced and forced[t] != token:
                raise PromptError(
                    f"acrostic character 1 {text[0]!r} contradicts first_line, which starts with "
                    f"{setup.vocab.tokens[forced[t]]!r}"
                )
            forced[t] = token
        return cls()

    @classmethod
    def check(cls, lines: list[str], request: DecodeRequest, pattern: str | None) -> dict[str, bool]:
        if request.acrostic is None:
            return {}
        ok = len(lines) == len(request.acrostic) and all(
            line[:1] == char for line, char in zip(lines, request.acrostic, strict=False)
        )
        return {"acrostic": ok}
