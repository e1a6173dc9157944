"""What changes the training loop beyond the LightningModule's plain step: the recipes, as Lightning callbacks."""

from poetry_vae.training.recipes import AggressiveEncoder, DecoderReset, recipe_callbacks

__all__ = ["AggressiveEncoder", "DecoderReset", "recipe_callbacks"]
