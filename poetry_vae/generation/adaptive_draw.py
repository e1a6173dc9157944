"""Greedy, sampling and top-p draws from an adaptive softmax that make its tails only for the rows that need them.

A tail character v of cluster c has the log-prob h_c + t_v: h_c the cluster's entry in the head, t_v <= 0 its
log-prob inside the tail. At a temperature T <= 1 its weight exp((h_c + t_v) / T) is therefore at most
U_c = exp(h_c / T), and so is the allowed mass of the whole cluster (sum_v q_v^(1/T) <= sum_v q_v = 1). The head
alone (the shortlist and one entry a cluster: 1,002 of the flagship's 8,621 columns) bounds all a tail can add:

- greedy: the best allowed shortlist character is the row's argmax unless some cluster's h_c exceeds it; then
  that cluster's tail alone, cluster after cluster (tail ids come after the shortlist's and each cluster's after
  the one before, so a tie keeps the first maximum, as ``argmax`` does);
- sampling and top-p, by rejection: draw from the envelope [shortlist weights; U_c]. A drawn cluster makes that
  cluster's tail and draws inside it, accepted with probability A_c / U_c (its allowed mass over its bound); the
  draw then follows the whole row's tempered law exactly. Top-p then keeps a draw j iff the mass strictly heavier
  than it is below top_p x the row's mass Z. Z lies in [sum w, sum w + sum U] (exactly its upper end at T = 1
  when no tail character is banned), and a cluster holds no character heavier than w_j when its bound is no
  heavier, at most its bound else; so most rows decide from the head (a shortlist draw under a heavier bound is
  accepted when it passes with the bound counted whole), and a draw inside a cluster decides the same way with
  that cluster made and the others bounded; the rows left make their whole row and decide there. Rejected rows
  draw again from the envelope, then from the whole row (``sampling.nucleus_sample``); a draw rejected inside a
  made cluster draws again from the envelope with that cluster's bound replaced by its characters' exact weights
  (adaptive rejection sampling), so below T = 1, where most cluster draws are rejected, few of them cost a whole
  row.

Every decision is exact, so the law is the one :func:`~.sampling.choose` draws from (``tests/test_generation.py``
compares token frequencies). On the flagship (top-p 0.9, T = 1) 15% of the rows at a step make the 2,000-character
cluster alone and 8% their whole row (docs/decoding.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from poetry_vae.generation.request import DecodeRequest
from poetry_vae.generation.sampling import (
    EXP_SAFE,
    Phase,
    Workspace,
    _masked_weights,
    _mass_above,
    _uniform,
    _weight_above,
    block_sample,
    exp_weights,
    few_banned,
    nucleus_sample,
)
from poetry_vae.model.stepper import LogitStepper, padded_size

HEAD_ROUNDS = 2  # envelope rounds for rejected rows before they draw from their whole row
ROW_QUANTUM = 32  # rows made whole are projected in multiples of this (see _whole_rows)
# a cluster draw is finished with its cluster's tail alone when the cluster holds at most this share of the tails'
# columns; a larger one costs nearly a whole row, which the row's other steps make anyway (_finish_in_clusters)
CLUSTER_ALONE_SHARE = 0.5


def applies(stepper: LogitStepper, request: DecodeRequest, device: torch.device) -> bool:
    """Whether this module draws the step: an adaptive softmax (alone or fused by cluster) on a CPU (on a GPU the
    whole row is one kernel, and picking rows out would cost synchronisations), greedy, or sampling / top-p at
    T <= 1 without min_p."""
    fused_whole = stepper.lm_part is not None and not stepper.by_cluster  # its normaliser needs every tail
    if not stepper.adaptive or fused_whole or device.type != "cpu":
        return False
    if request.strategy == "greedy":
        return True
    return request.strategy in ("sample", "top_p") and request.temperature <= 1.0 and request.min_p == 0.0


def choose_lazily(
    stepper: LogitStepper, rows: slice, keep: Tensor, bias: Tensor | None, request: DecodeRequest,
    generator: torch.Generator | None, buffer: Tensor, work: Workspace, phase: Phase,
) -> tuple[Tensor, Tensor]:
    """The step's (n,) chosen ids and their (unconstrained) log-probs for ``rows`` after ``stepper.advance``;
    ``keep`` the rows' 0/1 mask (n or 1, padded V), ``buffer`` (n, padded V) room for whole rows."""
    with phase("model step"):
        head = stepper.head_log_probs(rows)
    if request.strategy == "greedy":
        return _greedy(stepper, rows, head, keep, bias, phase)
    top_p = request.top_p if request.strategy == "top_p" else 1.0
    return _draw(stepper, rows, head, keep, request.temperature, top_p, generator, buffer, work, phase)


def _row_ids(rows: slice, n: int, device: torch.device) -> Tensor:
    return torch.arange(rows.start or 0, (rows.start or 0) + n, device=device)


def _picked_rows(rows: slice, which: Tensor, n: int, device: torch.device) -> tuple[slice | Tensor, Tensor]:
    """The block's rows ``which`` (indices within the block of ``n``) as the stepper's row ids, padded to a whole
    number of ROW_QUANTUM rows (the first repeated): a bf16 matmul compiles a kernel for each new row count, which
    costs more than the rows themselves. Returns the ids (the block itself when every row is picked) and the
    padded ``which``."""
    if len(which) == n:  # every row: the block as it is, with no rows picked out
        return rows, which
    padded = min(n, -(-len(which) // ROW_QUANTUM) * ROW_QUANTUM)
    which = torch.cat([which, which[:1].expand(padded - len(which))])
    return _row_ids(rows, n, device)[which], which


def _whole_rows(
    stepper: LogitStepper, rows: slice, which: Tensor, head: Tensor, buffer: Tensor, phase: Phase
) -> Tensor:
    """The full log-probs (k, padded V) of the block's rows ``which`` (indices within the block)."""
    n, k = head.shape[0], len(which)
    with phase("model step"):
        if k == n:  # every row: the block as it is
            return stepper.project(rows, buffer, head)
        ids, padded = _picked_rows(rows, which, n, head.device)
        return stepper.project(ids, buffer[: len(padded)], head[padded])[:k]


def _cluster_rows(stepper: LogitStepper, rows: slice, which: Tensor, head: Tensor, cluster: int) -> Tensor:
    """One cluster's log-probs (k, its size) for the block's rows ``which``: that cluster's tail alone."""
    ids, padded = _picked_rows(rows, which, head.shape[0], head.device)
    return stepper.cluster_log_probs(ids, cluster, head[padded])[: len(which)]


def _greedy(
    stepper: LogitStepper, rows: slice, head: Tensor, keep: Tensor, bias: Tensor | None, phase: Phase
) -> tuple[Tensor, Tensor]:
    short = stepper.shortlist
    with phase("mask"):
        if bias is None:
            bias = torch.zeros_like(keep).masked_fill_(keep <= 0, float("-inf"))
        masked = head[:, :short] + bias[:, :short]
    with phase("choose"):
        best, chosen = masked.max(dim=1)
        log_prob = head.gather(1, chosen.unsqueeze(1)).squeeze(1)
    # a cluster whose own log-prob beats the best so far may hold a better character: that cluster's tail alone,
    # cluster after cluster (a later cluster's columns come later, so a tie keeps the first maximum, as argmax)
    for c, (start, stop) in enumerate(stepper.tail_spans):
        open_ = (head[:, short + c] > best).nonzero().squeeze(1)
        if not len(open_):
            continue
        with phase("model step"):
            log_p = _cluster_rows(stepper, rows, open_, head, c)
        with phase("choose"):
            row_bias = bias[:, start:stop] if bias.shape[0] == 1 else bias[open_, start:stop]
            top, inner = (log_p + row_bias).max(dim=1)
            better = top > best[open_]
            won = open_[better]
            best[won] = top[better]
            chosen[won] = inner[better] + start
            log_prob[won] = log_p[better].gather(1, inner[better].unsqueeze(1)).squeeze(1)
    return chosen, log_prob


def _draw(
    stepper: LogitStepper, rows: slice, head: Tensor, keep: Tensor, temperature: float, top_p: float,
    generator: torch.Generator | None, buffer: Tensor, work: Workspace, phase: Phase,
) -> tuple[Tensor, Tensor]:
    n, short, device = head.shape[0], stepper.shortlist, head.device
    clusters = head.shape[1] - short
    nucleus = top_p < 1.0
    with phase("mask"):
        # the envelope: the shortlist's masked weights, then each cluster's bound U_c, as _masked_weights scales
        # log-probs (shifted, floored above exp's subnormal range); zero padding to whole column blocks
        width = padded_size(head.shape[1])
        envelope = work.get("envelope", buffer[:, :width])  # a buffer of the envelope's shape, reused
        envelope[:, head.shape[1] :] = 0.0
        exp_weights(head, temperature, envelope[:, : head.shape[1]], work.get("head_weights", head))
        banned = few_banned(keep[:, :short])
        if banned is None:
            envelope[:, :short].mul_(keep[:, :short])
        else:
            envelope[:, :short].index_fill_(1, banned, 0.0)
        bounds = envelope[:, short : short + clusters]
        spare = envelope[:, :short].sum(dim=1)  # the shortlist's allowed mass
        z_high = spare + bounds.sum(dim=1)
        z_low = spare
        if temperature == 1.0:  # with no tail character banned, each cluster's mass is exactly its bound
            z_low = spare + torch.where((keep[:, short : stepper.vocab_size] > 0).all(dim=1), bounds.sum(dim=1), 0.0)
        whole = envelope.amax(dim=1) < EXP_SAFE  # every allowed weight near the floor: the whole row, exactly
    chosen = torch.empty(n, dtype=torch.long, device=device)
    log_prob = torch.empty(n, device=device)
    # an undecided draw, kept for the row: a column, or -2 - c for a draw of cluster c's entry; -1 none
    candidate = torch.full((n,), -1, dtype=torch.long, device=device)
    pending = ~whole
    with phase("filter+choose"):
        for round_ in range(HEAD_ROUNDS):
            # the first round draws for every row (cheaper than picking the pending ones out), then ignores
            # the rows already set for their whole row
            ids = torch.arange(n, device=device) if round_ == 0 else pending.nonzero().squeeze(1)
            if not len(ids):
                break
            rows_env = envelope if round_ == 0 else envelope[ids]
            drawn, _ = block_sample(rows_env, generator)
            weight = rows_env.gather(1, drawn.unsqueeze(1))
            clear = (drawn < short) & (rows_env[:, short : short + clusters] <= weight).all(dim=1)  # no tail
            if nucleus:  # character is heavier; the bounds weigh no more than the draw there, adding nothing above
                # a narrow row: one pass, not _mass_above's blocks of rows. A cluster bound heavier than the draw
                # counts whole in `above`: the most its heavier characters can weigh, so a shortlist draw that
                # passes with it is in the nucleus whatever the cluster holds; it rejects only a clear draw
                above = _weight_above(rows_env, weight, work.get("envelope_scratch", rows_env))
                accept = (drawn < short) & (above < top_p * z_low[ids])
                reject = clear & (above >= top_p * z_high[ids])
            else:  # any shortlist draw stands; a cluster's is finished on the whole row
                accept, reject = drawn < short, torch.zeros_like(clear)
            live = pending[ids]
            accept &= live
            unsure = ~(accept | reject) & live
            done = ids[accept]
            chosen[done] = drawn[accept]
            log_prob[done] = head[done, drawn[accept]]
            candidate[ids[unsure]] = torch.where(drawn[unsure] < short, drawn[unsure], short - 2 - drawn[unsure])
            pending[done] = False
            pending[ids[unsure]] = False
            whole[ids[unsure]] = True
        whole |= pending  # rejected in every head round
    _finish_in_clusters(stepper, rows, head, envelope, keep, candidate, whole, chosen, log_prob, temperature, top_p,
                        generator, phase)  # fmt: skip
    which = whole.nonzero().squeeze(1)
    if len(which):
        logits = _whole_rows(stepper, rows, which, head, buffer, phase)
        with phase("mask"):
            row_keep = keep if keep.shape[0] == 1 else keep[which]
            weights = _masked_weights(logits, row_keep, temperature, logits, work, log_probs=True)
        with phase("filter+choose"):
            picked = _settle(weights, logits, head[which], row_keep, candidate[which], short, stepper.tail_spans,
                             temperature, top_p, generator, work)
            chosen[which] = picked
            log_prob[which] = logits.gather(1, picked.unsqueeze(1)).squeeze(1)
    return chosen, log_prob


def _settle(
    weights: Tensor, logits: Tensor, head: Tensor, keep: Tensor, candidate: Tensor, short: int,
    spans: list[tuple[int, int]], temperature: float, top_p: float, generator: torch.Generator | None,
    work: Workspace,
) -> Tensor:
    """Rows drawn on their whole row: finish each undecided envelope draw (``candidate``: a column, -2 - c for
    cluster c's entry in the head, or -1 for none), then test it; rows left without an accepted draw draw
    afresh."""
    candidate = candidate.clone()
    for c, (start, stop) in enumerate(spans):
        inside = (candidate == -2 - c).nonzero().squeeze(1)
        if not len(inside):
            continue
        tail = weights.new_zeros(len(inside), padded_size(stop - start))
        tail[:, : stop - start] = weights[inside, start:stop]
        cluster_keep = keep[:, start:stop] if keep.shape[0] == 1 else keep[inside, start:stop]
        mass = head[inside, short + c : short + c + 1]
        drawn, kept = _draw_in_cluster(tail, logits[inside, start:stop], mass, cluster_keep, temperature, generator)
        candidate[inside] = torch.where(kept, drawn + start, -1)
    if top_p < 1.0:
        above = _mass_above(weights, candidate.clamp(min=0), work.get("scratch", weights))
        candidate[(candidate >= 0) & (above >= top_p * weights.sum(dim=1))] = -1
    fresh = (candidate < 0).nonzero().squeeze(1)
    if len(fresh):
        rows = weights if len(fresh) == len(candidate) else weights[fresh]
        candidate[fresh] = nucleus_sample(rows, top_p, generator) if top_p < 1.0 else block_sample(rows, generator)[0]
    return candidate


def _draw_in_cluster(
    weights: Tensor, log_probs: Tensor, mass: Tensor, keep: Tensor, temperature: float,
    generator: torch.Generator | None, unbanned: bool = False, bound: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """A draw inside one cluster for k rows and whether it stands. ``weights`` (k, padded size): the cluster's
    masked tempered weights; ``log_probs`` (k, size) its characters', ``mass`` (k, 1) the cluster's entry in the
    head. The draw is kept with probability A_c / U_c: the cluster's allowed tempered mass over its bound, in the
    log domain (<= 1 at T <= 1); 1 at T = 1 when ``unbanned`` (no row bans any of its characters). ``bound`` (k,
    1): U_c as the envelope weighed it, in the weights' scale; then A_c / U_c is the weights' total over it, with
    no pass over the log-probs (a row made whole may have had its weights rescaled, so it passes none)."""
    drawn, total = block_sample(weights, generator)
    if unbanned and temperature == 1.0:
        return drawn, torch.ones_like(drawn, dtype=torch.bool)
    if bound is not None:
        ratio = total.unsqueeze(1) / bound
    else:
        inner = (log_probs - mass) / temperature
        ratio = (inner.exp_() * keep).sum(dim=1, keepdim=True)
    return drawn, (_uniform(len(drawn), weights, generator) < ratio).squeeze(1)


def _finish_in_clusters(
    stepper: LogitStepper, rows: slice, head: Tensor, envelope: Tensor, keep: Tensor, candidate: Tensor,
    whole: Tensor, chosen: Tensor, log_prob: Tensor, temperature: float, top_p: float,
    generator: torch.Generator | None, phase: Phase,
) -> None:
    """Rows whose envelope draw fell on a cluster's entry, finished with that cluster's tail alone where it
    decides: the draw inside the cluster and its acceptance as on the whole row (:func:`_settle`); then top-p's
    test, with every other cluster c' bounded by U_c' (its characters heavier than the draw weigh nothing when
    U_c' is no heavier, at most U_c' else; at T = 1 with none of its characters banned it holds exactly U_c').
    A rejected draw draws again with the envelope tightened by the made cluster (:func:`_redraw_rejected`).
    Decided rows leave ``whole``; a row whose draw top-p rejects draws afresh on the whole row, an undecided one
    is tested there (its column in ``candidate``), and one whose redraw fell on another cluster's bound is
    finished inside that cluster there (-2 - c in ``candidate``)."""
    short, spans = stepper.shortlist, stepper.tail_spans
    shared = keep.shape[0] == 1
    # a mask shared by every row: which clusters it leaves whole (then no acceptance test at T = 1)
    unbanned = [bool((keep[0, a:b] > 0).all()) for a, b in spans] if shared else [False] * len(spans)
    tails = stepper.vocab_size - short
    for c, (start, stop) in enumerate(spans):
        if (stop - start) > CLUSTER_ALONE_SHARE * tails:  # most of the tails: hardly cheaper than the whole row
            continue
        which = ((candidate == -2 - c) & whole).nonzero().squeeze(1)
        if not len(which):
            continue
        with phase("model step"):
            log_p = _cluster_rows(stepper, rows, which, head, c)
        with phase("filter+choose"):
            cluster_keep = keep[:, start:stop] if shared else keep[which, start:stop]
            weights = log_p.new_zeros(len(which), padded_size(stop - start))
            exp_weights(log_p, temperature, weights[:, : stop - start])
            banned = few_banned(cluster_keep)  # none banned: empty
            if banned is not None:
                weights.index_fill_(1, banned, 0.0)
            else:
                weights[:, : stop - start].mul_(cluster_keep)
            mass = head[which, short + c : short + c + 1]
            bound = envelope[which, short + c : short + c + 1]
            drawn, accept = _draw_in_cluster(weights, log_p, mass, cluster_keep, temperature, generator, unbanned[c],
                                             bound)  # fmt: skip
            draw = _ClusterDraw(drawn + start, weights.gather(1, drawn.unsqueeze(1)),
                                log_p.gather(1, drawn.unsqueeze(1)).squeeze(1), accept, torch.full_like(drawn, -1))
            redraw = not bool(accept.all())  # T < 1, or banned characters
            if redraw or top_p < 1.0:  # the rows' envelope, read by the redraw and by top-p's test
                rows_env = envelope[which, : short + len(spans)]  # a copy: this cluster's bound is zeroed below
                shortlist = rows_env[:, :short]
                bounds = rows_env[:, short:]
                bounds[:, c] = 0.0  # this cluster's characters are weighed exactly, in weights
            if redraw:
                _redraw_rejected(draw, shortlist, weights[:, : stop - start], bounds, head[which], log_p, start,
                                 generator)  # fmt: skip
            accept, weight = draw.accept, draw.weight
            undecided = torch.zeros_like(accept)
            if top_p < 1.0:
                above = _weight_above(shortlist, weight) + _weight_above(weights, weight)
                above_high = above + _weight_above(bounds, weight)
                z_base = shortlist.sum(dim=1) + weights.sum(dim=1)
                z_low = z_base
                if temperature == 1.0:  # a cluster with none of its characters banned holds exactly its bound
                    if shared:
                        z_low = z_base + bounds[:, [i for i, whole_ in enumerate(unbanned) if whole_]].sum(dim=1)
                    else:
                        row_keep = keep[which]
                        exact = torch.stack([(row_keep[:, a:b] > 0).all(dim=1) for a, b in spans], dim=1)
                        z_low = z_base + (bounds * exact).sum(dim=1)
                z_high = z_base + bounds.sum(dim=1)
                inside = above_high < top_p * z_low
                outside = above >= top_p * z_high
                undecided = accept & ~inside & ~outside
                accept = accept & inside
            done = which[accept]
            chosen[done] = draw.column[accept]
            log_prob[done] = draw.log_p[accept]
            whole[done] = False
            # an undecided draw is tested on the whole row; one on another cluster's bound is finished inside that
            # cluster there, as a first draw on it is (_settle); any other row draws afresh
            candidate[which] = torch.where(undecided, draw.column, torch.where(draw.elsewhere >= 0,
                                                                             -2 - draw.elsewhere, -1))  # fmt: skip
            candidate[done] = -1


@dataclass
class _ClusterDraw:
    """The draws of the rows finished in one cluster: each row's column in the vocabulary, its weight (k, 1) and
    log-prob, whether it stands (before top-p's test), and the cluster whose bound a redraw fell on (-1 none)."""

    column: Tensor
    weight: Tensor
    log_p: Tensor
    accept: Tensor
    elsewhere: Tensor


def _redraw_rejected(
    draw: _ClusterDraw, shortlist: Tensor, weights: Tensor, bounds: Tensor, head: Tensor, log_p: Tensor, start: int,
    generator: torch.Generator | None,
) -> None:
    """Rows whose draw inside the cluster was rejected draw again, from their envelope with the cluster's bound
    replaced by its characters' exact weights (adaptive rejection sampling: the envelope is tightened where a
    rejection showed it loose, and every accepted draw still follows the row's law). A draw in the shortlist or
    in this cluster now weighs exactly what the law gives it, so it stands; one on another cluster's bound is
    finished inside that cluster on the whole row. ``weights`` (k, size): the cluster's tempered weights,
    ``bounds`` (k, clusters) with this cluster's zeroed, ``head`` (k, shortlist + clusters) the rows' head
    log-probs, ``log_p`` (k, size) the cluster's; ``draw`` is updated in place."""
    redo = (~draw.accept).nonzero().squeeze(1)
    short, size = shortlist.shape[1], weights.shape[1]
    parts = (shortlist[redo], weights[redo], bounds[redo])
    refined = shortlist.new_zeros(len(redo), padded_size(short + size + bounds.shape[1]))
    refined[:, : short + size + bounds.shape[1]] = torch.cat(parts, dim=1)
    j, total = block_sample(refined, generator)
    in_short, other = j < short, j >= short + size
    inner = (j - short).clamp(0, size - 1)
    draw.column[redo] = torch.where(in_short, j, start + inner)
    draw.weight[redo] = refined.gather(1, j.unsqueeze(1))
    from_head = head[redo].gather(1, j.clamp(max=short - 1).unsqueeze(1)).squeeze(1)
    draw.log_p[redo] = torch.where(in_short, from_head, log_p[redo].gather(1, inner.unsqueeze(1)).squeeze(1))
    drawable = total > 0  # a row with no allowed weight left goes to its whole row
    draw.accept[redo] = ~other & drawable
    draw.elsewhere[redo[other & drawable]] = (j - short - size)[other & drawable]
