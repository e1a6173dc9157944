"""Decoding processors: the registry, the pipeline's order, and a new processor plugging in as one class."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from test_generation import tiny_model
from torch import Tensor

from poetry_vae.errors import PromptError
from poetry_vae.generation import DecodeRequest, generate, sample_prior
from poetry_vae.generation.processors import Pipeline, Processor, Setup, without
from poetry_vae.generation.processors.base import Mask
from poetry_vae.generation.processors.prompts import check_prompt_chars

N = 24


@pytest.fixture(scope="module")
def model(vocab):
    return tiny_model(len(vocab))


@pytest.fixture(scope="module")
def z(model) -> Tensor:
    return sample_prior(model, N, torch.Generator().manual_seed(0))


@dataclass
class BanRequest(DecodeRequest):
    """The request with one more option (in the project, one more field of DecodeRequest itself)."""

    ban: str | None = None  # characters the poem may not use


@pytest.fixture()
def ban_processor() -> Iterator[type[Processor]]:
    """A toy option, "ban these characters", written as one class and nothing else (see docs/extending.md)."""

    class BanCharacters(Processor):
        order = 45  # after the hard prosody, prompt and no_repeat masks, before the soft n-gram ban

        def __init__(self, ids: Tensor) -> None:
            self.ids = ids

        @classmethod
        def from_request(cls, request: DecodeRequest, setup: Setup) -> BanCharacters | None:
            chars = getattr(request, "ban", None)
            if not chars:
                return None
            return cls(torch.tensor(check_prompt_chars(setup.vocab, chars, "ban"), device=setup.device))

        def mask(self, t: int, tokens: Tensor, keep: Tensor | None, bias: Tensor | None) -> Mask:
            assert keep is not None
            return without(keep, bias, self.ids)

        @classmethod
        def check(cls, lines: list[str], request: DecodeRequest, pattern: str | None) -> dict[str, bool]:
            chars = getattr(request, "ban", None)
            return {"ban": not set(chars) & set("".join(lines))} if chars else {}

    yield BanCharacters
    Processor.registry.remove(BanCharacters)


def test_processors_are_registered_in_order() -> None:
    names = [cls.__name__ for cls in Processor.registry]
    assert names[:7] == ["Prosody", "FirstLine", "Acrostic", "NoRepeat", "Include", "NoRepeatNgram",
                         "RepetitionPenalty"]
    assert [cls.order for cls in Processor.registry] == sorted(cls.order for cls in Processor.registry)


def test_a_request_turns_on_only_its_processors(vocab) -> None:
    plain = Pipeline(vocab, DecodeRequest(), torch.device("cpu"))
    assert [type(p).__name__ for p in plain.processors] == ["Prosody"]  # the form is always kept
    full = Pipeline(vocab, DecodeRequest(acrostic="春夏秋冬", no_repeat=True, no_repeat_ngram_size=2,
                                         repetition_penalty=1.2), torch.device("cpu"))  # fmt: skip
    assert [type(p).__name__ for p in full.processors] == [
        "Prosody", "Acrostic", "NoRepeat", "NoRepeatNgram", "RepetitionPenalty"
    ]  # fmt: skip
    assert full.forced == {0: vocab.index["春"], 5: vocab.index["夏"], 10: vocab.index["秋"], 15: vocab.index["冬"]}


@pytest.mark.parametrize("strategy", ["greedy", "top_p", "beam"])
def test_a_new_processor_plugs_in_as_one_class(ban_processor, model, vocab, z, strategy) -> None:
    seeded = torch.Generator().manual_seed(1)
    before = generate(model, vocab, z, BanRequest(strategy=strategy, rhyme="pingshui"), seeded)
    common = sorted({c for poem in before for c in "".join(poem.lines)}, key=lambda c: -sum(
        "".join(p.lines).count(c) for p in before))[:3]  # fmt: skip
    request = BanRequest(strategy=strategy, rhyme="pingshui", ban="".join(common))
    after = generate(model, vocab, z, request, torch.Generator().manual_seed(1))
    assert not set(common) & {c for poem in after for c in "".join(poem.lines)}
    assert all(poem.constraints == {"format": True, "rhyme": True, "ban": True} for poem in after)
    assert "ban" not in before[0].constraints  # off unless asked


def test_a_new_processor_meets_the_prompts(ban_processor, model, vocab, z) -> None:
    """A hard mask that removes a prompt character: the pipeline's one-line error, not a silent change."""
    with pytest.raises(PromptError, match=r"^the prompt character at line 1, character 1 cannot be used there"):
        generate(model, vocab, z, BanRequest(acrostic="春夏秋冬", ban="春"), torch.Generator().manual_seed(1))
    with pytest.raises(PromptError, match=r"^ban: character 1 'A' is not a Chinese character"):
        generate(model, vocab, z, BanRequest(ban="A"))
    with pytest.raises(PromptError, match=r"^ban: character 2 '龘' is not in the model's vocabulary"):
        generate(model, vocab, z, BanRequest(ban="春龘"))
