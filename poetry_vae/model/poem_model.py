"""PoemModel (Bowman et al. 2016): shared embedding + highway, BiLSTM encoder, z-conditioned LSTM decoder.

No state survives between calls: every poem starts from ``initial_state`` (zeros, or tanh(Linear(z))).
With ``cfg.use_latent = False`` it is the plain LSTM language-model baseline (no encoder, no z).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from poetry_vae.model.config import ModelConfig, lm_config
from poetry_vae.model.decoder import Decoder, State, outside_cpu_autocast
from poetry_vae.model.encoder import Encoder
from poetry_vae.model.fusion import (
    cluster_fused_log_probs,
    cluster_fused_target_log_probs,
    fused_log_probs,
    head_and_tails,
    mixture,
)
from poetry_vae.model.highway import Highway
from poetry_vae.model.modes import evaluating
from poetry_vae.model.prior import build_prior
from poetry_vae.model.target_log_softmax import target_log_softmax
from poetry_vae.objective import word_dropout

FUSED_ROWS = 448  # positions a block of a fused model's scoring: each full-vocabulary table ~15 MB at 8,621 characters


@dataclass
class ModelOutput:
    rec: Tensor  # (B,) NLL of each poem, summed over its target positions (pads excluded)
    kl: Tensor  # (B, Z) analytic KL per latent dimension; (B, 0) for the LM baseline (sums to 0)
    mu: Tensor | None = None  # (B, Z); None for the LM baseline, like logvar and z
    logvar: Tensor | None = None
    z: Tensor | None = None


class PoemModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.pad_id)
        # Form conditioning (jueju, lushi halves, gushi blocks): id 0 (jueju) wherever no form is given.
        self.form_embed = nn.Embedding(cfg.num_forms, cfg.embed_dim) if cfg.num_forms > 0 else None
        self.highway = Highway(cfg.embed_dim, cfg.highway_layers)
        self.encoder = Encoder(cfg) if cfg.use_latent else None
        self.prior = build_prior(cfg.prior, cfg.latent_dim, cfg.prior_components) if cfg.use_latent else None
        self.decoder = Decoder(cfg)
        # lm_fusion: a frozen language model beside the decoder (its weights come from a trained LM: fuse_lm)
        self.lm = PoemModel(lm_config(cfg)).requires_grad_(False) if cfg.lm_fusion else None

    def train(self, mode: bool = True) -> PoemModel:
        super().train(mode)
        if self.lm is not None:
            self.lm.eval()  # frozen: its dropout stays off while the rest trains
        return self

    def load_embeddings(self, matrix: Tensor) -> None:
        """Copy a pre-trained (vocab_size, embed_dim) matrix (e.g. word2vec) into the embedding."""
        matrix = torch.as_tensor(matrix)
        expected = tuple(self.embed.weight.shape)
        if tuple(matrix.shape) != expected:
            raise ValueError(f"embedding matrix has shape {tuple(matrix.shape)}, model expects {expected}")
        with torch.no_grad():
            self.embed.weight.copy_(matrix)

    def _embed(self, tokens: Tensor, form: Tensor | None = None) -> Tensor:
        emb = self.embed(tokens)
        if self.form_embed is not None:
            ids = form if form is not None else tokens.new_zeros(tokens.size(0))
            emb = emb + self.form_embed(ids).unsqueeze(1)
        return self.highway(emb)

    def encode(self, tokens: Tensor, form: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """tokens (B, T) -> mu, logvar, each (B, Z). Right padding with pad_id is handled."""
        if self.encoder is None:
            raise RuntimeError("encode() called on the LM baseline (use_latent=False)")
        lengths = (tokens != self.cfg.pad_id).sum(dim=1)  # no branch on the values: one compiled graph
        return self.encoder(self._embed(tokens, form), lengths)

    @torch.no_grad()
    def encode_in_batches(
        self, tokens: Tensor, form: Tensor | None = None, batch_size: int = 2048
    ) -> tuple[Tensor, Tensor]:
        """mu, logvar (N, Z) of many poems' posteriors, ``batch_size`` poems at a time, without gradients; in eval
        mode (BN-VAE's running statistics), restored afterwards."""
        with evaluating(self):
            parts = [self.encode(tokens[start : start + batch_size],
                                 None if form is None else form[start : start + batch_size])
                     for start in range(0, len(tokens), batch_size)]  # fmt: skip
        return torch.cat([mu for mu, _ in parts]), torch.cat([logvar for _, logvar in parts])

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z = mu + sigma * eps. Always samples (also in eval), so validation ELBOs are true bounds."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + (0.5 * logvar).exp() * eps

    def _check_z(self, z: Tensor | None) -> None:
        if self.cfg.use_latent and z is None:
            raise ValueError("this model uses a latent code: pass z of shape (B, latent_dim)")

    def initial_state(self, z: Tensor | None, batch_size: int) -> State:
        """Decoder state (h, c), each (layers, B, hidden): tanh(Linear(z)) or zeros; with a fused language model,
        its layers' zeros after the decoder's (2 * layers)."""
        self._check_z(z)
        state = self.decoder.initial_state(z, batch_size)
        if self.lm is None:
            return state
        lm_state = self.lm.initial_state(None, batch_size)
        return torch.cat([state[0], lm_state[0]]), torch.cat([state[1], lm_state[1]])

    def token_log_probs(
        self,
        dec_in: Tensor,
        target: Tensor,
        z: Tensor | None = None,
        word_dropout_rate: float = 0.0,
        form: Tensor | None = None,
        copies: int = 1,
    ) -> Tensor:
        """log p(target_t | target_<t, z) for each position: (B, T), 0 where target is pad.

        Teacher forcing; ``word_dropout_rate`` (a training regulariser the objective sets) replaces decoder inputs
        by ``<unk>``. To score one poem under K codes, repeat dec_in/target to (K*B, T) (``dec_in.repeat(K, 1)``),
        pass z (K*B, Z) and ``copies=K``: a fused language model, which does not read z, then scores each poem once.
        """
        self._check_z(z)
        cfg = self.cfg
        anchors = self.anchors(dec_in)  # the true line ends: word dropout hides inputs, not the rhyme to keep
        clean = dec_in  # what a fused language model reads: word dropout regularises the decoder, not it
        if word_dropout_rate > 0:
            dec_in = word_dropout(dec_in, word_dropout_rate, cfg.unk_id, keep_ids=(cfg.bos_id, cfg.pad_id))
        hidden = self._forced_hidden(dec_in, z, form, anchors)
        if self.lm is None:
            logp = self.decoder.target_log_probs(hidden, target.reshape(-1))
        else:
            logp = self._fused_target_log_probs(hidden, clean, form, target, copies)
        return logp.view_as(target).masked_fill(target == cfg.pad_id, 0.0)

    def next_token_log_probs(self, dec_in: Tensor, z: Tensor | None = None, form: Tensor | None = None) -> Tensor:
        """Teacher forcing, full distributions: log p(. | dec_in_<=t, z) for each position, (B, T, V)."""
        self._check_z(z)
        hidden = self._forced_hidden(dec_in, z, form, self.anchors(dec_in))
        if self.lm is None:
            return self.decoder.log_probs(hidden).view(*dec_in.shape, -1)
        with torch.no_grad():
            lm_hidden = self.lm._forced_hidden(dec_in, None, form, self.lm.anchors(dec_in))
        weights = self.decoder.fusion_weights(0, dec_in.size(1)).repeat(dec_in.size(0), 1)
        return self._fused(hidden, lm_hidden, weights).view(*dec_in.shape, -1)

    def _fused_target_log_probs(
        self, hidden: Tensor, dec_in: Tensor, form: Tensor | None, target: Tensor, copies: int = 1
    ) -> Tensor:
        """log p(target) (B * T,) of a fused model from the decoder's output-layer input ``hidden`` (B * T, width).
        A fusion by cluster scores each target inside its own cluster (:mod:`poetry_vae.model.fusion`); one over the
        whole vocabulary makes the two models' full distributions :data:`FUSED_ROWS` positions at a time, so each
        block's tables are reused memory rather than fresh pages (a whole batch's would be gigabytes at an IW bound's
        K). When the rows are ``copies`` blocks of the same poems (K codes each), the language model's part serves
        them all."""
        poems = dec_in.size(0) // copies
        if poems * copies != dec_in.size(0):
            raise ValueError(f"{dec_in.size(0)} rows are not {copies} copies of the same poems")
        own, form = dec_in[:poems], None if form is None else form[:poems]
        with torch.no_grad():
            lm_hidden = self.lm._forced_hidden(own, None, form, self.lm.anchors(own))
        steps = dec_in.size(1)
        positions = poems * steps
        # each flattened position's (a, b): position p of a poem is row p % steps
        weights = self.decoder.fusion_weights(0, steps).to(hidden.dtype).repeat(poems, 1)
        flat_target = target.reshape(-1)
        if self.cfg.fusion_by_cluster:  # each tail target's cluster only: no whole distribution is made
            return outside_cpu_autocast(
                lambda h, lm_h: cluster_fused_target_log_probs(
                    self.decoder.out, self.lm.decoder.out, h, lm_h, weights.to(h.dtype).repeat(copies, 1),
                    flat_target),
                hidden, lm_hidden)  # fmt: skip
        parts: list[list[Tensor]] = [[] for _ in range(copies)]
        for start in range(0, positions, FUSED_ROWS):
            rows = slice(start, min(start + FUSED_ROWS, positions))
            w = weights[rows]
            with torch.no_grad():
                lm_log_probs = self.lm.decoder.log_probs(lm_hidden[rows]).to(hidden.dtype)
            for k, part in enumerate(parts):
                copy = slice(k * positions + rows.start, k * positions + rows.stop)
                part.append(target_log_softmax(mixture(w, lm_log_probs, self.decoder.log_probs(hidden[copy])),
                                               flat_target[copy]))
        return torch.cat([block for part in parts for block in part])

    def _fused(self, hidden: Tensor, lm_hidden: Tensor, weights: Tensor) -> Tensor:
        """A fused model's whole next-character log-distributions (N, V) from the decoder's and the language model's
        output-layer inputs (N, width each); ``weights`` (N, 2) each row's fusion weights (a, b)."""
        if self.cfg.fusion_by_cluster:
            with torch.no_grad():
                lm_parts = head_and_tails(self.lm.decoder.out, lm_hidden)
            own = head_and_tails(self.decoder.out, hidden)
            return cluster_fused_log_probs(weights.to(hidden.dtype), lm_parts, own)
        log_probs = self.decoder.log_probs(hidden)
        with torch.no_grad():
            lm_log_probs = self.lm.decoder.log_probs(lm_hidden)
        return fused_log_probs(weights.to(log_probs.dtype), lm_log_probs, log_probs)

    def anchors(self, dec_in: Tensor) -> Tensor | None:
        """The last characters of lines 1 and 2 in ``dec_in`` (B, T), (B, 2), pad where the poem is shorter; None
        for a decoder without a rhyme pointer."""
        if not self.cfg.rhyme_dim:
            return None
        steps = torch.tensor(self.decoder.anchor_steps, device=dec_in.device)
        padded = F.pad(dec_in, (0, int(steps.max()) + 1 - dec_in.size(1)), value=self.cfg.pad_id)
        return padded[:, steps]

    def _forced_hidden(
        self, dec_in: Tensor, z: Tensor | None, form: Tensor | None, anchors: Tensor | None = None
    ) -> Tensor:
        """What the output layer reads at every position of ``dec_in`` (B, T), flattened to (B * T, width)."""
        state = self.decoder.initial_state(z, dec_in.size(0))
        hidden, _ = self.decoder.hidden(self._embed(dec_in, form), state, z, anchors=anchors)
        return hidden.reshape(-1, hidden.size(-1))

    def forward(
        self,
        tokens: Tensor,
        dec_in: Tensor,
        target: Tensor,
        word_dropout_rate: float = 0.0,
        form: Tensor | None = None,
        encoder_grad: bool = True,
        samples: int = 1,
    ) -> ModelOutput:
        """``encoder_grad=False`` detaches q(z|x): the loss then trains the decoder side only (He et al.'s outer
        step in aggressive mode), and the encoder's parameters get no gradient at all. ``samples`` = K > 1 draws
        K codes a poem (the importance-weighted bound's): ``rec`` (K * B,) and ``z`` (K * B, Z) then hold code k of
        every poem in block k; ``mu``, ``logvar`` and ``kl`` stay one row a poem. The LM ignores it (exact)."""
        if self.encoder is None:
            rec = -self.token_log_probs(dec_in, target, None, word_dropout_rate, form).sum(dim=1)
            return ModelOutput(rec=rec, kl=rec.new_zeros(rec.size(0), 0))
        mu, logvar = self.encode(tokens, form)
        if not encoder_grad:
            mu, logvar = mu.detach(), logvar.detach()
        if samples > 1:
            z = self.reparameterize(mu.repeat(samples, 1), logvar.repeat(samples, 1))
            dec_in, target = dec_in.repeat(samples, 1), target.repeat(samples, 1)
            form = None if form is None else form.repeat(samples)
        else:
            z = self.reparameterize(mu, logvar)
        rec = -self.token_log_probs(dec_in, target, z, word_dropout_rate, form, copies=samples).sum(dim=1)
        return ModelOutput(rec=rec, kl=self.prior.kl(mu, logvar, z), mu=mu, logvar=logvar, z=z)

    def step(
        self,
        prev_tokens: Tensor,
        state: State,
        z: Tensor | None = None,
        form: Tensor | None = None,
        position: int = 0,
        anchors: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """One decoding step: prev_tokens (B,) -> full next-token log-probs (B, V) and the new state.
        ``position`` is the step's index (0 reads after ``<bos>``); only a model with ``position_codes`` or
        ``line_length`` reads it. ``anchors`` (B, 2): the last characters of lines 1 and 2 written so far (pad where
        not yet), read by a model with ``rhyme_dim`` (see :meth:`anchors`).

        Same code path as ``token_log_probs``, so running it autoregressively
        over ``dec_in`` reproduces teacher forcing exactly in eval mode.
        """
        self._check_z(z)
        emb = self._embed(prev_tokens.unsqueeze(1), form)
        layers = self.cfg.decoder_layers
        own = state if self.lm is None else (state[0][:layers], state[1][:layers])
        hidden, own = self.decoder.hidden(emb, own, z, position, anchors)
        if self.lm is None:
            return self.decoder.log_probs(hidden.squeeze(1)), own
        lm_state = (state[0][layers:], state[1][layers:])
        lm_emb = self.lm._embed(prev_tokens.unsqueeze(1), form)
        lm_hidden, lm_state = self.lm.decoder.hidden(lm_emb, lm_state, None, position, anchors)
        weights = self.decoder.fusion_weights(position, 1).expand(prev_tokens.size(0), -1)
        fused = self._fused(hidden.squeeze(1), lm_hidden.squeeze(1), weights)
        return fused, (torch.cat([own[0], lm_state[0]]), torch.cat([own[1], lm_state[1]]))

    def reset_decoder(self, seed: int) -> None:
        """Re-initialise the decoder (LSTM, z projections, output layer) to a fresh ``Decoder`` built under
        ``seed``, in place (the optimiser keeps the same parameter objects). The training RNG stream is untouched.
        The embedding and highway stay: the encoder shares them (Li et al. 2019 reset a decoder-only embedding)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = Decoder(self.cfg)
        self.decoder.load_state_dict(fresh.state_dict())

    def encoder_parameters(self) -> list[nn.Parameter]:
        """What q(z|x) alone owns (not the shared embedding and highway): the parameters of encoder-only updates."""
        return list(self.encoder.parameters()) if self.encoder is not None else []

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
