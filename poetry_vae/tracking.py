"""Experiment tracking: one wandb run per job (named, grouped by sweep), the config logged flat, and a resumed run
continuing its own wandb run (its id travels in the checkpoint)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger

RUN_IDS_KEY = "logger_run_ids"  # checkpoint key: {logger class name: run id}
_WANDB_TARGET = "pytorch_lightning.loggers.WandbLogger"


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as ``{"model.latent_dim": 128, ...}``: dashboards filter and group by each key."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk(plain, "")
    return flat


def job_label(run_name: str) -> str:
    """``run_name`` alone for a single run; ``run_name#<job> <its overrides>`` for a job of a multirun."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return run_name
    job = HydraConfig.get().job
    return f"{run_name}#{job.num} {job.override_dirname}".strip()


def run_ids(loggers: list[Logger]) -> dict[str, str]:
    """What a checkpoint keeps so that a resume continues the same wandb run."""
    return {type(logger).__name__: str(logger.version) for logger in loggers if isinstance(logger, WandbLogger)}


def make_loggers(cfg: DictConfig, checkpoint: Mapping[str, Any] | None) -> list[Logger]:
    """The configured loggers; a wandb logger gets this job's name and, when resuming, its earlier run's id."""
    resumed_ids = dict((checkpoint or {}).get(RUN_IDS_KEY) or {})
    loggers = []
    for node in (cfg.logger or {}).values():
        extra: dict[str, Any] = {}
        if node.get("_target_") == _WANDB_TARGET:
            extra["name"] = job_label(str(node.get("name") or cfg.run_name))
            if "WandbLogger" in resumed_ids:
                extra["id"] = resumed_ids["WandbLogger"]  # WandbLogger resumes with resume="allow"
        logger = instantiate(node, **extra)
        if isinstance(logger, WandbLogger):
            _leave_anonymous_unset(logger)
        loggers.append(logger)
    return loggers


def _leave_anonymous_unset(logger: WandbLogger) -> None:
    """Lightning hands wandb.init ``anonymous=None`` when it is not asked for, and wandb (0.2x) answers every run
    with "The anonymous setting has no effect": None is wandb's own default, so the key is left out."""
    init = getattr(logger, "_wandb_init", None)  # what the logger passes to wandb.init when its run starts
    if isinstance(init, dict) and init.get("anonymous", "unset") is None:
        del init["anonymous"]


@contextmanager
def tracked(loggers: list[Logger]) -> Iterator[None]:
    """Close every logger when the job ends, also on failure: the next job of a sweep starts its own wandb run
    (an open one would be reused by Lightning's WandbLogger)."""
    status = "failed"
    try:
        yield
        status = "success"
    finally:
        for logger in loggers:
            logger.finalize(status)
        if any(isinstance(logger, WandbLogger) for logger in loggers):
            import wandb  # only a wandb logger needs it: a csv-only run works where wandb is not installed

            if wandb.run is not None:
                wandb.finish(exit_code=0 if status == "success" else 1)
