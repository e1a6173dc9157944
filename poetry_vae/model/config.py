"""Hyper-parameters of the poem VAE: one flat dataclass of plain Python types (safe in checkpoints)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from poetry_vae.errors import PoetryVAEError
from poetry_vae.model.prior import PRIORS

OUTPUT_LAYERS = ("softmax", "adaptive")


@dataclass
class ModelConfig:
    vocab_size: int
    embed_dim: int = 128
    highway_layers: int = 2
    encoder_hidden: int = 128
    encoder_layers: int = 1
    latent_dim: int = 128
    decoder_hidden: int = 128
    decoder_layers: int = 2
    dropout: float = 0.5
    z_to_initial_state: bool = True  # z -> tanh(Linear) -> decoder (h0, c0) for every layer
    z_to_every_input: bool = True  # z concatenated to every decoder input step (the original program's way)
    z_to_output: bool = False  # z concatenated to the top LSTM output before the softmax (Dieng et al. 2019's skip)
    # > 0: the first ``position_codes`` decoder steps each read their own code tanh(W_t z + b_t) beside the top LSTM
    # output, so z can say what goes where (a poem's form fixes its positions); later steps read zeros. The LM
    # (use_latent=False) learns a fixed code per position instead
    position_codes: int = 0
    position_code_dim: int = 64
    # > 0: the poem's line length (5 or 7). Each decoder step reads a learned code of its place (line index and
    # position within the line) beside its input character, so the decoder need not count to find a line's end
    line_length: int = 0
    place_dim: int = 16  # 0: no place code (the rhyme pointer alone)
    # > 0 (needs line_length): a pointer to the rhyme. At the last character of line 2 (and of line 4) the output
    # layer also reads the rhyme classes (the shipped 平水韵 table, plus a learned per-character part) of the last
    # character of line 1 (and of line 2): a direct path from position 10 to 20 that a recurrent state does not
    # learn to keep
    rhyme_dim: int = 0
    # "adaptive" (nn.AdaptiveLogSoftmaxWithLoss: exact, ~2x faster here) | "softmax"; see OLD_DEFAULTS
    output_layer: str = "adaptive"
    adaptive_cutoffs: tuple[int, ...] = (1000, 3000)  # those >= vocab_size are dropped at build time
    adaptive_div_value: float = 4.0
    use_latent: bool = True  # False => plain LSTM language-model baseline (no encoder, no z)
    num_forms: int = 0  # > 0: a learned embedding of the poem's form tag (data.forms) added to every input
    # a language model beside the decoder (Gulcehre et al. 2015's shallow fusion, learned): the decoder without z, its
    # own frozen weights (:func:`lm_config`; `python -m poetry_vae.fuse_lm` puts a trained one in), and each step's
    # next character drawn from log_softmax(a * LM + b * decoder), a and b learned per place. The decoder's reading
    # of z then adds to what the language model already knows instead of relearning it
    lm_fusion: bool = False
    # with lm_fusion and an adaptive softmax: mix the two models' heads, and each tail cluster's distributions inside
    # it, each part normalised on its own (poetry_vae.model.fusion), so a draw makes a row's tails only when it lands
    # in a cluster. False: one mixture over the whole vocabulary (the fused flagship v6 and v7)
    fusion_by_cluster: bool = False
    bn_gamma: float = 0.0  # BN-VAE (Zhu et al. 2020): batch norm on mu with this fixed scale; 0 = off
    # p(z): "standard" N(0, I) | "gaussian": ``prior_components`` full-covariance Gaussians (a mixture when > 1)
    # that `python -m poetry_vae.fit_prior` fits to a trained model's aggregate posterior (poetry_vae.model.prior)
    prior: str = "standard"
    prior_components: int = 1
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 3

    def __post_init__(self) -> None:
        self.adaptive_cutoffs = tuple(int(c) for c in self.adaptive_cutoffs)  # Hydra gives a ListConfig
        specials = (self.pad_id, self.bos_id, self.eos_id, self.unk_id)
        problems = [
            (self.vocab_size <= max(specials), f"vocab_size={self.vocab_size} must exceed every special id"),
            (
                self.output_layer not in OUTPUT_LAYERS,
                f"output_layer={self.output_layer!r}, not one of {OUTPUT_LAYERS}",
            ),
            (not 0.0 <= self.dropout < 1.0, f"dropout={self.dropout} must be in [0, 1)"),
            (self.prior not in PRIORS, f"prior={self.prior!r}, not one of {PRIORS}"),
            (self.bn_gamma < 0, f"bn_gamma={self.bn_gamma} must be >= 0 (0 = no batch norm on mu)"),
            (self.position_codes < 0, f"position_codes={self.position_codes} must be >= 0 (0 = off)"),
            (self.line_length < 0, f"line_length={self.line_length} must be >= 0 (0 = off)"),
            (self.rhyme_dim < 0, f"rhyme_dim={self.rhyme_dim} must be >= 0 (0 = off)"),
            (self.place_dim < 0, f"place_dim={self.place_dim} must be >= 0 (0 = no place code)"),
            (self.rhyme_dim > 0 and not self.line_length, "rhyme_dim > 0 needs line_length (5 or 7)"),
            (self.lm_fusion and not self.use_latent, "lm_fusion=true needs a VAE (use_latent=true)"),
            (
                self.fusion_by_cluster and not (self.lm_fusion and self.output_layer == "adaptive"),
                "fusion_by_cluster=true needs lm_fusion=true and output_layer=adaptive (its clusters)",
            ),
            (
                self.use_latent
                and not (self.z_to_initial_state or self.z_to_every_input or self.z_to_output or self.position_codes),
                "use_latent=True needs z_to_initial_state, z_to_every_input, z_to_output or position_codes, "
                "otherwise z is unused",
            ),
        ]
        problems += [(getattr(self, f) < 1, f"{f} must be >= 1") for f in _POSITIVE]
        for bad, message in problems:
            if bad:
                raise PoetryVAEError(f"invalid model config: {message}")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples become lists), loadable with ``torch.load(weights_only=True)``."""
        d = dataclasses.asdict(self)
        d["adaptive_cutoffs"] = list(self.adaptive_cutoffs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``. Unknown keys are an error naming them; missing keys take the defaults of when
        they were written (:data:`OLD_DEFAULTS`, else the field's default), so an old checkpoint builds its model."""
        known = {f.name for f in dataclasses.fields(cls)}
        d = {key: value for key, value in d.items() if key not in _MOVED_TO_OBJECTIVE}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PoetryVAEError(f"unknown model config key(s): {', '.join(unknown)}")
        return cls(**{**OLD_DEFAULTS, **d})


def lm_config(cfg: ModelConfig) -> ModelConfig:
    """The language model a fused VAE holds beside its decoder: the same decoder and inputs without z (no encoder,
    no z paths, no position codes, which only carry z), as the flagship's LM reference is built."""
    return dataclasses.replace(cfg, use_latent=False, lm_fusion=False, fusion_by_cluster=False, position_codes=0,
                               z_to_initial_state=False, z_to_every_input=False, z_to_output=False, prior="standard",
                               prior_components=1, bn_gamma=0.0)


# Fields whose default changed, with the default before the change: a dict without the key (an older
# checkpoint's hyper-parameters) meant that one. output_layer's was "softmax" while conf/model/vae.yaml, what a
# run composes, said "adaptive"; the dataclass now says what runs get.
OLD_DEFAULTS: dict[str, Any] = {"output_layer": "softmax"}


# Keys that older checkpoints hold in the model's hyper-parameters; the objective owns them now.
_MOVED_TO_OBJECTIVE = ("word_dropout",)
_POSITIVE = (
    "prior_components",
    "embed_dim",
    "encoder_hidden",
    "encoder_layers",
    "latent_dim",
    "decoder_hidden",
    "decoder_layers",
    "position_code_dim",
)
