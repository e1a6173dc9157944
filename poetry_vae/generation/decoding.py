"""Batched decoding of fixed-shape poems: every poem (or beam) advances together, one ``model.step`` per step.

The shape is guaranteed by construction: exactly ``num_lines * line_length`` steps, and at each step only CJK
ideographs that keep the requested constraints satisfiable are allowed (see :mod:`.processors`). Scores are
the model's *unconstrained* log-probabilities of the chosen characters; whether each requested constraint
holds is re-checked afterwards by each processor's independent checker (:func:`check_constraints`), not
taken from the masks.

Two decoding loops: :func:`_sample` for greedy and the sampling strategies (:data:`.sampling.DRAWS`), and
:func:`_beam`. Both ask one :class:`~.processors.Pipeline` for each step's allowed tokens; the processors a
request turns on each run only when set, so the default path is unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from poetry_vae.data.forms import FORM_IDS, JUEJU
from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PromptError
from poetry_vae.generation import adaptive_draw
from poetry_vae.generation.processors import Pipeline, check_constraints
from poetry_vae.generation.processors.base import MasksCache
from poetry_vae.generation.profile import StepProfile
from poetry_vae.generation.request import DecodeRequest, GeneratedPoem, whole_number
from poetry_vae.generation.sampling import Phase, Workspace, choose, no_phase, penalize_repeats
from poetry_vae.layout import render
from poetry_vae.model.modes import evaluating
from poetry_vae.model.poem_model import PoemModel
from poetry_vae.model.prior import StandardPrior
from poetry_vae.model.stepper import LogitStepper
from poetry_vae.precision import decoding_dtype, denormals_flushed

# rows whose logits are made, masked and drawn from together: a block (9 MB at an 8k-column vocabulary) that the
# cache keeps between those passes, where each whole-batch pass streamed 35 MB through memory. 256 measured best
# against 64, 128 and 1,024 on the shipped model at 2 threads (make bench's flagship rows; docs/decoding.md)
ROW_BLOCK = 256
# an adaptive softmax drawn from its head (generation.adaptive_draw) makes whole rows for about a fifth of them,
# and its narrow passes stay in the cache anyway: there, fewer blocks of more rows pay fewer per-call overheads
# (1,024 against 256: 1.15x on the shipped model's top-p, 2 threads)
LAZY_ROW_BLOCK = 1024


def sample_prior(model: PoemModel, n: int, generator: torch.Generator | None = None,
                 verse: str | None = None) -> Tensor | None:
    """``n`` codes from the model's prior p(z) on its device (``verse``: from that verse's components of a prior
    fitted by verse); None for the LM baseline (then decode ``n`` poems)."""
    n = whole_number(n, 1, "n={value}: give a whole number of codes >= 1")
    _check_generator(generator)
    if not model.cfg.use_latent:
        return None
    prior = getattr(model, "prior", None) or StandardPrior(model.cfg.latent_dim)  # N(0, I) for a duck-typed model
    return prior.sample(n, generator, next(model.parameters()).device, verse)


def generate(
    model: PoemModel,
    vocab: Vocabulary,
    z: Tensor | None,
    request: DecodeRequest | Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    masks_cache: MasksCache | None = None,
    num_poems: int | None = None,
    profile: StepProfile | None = None,
) -> list[GeneratedPoem]:
    """Decode one poem per row of ``z`` (B, Z); for the LM baseline pass ``z=None`` and ``num_poems``.

    With ``request.num_return_sequences`` = k, each row gives k poems, next to each other (row 0's, then row
    1's...): the best k beams, best first, or k draws.

    ``masks_cache`` maps (system, device) to prosody masks; by default a per-vocabulary cache is used.
    ``profile`` accumulates the time of each phase of the sampling loop (not beam search).
    """
    request = _as_request(request)
    request.validate()
    _check_generator(generator)
    if model.cfg.use_latent and z is None:
        raise PromptError("this model has a latent code: pass z (e.g. from sample_prior or encode_texts)")
    if not model.cfg.use_latent and z is not None:
        raise PromptError("this is the language-model baseline (no latent code): pass z=None and num_poems")
    z = None if z is None else _checked_codes(model, z)
    if num_poems is not None:
        num_poems = whole_number(num_poems, 1, "num_poems={value}: give a whole number >= 1")
    n = z.shape[0] if z is not None else (num_poems or 1)
    device = next(model.parameters()).device
    pipeline = Pipeline(vocab, request, device, masks_cache)
    beam = request.strategy == "beam"
    pipeline.start(n * (request.beam_size if beam else request.num_return_sequences))
    if z is not None:
        z = z.to(device).reshape(n, -1)

    with evaluating(model), torch.inference_mode(), denormals_flushed():
        form = form_tag(model, request)
        dtype = decoding_dtype(request.precision, device)
        if beam:
            tokens, scores, patterns = _beam(model, pipeline, z, n, request, device, form, dtype)
        else:
            z, n = _draws_per_row(z, n, request.num_return_sequences)
            tokens, scores, patterns = _sample(
                model, pipeline, z, n, request, generator, device, profile, form, dtype
            )
    return [
        _finish(vocab, request, row, score, pattern)
        for row, score, pattern in zip(tokens.tolist(), scores.tolist(), patterns, strict=True)
    ]


def _check_generator(generator: Any) -> None:
    """A seeded draw takes a torch.Generator (or None, torch's global one); anything else is one line here, not an
    AttributeError deep in a draw."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise PromptError(f"generator={generator!r}: give a torch.Generator, e.g. torch.Generator().manual_seed(0), "
                          "or None")


def _as_request(request: DecodeRequest | Mapping[str, Any] | None) -> DecodeRequest:
    """A request, from its fields as a mapping too (``{"strategy": "greedy"}``); None: the defaults."""
    if request is None:
        return DecodeRequest()
    if isinstance(request, Mapping):
        unknown = sorted(set(request) - {f.name for f in dataclasses.fields(DecodeRequest)})
        if unknown:
            raise PromptError(f"unknown request field(s) {', '.join(map(repr, unknown))}: see DecodeRequest's fields")
        return DecodeRequest(**request)
    if not isinstance(request, DecodeRequest):
        raise PromptError(f"request is a {type(request).__name__}: give a DecodeRequest (or a dict of its fields)")
    return request


def _checked_codes(model: PoemModel, z: Any) -> Tensor:
    """``z`` as the model's (n, latent_dim) codes in its own float type, or a one-line error: a list or an array
    is taken as a tensor, a single code (latent_dim,) asked to be given as one row."""
    width = model.cfg.latent_dim
    try:
        codes = torch.as_tensor(z)
    except (TypeError, ValueError, RuntimeError):
        raise PromptError(f"z is a {type(z).__name__}: give a tensor of shape (n, {width})") from None
    if codes.dim() != 2 or codes.shape[1] != width or codes.shape[0] == 0:
        hint = " (one code: z.unsqueeze(0))" if tuple(codes.shape) == (width,) else ""
        raise PromptError(f"z has shape {tuple(codes.shape)}: give codes of shape (n, {width}), n >= 1{hint}")
    if codes.is_complex() or codes.dtype == torch.bool:
        raise PromptError(f"z is {codes.dtype}: give real numbers")
    codes = codes.to(next(model.parameters()).dtype)
    if not bool(torch.isfinite(codes).all()):
        raise PromptError("z holds NaN or infinite values: give finite codes (e.g. from sample_prior or encode_texts)")
    return codes


def _draws_per_row(z: Tensor | None, n: int, k: int) -> tuple[Tensor | None, int]:
    """Each code repeated ``k`` times in place (k independent draws of it), and the new row count."""
    if k == 1:
        return z, n
    return (None if z is None else z.repeat_interleave(k, dim=0)), n * k


def form_tag(model: PoemModel, request: DecodeRequest) -> int | None:
    """The id of the requested verse form's tag, for a model trained with form tags (None for one without)."""
    if request.form not in FORM_IDS:
        raise PromptError(f"unknown form {request.form!r}; choose one of {', '.join(FORM_IDS)}")
    if model.cfg.num_forms == 0:
        if request.form != JUEJU:
            raise PromptError(f"form={request.form}: this model was trained without form tags; leave form={JUEJU}")
        return None
    return FORM_IDS[request.form]


def _sample(
    model: PoemModel,
    pipeline: Pipeline,
    z: Tensor | None,
    n: int,
    request: DecodeRequest,
    generator: torch.Generator | None,
    device: torch.device,
    profile: StepProfile | None = None,
    form: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, list]:
    phase = profile.phase if profile is not None else no_phase
    with phase("setup"):
        stepper = LogitStepper(model, z, n, form, dtype)
        work = Workspace()
        blocks: dict[int, tuple[Tensor, Workspace]] = {}  # per block size: its logits buffer and workspace
        prev = torch.full((n,), model.cfg.bos_id, dtype=torch.long, device=device)
        score = torch.zeros(n, device=device)
    for t in range(pipeline.length):
        with phase("constraint masks"):
            keep, bias = pipeline.keep(t)
        forced = pipeline.forced.get(t)
        options = pipeline.logit_args(t)
        if stepper.fast and forced is None and not options:
            with phase("model step"):
                stepper.advance(prev)
            chosen, log_prob = _choose_by_row_blocks(stepper, blocks, keep, bias, request, generator, phase)
        else:
            with phase("model step"):
                logits = stepper(prev)
            if forced is not None:  # prompt characters override sampling; their log-prob still counts
                chosen = torch.full((n,), forced, dtype=torch.long, device=device)
                log_prob = torch.log_softmax(logits, dim=1)[:, forced]
            else:
                chosen, log_prob = choose(
                    logits, keep, request.strategy, request.temperature, request.top_k, request.top_p, generator,
                    bias=bias, work=work, phase=phase, min_p=request.min_p, normalised=stepper.normalised,
                    **options,
                )  # fmt: skip
        score += log_prob
        with phase("constraint update"):
            pipeline.update(t, chosen)
        prev = chosen
    if profile is not None:
        profile.steps += pipeline.length
    return pipeline.tokens, score, pipeline.patterns()


def _choose_by_row_blocks(
    stepper: LogitStepper,
    blocks: dict[int, tuple[Tensor, Workspace]],
    keep: Tensor,
    bias: Tensor | None,
    request: DecodeRequest,
    generator: torch.Generator | None,
    phase: Phase,
) -> tuple[Tensor, Tensor]:
    """One step's choice for every row after ``stepper.advance``, ``ROW_BLOCK`` rows at a time: each block's
    logits are made, masked, filtered and drawn from while they are in the cache, where whole-batch passes
    would stream a (rows x vocabulary) table through memory once per pass. Rows are independent, so each draws
    from the same distribution as in one batch (a seeded generator is consumed block by block)."""
    rows = stepper.hidden.shape[0]
    lazy = adaptive_draw.applies(stepper, request, keep.device)  # an adaptive softmax's tails only where needed
    chosen = torch.empty(rows, dtype=torch.long, device=keep.device)
    log_prob = torch.empty(rows, device=keep.device)
    step = LAZY_ROW_BLOCK if lazy else ROW_BLOCK
    for start in range(0, rows, step):
        block = slice(start, min(start + step, rows))
        size = block.stop - start
        if size not in blocks:
            blocks[size] = (stepper.hidden.new_empty(size, stepper.width, dtype=torch.float32), Workspace())
        buffer, work = blocks[size]
        if lazy:
            chosen[block], log_prob[block] = adaptive_draw.choose_lazily(
                stepper, block, _rows(keep, block), _rows(bias, block), request, generator, buffer, work, phase)
            continue
        with phase("model step"):
            logits = stepper.project(block, buffer)
        chosen[block], log_prob[block] = choose(
            logits, _rows(keep, block), request.strategy, request.temperature, request.top_k, request.top_p,
            generator, bias=_rows(bias, block), work=work, phase=phase, min_p=request.min_p,
            normalised=stepper.normalised,
        )  # fmt: skip
    return chosen, log_prob


def _rows(mask: Tensor | None, block: slice) -> Tensor | None:
    """A mask's rows of ``block``; a mask shared by every row (one row) as it is."""
    return mask if mask is None or mask.shape[0] == 1 else mask[block]


def _ranking_log_probs(
    logits: Tensor, log_probs: Tensor, history: Tensor | None = None, repetition_penalty: float = 1.0
) -> Tensor:
    """What beam search ranks by: the model's log-probs, or with CTRL's repetition penalty on ``history``'s ids
    (``logits`` is overwritten then)."""
    penalty = repetition_penalty
    if penalty == 1.0 or history is None or history.shape[1] == 0:
        return log_probs
    penalize_repeats(logits, history, penalty)
    return torch.log_softmax(logits, dim=1)


def _beam(
    model: PoemModel,
    pipeline: Pipeline,
    z: Tensor | None,
    n: int,
    request: DecodeRequest,
    device: torch.device,
    form: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, list]:
    """Batched beam search over n x beam rows; returns each poem's best ``num_return_sequences`` beams, best
    first. Constraints act inside beams. Beams rank by their (maybe penalised) score; the returned scores are
    the model's log-probs."""
    beam = request.beam_size
    rows = n * beam
    z_rows = z.repeat_interleave(beam, dim=0) if z is not None else None
    stepper = LogitStepper(model, z_rows, rows, form, dtype)
    prev = torch.full((rows,), model.cfg.bos_id, dtype=torch.long, device=device)
    # only the first beam of each poem is live at the start, so the beams do not begin as copies
    score = torch.full((n, beam), float("-inf"), device=device)
    score[:, 0] = 0.0
    score = score.reshape(rows)
    model_score = torch.zeros(rows, device=device)  # the model's own log-probs of each beam's characters
    offsets = torch.arange(n, device=device).repeat_interleave(beam) * beam
    vocab_size = model.cfg.vocab_size  # the stepper's padding columns are dropped: beams never pick them
    for t in range(pipeline.length):
        logits = stepper(prev)[:, :vocab_size]
        log_probs = torch.log_softmax(logits, dim=1)
        ranking = _ranking_log_probs(logits, log_probs, **pipeline.logit_args(t))
        live = score > float("-inf")
        allowed = pipeline.keep(t, live)[0][:, :vocab_size] > 0
        forced = pipeline.forced.get(t)
        if forced is not None:
            only = torch.zeros(vocab_size, dtype=torch.bool, device=device)
            only[forced] = True
            allowed = only.unsqueeze(0)
        candidates = score.unsqueeze(1) + ranking.masked_fill(~allowed, float("-inf"))
        best, flat = candidates.view(n, beam * vocab_size).topk(beam, dim=1)
        source = (flat // vocab_size).reshape(rows) + offsets
        chosen = (flat % vocab_size).reshape(rows)
        score = best.reshape(rows)
        model_score = model_score[source] + log_probs[source, chosen]
        stepper.reorder(source)
        pipeline.reorder(source)
        pipeline.update(t, chosen)
        prev = chosen
    pick = _best_beams(score.view(n, beam), request.num_return_sequences)
    patterns = pipeline.patterns()
    return pipeline.tokens[pick], model_score[pick], [patterns[i] for i in pick.tolist()]


def _best_beams(score: Tensor, k: int) -> Tensor:
    """(n, beam) final scores -> (n * k,) rows of each poem's k best beams, best first.

    Finite beams are distinct poems by construction (each step extends distinct prefixes by distinct
    (beam, character) pairs), so the k best are k different poems when they are all finite.
    """
    n, beam = score.shape
    best, top = score.topk(k, dim=1)
    if not bool(torch.isfinite(best[:, 0]).all()):
        raise PromptError("no poem satisfies every constraint: relax the rhyme, tone, no_repeat or prompt constraints")
    if not bool(torch.isfinite(best).all()):
        raise PromptError(
            f"fewer than num_return_sequences={k} poems satisfy every constraint: ask for fewer or relax a constraint"
        )
    return (torch.arange(n, device=score.device).unsqueeze(1) * beam + top).reshape(-1)


def _finish(
    vocab: Vocabulary, request: DecodeRequest, ids: list[int], score: float, pattern: str | None
) -> GeneratedPoem:
    m = request.line_length
    chars = [vocab.tokens[i] for i in ids]
    lines = ["".join(chars[i : i + m]) for i in range(0, len(chars), m)]
    text = render(lines)
    return GeneratedPoem(
        text=text, lines=lines, log_prob=score, constraints=check_constraints(lines, request, pattern), pattern=pattern
    )
