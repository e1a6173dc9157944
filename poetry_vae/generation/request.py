"""What a user can ask of the decoder, and what it gives back: plain dataclasses with no decoding logic.

The sample command's accepted keys are these fields (``REQUEST_FIELDS``), with these defaults: conf/sample.yaml
takes them from here (the ``decode_request`` node of :mod:`poetry_vae.config_nodes`), so a new decoding option is
one field here plus its processor in :mod:`.processors` (see docs/extending.md).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass, field

from poetry_vae.errors import PromptError
from poetry_vae.generation.sampling import STRATEGIES
from poetry_vae.layout import is_hanzi
from poetry_vae.precision import DECODING_PRECISIONS
from poetry_vae.prosody.patterns import PATTERNS
from poetry_vae.prosody.tables import RHYME_SYSTEMS


@dataclass
class DecodeRequest:
    """Everything a user can ask of the decoder."""

    strategy: str = "top_p"  # greedy | sample | top_k | top_p | top_k_top_p | beam
    temperature: float = 0.8
    # the k of strategies top_k and top_k_top_p (the k best, then the top_p nucleus of them); other strategies
    # ignore it, so strategy=top_p alone keeps no top-k cut
    top_k: int = 50
    top_p: float = 0.9  # the nucleus of strategies top_p and top_k_top_p
    # sampling strategies: also drop characters less likely than min_p x the most likely allowed one (0 = off;
    # applied after top-k and top-p, as Hugging Face does); greedy and beam ignore it
    min_p: float = 0.0
    # CTRL: the logit of a character already in the poem is divided by this when positive, multiplied when
    # negative (1.0 = off, > 1 discourages repeats); beam search ranks by the penalised scores, but log_prob
    # stays the model's own
    repetition_penalty: float = 1.0
    # no n consecutive characters twice in a poem, counted across line breaks (0 = off); unlike no_repeat (a
    # hard constraint) it yields to the hard constraints and prompts at a step where it would leave no character
    no_repeat_ngram_size: int = 0
    beam_size: int = 5
    # poems per code: beam's best k distinct beams (k <= beam_size, best first), or k independent draws of a
    # sampling strategy; greedy writes one
    num_return_sequences: int = 1
    rhyme: str | None = None  # None | "pingshui" | "xinyun"
    rhyme_first_line: bool = False
    tone: str | None = None  # None | "auto" | a name in PATTERNS
    strict_tone: bool = False  # also constrain positions 1 and 3 of each line
    first_line: str | None = None  # line_length characters: the model writes the rest
    acrostic: str | None = None  # num_lines characters: each line starts with one
    no_repeat: bool = False  # no character twice in a poem
    include: str | None = None  # characters of which the poem uses at least one (forced in the last line if missing)
    form: str = "jueju"  # jueju | lushi_head | lushi_tail | gushi, for a model trained with form tags
    # arithmetic of a step's matmuls (the recurrence's and the projection onto the vocabulary): "fp32" (exact),
    # "bf16", or "auto" (bf16 only where the CPU computes it natively and faster, see
    # poetry_vae.precision.decoding_dtype); the LSTM state and the logits stay fp32
    precision: str = "auto"
    line_length: int = 5
    num_lines: int = 4

    def validate(self) -> None:
        """Settings checked without the vocabulary; the rest happen as the processors are built (see
        :class:`~poetry_vae.generation.processors.Pipeline`)."""
        if self.strategy not in STRATEGIES:
            raise PromptError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not 0 < self.temperature < math.inf:
            raise PromptError(f"temperature must be a finite number > 0 (1 = the model's own), got {self.temperature}")
        if self.top_k < 1:
            raise PromptError(f"top_k must be >= 1, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise PromptError(f"top_p must be in (0, 1], got {self.top_p}")
        self.validate_knobs()
        if self.tone is not None and self.tone != "auto" and self.tone not in PATTERNS:
            raise PromptError(f"unknown tone pattern {self.tone!r}; choose auto or one of {', '.join(PATTERNS)}")
        if self.precision not in DECODING_PRECISIONS:
            raise PromptError(f"precision={self.precision!r}: choose one of {', '.join(DECODING_PRECISIONS)}")
        if self.rhyme is not None and self.rhyme not in RHYME_SYSTEMS:
            raise PromptError(f"unknown rhyme system {self.rhyme!r}; choose one of {', '.join(RHYME_SYSTEMS)}")
        for name, text, size in (
            ("first_line", self.first_line, self.line_length),
            ("acrostic", self.acrostic, self.num_lines),
        ):
            if text is None:
                continue
            stray = next((char for char in text if not is_hanzi(char)), None)
            if stray is not None:
                raise PromptError(
                    f"{name}={text!r}: {stray!r} is not a Chinese character; give {size} Chinese characters"
                )
            if len(text) != size:
                raise PromptError(
                    f"{name}={text!r} has {len(text)} characters: this model writes lines of "
                    f"{self.line_length} characters in {self.num_lines} lines, so give {size}"
                )


    def validate_knobs(self) -> None:
        """The Hugging Face style knobs: repetition penalty, n-gram ban, min_p, several poems per code (they
        read only ``KNOB_FIELDS``, so a config check can run this before a checkpoint gives the form)."""
        if not 0 < self.repetition_penalty < math.inf:
            raise PromptError(f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty}")
        if self.no_repeat_ngram_size < 0:
            raise PromptError(f"no_repeat_ngram_size must be >= 0 (0 = off), got {self.no_repeat_ngram_size}")
        if not 0 <= self.min_p <= 1:
            raise PromptError(f"min_p must be in [0, 1] (0 = off), got {self.min_p}")
        if not 1 <= self.beam_size <= MAX_BEAM:
            raise PromptError(f"beam_size must be in [1, {MAX_BEAM}], got {self.beam_size} (each beam is a row "
                              "the decoder keeps: a wider beam fills the memory, not the poem)")
        k = self.num_return_sequences
        if k < 1:
            raise PromptError(f"num_return_sequences must be >= 1, got {k}")
        if k > 1 and self.strategy == "greedy":
            raise PromptError(
                f"num_return_sequences={k} needs strategy=beam or a sampling one: greedy writes one poem per code"
            )
        if self.strategy == "beam" and k > self.beam_size:
            raise PromptError(f"num_return_sequences must be in [1, beam_size={self.beam_size}], got {k}")


def whole_number(value: object, low: int, message: str) -> int:
    """``value`` as an int (a numpy or 0-d tensor integer too) of at least ``low``, else a PromptError: ``message``
    with ``{value}`` filled in."""
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if isinstance(value, bool) or number is None or number < low:
        raise PromptError(message.format(value=repr(value)))
    return number


MAX_BEAM = 1024  # a code's beams are decoded together; past a few dozen they find the same poems


@dataclass
class GeneratedPoem:
    text: str  # rendered: L1，L2。L3，L4。
    lines: list[str]
    log_prob: float  # sum of the model's unconstrained log-probs of the chosen characters (no penalty in it)
    constraints: dict[str, bool] = field(default_factory=dict)  # requested constraint -> holds (re-checked)
    pattern: str | None = None  # the tone pattern the poem fits, when a tone constraint was requested


# Set by the user (the form's sizes come from the checkpoint's data settings, not from the command line).
SHAPE_FIELDS = ("line_length", "num_lines")
REQUEST_FIELDS = tuple(f.name for f in dataclasses.fields(DecodeRequest) if f.name not in SHAPE_FIELDS)
KNOB_FIELDS = ("strategy", "beam_size", "min_p", "repetition_penalty", "no_repeat_ngram_size", "num_return_sequences")
