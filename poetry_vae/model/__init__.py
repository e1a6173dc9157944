"""The poem VAE model: config, highway layers, encoder, decoder and the assembled PoemVAE."""

from poetry_vae.model.build import build_model
from poetry_vae.model.config import VAEConfig
from poetry_vae.model.decoder import Decoder, State
from poetry_vae.model.encoder import Encoder
from poetry_vae.model.highway import Highway
from poetry_vae.model.vae import PoemVAE, VAEOutput

__all__ = ["Decoder", "Encoder", "Highway", "PoemVAE", "State", "VAEConfig", "VAEOutput", "build_model"]
