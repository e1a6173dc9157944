"""A decoding step for inference: the same function as :meth:`PoemModel.step`, with everything that does not
change between steps computed once per batch.

In eval mode the decoder's input at a step is ``highway(embed(token))`` (dropout is off), so the first LSTM
layer's input gates ``W_ih [highway(embed(v)); z] + b`` split into a per-token table (V, 4H), built once, and a
per-poem ``z`` part (R, 4H), also built once. A step is then a row gather, the recurrent matmuls, the gate
non-linearities and one output matmul (with ``z_to_output``, z's share of it is also built once per poem, as a
per-row bias), and it returns raw logits (no log-softmax): the sampler normalises
once, over the row it actually needs. Columns are padded to a multiple of ``BLOCK`` with ``-inf`` logits so
block-wise reductions can view a row as (blocks, BLOCK) without copies.

``stepper(prev)`` is both halves at once; the sampler calls them apart, :meth:`LogitStepper.advance` (the
recurrence, every row) and then :meth:`LogitStepper.project` (the output layer) for one block of rows at a time.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from poetry_vae.model.decoder import cluster_spans
from poetry_vae.model.table_cache import cached_tables

BLOCK = 64  # column block of the two-level reductions in generation.sampling


def padded_size(vocab_size: int) -> int:
    return -(-vocab_size // BLOCK) * BLOCK


def _split_z(weight: Tensor, hidden: int, z_dim: int) -> tuple[Tensor, Tensor | None]:
    """An output layer's (out, H [+ Z] [+ D]) weight -> what a step multiplies ([h; position code]: the h columns
    and any after z's) and z's columns transposed (Z, out), which fold into a per-row bias once per request."""
    if not z_dim:
        return weight, None
    z_cols = slice(hidden, hidden + z_dim)
    kept = torch.cat([weight[:, :hidden], weight[:, z_cols.stop :]], dim=1)
    return kept, weight[:, z_cols].t().contiguous()


def _z_bias(z: Tensor | None, z_weight: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """A bias with z's share of the output folded in, per row (R, out): constant over a poem's steps."""
    if z_weight is None or z is None:
        return bias
    z_part = z @ z_weight
    return z_part if bias is None else z_part + bias


def _split_rhyme(weight: Tensor, rhyme_dim: int) -> tuple[Tensor, Tensor | None]:
    """(out, in) -> the columns a step always multiplies, and the rhyme's (rhyme_dim, out), or None."""
    if not rhyme_dim:
        return weight, None
    return weight[:, :-rhyme_dim], weight[:, -rhyme_dim:].t().contiguous()


def _bias_rows(bias: Tensor | None, rows: slice | Tensor) -> Tensor | None:
    """A bias's part for ``rows``: one shared (out,) bias as it is, a per-row (R, out) one (z folded in) sliced."""
    return bias if bias is None or bias.dim() == 1 else bias[rows]


def _affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """fp32 ``x @ weight + bias``; in bf16 the product is widened before the (fp32) bias is added."""
    if weight.dtype == torch.float32:
        return x @ weight if bias is None else torch.addmm(bias, x, weight)
    product = (x @ weight).float()
    return product if bias is None else product.add_(bias)


class LogitStepper:
    """Eval-mode decoder of ``rows`` rows: ``stepper(prev)`` -> (rows, padded V) logits, state kept inside.

    Build it under ``torch.no_grad``/``inference_mode``; the model's weights are read once, at construction.
    A model without this decoder's layout (or in training mode) falls back to :meth:`PoemModel.step`.
    """

    def __init__(
        self, model: nn.Module, z: Tensor | None, rows: int, form: int | None = None, dtype: torch.dtype = torch.float32
    ) -> None:
        self.model = model
        self.buffers: dict[str, Tensor] = {}  # the adaptive softmax's per-tail results, reused step after step
        # of the matmuls, the recurrence's and the output layer's (bf16 where it pays); the LSTM state and the logits
        # are always fp32
        self.dtype = dtype
        self.z = z
        # every row of a request has the same form; None for a model trained without form tags
        device = next(model.parameters()).device
        self.form = None if form is None else torch.full((rows,), form, dtype=torch.long, device=device)
        self.vocab_size = model.cfg.vocab_size
        self.width = padded_size(self.vocab_size)
        dec = getattr(model, "decoder", None)  # any model with cfg, initial_state and step decodes (the slow path)
        output_layers = (nn.Linear, nn.AdaptiveLogSoftmaxWithLoss)
        laid_out = dec is not None and isinstance(dec.out, output_layers) and not dec.training
        # a fused language model (lm_fusion) steps beside the decoder in a stepper of its own; each projection
        # mixes the two, row block by row block as for one model
        lm = getattr(model, "lm", None)
        self.lm_part = LogitStepper(lm, None, rows, form, dtype) if lm is not None and laid_out else None
        self.fusion = dec.fusion.detach() if self.lm_part is not None else None
        self.state = dec.initial_state(z, rows) if self.lm_part is not None else model.initial_state(z, rows)
        self.position = 0  # the next step's index: position codes, places and the slow path's model.step read it
        cfg = model.cfg
        self.line_length = getattr(cfg, "line_length", 0)
        # a rhyme pointer's anchors: the last characters of lines 1 and 2, pad until written
        self.anchors = (
            torch.full((rows, 2), cfg.pad_id, dtype=torch.long, device=device) if getattr(cfg, "rhyme_dim", 0) else None
        )
        self.laid_out = laid_out  # this decoder's steps run here (else through model.step)
        self.fast = laid_out
        if laid_out:
            self._prepare(model, z)
        # a fusion by cluster mixes each part of the two adaptive softmaxes and normalises it (model.fusion)
        self.by_cluster = self.lm_part is not None and bool(getattr(cfg, "fusion_by_cluster", False))
        # what a step returns is already log-probs (the slow path's model.step, the adaptive softmax, a fusion by
        # cluster), not logits; a fused step's mixture over the whole vocabulary is not
        self.normalised = (not laid_out or self.adaptive) and (self.lm_part is None or self.by_cluster)

    def _prepare(self, model: nn.Module, z: Tensor | None) -> None:
        dec = model.decoder
        # the weight-only tables, shared by every stepper of this model (made again only when its weights change)
        form = None if self.form is None else int(self.form[0])
        z_out = z is not None and bool(dec.z_output)  # z beside the output: its columns split off
        tables = cached_tables(model, ("stepper", form, self.dtype, z_out), lambda: self._weight_tables(model, z_out))
        vars(self).update(tables)
        # what a request's codes add: z's share of the first layer's gates, of the output layers' biases
        self.z_gates = z @ self.z_gates_w if dec.z_input else None  # (R, 4H), constant per poem
        self.positions = bool(dec.positions)  # a position code beside the output layer's input, made step by step
        if self.adaptive:
            self.head_b = _z_bias(z, self.head_z, self.head_b)
            self.tail_down_b = _z_bias(z, self.tail_down_z, self.tail_down_b)
        else:
            self.out_b = _z_bias(z, self.out_z, self.out_b).to(self.dtype)  # (Vp,), or (R, Vp) with z folded in
        self.spare = (torch.empty_like(self.state[0]), torch.empty_like(self.state[1]))  # the next step's state
        self.logits: Tensor | None = None
        self.hidden: Tensor | None = None  # the output layer's input at the last advance, in self.dtype
        self.rhyme: Tensor | None = None  # and the rhyme it reads there (None but at the rhyme steps)

    def _weight_tables(self, model: nn.Module, z_out: bool) -> dict[str, Any]:
        """Everything a step reads that the weights alone decide (the attributes :meth:`_prepare` sets)."""
        dec, lstm = model.decoder, model.decoder.lstm
        emb_dim = model.cfg.embed_dim
        w_ih0 = lstm.weight_ih_l0
        vocab = torch.arange(self.vocab_size, device=w_ih0.device)
        form = None if self.form is None else self.form[:1].expand(self.vocab_size)
        table = model._embed(vocab.unsqueeze(1), form).squeeze(1)  # (V, E): highway(embed(v)), the token input
        hidden = lstm.hidden_size
        # PyTorch's gate order (i, f, g, o) -> (i, f, o, g): the g gates last, their pre-activations doubled (_cell)
        order = torch.cat([torch.arange(2 * hidden), torch.arange(3 * hidden, 4 * hidden),
                           torch.arange(2 * hidden, 3 * hidden)]).to(w_ih0.device)  # fmt: skip
        bias0 = (lstm.bias_ih_l0 + lstm.bias_hh_l0)[order]
        double_g = torch.ones(4 * hidden, device=w_ih0.device)
        double_g[3 * hidden :] = 2.0  # the g gates' pre-activations doubled, as _cell reads them
        z_cols = slice(emb_dim, emb_dim + (model.cfg.latent_dim if dec.z_input else 0))
        t: dict[str, Any] = {
            "token_gates": torch.addmm(bias0, table, w_ih0[order, :emb_dim].t()) * double_g,  # (V, 4H)
            "z_gates_w": w_ih0[order, z_cols].t() * double_g if dec.z_input else None,  # (Z, 4H)
            # (places, 4H): each place code's share of the first layer's gates
            "place_gates": dec.place_table.weight @ w_ih0[order, z_cols.stop :].t() * double_g if dec.places else None,
            "w_hh0": (lstm.weight_hh_l0[order].t() * double_g).contiguous().to(self.dtype),
            # upper layers: one matmul over [input; h] with the two weight matrices stacked
            "upper": [self._stacked_layer(lstm, k, order, double_g) for k in range(1, lstm.num_layers)],
            # z beside the LSTM output (Skip-VAE): each output matmul split into the h part and z's constant part
            "z_at_output": bool(dec.z_output),
            # the rhyme's input columns (the output layer's last) are zero but at two steps: multiplied only there
            "rhyme_dim": dec.rhyme_dim,
            "adaptive": isinstance(dec.out, nn.AdaptiveLogSoftmaxWithLoss),
        }
        z_dim = model.cfg.latent_dim if z_out else 0
        if t["adaptive"]:
            t.update(self._adaptive_tables(dec.out, hidden, z_dim, dec.rhyme_dim))
        else:
            out_w, t["out_z"] = _split_z(dec.out.weight, hidden, z_dim)
            out_w, t["rhyme_out"] = _split_rhyme(out_w, dec.rhyme_dim)
            pad = self.width - self.vocab_size
            t["out_w"] = F.pad(out_w, (0, 0, 0, pad)).t().contiguous().to(self.dtype)  # (H, Vp); zero padding rows
            t["out_b"] = F.pad(dec.out.bias, (0, pad), value=float("-inf"))  # -inf logits in the padding columns
            t["out_z"] = None if t["out_z"] is None else F.pad(t["out_z"], (0, pad))
        return t

    def _stacked_layer(self, lstm: nn.LSTM, k: int, order: Tensor, double_g: Tensor) -> tuple[Tensor, Tensor]:
        """Layer ``k``'s ([input; h] -> gates) weight, transposed, and its bias, in the stepper's gate layout."""
        weight = torch.cat([getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")], dim=1)[order]
        bias = (getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}"))[order]
        return (weight.t() * double_g).contiguous().to(self.dtype), bias * double_g

    def _adaptive_tables(self, out: nn.AdaptiveLogSoftmaxWithLoss, hidden: int, z_dim: int, rhyme_dim: int
                         ) -> dict[str, Any]:  # fmt: skip
        """The head, and the tails' first (down-)projections stacked into one matmul."""
        head_w, head_z = _split_z(out.head.weight, hidden, z_dim)
        head_w, rhyme_head = _split_rhyme(head_w, rhyme_dim)
        tail_down, tail_down_z = _split_z(torch.cat([tail[0].weight for tail in out.tail]), hidden, z_dim)
        tail_down, rhyme_tail = _split_rhyme(tail_down, rhyme_dim)
        return {
            "head_w": head_w.t().contiguous().to(self.dtype),
            "head_b": out.head.bias,
            "head_z": head_z,
            "rhyme_head": rhyme_head,
            "shortlist": out.shortlist_size,
            "tail_down": tail_down.t().contiguous().to(self.dtype),  # (H, sum of tail dims)
            "tail_down_b": None,
            "tail_down_z": tail_down_z,
            "rhyme_tail": rhyme_tail,
            "tail_splits": [tail[0].out_features for tail in out.tail],
            "tail_up": [tail[1].weight.t().contiguous().to(self.dtype) for tail in out.tail],
            "tail_spans": cluster_spans(out),
        }

    def head_log_probs(self, rows: slice | Tensor) -> Tensor:
        """An adaptive softmax's head for ``rows`` of the last :meth:`advance`: (rows, shortlist + clusters) fp32
        log-probs, the shortlist's characters first, then one entry per tail cluster (the cluster's mass). A fusion
        by cluster gives the two heads' normalised mixture."""
        head = self._head_logits(rows)
        if self.by_cluster:  # a * log_softmax(x) + b * log_softmax(y) differs from a * x + b * y by a row's constant
            a, b = self._fusion_weights()
            head.mul_(b).add_(self.lm_part._head_logits(rows), alpha=a)
        return torch.log_softmax(head, dim=1)

    def _head_logits(self, rows: slice | Tensor) -> Tensor:
        x = self.hidden[rows]
        head = _affine(x, self.head_w, _bias_rows(self.head_b, rows))
        if self.rhyme is not None:  # a rhyme step: the rhyme columns' share, in fp32
            head = head.addmm(self.rhyme[rows], self.rhyme_head)
        return head

    def _fusion_weights(self) -> tuple[float, float]:
        """The last advanced step's fusion weights (a, b)."""
        a, b = self.fusion[min(self.position - 1, self.fusion.shape[0] - 1)].tolist()
        return a, b

    def _adaptive_log_probs(self, rows: slice | Tensor, buffer: Tensor, head: Tensor | None = None) -> Tensor:
        """Full log-distribution of an adaptive softmax for ``rows`` (``head``: their :meth:`head_log_probs`, when
        already made), as ``AdaptiveLogSoftmaxWithLoss.log_prob`` (exact in fp32; in bf16 the matmuls run in bf16
        and everything after them in fp32). A fusion by cluster mixes each cluster's two tails inside it."""
        head = self.head_log_probs(rows) if head is None else head
        buffer[:, : self.shortlist] = head[:, : self.shortlist]
        tails = self._fused_tail_logits(rows)
        for i, (tail, (start, stop)) in enumerate(zip(tails, self.tail_spans, strict=True)):
            # into buffers reused step after step: fresh row-sized results page-fault their memory in again, which
            # costs as much as the arithmetic
            log = torch.ops.aten._log_softmax.out(tail, 1, False, out=self._buffer(f"log{i}", tail, stop - start,
                                                                                 torch.float32))
            torch.add(log, head[:, self.shortlist + i : self.shortlist + i + 1], out=buffer[:, start:stop])
        buffer[:, self.vocab_size :] = float("-inf")
        return buffer

    def cluster_log_probs(self, rows: slice | Tensor, cluster: int, head: Tensor) -> Tensor:
        """One tail cluster's log-probs (rows, its size) for ``rows`` of the last :meth:`advance`, as the whole row
        holds them: its entry in ``head`` (the rows' :meth:`head_log_probs`) plus the log-softmax of its tail (the
        two models' tails mixed first in a fusion by cluster). Only that cluster's tail is made."""
        (tail,) = self._fused_tail_logits(rows, only=cluster)
        at = self.shortlist + cluster
        return torch.log_softmax(tail, dim=1).add_(head[:, at : at + 1])

    def _fused_tail_logits(self, rows: slice | Tensor, only: int | None = None) -> list[Tensor]:
        """:meth:`_tail_logits`, with a fusion by cluster's two tails of each cluster mixed as logits (then normalised
        once, as the heads)."""
        tails = self._tail_logits(rows, only)
        if self.by_cluster:
            a, b = self._fusion_weights()
            for tail, lm_tail in zip(tails, self.lm_part._tail_logits(rows, only), strict=True):
                tail.mul_(b).add_(lm_tail, alpha=a)
        return tails

    def _tail_logits(self, rows: slice | Tensor, only: int | None = None) -> list[Tensor]:
        """Each tail cluster's fp32 logits for ``rows`` (buffers reused by the next call); ``only``: that cluster's
        alone."""
        down = _affine(self.hidden[rows], self.tail_down, _bias_rows(self.tail_down_b, rows))
        if self.rhyme is not None:
            down = down.addmm(self.rhyme[rows], self.rhyme_tail)
        tails = []
        downs = down.to(self.dtype).split(self.tail_splits, dim=1)
        for i, (down, up, (start, stop)) in enumerate(zip(downs, self.tail_up, self.tail_spans, strict=True)):
            if only is not None and i != only:
                continue
            logits = torch.matmul(down, up, out=self._buffer(f"tail{i}", down, stop - start, self.dtype))
            if logits.dtype != torch.float32:
                logits = self._buffer(f"tail{i}_fp32", down, stop - start, torch.float32).copy_(logits)
            tails.append(logits)
        return tails

    def _buffer(self, name: str, like: Tensor, columns: int, dtype: torch.dtype) -> Tensor:
        """A (rows of ``like``, ``columns``) buffer kept between steps: the first rows of one that grows to the
        most rows asked for (a block of rows, the whole batch, or the few rows whose tails a draw needs)."""
        rows = like.shape[0]
        buf = self.buffers.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != columns or buf.dtype != dtype:
            buf = self.buffers[name] = like.new_empty(rows, columns, dtype=dtype)
        return buf[:rows]

    @staticmethod
    def _cell(gates: Tensor, c: Tensor, h_out: Tensor, c_out: Tensor) -> Tensor:
        """LSTM cell on gates in (i, f, o, g) order with the g pre-activations doubled, in place: h and c written
        into ``h_out``/``c_out``. tanh(x) = 2 sigmoid(2x) - 1, so one sigmoid covers the whole row: on a CPU
        PyTorch's tanh costs several times a sigmoid an element (the cell 2.4x faster in all)."""
        hidden = c.shape[1]
        i, f, o, g = gates.sigmoid_().split(hidden, dim=1)
        g.mul_(2).sub_(1)
        torch.mul(f, c, out=c_out).addcmul_(i, g)
        return torch.mul(c_out, 2, out=h_out).sigmoid_().mul_(2).sub_(1).mul_(o)

    def __call__(self, prev: Tensor) -> Tensor:
        """(R,) previous tokens -> (R, padded V) logits of the next token (a buffer reused by the next call)."""
        if not self.laid_out:
            return self._slow_step(prev)
        self.advance(prev)
        if self.logits is None or self.logits.shape[0] != prev.shape[0]:
            self.logits = self.state[0].new_empty(prev.shape[0], self.width)
        return self.project(slice(None), self.logits)

    def _fuse(self, rows: slice | Tensor, own: Tensor) -> Tensor:
        """A fused step's ``rows``, in place of ``own`` (this decoder's logits or log-probs of them): a * log p_LM +
        b * log p_decoder over the vocabulary (the step's fusion weights; any sign), padding columns -inf;
        unnormalised, as logits are."""
        a, b = self._fusion_weights()
        v = self.vocab_size
        # the language model's rows into a buffer kept between steps: a fresh row-sized result every step
        # page-faults its memory in again
        lm = self.lm_part.project(rows, self._buffer("lm_rows", own, self.width, torch.float32))
        if not self.adaptive:
            own[:, :v] = torch.log_softmax(own[:, :v], dim=1)
        if not self.lm_part.normalised:
            lm[:, :v] = torch.log_softmax(lm[:, :v], dim=1)
        own[:, :v].mul_(b).add_(lm[:, :v], alpha=a)
        return own

    def advance(self, prev: Tensor) -> None:
        """The recurrent part of a step (fast path only): read (R,) previous tokens, update the state, and keep
        what the output layer reads; :meth:`project` then gives the logits of any rows."""
        self._note_anchors(prev)
        (h, c), (h_new, c_new) = self.state, self.spare
        gates = self.token_gates.index_select(0, prev)
        if self.z_gates is not None:
            gates += self.z_gates
        if self.place_gates is not None:
            gates += self.place_gates[min(self.position, self.place_gates.shape[0] - 1)]
        # the recurrence's matmuls in self.dtype (bf16 where it pays), the cell's arithmetic and the state in fp32
        if self.w_hh0.dtype == torch.float32:
            gates.addmm_(h[0], self.w_hh0)
        else:
            gates += h[0].to(self.dtype) @ self.w_hh0
        x = self._cell(gates, c[0], h_new[0], c_new[0])
        for k, (weight, bias) in enumerate(self.upper, start=1):
            inputs = torch.cat([x, h[k]], dim=1)
            x = self._cell(_affine(inputs.to(weight.dtype), weight, bias), c[k], h_new[k], c_new[k])
        self.state, self.spare = (h_new, c_new), (h, c)
        if self.positions:
            x = torch.cat([x, self.model.decoder.position_code(self.z, x.shape[0], self.position)], dim=1)
        self.rhyme = self._rhyme() if self.rhyme_dim else None
        self.position += 1
        self.hidden = x if self.dtype == torch.float32 else x.to(self.dtype)
        if self.lm_part is not None:
            self.lm_part.advance(prev)

    def project(self, rows: slice | Tensor, out: Tensor, head: Tensor | None = None) -> Tensor:
        """The last :meth:`advance`'s logits (log-probs for an adaptive softmax) of ``rows`` (a slice, or row
        indices) into ``out`` (rows, padded V). Row blocks that fit the cache keep the row-wise passes after it
        there. ``head``: the rows' :meth:`head_log_probs`, when already made (an adaptive softmax)."""
        if self.lm_part is not None and not self.by_cluster:
            return self._fuse(rows, self._project_own(rows, out, head))
        return self._project_own(rows, out, head)

    def _project_own(self, rows: slice | Tensor, out: Tensor, head: Tensor | None = None) -> Tensor:
        """This decoder's part of :meth:`project` (without a fused language model's)."""
        if self.adaptive:
            return self._adaptive_log_probs(rows, out, head)
        x = self.hidden[rows]
        rhyme = None if self.rhyme is None else self.rhyme[rows]
        out_b = _bias_rows(self.out_b, rows)
        if self.dtype != torch.float32:
            logits = out.copy_(torch.addmm(out_b, x, self.out_w))
        else:
            logits = torch.addmm(out_b, x, self.out_w, out=out)
        if rhyme is not None:
            logits[:, : self.vocab_size].addmm_(rhyme, self.rhyme_out)
        return logits

    def _note_anchors(self, prev: Tensor) -> None:
        if self.anchors is not None and self.position in (self.line_length, 2 * self.line_length):
            self.anchors[:, self.position // self.line_length - 1] = prev

    def _slow_step(self, prev: Tensor) -> Tensor:
        """A model of another layout (or in training mode): its own ``step``, padded to the stepper's width."""
        self._note_anchors(prev)
        extra = () if self.form is None else (self.form,)
        # a model of another layout may have no position argument
        cfg = self.model.cfg
        where = {"position": self.position} if getattr(cfg, "position_codes", 0) or self.line_length else {}
        if self.anchors is not None:
            where["anchors"] = self.anchors
        log_probs, self.state = self.model.step(prev, self.state, self.z, *extra, **where)
        self.position += 1
        return F.pad(log_probs, (0, self.width - self.vocab_size), value=float("-inf"))

    def _rhyme(self) -> Tensor | None:
        """(R, rhyme_dim): what this step's output reads of the rhyme; None at the steps where it is zero."""
        steps = self.model.decoder.rhyme_steps
        if self.position not in steps:
            return None
        return self.model.decoder.rhyme_features(self.anchors)[:, steps.index(self.position)].float()

    def reorder(self, index: Tensor) -> None:
        """Beam search: row ``i`` continues row ``index[i]``."""
        self.state = (self.state[0].index_select(1, index), self.state[1].index_select(1, index))
        if self.lm_part is not None:
            self.lm_part.reorder(index)
        if self.anchors is not None:
            self.anchors = self.anchors.index_select(0, index)
        if self.z is not None:
            self.z = self.z.index_select(0, index)
        if self.laid_out and self.z_gates is not None:
            self.z_gates = self.z_gates.index_select(0, index)
        if self.laid_out and self.z_at_output:  # the per-row biases that hold z's share of the output layer
            if self.adaptive:
                self.head_b = self.head_b.index_select(0, index)
                self.tail_down_b = self.tail_down_b.index_select(0, index)
            else:
                self.out_b = self.out_b.index_select(0, index)
