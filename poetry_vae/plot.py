"""``python -m poetry_vae.plot <run dir or metrics.csv> [out=curves.png]``: a run's training curves as a PNG.

Reads every ``csv/version_*/metrics.csv`` of the run (resumes included, in step order) and draws the loss (train and
validation negative ELBO per character, the same quantity on both splits, with the validation IW bound), KL on both
splits against β, active units and mutual information, and the learned rhyme rate when it was logged. No Hydra, no
model: it works on a copied CSV on any machine with matplotlib. The PNG defaults to ``<run>/curves.png`` (beside
the metrics.csv when one is given) and is written whole or not at all.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path

from poetry_vae.atomic import atomic_write, check_writable
from poetry_vae.cli import closest, did_you_mean, fail
from poetry_vae.errors import PoetryVAEError

USAGE = "usage: python -m poetry_vae.plot <run dir or metrics.csv> [out=curves.png]"
KEYS = ("out",)


def parse(argv: Sequence[str]) -> tuple[Path, Path | None]:
    """(the run or CSV, the PNG asked for) from the command line; one-line errors for anything else."""
    paths: list[str] = []
    out: Path | None = None
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            paths.append(arg)
        elif key == "out" and value:
            out = Path(value)
        elif key == "out":
            raise PoetryVAEError("out= needs a file name, e.g. out=curves.png")
        else:
            names = closest(key, KEYS)
            raise PoetryVAEError(f"unknown key {key!r}: {did_you_mean(names) if names else 'the only key is out'}")
    if len(paths) != 1:
        raise PoetryVAEError(f"give one run directory or metrics.csv (got {len(paths)}); {USAGE}")
    if out is not None and out.suffix.lower() != ".png":
        raise PoetryVAEError(f"out={out} is not a .png file: name one, e.g. out=curves.png")
    return Path(paths[0]), out


def default_out(source: Path) -> Path:
    """``<run>/curves.png`` for a run directory, ``curves.png`` beside a metrics.csv."""
    return (source.parent if source.is_file() else source) / "curves.png"


def plot(source: Path, out: Path | None = None) -> Path:
    """Draw ``source``'s curves into ``out`` (default: :func:`default_out`); the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from poetry_vae.plots import read_metrics, training_curves

    rows = read_metrics(source)
    target = check_writable(str(out or default_out(source)), example="curves.png")
    fig = training_curves(rows, title=str(source))
    try:
        atomic_write(target, functools.partial(fig.savefig, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return target


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(USAGE)
        print(__doc__.split("\n\n", 1)[1].strip())
        return
    try:
        source, out = parse(args)
        written = plot(source, out)
    except PoetryVAEError as error:
        fail(str(error))
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
