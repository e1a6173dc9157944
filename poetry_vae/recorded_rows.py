"""The rows recorded under docs/ whose presets are no longer shipped, and the command that trains each again.

Each command is a shipped preset plus overrides (or overrides alone) composing exactly the config the row's preset
composed (tests/test_recorded_rows.py checks it against a recording of each old composition); most rows are also
one point of a sweep in conf/hparams_search/.
"""

from __future__ import annotations

# row (its old preset's name) -> (the overrides that train it again, the sweep in conf/hparams_search/ holding it)
ROWS: dict[str, tuple[str, str | None]] = {
    "lm_h256": ("experiment=lm model.decoder_hidden=256", "lm_decoder"),
    "lm_h512": ("experiment=lm model.decoder_hidden=512", "lm_decoder"),
    "lm_pos": ("experiment=lm model.position_codes=40", "lm_decoder"),
    "lm_original": ("experiment=lm model.output_layer=softmax data.batch_size=32 trainer.precision=32-true", None),
    "bnvae_wd0": ("experiment=bnvae objective.word_dropout=0.0", "bnvae_decoder"),
    "bnvae_wd0_skip": ("experiment=bnvae objective.word_dropout=0.0 model.z_to_output=true", "bnvae_decoder"),
    "bnvae_bow": ("experiment=bnvae objective.bag_of_words=1.0", "bnvae_decoder"),
    "bnvae_bow_skip": ("experiment=bnvae objective.word_dropout=0.0 model.z_to_output=true objective.bag_of_words=1.0",
                       "bnvae_decoder"),
    "bnvae_z64": ("experiment=bnvae model.latent_dim=64", "bnvae_size"),
    "bnvae_h256": ("experiment=bnvae model.decoder_hidden=256", "bnvae_size"),
    "bnvae_e64": ("experiment=bnvae model.encoder_hidden=64", "bnvae_size"),
    "bnvae_high_kl": ("experiment=bnvae model.bn_gamma=1.0 objective.word_dropout=0.5", "bnvae_kl"),
    "bnvae_kl36_bow": ("experiment=bnvae model.bn_gamma=1.5 objective.word_dropout=0.5 model.z_to_output=true "
                       "objective.bag_of_words=1.0", "bnvae_kl"),
    "bnvae_kl64_bow": ("experiment=bnvae model.bn_gamma=2.0 objective.word_dropout=0.5 model.z_to_output=true "
                       "objective.bag_of_words=1.0", "bnvae_kl"),
    "bnvae_pos": ("experiment=bnvae objective.word_dropout=0.0 model.z_to_output=true model.position_codes=40",
                  "position_codes"),
    "bnvae_kl36_pos": ("experiment=bnvae model.bn_gamma=1.5 model.z_to_output=true model.position_codes=40",
                       "position_codes"),
    "fb32_pos": ("experiment=bnvae model.bn_gamma=0.0 objective.free_bits=1.0 objective.word_dropout=0.0 "
                 "model.z_to_output=true model.position_codes=40", "position_codes"),
    "fb64_pos": ("experiment=bnvae model.bn_gamma=0.0 objective.free_bits=2.0 objective.word_dropout=0.0 "
                 "model.z_to_output=true model.position_codes=40", "position_codes"),
    "wuyan_fb64_pos": ("data=wuyan anneal=constant model.latent_dim=32 +model.num_forms=4 model.z_to_output=true "
                       "model.position_codes=40 objective.free_bits=2.0 trainer.val_check_interval=0.2",
                       "wuyan_latent"),
    "wuyan_fb64_pos_wd50": ("data=wuyan anneal=constant model.latent_dim=32 +model.num_forms=4 model.z_to_output=true "
                            "model.position_codes=40 objective.free_bits=2.0 objective.word_dropout=0.5 "
                            "trainer.val_check_interval=0.2", "wuyan_latent"),
    "wuyan_fb64_pos_wd75": ("data=wuyan anneal=constant model.latent_dim=32 +model.num_forms=4 model.z_to_output=true "
                            "model.position_codes=40 objective.free_bits=2.0 objective.word_dropout=0.75 "
                            "trainer.val_check_interval=0.2", "wuyan_latent"),
    "wuyan_fb128_pos_wd50": ("data=wuyan anneal=constant model.latent_dim=32 +model.num_forms=4 model.z_to_output=true "
                             "model.position_codes=40 objective.free_bits=4.0 objective.word_dropout=0.5 "
                             "trainer.val_check_interval=0.2", "wuyan_latent"),
    "wuyan_z128_pos_wd50": ("data=wuyan anneal=constant model.latent_dim=128 +model.num_forms=4 model.z_to_output=true "
                            "model.position_codes=40 objective.free_bits=1.0 objective.word_dropout=0.5 "
                            "trainer.val_check_interval=0.2", None),
    "wuyan_fb64_pos_wd50_div1": ("data=wuyan anneal=constant model.latent_dim=32 +model.num_forms=4 "
                                 "model.z_to_output=true model.position_codes=40 objective.free_bits=2.0 "
                                 "objective.word_dropout=0.5 model.adaptive_div_value=1.0 "
                                 "trainer.val_check_interval=0.2", None),
    "pretrain_lm": ("experiment=lm data=wuyan +model.num_forms=4", None),
    "finetune_lm": ("experiment=lm data.vocab_from=wuyan +model.num_forms=4 "
                    "'init_from=${paths.output_root}/pretrain_lm/checkpoints/last.ckpt'", None),
    "pretrain_bnvae": ("experiment=bnvae data=wuyan +model.num_forms=4", None),
    "finetune_bnvae": ("experiment=bnvae data.vocab_from=wuyan +model.num_forms=4 "
                       "'init_from=${paths.output_root}/pretrain_bnvae/checkpoints/last.ckpt'", None),
}




def command(name: str) -> str:
    """The command line that trains the row ``name`` again, into its old output directory."""
    return f"python -m poetry_vae.train {ROWS[name][0]} run_name={name}"
