"""Start a VAE from a trained language model with the same decoder: the LM's embedding, highway and decoder, a fresh
encoder, and every path by which z reaches the decoder set to zero, so that the VAE at step 0 is exactly the LM
(for any code) and training alone decides how much the decoder comes to read z.

What z adds to the LM's decoder, and how each starts:
- ``z_to_initial_state``: tanh(Linear(z)) with weight and bias 0 gives the LM's zero state;
- ``z_to_every_input`` and ``z_to_output``: z's columns in the first LSTM layer's input weights and in the output
  layer's input weights, inserted as zeros beside the LM's columns;
- ``position_codes``: the LM's learned table becomes the bias of the VAE's Linear(z), whose weight is 0; from an LM
  without them, the Linear(z) stays as initialised and the codes' columns in the output layer's weights are 0.
No weight is zero on both sides of a product, so every new path learns within two steps (tests/test_warm_start.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from poetry_vae.model.poem_model import PoemModel

# the first LSTM layer's input weights: [embedding ; z ; place] in the VAE, [embedding ; place] in the LM
_LSTM_INPUT = "decoder.lstm.weight_ih_l0"


def vae_from_lm(vae: PoemModel, lm: PoemModel) -> None:
    """Copy ``lm`` (use_latent=False) into ``vae`` in place as the module docstring says; ValueError (one line) when
    the two do not share a decoder."""
    if lm.cfg.use_latent or not vae.cfg.use_latent:
        raise ValueError("a VAE starts from a language model (use_latent=false): got the wrong kind of checkpoint")
    mismatch = [name for name in _SHARED_FIELDS if getattr(lm.cfg, name) != getattr(vae.cfg, name)]
    if lm.cfg.position_codes and (lm.cfg.position_codes, lm.cfg.position_code_dim) != (
        vae.cfg.position_codes,
        vae.cfg.position_code_dim,
    ):
        mismatch += ["position_codes", "position_code_dim"]
    if mismatch:
        details = ", ".join(f"{n} {getattr(lm.cfg, n)} (this VAE: {getattr(vae.cfg, n)})" for n in mismatch)
        raise ValueError(f"the language model's decoder differs from this VAE's in {details}")
    source = lm.state_dict()
    # the output layer's new input columns, after the LSTM's: z, and the position codes when the LM has none
    output_new = vae.cfg.latent_dim * vae.decoder.z_output
    if not lm.cfg.position_codes and vae.cfg.position_codes:
        output_new += vae.cfg.position_code_dim  # a step reads its own code
    with torch.no_grad():
        for name, value in vae.state_dict().items():
            if name.startswith(("encoder.", "prior.")):
                continue  # q(z|x) learns from scratch; the prior is the VAE's own
            if name.startswith("decoder.z_to_positions.") and not lm.cfg.position_codes:
                continue  # as initialised: zeros here and in the output columns would leave both without gradient
            if name.startswith(("decoder.z_to_state.", "decoder.z_to_positions.")):
                value.zero_()
                if name == "decoder.z_to_positions.bias":
                    value.copy_(source["decoder.position_table"])
            elif name == _LSTM_INPUT and vae.decoder.z_input:
                value.copy_(_with_zero_columns(source[name], vae.cfg.embed_dim, vae.cfg.latent_dim))
            elif _reads_output(name):
                # an adaptive tail's projection is as wide as its input over div_value^k: the LM's units first, the
                # VAE's extra ones left as initialised (their outputs reach nothing until the next weights learn)
                widened = _with_zero_columns(source[name], vae.cfg.decoder_hidden, output_new)
                value[: widened.size(0)].copy_(widened)
            elif _is_tail_output(name):
                value.zero_()
                value[:, : source[name].size(1)].copy_(source[name])
            elif name in source:
                value.copy_(source[name])
            else:
                raise ValueError(f"the language model has no {name!r}: it is not this VAE's decoder")


# the model fields that must agree for the LM's decoder to be this VAE's (z's own fields aside)
_SHARED_FIELDS = (
    "vocab_size",
    "embed_dim",
    "highway_layers",
    "decoder_hidden",
    "decoder_layers",
    "line_length",
    "place_dim",
    "rhyme_dim",
    "output_layer",
    "adaptive_cutoffs",
    "adaptive_div_value",
    "num_forms",
)


def _reads_output(name: str) -> bool:
    """The output layer's weights on its input (the adaptive head, each tail's first projection, or the softmax's)."""
    return name in ("decoder.out.head.weight", "decoder.out.weight") or (
        name.startswith("decoder.out.tail.") and name.endswith(".0.weight")
    )


def _is_tail_output(name: str) -> bool:
    return name.startswith("decoder.out.tail.") and name.endswith(".1.weight")


def _with_zero_columns(weight: Tensor, at: int, width: int) -> Tensor:
    """(out, in) -> (out, in + width): ``width`` zero columns inserted before column ``at``."""
    zeros = weight.new_zeros(weight.size(0), width)
    return torch.cat([weight[:, :at], zeros, weight[:, at:]], dim=1)
