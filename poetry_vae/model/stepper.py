"""A decoding step for inference: the same function as :meth:`PoemVAE.step`, with everything that does not
change between steps computed once per batch.

In eval mode the decoder's input at a step is ``highway(embed(token))`` (dropout is off), so the first LSTM
layer's input gates ``W_ih [highway(embed(v)); z] + b`` split into a per-token table (V, 4H), built once, and a
per-poem ``z`` part (R, 4H), also built once. A step is then a row gather, the recurrent matmuls, the gate
non-linearities and one output matmul, and it returns raw logits (no log-softmax): the sampler normalises
once, over the row it actually needs. Columns are padded to a multiple of ``BLOCK`` with ``-inf`` logits so
block-wise reductions can view a row as (blocks, BLOCK) without copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLOCK = 64  # column block of the two-level reductions in generation.sampling


def padded_size(vocab_size: int) -> int:
    return -(-vocab_size // BLOCK) * BLOCK


class LogitStepper:
    """Eval-mode decoder of ``rows`` rows: ``stepper(prev)`` -> (rows, padded V) logits, state kept inside.

    Build it under ``torch.no_grad``/``inference_mode``; the model's weights are read once, at construction.
    An adaptive-softmax model falls back to :meth:`PoemVAE.step` (its log-probs are valid logits).
    """

    def __init__(self, model: nn.Module, z: Tensor | None, rows: int, form: int | None = None) -> None:
        self.model = model
        self.z = z
        # every row of a request has the same form; None for a model trained without form tags
        device = next(model.parameters()).device
        self.form = None if form is None else torch.full((rows,), form, dtype=torch.long, device=device)
        self.vocab_size = model.cfg.vocab_size
        self.width = padded_size(self.vocab_size)
        self.state = model.initial_state(z, rows)
        dec = getattr(model, "decoder", None)  # any model with cfg, initial_state and step decodes (the slow path)
        self.fast = dec is not None and isinstance(dec.out, nn.Linear) and not dec.training
        if self.fast:
            self._prepare(model, z)

    def _prepare(self, model: nn.Module, z: Tensor | None) -> None:
        dec, lstm = model.decoder, model.decoder.lstm
        emb_dim = model.cfg.embed_dim
        w_ih0 = lstm.weight_ih_l0
        vocab = torch.arange(self.vocab_size, device=w_ih0.device)
        form = None if self.form is None else self.form[:1].expand(self.vocab_size)
        table = model._embed(vocab.unsqueeze(1), form).squeeze(1)  # (V, E): highway(embed(v)), the token input
        bias0 = lstm.bias_ih_l0 + lstm.bias_hh_l0
        self.token_gates = torch.addmm(bias0, table, w_ih0[:, :emb_dim].t())  # (V, 4H)
        self.z_gates = z @ w_ih0[:, emb_dim:].t() if dec.z_input else None  # (R, 4H), constant per poem
        self.w_hh0 = lstm.weight_hh_l0.t().contiguous()
        # upper layers: one matmul over [input; h] with the two weight matrices stacked
        self.upper = [
            (
                torch.cat([getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")], dim=1).t().contiguous(),
                getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}"),
            )
            for k in range(1, lstm.num_layers)
        ]
        out_w, out_b = dec.out.weight, dec.out.bias
        pad = self.width - self.vocab_size
        self.out_w = F.pad(out_w, (0, 0, 0, pad)).t().contiguous()  # (H, Vp); zero rows for the padding
        self.out_b = F.pad(out_b, (0, pad), value=float("-inf"))
        self.logits: Tensor | None = None

    @staticmethod
    def _cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, f, g, o = gates.chunk(4, dim=1)  # PyTorch's gate order
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def __call__(self, prev: Tensor) -> Tensor:
        """(R,) previous tokens -> (R, padded V) logits of the next token (a buffer reused by the next call)."""
        if not self.fast:
            extra = () if self.form is None else (self.form,)
            log_probs, self.state = self.model.step(prev, self.state, self.z, *extra)
            return F.pad(log_probs, (0, self.width - self.vocab_size), value=float("-inf"))
        h, c = self.state
        gates = self.token_gates.index_select(0, prev)
        if self.z_gates is not None:
            gates += self.z_gates
        gates.addmm_(h[0], self.w_hh0)
        x, c0 = self._cell(gates, c[0])
        hs, cs = [x], [c0]
        for k, (weight, bias) in enumerate(self.upper, start=1):
            x, ck = self._cell(torch.addmm(bias, torch.cat([x, h[k]], dim=1), weight), c[k])
            hs.append(x)
            cs.append(ck)
        self.state = (torch.stack(hs), torch.stack(cs))
        if self.logits is None or self.logits.shape[0] != x.shape[0]:
            self.logits = x.new_empty(x.shape[0], self.width)
        return torch.addmm(self.out_b, x, self.out_w, out=self.logits)

    def reorder(self, index: Tensor) -> None:
        """Beam search: row ``i`` continues row ``index[i]``."""
        self.state = (self.state[0].index_select(1, index), self.state[1].index_select(1, index))
        if self.z is not None:
            self.z = self.z.index_select(0, index)
        if self.fast and self.z_gates is not None:
            self.z_gates = self.z_gates.index_select(0, index)
