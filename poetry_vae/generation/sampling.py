"""Pick one token per row: greedy, full sampling, top-k, top-p (nucleus), without a per-row sort.

The decoder hands over raw logits (R, W) whose width W is a multiple of ``BLOCK`` (padding columns are
``-inf``) and a 0/1 ``keep`` mask of allowed tokens; :func:`choose` returns the chosen tokens and their
*unconstrained* log-probabilities. Every strategy draws from the same distribution as a plain
sort-and-cumsum implementation (``tests/test_generation.py`` keeps one and compares token frequencies):

- greedy: the masked logits' argmax, found block-wise (the block maxima, then one block per row), which is
  several times faster than ``argmax`` over the row and returns the same first maximum;
- sampling: inverse CDF in two levels, one uniform per row: pick a block by its mass, then a token inside it,
  so the only full-row work is one fused softmax and one block sum (no row-wide ``cumsum``);
- top-p: rejection. Draw ``j`` from the whole allowed distribution and keep it if the mass strictly above
  ``p_j`` is below ``top_p`` (exactly the test that puts ``j`` in the nucleus); otherwise draw again for
  that row. Conditioned on acceptance the draw follows the nucleus distribution, and a round accepts with
  probability >= ``top_p``; rows still rejected after ``ROUNDS`` rounds take the exact sort-based path;
- top-k: the same rejection, keeping ``j`` if fewer than k allowed tokens are more likely; a flat row (where
  the k best hold little mass) takes ``topk`` over the masked weights after one round;
- top_k_top_p: the k best (exact ``topk``), then the nucleus of that renormalised set, as Hugging Face orders
  its warpers.

Optional knobs, each costing nothing when off: ``min_p`` zeroes the weights below ``min_p`` x the row's largest
(after top-k and top-p, whose sets it only intersects: the nucleus is still measured on the mass before it);
``repetition_penalty`` rescales the logits of the characters already in the row (CTRL) before anything else.

Strategies are a registry: greedy is built into :func:`choose`, and ``DRAWS`` maps each sampling strategy's
name to its draw (masked weights in, chosen columns out), so a new sampling strategy is one function added
there. Beam search is its own loop (:mod:`.decoding`).

Every draw uses the given generator only, so a seeded generator reproduces a batch exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from poetry_vae.model.stepper import BLOCK, padded_size

ROUNDS = 4  # rejection rounds (top-p, top-k) before the remaining rows take the exact path
MIN_ACCEPT = 0.5  # a first rejection round that admits fewer rows sends the rest to the exact path at once
# rows that one fused loop takes at once: a few row-wise passes over a block of 16 rows of an 8k-column vocabulary
# (0.5 MB) stay in the core's cache, where the same passes over all 1,024 rows stream the whole table each time
ROW_CHUNK = 16
# ...but a table of at most this many elements takes each pass once: a few hundred rows (the rows an adaptive
# softmax makes whole, a 256-row block of a 4k vocabulary) pay more in per-call overheads than the cache saves
# (the heavier-mass sum over 96 rows x 8,704 columns 0.11 against 0.21 ms, 2 threads)
ONE_PASS = 1 << 21
FEW_BANNED = 16  # a shared mask banning at most 1/16 of the columns zeroes them by index, not by a full multiply
# exp(x + EXP_SHIFT) with x floored at EXP_FLOOR - EXP_SHIFT stays a normal float32 (exp(-87) > 2^-126); a row whose
# largest weight is at least EXP_SAFE = exp(EXP_FLOOR + 40 ln 2) holds its floored weights at <= 2^-40 of it
EXP_SHIFT, EXP_FLOOR = 60.0, -87.0
EXP_SAFE = float(np.exp(EXP_FLOOR + 40 * np.log(2.0)))

Phase = Callable[[str], AbstractContextManager]


def no_phase(name: str) -> AbstractContextManager:
    return nullcontext()


class Workspace:
    """Reusable (R, W) buffers, so a step allocates (and page-faults) no new row-sized tensors. A buffer serves
    any number of rows up to the most it was asked for (the rows a draw picks out vary from step to step)."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, like: Tensor) -> Tensor:
        """An uninitialised buffer of ``like``'s (rows, columns), dtype and device."""
        buf = self._buffers.get(name)
        rows = like.shape[0]
        if (buf is None or buf.shape[0] < rows or buf.shape[1:] != like.shape[1:] or buf.dtype != like.dtype
                or buf.device != like.device):
            buf = self._buffers[name] = torch.empty_like(like, memory_format=torch.contiguous_format)
        return buf[:rows]


def _row_chunks(table: Tensor) -> list[slice]:
    """The blocks of rows a fused row-wise loop takes over ``table``: all of them at once when it is small
    (``ONE_PASS``), else ``ROW_CHUNK`` at a time."""
    rows = table.shape[0]
    step = max(rows, 1) if table.numel() <= ONE_PASS else ROW_CHUNK
    return [slice(start, start + step) for start in range(0, rows, step)]


def _uniform(rows: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(rows, 1, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _last_positive(weights: Tensor) -> Tensor:
    """(R, 1) index of each row's last positive column (the guard for float round-off at the top of a CDF)."""
    columns = torch.arange(weights.shape[1], device=weights.device, dtype=torch.float32)
    # a 0/1 float mask times the columns (where over a broadcast comparison takes a slower path on a CPU); float32
    # holds every column index exactly (a row is far narrower than 2^24)
    positive = torch.gt(weights, 0, out=weights.new_empty(weights.shape, dtype=torch.float32))
    return positive.mul_(columns).amax(dim=1, keepdim=True).long()


def block_argmax(x: Tensor) -> Tensor:
    """(R, W) -> (R,) first index of each row's maximum; W a multiple of ``BLOCK``."""
    rows, width = x.shape
    blocks = x.view(rows, width // BLOCK, BLOCK)
    best = blocks.amax(dim=2).argmax(dim=1)  # the first block holding the maximum
    inner = blocks[torch.arange(rows, device=x.device), best]
    return best * BLOCK + inner.argmax(dim=1)


def block_sample(weights: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """(R, W) non-negative weights (any scale, W a multiple of ``BLOCK``) -> (R,) drawn columns, (R,) row totals.

    Zero-weight columns are never drawn; one uniform per row.
    """
    rows, width = weights.shape
    blocks = weights.view(rows, width // BLOCK, BLOCK)
    mass = blocks.sum(dim=2)
    cdf = mass.cumsum(dim=1)
    total = cdf[:, -1:]
    u = _uniform(rows, weights, generator) * total
    block = torch.searchsorted(cdf, u, right=True).minimum(_last_positive(mass))
    inner = blocks.gather(1, block.unsqueeze(2).expand(-1, 1, BLOCK)).squeeze(1)
    rest = (u - (cdf.gather(1, block) - mass.gather(1, block))).clamp_(min=0)
    column = torch.searchsorted(inner.cumsum(dim=1), rest, right=True).minimum(_last_positive(inner))
    return (block * BLOCK + column).squeeze(1), total.squeeze(1)


def _nucleus_threshold(probs: Tensor, top_p: float, budget: Tensor | None = None) -> Tensor:
    """(R, 1) smallest weight inside each row's nucleus (the exact, sort-based definition): the fewest most
    likely tokens whose mass reaches ``top_p`` (the top token always counts; ties with the last one too).

    ``budget`` (R, 1), when given, replaces ``top_p`` x the row's mass: the nucleus of a row whose light tail
    was already zeroed (min_p) is measured against the mass before that."""
    if probs.device.type == "cpu":  # numpy's value sort is much faster than torch.sort, which builds indices
        ascending = torch.from_numpy(np.sort(probs.numpy(), axis=1))
    else:
        ascending = probs.sort(dim=1).values
    cumulative = ascending.cumsum(dim=1)
    above = cumulative[:, -1:] - cumulative  # mass strictly above each token
    limit = top_p * cumulative[:, -1:] if budget is None else budget
    kept = (above < limit).sum(dim=1, keepdim=True).clamp_(min=1)
    return ascending.gather(1, ascending.shape[1] - kept)


def _rejection_sample(
    weights: Tensor,
    accept: Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor],
    exact: Callable[[Tensor, Tensor], Tensor],
    generator: torch.Generator | None,
    scratch: Tensor | None,
) -> Tensor:
    """(R, W) non-negative weights -> (R,) columns drawn from a filtered distribution, by rejection.

    Each round draws from the whole row and keeps the draws that ``accept(weights, drawn, total, scratch, rows)``
    admits (``rows``: the pending rows' indices in the batch, for per-row settings); conditioned on acceptance
    a draw follows the filtered law exactly. Rows still pending after ``ROUNDS`` rounds, or all of them when the
    first round admits under ``MIN_ACCEPT`` of the rows (the filter keeps little mass, as on a flat
    distribution), draw from ``exact(weights, rows)``: the filtered weights.
    """
    rows = weights.shape[0]
    chosen = torch.empty(rows, dtype=torch.long, device=weights.device)
    pending = torch.arange(rows, device=weights.device)
    current = weights
    scratch = torch.empty_like(weights) if scratch is None else scratch
    for round_ in range(ROUNDS):
        drawn, total = block_sample(current, generator)
        admitted = accept(current, drawn, total, scratch[: current.shape[0]], pending)
        if bool(admitted.all()):
            chosen[pending] = drawn
            return chosen
        chosen[pending[admitted]] = drawn[admitted]
        pending, current = pending[~admitted], current[~admitted]
        if round_ == 0 and len(pending) > (1 - MIN_ACCEPT) * rows:
            break
    chosen[pending] = block_sample(exact(current, pending), generator)[0]
    return chosen


def _heavier(weights: Tensor, drawn: Tensor, buffer: Tensor) -> Tensor:
    """(R, W) 1.0 where a column weighs strictly more than the row's drawn column, written into ``buffer``."""
    return torch.gt(weights, weights.gather(1, drawn.unsqueeze(1)), out=buffer)


def _weight_above(weights: Tensor, threshold: Tensor, buffer: Tensor | None = None) -> Tensor:
    """(R,) each row's weight strictly above its (R, 1) ``threshold``, as a 0/1 float mask times the weights
    (written into ``buffer``): several times faster on a CPU than ``masked_fill`` or ``where`` over the broadcast
    comparison."""
    buffer = torch.empty_like(weights) if buffer is None else buffer
    return torch.gt(weights, threshold, out=buffer).mul_(weights).sum(dim=1)


def _mass_above(weights: Tensor, drawn: Tensor, buffer: Tensor) -> Tensor:
    """(R,) the weight strictly above each row's drawn column: :func:`_weight_above` over blocks of rows
    (:func:`_row_chunks`; the same row-wise operations, so the same sums)."""
    drawn_weight = weights.gather(1, drawn.unsqueeze(1))
    mass = weights.new_empty(weights.shape[0])
    for rows in _row_chunks(weights):
        mass[rows] = _weight_above(weights[rows], drawn_weight[rows], buffer[rows])
    return mass


def nucleus_sample(
    weights: Tensor,
    top_p: float,
    generator: torch.Generator | None,
    scratch: Tensor | None = None,
    budget: Tensor | None = None,
) -> Tensor:
    """(R, W) non-negative weights -> (R,) columns drawn from each row's top-p nucleus.

    A draw ``j`` is in the nucleus iff the mass strictly above ``p_j`` is below ``top_p`` x the row's mass, or
    below ``budget`` (R, 1) when given (a row whose tail was zeroed: the nucleus of the unfiltered row, cut
    to what is left); a round admits with probability >= ``top_p``.
    """

    def limit(total: Tensor, rows: Tensor) -> Tensor:
        return top_p * total if budget is None else budget[rows, 0]

    def in_nucleus(current: Tensor, drawn: Tensor, total: Tensor, buffer: Tensor, rows: Tensor) -> Tensor:
        return _mass_above(current, drawn, buffer) < limit(total, rows)

    def nucleus(current: Tensor, rows: Tensor) -> Tensor:
        floor = _nucleus_threshold(current, top_p, None if budget is None else budget[rows])
        return current.masked_fill(current < floor, 0.0)

    return _rejection_sample(weights, in_nucleus, nucleus, generator, scratch)


def top_k_sample(weights: Tensor, k: int, generator: torch.Generator | None, scratch: Tensor | None = None) -> Tensor:
    """(R, W) non-negative weights -> (R,) columns drawn from each row's ``k`` heaviest.

    A draw is among them iff fewer than ``k`` columns weigh strictly more (ties at the k-th weight all count,
    where ``topk`` would pick among them); a round admits with probability = the top-k mass, so a flat row
    (an untrained model) soon takes the exact ``topk`` path, a peaked one (a trained model) almost never.
    """

    def in_top_k(current: Tensor, drawn: Tensor, total: Tensor, buffer: Tensor, rows: Tensor) -> Tensor:
        return _heavier(current, drawn, buffer).sum(dim=1) < k

    def top_k(current: Tensor, rows: Tensor) -> Tensor:
        return keep_top_k(current, k)

    return _rejection_sample(weights, in_top_k, top_k, generator, scratch)


def keep_top_k(weights: Tensor, k: int) -> Tensor:
    """(R, W) weights -> a copy with every column but each row's ``k`` heaviest set to 0 (exact ``topk``)."""
    values, index = weights.topk(min(k, weights.shape[1]), dim=1)
    return torch.zeros_like(weights).scatter_(1, index, values)


def drop_below_min_p(weights: Tensor, min_p: float) -> Tensor:
    """(R, W) non-negative weights, in place: zero those under ``min_p`` x the row's largest (which stays)."""
    floor = weights.amax(dim=1, keepdim=True).mul_(min_p)
    return weights.masked_fill_(weights < floor, 0.0)


def penalize_repeats(logits: Tensor, history: Tensor, penalty: float) -> Tensor:
    """CTRL's repetition penalty, in place on (R, W) ``logits``: at the (R, t) ``history`` ids of each row, a
    positive logit is divided by ``penalty``, a negative one multiplied (so > 1 always lowers it). A character
    seen twice is penalised once. Returns the original (R, t) values, to restore the model's own log-probs."""
    raw = logits.gather(1, history)
    logits.scatter_(1, history, torch.where(raw > 0, raw / penalty, raw * penalty))
    return raw


def _normalise(logits: Tensor, work: Workspace | None = None) -> tuple[Tensor, Tensor]:
    """Raw logits (R, W) -> (R, W) softmax and (R,) log-normaliser (log-sum-exp) of each row.

    One fused softmax pass (several times faster on a CPU than max, subtract, exp and sum as separate
    passes); the normaliser comes from the row's largest probability, exp(max - lse), which cannot underflow.
    With a workspace the softmax is written into its buffer (a fresh row-sized result every step page-faults its
    memory in again, which took longer than the softmax itself) and the same row-wise kernels run over blocks of
    rows that stay in cache (:func:`_row_chunks`).
    """
    if work is None:
        probs = torch.softmax(logits, dim=1)
        return probs, logits.amax(dim=1) - probs.amax(dim=1).log()
    probs = work.get("probs", logits)
    log_norm, peak = logits.new_empty(logits.shape[0]), logits.new_empty(logits.shape[0])
    for rows in _row_chunks(logits):
        torch.ops.aten._softmax.out(logits[rows], 1, False, out=probs[rows])
        torch.amax(logits[rows], dim=1, out=log_norm[rows])
        torch.amax(probs[rows], dim=1, out=peak[rows])
    return probs, log_norm.sub_(peak.log_())


def _masked_weights(
    logits: Tensor, keep: Tensor, temperature: float, probs: Tensor, work: Workspace | None = None,
    log_probs: bool = False,
) -> Tensor:
    """(R, W) unnormalised masked softmax weights at ``temperature`` (``probs`` is reused at temperature 1).

    ``log_probs``: the rows are normalised log-probs already (an adaptive softmax's), so their weights are one exp
    rather than a softmax (whose max and sum passes would find 0). That exponent is shifted up by ``EXP_SHIFT`` and
    floored where exp's result would be subnormal: there the vectorised exp takes a path ten times slower, and most
    of a trained model's vocabulary lies there (log-probs below -87). A floored weight is at most 2^-40 of its row's
    largest in every row kept. A mask shared by every row that bans few columns (the format's) zeroes just those
    columns. A row whose allowed tokens all underflowed (or lie below the floor) is recomputed against its masked
    max, exactly.
    """
    shared = keep.shape[0] == 1
    if work is None:
        weights = probs if temperature == 1.0 and not log_probs else torch.softmax(logits / temperature, dim=1)
        lost = weights.mul_(keep).amax(dim=1) <= 0
    else:  # the same row-wise kernels, fused over blocks of rows that stay in the cache
        fresh = temperature != 1.0 or log_probs
        weights = work.get("weights", logits) if fresh else probs
        scaled = work.get("scaled", logits) if temperature != 1.0 and not log_probs else logits
        banned = few_banned(keep)
        peak = logits.new_empty(logits.shape[0])
        for rows in _row_chunks(logits):
            chunk = weights[rows]
            if log_probs:
                exp_weights(logits[rows], temperature, chunk)
            elif temperature != 1.0:
                torch.div(logits[rows], temperature, out=scaled[rows])
                torch.ops.aten._softmax.out(scaled[rows], 1, False, out=chunk)
            if banned is not None:
                chunk.index_fill_(1, banned, 0.0)
            else:
                chunk.mul_(keep if shared else keep[rows])
            torch.amax(chunk, dim=1, out=peak[rows])
        lost = peak < EXP_SAFE if log_probs else peak <= 0
    if bool(lost.any()):
        weights[lost] = _tempered(logits[lost], keep if shared else keep[lost], temperature)
    return weights


def few_banned(keep: Tensor) -> Tensor | None:
    """The columns a 0/1 mask shared by every row (1, W) bans, when they are few (at most 1 / ``FEW_BANNED`` of
    them): zeroing those by index is much cheaper than multiplying every row by the mask. None otherwise."""
    if keep.shape[0] != 1:
        return None
    banned = (keep[0] <= 0).nonzero().squeeze(1)
    return banned if banned.numel() * FEW_BANNED <= keep.shape[1] else None


def exp_weights(log_probs: Tensor, temperature: float, out: Tensor, scratch: Tensor | None = None) -> Tensor:
    """Log-probs -> their unnormalised weights at ``temperature``, into ``out``: exp(log_prob / T + EXP_SHIFT), the
    exponent floored where exp's result would be subnormal (see :func:`_masked_weights`). An ``out`` that is a
    strided view (the first columns of a table padded to whole blocks) gets them made in ``scratch`` (a contiguous
    table of ``log_probs``' shape, or a new one) and copied: on a CPU exp into a strided view takes a path about
    twice as slow as exp and a copy."""
    if not out.is_contiguous():
        made = torch.empty(log_probs.shape, dtype=out.dtype, device=out.device) if scratch is None else scratch
        return out.copy_(exp_weights(log_probs, temperature, made))
    tempered = log_probs if temperature == 1.0 else torch.mul(log_probs, 1 / temperature, out=out)
    return torch.clamp(tempered, min=EXP_FLOOR - EXP_SHIFT, out=out).add_(EXP_SHIFT).exp_()


def _tempered(logits: Tensor, keep: Tensor, temperature: float) -> Tensor:
    masked = logits.masked_fill(keep <= 0, float("-inf"))
    peak = masked.amax(dim=1, keepdim=True)
    return masked.sub_(peak).div_(temperature).exp_()


def choose(
    logits: Tensor,
    keep: Tensor,
    strategy: str,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 0.9,
    generator: torch.Generator | None = None,
    bias: Tensor | None = None,
    work: Workspace | None = None,
    phase: Phase = no_phase,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    history: Tensor | None = None,
    normalised: bool = False,
) -> tuple[Tensor, Tensor]:
    """Raw logits (R, W) and a 0/1 float ``keep`` mask (1 or R rows) -> (R,) chosen ids, (R,) their log-probs.

    The log-probs are the model's *unconstrained* ones (normalised over the whole vocabulary, before any
    repetition penalty); filtering (top-k / top-p / min_p) happens after masking, so the kept set renormalises
    over allowed tokens only. ``bias`` is ``keep`` as an additive 0/-inf mask when the caller has it (greedy
    uses it). ``history`` (R, t) holds each row's ids so far, for ``repetition_penalty``. ``logits`` is
    overwritten (greedy adds the mask in place). ``phase(name)`` times the stages (see
    :class:`~.profile.StepProfile`). ``normalised``: ``logits`` are already log-probs (an adaptive softmax's
    output), so the full-vocabulary softmax that would only find a zero normaliser is skipped.
    """
    work = work or Workspace()
    penalised = repetition_penalty != 1.0 and history is not None and history.shape[1] > 0
    with phase("normalise"):
        if normalised:  # log-probs already: greedy needs no softmax, and the draws take their exp (see below)
            probs, log_norm = logits, logits.new_zeros(logits.shape[0])
        else:  # raw logits: one fused softmax pass gives the probabilities and the normaliser
            probs, log_norm = _normalise(logits, work)
    raw = None  # the model's logits at the history ids, while penalised ones stand in the row
    if penalised:
        with phase("penalty"):
            raw = penalize_repeats(logits, history, repetition_penalty)
            if strategy != "greedy" and temperature == 1.0:  # weights from the penalised logits (see below)
                probs = torch.softmax(logits, dim=1)
    if strategy == "greedy":
        with phase("mask"):
            if bias is None:
                bias = torch.zeros_like(keep).masked_fill_(keep <= 0, float("-inf"))
            masked = logits.add_(bias)  # allowed columns add exactly 0.0, so the chosen logit is unchanged
        with phase("choose"):
            chosen = block_argmax(masked)
    elif strategy in DRAWS:
        with phase("mask"):  # penalised logits are no longer log-probs: their weights are a softmax's
            weights = _masked_weights(logits, keep, temperature, probs, work, log_probs=normalised and raw is None)
        filtered = strategy != "sample" or min_p > 0
        with phase("filter+choose" if filtered and not (strategy == "top_p" and top_p >= 1.0) else "choose"):
            chosen = DRAWS[strategy](weights, top_k, top_p, min_p, generator, work)
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    if raw is not None:
        logits.scatter_(1, history, raw)
    return chosen, logits.gather(1, chosen.unsqueeze(1)).squeeze(1) - log_norm


Draw = Callable[[Tensor, int, float, float, torch.Generator | None, Workspace], Tensor]
"""(R, W) masked weights, top_k, top_p, min_p, generator, workspace -> (R,) drawn columns. The filters run in
Hugging Face's order: top-k, then top-p over what top-k kept, then min_p (see the module's docstring)."""


def draw_sample(
    weights: Tensor, top_k: int, top_p: float, min_p: float, generator: torch.Generator | None, work: Workspace
) -> Tensor:
    if min_p > 0:
        weights = drop_below_min_p(weights, min_p)
    return block_sample(weights, generator)[0]


def draw_top_k(
    weights: Tensor, top_k: int, top_p: float, min_p: float, generator: torch.Generator | None, work: Workspace
) -> Tensor:
    if min_p > 0:
        weights = drop_below_min_p(weights, min_p)
    return top_k_sample(weights, top_k, generator, work.get("scratch", weights))


def draw_top_p(
    weights: Tensor, top_k: int, top_p: float, min_p: float, generator: torch.Generator | None, work: Workspace
) -> Tensor:
    if top_p >= 1.0:
        return draw_sample(weights, top_k, top_p, min_p, generator, work)
    budget = None
    if min_p > 0:  # min_p only cuts the nucleus: measure it on the mass before the cut
        budget = weights.sum(dim=1, keepdim=True).mul_(top_p)
        weights = drop_below_min_p(weights, min_p)
    return nucleus_sample(weights, top_p, generator, work.get("scratch", weights), budget)


def draw_top_k_top_p(
    weights: Tensor, top_k: int, top_p: float, min_p: float, generator: torch.Generator | None, work: Workspace
) -> Tensor:
    return draw_top_p(keep_top_k(weights, top_k), top_k, top_p, min_p, generator, work)


DRAWS: dict[str, Draw] = {
    "sample": draw_sample,
    "top_k": draw_top_k,
    "top_p": draw_top_p,
    "top_k_top_p": draw_top_k_top_p,  # the k best, then the nucleus of that renormalised set
}
SAMPLING = tuple(DRAWS)  # the strategies that draw (min_p applies to these)
STRATEGIES = ("greedy", *DRAWS, "beam")  # greedy: in choose; beam: its own loop in decoding


def pick_tokens(
    log_probs: Tensor,
    allowed: Tensor,
    strategy: str,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 0.9,
    generator: torch.Generator | None = None,
    min_p: float = 0.0,
) -> Tensor:
    """(R, V) log-probs (or logits) and a broadcastable bool mask of allowed tokens -> (R,) chosen token ids."""
    pad = padded_size(log_probs.shape[1]) - log_probs.shape[1]
    logits = F.pad(log_probs.float(), (0, pad), value=float("-inf"))
    keep = F.pad(allowed.reshape(-1, allowed.shape[-1]).to(logits.dtype), (0, pad))
    return choose(logits, keep, strategy, temperature, top_k, top_p, generator, min_p=min_p)[0]
