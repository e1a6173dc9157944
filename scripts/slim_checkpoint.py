"""Write a training checkpoint's model as a small shippable file: model weights only (half precision), the
hyper-parameters, the vocabulary and how it was made. It loads like any checkpoint (``load_checkpoint``,
``init_from=``), with ``torch.load(weights_only=True)``; optimiser state, callbacks and RNG state are left out.

    python scripts/slim_checkpoint.py outputs/pretrain_vae/checkpoints/last.ckpt \\
        poetry_vae/resources/pretrained_wuyan_vae.pt --command "make pretrain PRETRAIN_BUDGET=00:00:07:00"
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import torch

from poetry_vae.atomic import atomic_write
from poetry_vae.checkpoint import CHECKPOINT_FORMAT, read_checkpoint

KEPT = ("hyper_parameters", "datamodule_hyper_parameters", "global_step", "epoch", "prior_fit", "lm_fusion")
FULL = "model.prior."  # a fitted prior stays in float32 (4 KB): its Cholesky factor sets the density's scale


def slim(source: Path, out: Path, command: str, commit: str | None = None) -> dict:
    relative_source = _relative(source)  # refuse a source outside the repository before reading it
    data = read_checkpoint(source)
    commit = commit or subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    small = {key: data[key] for key in KEPT if key in data}
    small["poetry_vae_format"] = CHECKPOINT_FORMAT
    small["state_dict"] = {name: value.half() if value.is_floating_point() and not name.startswith(FULL) else value
                           for name, value in data["state_dict"].items() if name.startswith("model.")}
    small["provenance"] = {"command": command, "commit": commit, "source": relative_source,
                           "global_step": int(data.get("global_step", 0))}
    atomic_write(out, lambda tmp: torch.save(small, tmp))
    return small["provenance"]


def _relative(path: Path) -> str:
    """The source's path relative to the repository (a machine path would say nothing elsewhere). The path as
    given comes first: a run directory linked in from elsewhere is still outputs/<run>/..."""
    cwd = Path.cwd().resolve()
    for candidate in (path.absolute(), path.resolve()):
        try:
            return str(candidate.relative_to(cwd))
        except ValueError:
            continue
    raise SystemExit(f"error: {path} lies outside the repository: copy its run directory into outputs/ first")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--command", required=True, help="the command that trained the source checkpoint")
    parser.add_argument("--commit", help="the commit it was trained at (default: HEAD)")
    args = parser.parse_args()
    provenance = slim(args.source, args.out, args.command, args.commit)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): {provenance}")


if __name__ == "__main__":
    main()
