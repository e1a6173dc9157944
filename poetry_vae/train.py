"""Train a poem VAE: ``python -m poetry_vae.train [experiment=bowman] [key=value ...]`` (see conf/train.yaml)."""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from poetry_vae import run_lock
from poetry_vae.checkpoint import LoadedCheckpoint, load_checkpoint, read_checkpoint, why_no_file
from poetry_vae.checkpoint_io import AtomicCheckpointIO
from poetry_vae.cli import hydra_command, hydra_value
from poetry_vae.data.vocab import Vocabulary
from poetry_vae.disk_full import one_line_when_full
from poetry_vae.distributed import single_job_command_line
from poetry_vae.errors import CheckpointError, PoetryVAEError
from poetry_vae.lit_module import PoemModule
from poetry_vae.model.warm_start import vae_from_lm
from poetry_vae.precision import resolve_precision
from poetry_vae.preemption import CheckpointOnSigterm, terminated
from poetry_vae.progress import RunReport, clock, max_time_seconds, quiet_lightning, run_log, say, trained_seconds
from poetry_vae.project_paths import PROJECT_ROOT, anchored, shown_path
from poetry_vae.runs import best_checkpoint
from poetry_vae.schema import ConfigError
from poetry_vae.tracking import flat_config, make_loggers, tracked
from poetry_vae.training import recipe_callbacks

quiet_lightning()

EMBEDDING_INITS = ("word2vec", "random")
NEEDS_LOGGER = ("LearningRateMonitor", "ThroughputMonitor")
PROGRESS_BARS = ("RichProgressBar", "TQDMProgressBar")


def resolve_ckpt_path(
    ckpt_path: str | None, output_dir: Path, quiet: bool = False
) -> tuple[str | None, dict[str, Any] | None]:
    """``last`` resumes this run's last.ckpt (fresh start if none); a path must be a readable checkpoint.

    Returns the path and the checkpoint's contents (None, None for a fresh run).
    """
    last = output_dir / "checkpoints" / "last.ckpt"
    if ckpt_path is None:
        if last.exists():  # refuse to overwrite an earlier run's checkpoints
            raise CheckpointError(
                f"{output_dir} already holds checkpoints: resume with ckpt_path=last, or start a new run with "
                "run_name=<another name>"
            )
        return None, None
    if ckpt_path == "last":
        if not last.exists():
            if not quiet and run_lock.is_rank_zero():  # once, not once a DDP process
                print(f"no checkpoint at {last} yet: starting a fresh run", file=sys.stderr)
            return None, None
        ckpt_path = str(last)
    ckpt_path = str(anchored(ckpt_path))
    # one-line errors for missing, corrupt or foreign files, before Lightning sees it
    return ckpt_path, read_checkpoint(ckpt_path)


def resume_line(checkpoint: dict[str, Any], ckpt_path: str, max_time: object) -> str:
    """What a resumed run says first: where it starts, how much of its time budget is used, and when none is left
    (Lightning would stop at once and only test again), what to do instead."""
    line = f"resuming {shown_path(ckpt_path)} at step {int(checkpoint.get('global_step', 0)):,}"
    used, budget = trained_seconds(checkpoint), max_time_seconds(max_time)
    if used is None or budget is None:
        return line
    line += f" ({clock(used)} trained of trainer.max_time={max_time})"
    if used >= budget:
        line += (": its time is spent, so nothing more is trained; pass a larger "
                 "trainer.max_time to train on, or run_name=<another name> for a new run")
    return line


def epochs_done(checkpoint: dict[str, Any]) -> int:
    """Epochs whose training the checkpoint has finished, as Lightning counts them when it resumes: an epoch whose
    last batch ran counts, even if its validation was cut short (a SIGTERM)."""
    fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
    epochs = fit_loop.get("epoch_progress", {}).get("current", {})
    if not epochs:
        return int(checkpoint.get("epoch", 0))
    done = int(epochs.get("processed", 0))
    if epochs.get("started", 0) > done and fit_loop.get("epoch_loop.batch_progress", {}).get("is_last_batch"):
        done += 1
    return done


def check_max_epochs(checkpoint: dict[str, Any], max_epochs: int | None, ckpt_path: str) -> None:
    """A one-line error in place of Lightning's traceback (or its silent no-op) when ``trainer.max_epochs`` is
    below what the checkpoint has already trained."""
    done = epochs_done(checkpoint)
    if max_epochs is not None and max_epochs >= 0 and max_epochs < done:
        raise CheckpointError(
            f"{ckpt_path} has trained {done} epochs (step {checkpoint.get('global_step', '?')}), more than "
            f"trainer.max_epochs={max_epochs}: pass trainer.max_epochs={done + 1} or more to train on"
        )


def check_accelerator(accelerator: object) -> None:
    """A GPU asked for on a machine without one is a one-line error before anything is written (Lightning's own
    is a misconfiguration exception raised after the run directory is made)."""
    if str(accelerator).lower() in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator}: no CUDA GPU is available on this machine; use "
                          "trainer=cpu (or trainer=default, which picks what the machine has)")


def init_checkpoint(init_from: str) -> Path:
    """The fine-tuning checkpoint's path (relative to the project root; a run directory stands for its best
    checkpoint by validation ELBO), or a one-line error naming the key."""
    path = anchored(init_from)
    if path.is_dir():
        if not (path / "checkpoints").is_dir():
            raise CheckpointError(f"init_from={path} is a directory without checkpoints/: give a run directory "
                                  "written by python -m poetry_vae.train, or a .ckpt file")
        path = best_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"init_from={path} {why_no_file(path)}: give a checkpoint written by python -m "
                              "poetry_vae.train (a relative path starts at the project root)")
    return path


def check_resumable(module: pl.LightningModule, checkpoint: dict[str, Any], ckpt_path: str) -> None:
    """A one-line error, before Lightning's multi-line one, when the checkpoint's weights do not fit the module
    this config builds (another model size, latent, output layer or objective head)."""
    saved, current = checkpoint.get("state_dict", {}), module.state_dict()
    differ = sorted(set(saved) ^ set(current)) + sorted(
        name for name in set(saved) & set(current) if tuple(saved[name].shape) != tuple(current[name].shape)
    )
    if differ:
        raise CheckpointError(
            f"{ckpt_path} was trained with another model or objective ({len(differ)} weights differ, e.g. "
            f"{differ[0]}): resume with the run's own config (its .hydra/config.yaml), or start a new run with "
            "run_name=<another name>"
        )


def _plain(node: DictConfig | None) -> Any:
    """A config node as plain Python values (what checkpoints may hold), or None when absent or empty."""
    if node is None:
        return None
    return OmegaConf.to_container(node, resolve=True) or None


def starting_vocabulary(datamodule: Any, resumed: dict[str, Any] | None, init: LoadedCheckpoint | None) -> Vocabulary:
    """A resumed run keeps its checkpoint's vocabulary and a fine-tuned run its pretrained one (ids stay stable);
    a fresh run builds the data config's own."""
    if resumed is not None:
        vocab = Vocabulary.from_dict(resumed["hyper_parameters"]["vocab"], "the resumed checkpoint's vocabulary")
        return datamodule.use_vocabulary(vocab, "the resumed checkpoint")
    if init is not None:
        return datamodule.use_vocabulary(init.vocab, f"checkpoint {init.path}")
    return datamodule.prepare()


def start_from(module: PoemModule, init: LoadedCheckpoint) -> None:
    """Copy a pretrained checkpoint's weights (fine-tuning: the optimiser, step and β schedule start afresh). A VAE
    from a language model takes its embedding and decoder, z's paths at zero (``vae_from_lm``)."""
    if module.model.encoder is not None and init.model.encoder is None:
        try:
            vae_from_lm(module.model, init.model)
        except ValueError as error:
            raise CheckpointError(f"init_from={init.path}: {error}") from None
        return
    if module.model.lm is not None and init.model.lm is None:
        raise CheckpointError(f"init_from={init.path} has no language model beside its decoder (model.lm_fusion=true "
                              f"asks for one): make one with python -m poetry_vae.fuse_lm ckpt_path={init.path} "
                              "lm=<its LM reference> out=<new file> and start from that, or drop model.lm_fusion=true")
    try:
        module.model.load_state_dict(init.model.state_dict())
    except RuntimeError as error:
        details = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        overrides = model_overrides(init.model.cfg, module.model.cfg)
        fix = f"add {' '.join(overrides)}" if overrides else "use the model config it was trained with"
        raise CheckpointError(
            f"init_from={init.path}: its weights do not fit this run's model ({details[0] if details else error}); "
            f"{fix} (the sizes, latent and output layer it was trained with)"
        ) from None


def model_overrides(trained: Any, wanted: Any) -> list[str]:
    """The ``model.<field>=<value>`` overrides that give a run the model config a checkpoint was trained with
    (the vocabulary comes from the checkpoint itself)."""
    if not (dataclasses.is_dataclass(trained) and dataclasses.is_dataclass(wanted)):
        return []
    names = [f.name for f in dataclasses.fields(trained) if f.name != "vocab_size" and hasattr(wanted, f.name)]
    return [f"model.{name}={_override_value(getattr(trained, name))}" for name in names
            if getattr(trained, name) != getattr(wanted, name)]  # fmt: skip


def _override_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def build_module(cfg: DictConfig, datamodule: Any, vocab: Vocabulary | None = None,
                 resuming: bool = False) -> PoemModule:
    """The LightningModule: each config node is passed whole to the argument of the same name. Word2Vec
    embeddings only for a fresh start: a fine-tune (init_from) or a resume brings its own."""
    if cfg.init_embeddings not in EMBEDDING_INITS:
        raise PoetryVAEError(f"init_embeddings={cfg.init_embeddings!r}: use one of {', '.join(EMBEDDING_INITS)}")
    vocab = vocab or datamodule.prepare()
    module = PoemModule(
        model=_plain(cfg.model),
        vocab=vocab.to_dict(),
        objective=_plain(cfg.objective),
        optimizer=_plain(cfg.optimizer),
        scheduler=_plain(cfg.scheduler),
        anneal=_plain(cfg.anneal),
        **_plain(cfg.evaluation),
    )
    if cfg.init_embeddings == "word2vec" and cfg.init_from is None and not resuming:
        module.model.load_embeddings(torch.from_numpy(datamodule.embedding_matrix(module.model.cfg.embed_dim)))
    return module


def _wanted(callback: DictConfig, cfg: DictConfig, have_logger: bool) -> bool:
    """Skip callbacks the run cannot use: an LR monitor without a logger, a progress bar when bars are off, a
    checkpoint under fast_dev_run (which promises none, yet Lightning 2.6 writes save_last's file at its end)."""
    name = callback._target_.rsplit(".", 1)[-1]
    if name in NEEDS_LOGGER and not have_logger:
        return False
    if name == "ModelCheckpoint" and cfg.trainer.get("fast_dev_run", False):
        return False
    return not (name in PROGRESS_BARS and not cfg.trainer.get("enable_progress_bar", True))


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) one run; returns its final metrics. The whole job, with no Hydra main around it.

    The run directory is locked for the run's life (one run per directory), a full disk is one line, and what the
    run says is also written to its train.log."""
    output_dir = Path(cfg.paths.output_dir)
    with one_line_when_full(output_dir), run_lock.run_directory_lock(output_dir), run_log(output_dir / "train.log"):
        return _train(cfg, output_dir)


def _train(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt_path, checkpoint = resolve_ckpt_path(cfg.ckpt_path, output_dir)
    if checkpoint is not None:
        check_max_epochs(checkpoint, cfg.trainer.get("max_epochs"), ckpt_path)
        if run_lock.is_rank_zero():  # once, not once a DDP process; in train.log too
            say(resume_line(checkpoint, ckpt_path, cfg.trainer.get("max_time")))
    # fine-tuning starts from init_from's weights; a resume has its own
    init = load_checkpoint(init_checkpoint(cfg.init_from)) if cfg.init_from is not None and checkpoint is None else None
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule, starting_vocabulary(datamodule, checkpoint, init), checkpoint is not None)
    # the objective's loop-changing recipes, seeded as the module's weights were: whatever the callbacks config
    recipes = recipe_callbacks(module.objective, has_encoder=module.model.encoder is not None)
    if init is not None:
        start_from(module, init)
    if checkpoint is not None:
        check_resumable(module, checkpoint, ckpt_path)
    loggers = make_loggers(cfg, checkpoint)
    callbacks = [instantiate(node) for node in (cfg.callbacks or {}).values() if _wanted(node, cfg, bool(loggers))]
    on_sigterm = CheckpointOnSigterm(output_dir / "checkpoints")  # whatever the callbacks config: a resume point
    report = RunReport()  # whatever the callbacks config: validation lines in train.log, a summary at the end
    callbacks += [on_sigterm, report, *recipes]
    precision = resolve_precision(cfg.trainer.get("precision", "32-true"), str(cfg.trainer.get("accelerator", "cpu")))
    if cfg.trainer.get("precision") == "auto":
        print(f"trainer.precision=auto -> {precision}", file=sys.stderr)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, precision=precision,
                                      plugins=[AtomicCheckpointIO()])
    with tracked(loggers):
        for logger in loggers:
            logger.log_hyperparams(flat_config(cfg))
        try:
            with warnings.catch_warnings():
                if checkpoint is not None:  # a resume writes into its own checkpoints/: Lightning's notice says nothing
                    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
            if cfg.test_after_fit:
                best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
                results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
                metrics.update({name: float(value) for name, value in (results[0] if results else {}).items()})
        except SIGTERMException:  # Lightning's stop on SIGTERM (exit status 0): ours saves and says so
            raise terminated(trainer, on_sigterm) from None
    if trainer.is_global_zero:
        for line in report.summary(trainer, module, output_dir):
            say(line)
    return metrics


def train_job(cfg: DictConfig) -> float | None:
    """One job of ``python -m poetry_vae.train``; returns the metric a sweeper optimises."""
    try:
        with single_job_command_line():
            metrics = train(cfg)
    except InstantiationException as error:  # a bad value in a config node: Hydra names the node
        raise PoetryVAEError(str(error)) from None
    return metrics.get(cfg.optimized_metric)  # the run directory ends the summary train() printed


def refuse_before_writing(cfg: DictConfig) -> list[str]:
    """A single run that would overwrite a run, resume from a bad checkpoint or train in a directory another run
    is using is refused before Hydra records anything in its directory (the earlier run's .hydra/ config stays as
    it was). Then the directory is locked for this process's life, and pinned as Hydra's run dir (a ${now} in
    its name is not resolved a second time)."""
    check_accelerator(cfg.trainer.get("accelerator"))
    run_dir = anchored(cfg.hydra.run.dir).resolve()
    rank_zero = run_lock.is_rank_zero()  # other ranks share rank 0's directory and lock
    if rank_zero:
        run_lock.check_free(run_dir)
    ckpt_path, checkpoint = resolve_ckpt_path(cfg.ckpt_path, run_dir, quiet=True)
    if checkpoint is not None:
        check_max_epochs(checkpoint, cfg.trainer.get("max_epochs"), str(ckpt_path))
    elif cfg.init_from is not None:
        read_checkpoint(init_checkpoint(cfg.init_from))  # a file that is no checkpoint of ours: refused now
    if not rank_zero:
        return []
    with one_line_when_full(run_dir):  # the lock file is the run's first write
        run_lock.acquire(run_dir)
    return [f"hydra.run.dir={hydra_value(str(run_dir))}"]


_main = hydra_command("train", train_job, precheck=refuse_before_writing)


def main() -> None:
    os.chdir(PROJECT_ROOT)  # relative paths in the config and on the command line start at the project root
    _main()


if __name__ == "__main__":
    main()
