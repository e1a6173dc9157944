"""Write poems from a checkpoint: ``python -m poetry_vae.sample ckpt_path=... [n=100 strategy=top_p ...]``.

Modes: ``prior`` (z ~ N(0, I)), ``reconstruct`` (decode given poems from their posterior means) and
``interpolate`` (Bowman's homotopy between two given poems). See conf/sample.yaml for every option.
"""

from __future__ import annotations

import json
import random
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from poetry_vae.atomic import atomic_write_text, check_writable
from poetry_vae.checkpoint import load_checkpoint
from poetry_vae.cli import hydra_command
from poetry_vae.errors import PromptError
from poetry_vae.generation.decoding import generate, sample_prior
from poetry_vae.generation.latent_ops import homotopy, reconstruct
from poetry_vae.generation.request import FORM_FIELDS, REQUEST_FIELDS, DecodeRequest, GeneratedPoem
from poetry_vae.metrics.poetry import poetry_report

MODES = ("prior", "reconstruct", "interpolate")


def decode_request(cfg: DictConfig, form: dict[str, Any]) -> DecodeRequest:
    """The request from the command line's decoding keys; the form's sizes from the checkpoint's data settings."""
    values = {key: cfg[key] for key in REQUEST_FIELDS}
    for key in ("first_line", "acrostic"):  # Hydra parses 一二三四 fine, but digits or numbers need str()
        if values[key] is not None:
            values[key] = str(values[key])
    sizes = {key: int(form[key]) for key in FORM_FIELDS if key in form}
    return DecodeRequest(**values, **sizes)


def write_poems(cfg: DictConfig) -> list[GeneratedPoem]:
    """The whole job, without Hydra around it: load, decode, print, save."""
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise PromptError("no checkpoint given: pass ckpt_path=outputs/<run>/checkpoints/last.ckpt")
    if cfg.mode not in MODES:
        raise PromptError(f"mode={cfg.mode!r}: choose one of {', '.join(MODES)}")
    if cfg.out:
        check_writable(cfg.out)  # before any work: a bad path must not cost the poems
    ckpt = load_checkpoint(cfg.ckpt_path, map_location=cfg.device)
    request = decode_request(cfg, ckpt.data_hparams)
    request.validate()
    generator = torch.Generator(device=cfg.device).manual_seed(int(cfg.seed))
    poems_in = [str(p) for p in cfg.poems]
    if cfg.mode == "prior":
        if cfg.n < 1:
            raise PromptError(f"n={cfg.n}: ask for at least one poem")
        z = sample_prior(ckpt.model, int(cfg.n), generator)
        poems = generate(ckpt.model, ckpt.vocab, z, request, generator, num_poems=int(cfg.n))
    elif cfg.mode == "reconstruct":
        if not poems_in:
            example = "poems=[白日依山尽，黄河入海流。欲穷千里目，更上一层楼。]"
            raise PromptError(f"mode=reconstruct needs poems=[...], e.g. {example}")
        poems = reconstruct(ckpt.model, ckpt.vocab, poems_in, request, generator)
    else:
        if len(poems_in) != 2:
            raise PromptError(f"mode=interpolate needs exactly 2 poems=[a,b], got {len(poems_in)}")
        poems = homotopy(ckpt.model, ckpt.vocab, poems_in[0], poems_in[1], int(cfg.steps), request,
                         bool(cfg.spherical), generator)
    show(poems, cfg)
    if cfg.report:
        show_report(poems, ckpt.data_hparams, int(cfg.seed))
    if cfg.out:
        records = [record(i, poem, cfg) for i, poem in enumerate(poems)]
        atomic_write_text(cfg.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        print(f"wrote {len(records)} poems to {cfg.out}")
    return poems


def record(index: int, poem: GeneratedPoem, cfg: DictConfig) -> dict[str, Any]:
    return {"index": index, "text": poem.text, "lines": poem.lines, "log_prob": round(poem.log_prob, 4),
            "constraints": poem.constraints, "pattern": poem.pattern, "mode": cfg.mode,
            "strategy": cfg.strategy, "seed": int(cfg.seed), "checkpoint": str(cfg.ckpt_path)}


def show(poems: list[GeneratedPoem], cfg: DictConfig) -> None:
    table = Table(title=f"{len(poems)} poems · mode={cfg.mode} · strategy={cfg.strategy}", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("poem", no_wrap=True, min_width=48)  # 24 full-width characters
    table.add_column("log p", justify="right")
    table.add_column("constraints")
    for i, poem in enumerate(poems):
        held = " ".join(f"{name}{'✓' if ok else '✗'}" for name, ok in poem.constraints.items())
        table.add_row(str(i), poem.text, f"{poem.log_prob:.1f}", held + (f" {poem.pattern}" if poem.pattern else ""))
    Console(width=max(100, Console().width)).print(table)


def show_report(poems: list[GeneratedPoem], data_hparams: dict[str, Any], seed: int) -> None:
    """Poetry metrics of these poems beside the same metrics on as many human poems from the test split."""
    from poetry_vae.data.datamodule import QuatrainDataModule  # Lightning is needed only for this report

    datamodule = QuatrainDataModule(**data_hparams)
    datamodule.load()  # the checkpoint's own split; texts only, so no vocabulary is built
    test = [list(p.lines) for p in datamodule.poems["test"]]
    human = random.Random(seed).sample(test, min(len(poems), len(test)))
    train = [list(p.lines) for p in datamodule.poems["train"]]
    form = int(data_hparams.get("line_length", 5))
    rows = {"generated": poetry_report([p.lines for p in poems], train, line_length=form),
            "human test split": poetry_report(human, train, line_length=form)}
    table = Table(title=f"poetry metrics (human row: {len(human)} random test-split poems; 平水韵)")
    table.add_column("")
    names = list(rows["generated"])
    for name in names:
        table.add_column(name.replace("_rate", "").replace("_", " "), justify="right")
    for label, report in rows.items():
        table.add_row(label, *(f"{report[name]:.3f}" if name != "n_poems" else f"{report[name]:.0f}" for name in names))
    Console(width=max(160, Console().width)).print(table)


main = hydra_command("sample", write_poems)

if __name__ == "__main__":
    main()
