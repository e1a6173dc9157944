"""LSTM decoder: per step input [char embedding ; z ; the step's place in the poem], initial state from z, optionally
z beside the top layer's output (a generative skip connection), a per-position code read from z and, at the rhyming
line ends, the rhyme classes of the earlier line end they rhyme with; then softmax or adaptive softmax."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from poetry_vae.model.config import ModelConfig
from poetry_vae.model.dropout import Dropout
from poetry_vae.model.target_log_softmax import target_log_softmax

State = tuple[Tensor, Tensor]  # (h, c), each (layers, B, hidden); reorder beams with .index_select(1, idx)


def build_cutoffs(cfg: ModelConfig) -> list[int]:
    """Configured cutoffs that fit the vocabulary; a single cutoff at V // 2 if none does."""
    cutoffs = sorted({c for c in cfg.adaptive_cutoffs if 0 < c < cfg.vocab_size})
    return cutoffs or [max(1, cfg.vocab_size // 2)]


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.z_input = cfg.use_latent and cfg.z_to_every_input
        self.z_state = cfg.use_latent and cfg.z_to_initial_state
        # Dieng et al. 2019 (Skip-VAE): z reaches the output layer directly, so the LSTM cannot wash it out
        self.z_output = cfg.use_latent and cfg.z_to_output
        # the poem's structure: the step's place (line, position in line) at the input; four lines and <eos>,
        # later steps read the last place
        self.line_length = cfg.line_length
        self.places = 4 * cfg.line_length + 1 if cfg.line_length and cfg.place_dim else 0
        self.place_table = nn.Embedding(self.places, cfg.place_dim) if self.places else None
        in_dim = cfg.embed_dim + (cfg.latent_dim if self.z_input else 0) + (cfg.place_dim if self.places else 0)
        H, L = cfg.decoder_hidden, cfg.decoder_layers
        self.dropout = Dropout(cfg.dropout)
        self.lstm = nn.LSTM(in_dim, H, num_layers=L, batch_first=True, dropout=cfg.dropout if L > 1 else 0.0)
        self.z_to_state = nn.Linear(cfg.latent_dim, 2 * L * H) if self.z_state else None
        # one code per position, read from z: the output layer can learn what z says about *this* step's character;
        # the LM (no z) learns one fixed code per position, the same positional information without a latent
        self.positions = cfg.position_codes
        code_dim = cfg.position_code_dim if self.positions else 0
        width = self.positions * code_dim
        self.z_to_positions = nn.Linear(cfg.latent_dim, width) if width and cfg.use_latent else None
        self.position_table = nn.Parameter(torch.zeros(width)) if width and not cfg.use_latent else None
        self.rhyme_dim = cfg.rhyme_dim
        if self.rhyme_dim:
            from poetry_vae.prosody.tables import class_names

            classes = len(class_names("pingshui"))
            # (V, classes), each row a character's 平水韵 classes summing to 1; filled by build_model from the
            # vocabulary, not saved (it is the shipped table's, not learned)
            self.register_buffer("rhyme_classes", torch.zeros(cfg.vocab_size, classes), persistent=False)
            # two halves: what line 2's end reads of line 1's, what line 4's end reads of line 2's
            self.rhyme_from_class = nn.Linear(classes, 2 * cfg.rhyme_dim, bias=False)
            self.rhyme_from_char = nn.Embedding(cfg.vocab_size, 2 * cfg.rhyme_dim, padding_idx=cfg.pad_id)
            nn.init.zeros_(self.rhyme_from_char.weight)  # the table first; characters learn what it misses
        # lm_fusion: the weights (a, b) of the language model's and this decoder's log-probs, one pair per place (one
        # in all without places); (0.4, 0.8) was the best of a 10-point grid for the flagship v5 before training
        self.fusion = nn.Parameter(torch.tensor([[0.4, 0.8]]).repeat(max(self.places, 1), 1)) if cfg.lm_fusion else None
        out_dim = H + (cfg.latent_dim if self.z_output else 0) + code_dim + cfg.rhyme_dim
        if cfg.output_layer == "adaptive":
            self.out: nn.Module = nn.AdaptiveLogSoftmaxWithLoss(
                out_dim, cfg.vocab_size, build_cutoffs(cfg), div_value=cfg.adaptive_div_value
            )
        else:
            self.out = nn.Linear(out_dim, cfg.vocab_size)

    def initial_state(self, z: Tensor | None, batch_size: int) -> State:
        L, H = self.cfg.decoder_layers, self.cfg.decoder_hidden
        if self.z_to_state is None or z is None:
            w = self.lstm.weight_ih_l0
            zeros = w.new_zeros(L, batch_size, H)
            return zeros, zeros.clone()
        hc = torch.tanh(self.z_to_state(z)).view(-1, L, 2, H).permute(2, 1, 0, 3)  # (2, L, B, H)
        return hc[0].contiguous(), hc[1].contiguous()

    def position_codes(self, z: Tensor | None, rows: int) -> Tensor:
        """z (rows, Z), or None for the LM -> (rows, position_codes + 1, D): row t is step t's code, the last row
        the zeros that later steps read."""
        if z is None:  # the LM's codes are every row's: made once and broadcast, not once a row
            codes = F.pad(torch.tanh(self.position_table).view(1, self.positions, -1), (0, 0, 0, 1))
            return codes.expand(rows, -1, -1)
        return F.pad(torch.tanh(self.z_to_positions(z)).view(rows, self.positions, -1), (0, 0, 0, 1))

    def position_code(self, z: Tensor | None, rows: int, t: int) -> Tensor:
        """Step ``t``'s row of :meth:`position_codes` (rows, D) alone, for a decoder stepping one character at a
        time: that step's columns of ``z_to_positions``, not every step's codes made at once."""
        width = self.cfg.position_code_dim
        if t >= self.positions:  # past the table: the zeros
            return self.lstm.weight_ih_l0.new_zeros(rows, width)
        columns = slice(t * width, (t + 1) * width)
        if z is None:
            return torch.tanh(self.position_table[columns]).expand(rows, -1)
        return torch.tanh(F.linear(z, self.z_to_positions.weight[columns], self.z_to_positions.bias[columns]))

    @property
    def rhyme_steps(self) -> tuple[int, int]:
        """The steps that read a rhyme: the last characters of lines 2 and 4."""
        return 2 * self.line_length - 1, 4 * self.line_length - 1

    @property
    def anchor_steps(self) -> tuple[int, int]:
        """The steps whose input is the last character of line 1, and of line 2 (what the rhyme steps read)."""
        return self.line_length, 2 * self.line_length

    def rhyme_features(self, anchors: Tensor) -> Tensor:
        """anchors (B, 2): the last characters of lines 1 and 2 (pad where not yet written) -> (B, 2, rhyme_dim):
        what the rhyme steps read."""
        d = self.rhyme_dim
        both = self.rhyme_from_class(self.rhyme_classes[anchors]) + self.rhyme_from_char(anchors)
        return torch.stack([both[:, 0, :d], both[:, 1, d:]], dim=1)

    def place_codes(self, start: int, steps: int) -> Tensor:
        """(steps, place_dim): the place codes of steps ``start`` .. ``start + steps - 1``."""
        ids = torch.arange(start, start + steps, device=self.place_table.weight.device).clamp_(max=self.places - 1)
        return self.place_table(ids)

    def fusion_weights(self, start: int, steps: int) -> Tensor:
        """(steps, 2): the fusion weights (a, b) of steps ``start`` .. ``start + steps - 1``."""
        ids = torch.arange(start, start + steps, device=self.fusion.device).clamp_(max=self.fusion.size(0) - 1)
        return self.fusion[ids]

    def _rhyme_inputs(self, anchors: Tensor | None, start: int, steps: int, like: Tensor) -> Tensor:
        """(B, steps, rhyme_dim): the rhyme features at the rhyme steps, zeros elsewhere."""
        slots = like.new_zeros(like.size(0), steps, self.rhyme_dim)
        if anchors is None:
            return slots
        features = self.rhyme_features(anchors).to(like.dtype)
        for k, step in enumerate(self.rhyme_steps):
            if start <= step < start + steps:
                slots[:, step - start] = features[:, k]
        return slots

    def hidden(
        self, emb: Tensor, state: State, z: Tensor | None, start: int = 0, anchors: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """emb (B, T, E) of steps ``start`` .. ``start + T - 1`` -> what the output layer reads: (B, T, H), with
        [; z] (``z_to_output``), [; step t's code] (``position_codes``) and [; the rhyme] (``rhyme_dim``; ``anchors``
        (B, 2) the last characters of lines 1 and 2, or None), after dropout (z, codes and rhymes are never
        dropped), and the new state."""
        x = self.dropout(emb)
        if self.z_input:
            x = torch.cat([x, z.unsqueeze(1).expand(-1, x.size(1), -1)], dim=-1)
        if self.places:
            places = self.place_codes(start, x.size(1)).to(x.dtype)
            x = torch.cat([x, places.unsqueeze(0).expand(x.size(0), -1, -1)], dim=-1)
        out, state = self.lstm(x, state)
        out = self.dropout(out)
        if self.z_output:  # in out's dtype: under bf16 autocast a float32 z would promote the output layer's input
            out = torch.cat([out, z.to(out.dtype).unsqueeze(1).expand(-1, out.size(1), -1)], dim=-1)
        if self.positions:
            steps = torch.arange(start, start + out.size(1), device=out.device).clamp_(max=self.positions)
            out = torch.cat([out, self.position_codes(z, out.size(0))[:, steps].to(out.dtype)], dim=-1)
        if self.rhyme_dim:
            out = torch.cat([out, self._rhyme_inputs(anchors, start, out.size(1), out)], dim=-1)
        return out, state

    def target_log_probs(self, hidden: Tensor, target: Tensor) -> Tensor:
        """log p(target) for each row: hidden (N, H), target (N,) -> (N,). Normalised once."""
        if isinstance(self.out, nn.AdaptiveLogSoftmaxWithLoss):
            return adaptive_target_log_probs(self.out, hidden, target)
        return target_log_softmax(self.out(hidden), target)

    def log_probs(self, hidden: Tensor) -> Tensor:
        """Full next-token log-distribution: hidden (N, H) -> (N, V)."""
        if isinstance(self.out, nn.AdaptiveLogSoftmaxWithLoss):
            return self.out.log_prob(hidden)
        return F.log_softmax(self.out(hidden), dim=-1)


def adaptive_target_log_probs(layer: nn.AdaptiveLogSoftmaxWithLoss, hidden: Tensor, target: Tensor) -> Tensor:
    """``layer(hidden, target).output``, each log-softmax taken by :func:`target_log_softmax` (the layer's own
    gathers zero-fill a table the size of each log-softmax in their backward). The head gives a shortlist target's
    log-prob, or a tail target's cluster's, to which the tail adds the target's log-prob in its cluster. Under
    autocast: CUDA's runs log_softmax in fp32 whatever the input and CPU autocast gives an fp32 input bf16 matmuls,
    so there the layer runs in fp32 with autocast off; a bf16 input under CPU autocast (the measured-faster training
    path) stays as it is, normalised in fp32."""
    return outside_cpu_autocast(lambda h: _adaptive_target_log_probs(layer, h, target), hidden)


def outside_cpu_autocast(score: Callable[..., Tensor], hidden: Tensor, *more: Tensor) -> Tensor:
    """``score(hidden, *more)`` in fp32 with autocast off where autocast would run it in a precision it did not
    ask for (see :func:`adaptive_target_log_probs`); as it is otherwise."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device) and (device != "cpu" or hidden.dtype == torch.float32):
        with torch.autocast(device, enabled=False):
            return score(hidden.float(), *(t.float() for t in more))
    return score(hidden, *more)


def _adaptive_target_log_probs(layer: nn.AdaptiveLogSoftmaxWithLoss, hidden: Tensor, target: Tensor) -> Tensor:
    return clustered_target_log_probs(layer, target, hidden.dtype, lambda: layer.head(hidden),
                                      lambda c, rows: layer.tail[c](hidden.index_select(0, rows)))


def cluster_spans(layer: nn.AdaptiveLogSoftmaxWithLoss) -> list[tuple[int, int]]:
    """Each tail cluster's character ids, [start, stop)."""
    return list(zip(layer.cutoffs[:-1], layer.cutoffs[1:], strict=True))


def clustered_target_log_probs(
    layer: nn.AdaptiveLogSoftmaxWithLoss,
    target: Tensor,
    dtype: torch.dtype,
    head_logits: Callable[[], Tensor],
    tail_logits: Callable[[int, Tensor], Tensor],
) -> Tensor:
    """log p(target) (N,) laid out as ``layer``'s adaptive softmax: the head's log-prob of a shortlist target, or of
    a tail target's cluster, plus the target's log-prob inside its cluster. ``head_logits()`` gives the head's
    (N, shortlist + clusters) logits and ``tail_logits(c, rows)`` cluster c's logits for those rows only (``dtype``
    the logits'); one model's layer, or a fusion's mixture of two."""
    head_target = target.clone()
    in_tails = torch.zeros(target.shape[0], device=target.device, dtype=torch.promote_types(dtype, torch.float32))
    for cluster, (low, high) in enumerate(cluster_spans(layer)):
        rows = ((target >= low) & (target < high)).nonzero().squeeze(1)
        if not len(rows):
            continue
        head_target[rows] = layer.shortlist_size + cluster
        in_tails = in_tails.index_add(0, rows, target_log_softmax(tail_logits(cluster, rows), target[rows] - low))
    return target_log_softmax(head_logits(), head_target) + in_tails
