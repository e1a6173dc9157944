"""The reference program's VAE, ported to torch 2.x with its behaviour kept: the baseline of ``benchmarks.run``.

The reference program is the program of the original write-up (Bowman et al. 2016 applied to 五言绝句),
re-implemented here as the speed reference; only the API is modernised (no ``Variable``, ``volatile`` or
``init.xavier_normal``). Deliberately kept, because they are what the reference program ran:

- sizes: embedding 128, highway 2 x 128 (ReLU, gate bias -1), one-layer BiLSTM encoder 128, latent 128,
  two-layer decoder LSTM 128 with z concatenated to every input step, dropout 0.5;
- the functional dropouts use ``F.dropout``'s default ``training=True``: they stay on in ``eval()`` and while
  generating (only the LSTM's between-layer dropout follows train/eval);
- the decoder returns ``log_softmax`` and the loss is ``CrossEntropyLoss`` on those log-probabilities, so the
  output is normalised twice (the second pass is a no-op numerically but costs a full (N, V) pass each way);
- the loss is the per-token mean reconstruction plus the latent loss of the write-up
  (``0.5 * mean(mu^2 + sigma^2 - log sigma^2 - 1)``, a mean over the latent dimensions and the batch);
- the encoder's and decoder's final LSTM states are carried (detached) from one batch into the next as their
  initial states, so every batch has the same size (``drop_last``);
- Adam(betas 0.9/0.98, eps 1e-9) at its default lr 1e-3; the gradient norm is clipped to 0.25 only on the first
  step (the reference program passed ``model.parameters()``, a generator, to its clipper, which exhausted it
  after one call);
- ``generate()`` decodes one poem at a time: 20 greedy steps at batch 1, z ~ N(0, I) drawn with numpy.

The ``Highway`` class is not in the write-up; the one here is the usual two-Linear highway layer it imports.
Nothing here is imported by the ``poetry_vae`` package.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = tuple[Tensor, Tensor]


@dataclass
class ReferenceArgs:
    vocab_size: int
    embed_dim: int = 128
    hw_layers: int = 2
    hw_hsz: int = 128
    enc_hsz: int = 128
    enc_layers: int = 1
    latent_dim: int = 128
    dec_hsz: int = 128
    dec_layers: int = 2
    dropout: float = 0.5
    batch_size: int = 16
    clip: float = 0.25
    bos_id: int = 1


class HighwayLayer(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.gate = nn.Linear(size, size)
        self.h = nn.Linear(size, size)
        nn.init.constant_(self.gate.bias, -1.0)
        nn.init.xavier_normal_(self.h.weight)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.gate(x))
        return F.relu(self.h(x)) * gate + x * (1 - gate)


class Highway(nn.Module):
    def __init__(self, num_layers: int, size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(HighwayLayer(size) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class ReferenceEncoder(nn.Module):
    def __init__(self, embed_dim: int, hidden: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.num_layers, self.hidden, self.dropout = num_layers, hidden, dropout
        # The reference program wrote nn.LSTM(embed, hidden, layers, dropout, bidirectional=True): its 4th
        # positional argument is `bias`, so dropout=0.5 became bias=True and the LSTM has no dropout. Time-major input.
        self.rnn = nn.LSTM(embed_dim, hidden, num_layers, True, bidirectional=True)

    def forward(self, x: Tensor, hidden: State) -> tuple[Tensor, State]:
        _, hidden = self.rnn(x.transpose(0, 1), hidden)
        out = F.dropout(torch.cat((hidden[0][-2], hidden[0][-1]), -1), p=self.dropout)  # on in eval too
        return out, hidden

    def init_hidden(self, batch: int) -> State:
        size = (self.num_layers * 2, batch, self.hidden)
        w = self.rnn.weight_ih_l0
        return w.new_zeros(size), w.new_zeros(size)


class ReferenceDecoder(nn.Module):
    def __init__(self, embed_dim: int, latent_dim: int, hidden: int, num_layers: int, dropout: float, vocab: int):
        super().__init__()
        self.hidden, self.dropout, self.num_layers, self.latent_dim = hidden, dropout, num_layers, latent_dim
        self.rnn = nn.LSTM(embed_dim + latent_dim, hidden, num_layers, dropout=dropout, batch_first=True)
        self.lr = nn.Linear(hidden, vocab)
        nn.init.uniform_(self.lr.weight, -0.1, 0.1)
        nn.init.zeros_(self.lr.bias)

    def forward(self, x: Tensor, z: Tensor, hidden: State) -> tuple[Tensor, State]:
        batch, length, _ = x.shape
        x = torch.cat((x, z.unsqueeze(1).expand(batch, length, self.latent_dim)), -1)
        out, hidden = self.rnn(x, hidden)
        out = F.dropout(out, p=self.dropout)  # on in eval too
        logits = self.lr(out.contiguous().view(-1, self.hidden))
        return F.log_softmax(logits, dim=-1), hidden  # the first of the two normalisations

    def init_hidden(self, batch: int) -> State:
        w = self.rnn.weight_ih_l0
        return w.new_zeros(self.num_layers, batch, self.hidden), w.new_zeros(self.num_layers, batch, self.hidden)


class ReferenceVAE(nn.Module):
    def __init__(self, args: ReferenceArgs, pre_w2v: np.ndarray | None = None, idx2word: list[str] | None = None):
        super().__init__()
        self.args = args
        self.idx2word = idx2word
        self.lookup_table = nn.Embedding(args.vocab_size, args.embed_dim)
        if pre_w2v is not None:
            with torch.no_grad():
                self.lookup_table.weight.copy_(torch.as_tensor(pre_w2v))
        self.hw = Highway(args.hw_layers, args.hw_hsz)
        self.encode = ReferenceEncoder(args.embed_dim, args.enc_hsz, args.enc_layers, args.dropout)
        self._enc_mu = nn.Linear(args.enc_hsz * 2, args.latent_dim)
        self._enc_log_sigma = nn.Linear(args.enc_hsz * 2, args.latent_dim)
        self.decode = ReferenceDecoder(
            args.embed_dim, args.latent_dim, args.dec_hsz, args.dec_layers, args.dropout, args.vocab_size
        )
        nn.init.xavier_normal_(self._enc_mu.weight)
        nn.init.xavier_normal_(self._enc_log_sigma.weight)

    def forward(self, enc_input: Tensor, dec_input: Tensor, enc_hidden: State, dec_hidden: State):
        """-> (log-probs (B*T, V), latent loss, enc_hidden, dec_hidden). Note: the decoder input is *not* passed
        through the highway layers, only the encoder input is (as in the reference program)."""
        enc = F.dropout(self.hw(self.lookup_table(enc_input)), p=self.args.dropout)
        enc_out, enc_hidden = self.encode(enc, enc_hidden)
        mu = self._enc_mu(enc_out)
        sigma = torch.exp(0.5 * self._enc_log_sigma(enc_out))
        latent_loss = 0.5 * torch.mean(mu * mu + sigma * sigma - torch.log(sigma * sigma) - 1)
        std_z = torch.from_numpy(np.random.normal(size=tuple(sigma.shape))).to(sigma)  # numpy noise, as it was
        z = mu + sigma * std_z
        dec, dec_hidden = self.decode(self.lookup_table(dec_input), z, dec_hidden)
        return dec, latent_loss, enc_hidden, dec_hidden

    @torch.no_grad()
    def generate(self, max_len: int = 20) -> list[int]:
        """One poem, greedy, batch 1; returns token ids (``render`` turns them into text like the reference program)."""
        z = torch.from_numpy(np.random.normal(size=(1, self.args.latent_dim))).float()
        prev = torch.tensor([[self.args.bos_id]])
        hidden = self.decode.init_hidden(1)
        out: list[int] = []
        for _ in range(max_len):
            log_probs, hidden = self.decode(self.lookup_table(prev), z, hidden)
            next_word = int(log_probs.squeeze(0).argmax(-1))
            prev.fill_(next_word)
            out.append(next_word)
        return out

    def render(self, ids: list[int]) -> str:
        """The reference program's formatting: a comma after every 5 characters, the last one replaced by 。"""
        words = self.idx2word or [str(i) for i in range(self.args.vocab_size)]
        text = "".join(words[i] + ("," if k % 5 == 4 else "") for k, i in enumerate(ids))
        return text[:-1] + "。"


class ReferenceTrainer:
    """The reference program's training loop, one step at a time: CE on log-probs + latent loss, state carried over."""

    def __init__(self, model: ReferenceVAE) -> None:
        self.model = model
        self.criterion = nn.CrossEntropyLoss()  # on log-softmax output: the second normalisation
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
        self.enc_hidden: State | None = None
        self.dec_hidden: State | None = None
        self.steps = 0

    def step(self, enc_input: Tensor, dec_input: Tensor, label: Tensor) -> float:
        model = self.model
        model.train()
        batch = enc_input.size(0)
        if self.enc_hidden is None or self.enc_hidden[0].size(1) != batch:
            self.enc_hidden, self.dec_hidden = model.encode.init_hidden(batch), model.decode.init_hidden(batch)
        enc_hidden = tuple(h.detach() for h in self.enc_hidden)  # repackage_hidden
        dec_hidden = tuple(h.detach() for h in self.dec_hidden)
        self.optimizer.zero_grad()
        out, latent_loss, self.enc_hidden, self.dec_hidden = model(enc_input, dec_input, enc_hidden, dec_hidden)
        loss = self.criterion(out, label.contiguous().view(-1)) + latent_loss
        loss.backward()
        if self.steps == 0:  # the exhausted-generator clip: only the first call sees any parameter
            nn.utils.clip_grad_norm_(model.parameters(), self.model.args.clip)
        self.optimizer.step()
        self.steps += 1
        return float(loss.detach())


def reference_batches(
    tensors: dict[str, Tensor], batch_size: int, seed: int = 0
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Endless (enc_input, dec_input, label) batches of exactly ``batch_size`` (drop_last), reshuffled per pass."""
    n = tensors["tokens"].size(0)
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            rows = order[start : start + batch_size]
            yield tensors["tokens"][rows], tensors["dec_in"][rows], tensors["target"][rows]
