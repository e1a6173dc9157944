"""poetry_vae: a variational autoencoder over Chinese classical quatrains (五言绝句)."""

__version__ = "0.1.0"
