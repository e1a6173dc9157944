"""The poem model — a VAE, or with ``use_latent=False`` its LM baseline: config, highway layers, encoder, decoder."""

from poetry_vae.model.build import build_model
from poetry_vae.model.config import ModelConfig
from poetry_vae.model.decoder import Decoder, State
from poetry_vae.model.encoder import Encoder
from poetry_vae.model.highway import Highway
from poetry_vae.model.poem_model import ModelOutput, PoemModel

__all__ = ["Decoder", "Encoder", "Highway", "ModelConfig", "ModelOutput", "PoemModel", "State", "build_model"]
