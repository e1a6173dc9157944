"""Train a poem VAE: ``python -m poetry_vae.train [experiment=bowman] [key=value ...]`` (see conf/train.yaml)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from poetry_vae.checkpoint import read_checkpoint
from poetry_vae.cli import hydra_command
from poetry_vae.distributed import single_job_command_line
from poetry_vae.errors import CheckpointError, PoetryVAEError
from poetry_vae.lit_module import PoemVAEModule
from poetry_vae.precision import resolve_precision

# Lightning notices that say nothing about this run (we count no FLOPs; a torch deprecation inside Lightning).
warnings.filterwarnings("ignore", message=".*flops_per_batch.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")

EMBEDDING_INITS = ("word2vec", "random")
NEEDS_LOGGER = ("LearningRateMonitor", "ThroughputMonitor")
PROGRESS_BARS = ("RichProgressBar", "TQDMProgressBar")


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """``last`` resumes this run's last.ckpt (fresh start if none); a path must be a readable checkpoint."""
    last = output_dir / "checkpoints" / "last.ckpt"
    if ckpt_path is None:
        if last.exists():  # refuse to overwrite an earlier run's checkpoints
            raise CheckpointError(
                f"{output_dir} already holds checkpoints: resume with ckpt_path=last, or start a new run with "
                "run_name=<another name>"
            )
        return None
    if ckpt_path == "last":
        if not last.exists():
            print(f"no checkpoint at {last} yet: starting a fresh run", file=sys.stderr)
            return None
        ckpt_path = str(last)
    read_checkpoint(ckpt_path)  # one-line errors for missing, corrupt or foreign files, before Lightning sees it
    return ckpt_path


def _plain(node: DictConfig | None) -> Any:
    """A config node as plain Python values (what checkpoints may hold), or None when empty."""
    return OmegaConf.to_container(node, resolve=True) or None if node is not None else None


def build_module(cfg: DictConfig, datamodule: Any) -> PoemVAEModule:
    """The LightningModule: each config node is passed whole to the argument of the same name."""
    if cfg.init_embeddings not in EMBEDDING_INITS:
        raise PoetryVAEError(f"init_embeddings={cfg.init_embeddings!r}: use one of {', '.join(EMBEDDING_INITS)}")
    vocab = datamodule.prepare()
    module = PoemVAEModule(
        model=_plain(cfg.model),
        vocab=vocab.to_dict(),
        objective=_plain(cfg.objective),
        optimizer=_plain(cfg.optimizer),
        scheduler=_plain(cfg.scheduler),
        anneal=_plain(cfg.anneal),
        **_plain(cfg.evaluation),
    )
    if cfg.init_embeddings == "word2vec":
        module.model.load_embeddings(torch.from_numpy(datamodule.embedding_matrix(module.model.cfg.embed_dim)))
    return module


def _wanted(callback: DictConfig, cfg: DictConfig, have_logger: bool) -> bool:
    """Skip callbacks the run cannot use: an LR monitor without a logger, a progress bar when bars are off."""
    name = callback._target_.rsplit(".", 1)[-1]
    if name in NEEDS_LOGGER and not have_logger:
        return False
    return not (name in PROGRESS_BARS and not cfg.trainer.get("enable_progress_bar", True))


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) one run; returns its final metrics. The whole job, with no Hydra main around it."""
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, output_dir)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    loggers = [instantiate(node) for node in (cfg.logger or {}).values()]
    callbacks = [instantiate(node) for node in (cfg.callbacks or {}).values() if _wanted(node, cfg, bool(loggers))]
    precision = resolve_precision(cfg.trainer.get("precision", "32-true"), str(cfg.trainer.get("accelerator", "cpu")))
    if cfg.trainer.get("precision") == "auto":
        print(f"trainer.precision=auto -> {precision}", file=sys.stderr)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, precision=precision)
    for logger in loggers:
        logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True)})
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    if cfg.test_after_fit:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update({name: float(value) for name, value in (results[0] if results else {}).items()})
    for logger in loggers:
        logger.finalize("success")
    return metrics


def train_job(cfg: DictConfig) -> float | None:
    """One job of ``python -m poetry_vae.train``; returns the metric a sweeper optimises."""
    try:
        with single_job_command_line():
            metrics = train(cfg)
    except InstantiationException as error:  # a bad value in a config node: Hydra names the node
        raise PoetryVAEError(str(error)) from None
    print(f"run directory: {HydraConfig.get().runtime.output_dir}")
    return metrics.get(cfg.optimized_metric)


main = hydra_command("train", train_job)

if __name__ == "__main__":
    main()
