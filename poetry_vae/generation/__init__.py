"""Generation: batched constrained decoding (form, rhyme, tone, prompts) and latent-space tools."""

from poetry_vae.generation.decoding import generate, sample_prior
from poetry_vae.generation.latent_ops import encode_texts, homotopy, interpolate, nearest, reconstruct
from poetry_vae.generation.processors import check_constraints
from poetry_vae.generation.request import DecodeRequest, GeneratedPoem

__all__ = [
    "DecodeRequest",
    "GeneratedPoem",
    "check_constraints",
    "encode_texts",
    "generate",
    "homotopy",
    "interpolate",
    "nearest",
    "reconstruct",
    "sample_prior",
]
