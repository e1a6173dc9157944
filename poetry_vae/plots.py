"""Figures for notebooks and the report (matplotlib is imported lazily: it is an optional extra)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from poetry_vae.errors import PoetryVAEError


def project_2d(mu: Tensor) -> Tensor:
    """The first two principal components of posterior means (N, Z) -> (N, 2), deterministic."""
    centred = mu.double() - mu.double().mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    coords = centred @ v[:2].T
    # SVD signs are arbitrary: make each axis's largest-magnitude point positive, so reruns give the same picture
    extremes = coords.gather(0, coords.abs().argmax(dim=0, keepdim=True))
    return (coords * torch.where(extremes >= 0, 1.0, -1.0)).float()


def latent_map(mu: Tensor, labels: Sequence[str], title: str = "test-set posterior means (PCA)") -> Any:
    """A scatter of posterior means in their first two principal components, coloured by ``labels``."""
    import matplotlib.pyplot as plt

    coords = project_2d(mu)
    fig, ax = plt.subplots(figsize=(6, 5))
    for label in sorted(set(labels)):
        rows = [i for i, value in enumerate(labels) if value == label]
        ax.scatter(coords[rows, 0], coords[rows, 1], s=6, alpha=0.6, label=f"{label} ({len(rows)})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(markerscale=3)
    fig.tight_layout()
    return fig


# ---- training curves from a run's CSV log ----

# The columns a training curve needs: the train and validation ELBO terms (the loss panel compares the same
# quantity, the negative ELBO per character, on both splits).
CURVE_COLUMNS = ("train/rec", "train/kl", "train/nll_char", "val/rec", "val/kl", "val/nll_char")


def metrics_files(path: Path) -> list[Path]:
    """The metrics.csv files of a run directory (every resume's ``csv/version_*``, in order), of a ``csv/`` or
    ``version_*`` folder, or the one file given; :class:`PoetryVAEError` (one line) when there is none."""
    if path.is_file():
        return [path]
    if not path.exists():
        raise PoetryVAEError(f"{path} does not exist: give a run directory (outputs/<run>) or its metrics.csv")
    for pattern in ("csv/version_*/metrics.csv", "version_*/metrics.csv", "metrics.csv"):
        found = sorted(path.glob(pattern), key=lambda p: (len(str(p)), str(p)))  # version_10 after version_9
        if found:
            return found
    raise PoetryVAEError(f"{path} holds no csv/version_*/metrics.csv: train with the csv logger (logger=csv or "
                         "the default) or give a metrics.csv")


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a run's CSV log (every version's, in order); one-line errors for what cannot be plotted."""
    rows: list[dict[str, str]] = []
    for file in metrics_files(path):
        try:
            with open(file, encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                part = list(reader)
                columns = set(reader.fieldnames or ())
        except UnicodeDecodeError:
            raise PoetryVAEError(f"{file} is not text (not UTF-8): give a run directory or the metrics.csv training "
                                 "wrote") from None
        except (OSError, csv.Error) as error:
            raise PoetryVAEError(f"cannot read {file}: {error}") from None
        if "step" not in columns:
            raise PoetryVAEError(f"{file} has no 'step' column: it is not a metrics.csv written by training")
        rows += part
    present = {key for row in rows for key, value in row.items() if value not in (None, "")}
    if not present & set(CURVE_COLUMNS):
        raise PoetryVAEError(f"{path} logs none of {', '.join(CURVE_COLUMNS)}: no training curves to draw "
                             "(is it a poetry_vae run's metrics.csv?)")
    return rows


def metric_series(rows: Sequence[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    """``key`` against the optimiser step (the last value logged at a step wins), in step order."""
    points: dict[int, float] = {}
    for row in rows:
        value, step = row.get(key), row.get("step")
        if value not in (None, "") and step not in (None, ""):
            points[int(float(step))] = float(value)  # type: ignore[arg-type]
    ordered = sorted(points.items())
    return [step for step, _ in ordered], [value for _, value in ordered]


def neg_elbo_per_char(rows: Sequence[dict[str, str]], split: str) -> tuple[list[int], list[float]]:
    """The negative ELBO (reconstruction + KL, no β, no free bits) per character of ``split`` ("train" or
    "val"), from the logged per-poem terms; characters per poem are rec / nll_char."""
    rec, kl, per_char = (dict(zip(*metric_series(rows, f"{split}/{name}"), strict=True))
                         for name in ("rec", "kl", "nll_char"))
    steps = sorted(step for step in rec if step in kl and per_char.get(step))
    return steps, [(rec[step] + kl[step]) / (rec[step] / per_char[step]) for step in steps]


def _legend(*axes: Any, **kwargs: Any) -> None:
    """One legend for a panel and its twin axis (a twin's lines are otherwise left out)."""
    handles, labels = [], []
    for ax in axes:
        more_handles, more_labels = ax.get_legend_handles_labels()
        handles += more_handles
        labels += more_labels
    if handles:
        axes[0].legend(handles, labels, fontsize=8, **kwargs)


def _second_axis(ax: Any, series: tuple[list, list], ylabel: str, title: str, **style: Any) -> None:
    """``series`` on a second y-axis of ``ax`` (another unit), the panel's title, one legend for both axes."""
    twin = ax.twinx()
    twin.plot(*series, **style)
    twin.set_ylabel(ylabel)
    ax.set_title(title)
    _legend(ax, twin)


def training_curves(rows: Sequence[dict[str, str]], title: str = "") -> Any:
    """A figure of a run's curves: the loss (train and validation negative ELBO per character, the validation
    IW bound beside them), KL on both splits against β, active units and mutual information, and the learned
    rhyme rate when it was logged. Every panel has its legend."""
    import matplotlib.pyplot as plt

    rhyme = metric_series(rows, "val/rhyme_rate")
    panels = 4 if rhyme[0] else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.6))
    loss, kl, latent = axes[:3]
    for split, label, style in (("train", "train", {}), ("val", "validation", {"marker": "."})):
        loss.plot(*neg_elbo_per_char(rows, split), label=f"{label} −ELBO / char", **style)
    iw = metric_series(rows, "val/iw_nll_char")
    if iw[0]:
        loss.plot(*iw, linestyle=":", marker=".", label="validation IW-NLL / char (tighter bound)")
    loss.set_title("loss: negative ELBO per character (nats)")
    _legend(loss)

    kl.plot(*metric_series(rows, "train/kl"), color="tab:red", alpha=0.7, label="train KL / poem")
    kl.plot(*metric_series(rows, "val/kl"), color="tab:purple", marker=".", label="validation KL / poem")
    kl.set_ylabel("KL (nats)")
    _second_axis(kl, metric_series(rows, "train/beta"), "β", "KL against its weight β",
                 color="tab:gray", linestyle="--", label="β (KL weight)")

    latent.plot(*metric_series(rows, "val/active_units"), color="tab:green", marker=".",
                label="validation active units")
    latent.set_ylabel("active units")
    _second_axis(latent, metric_series(rows, "val/mi"), "mutual information (nats)", "what the latent code carries",
                 color="tab:orange", marker=".", label="validation MI (nats)")

    if rhyme[0]:
        axes[3].plot(*rhyme, marker=".", label="validation rhyme rate (learned)")
        axes[3].set_title("rhyme rate of prior samples")
        _legend(axes[3])
    for ax in axes:
        ax.set_xlabel("optimiser step")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def line_styles(count: int) -> list[dict[str, Any]]:
    """``count`` colour and line-style combinations, none repeated before 40: the ten strong colours of tab20 with
    solid lines, then its ten light ones dashed, then the strong ones dash-dotted and the light ones dotted (so two
    runs ten apart never share a hue and a style)."""
    import matplotlib

    palette = matplotlib.colormaps["tab20"].colors
    colours = [*palette[0::2], *palette[1::2]]
    dashes = ("-", "--", "-.", ":")
    return [{"color": colours[i % len(colours)], "linestyle": dashes[(i // 10) % len(dashes)]} for i in range(count)]


# ---- steering: the theme directions on one map ----

_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei",
              "Microsoft YaHei", "PingFang SC", "Heiti SC")


def cjk_font() -> str | None:
    """A font on this machine that has Chinese characters, or None (then labels fall back to pinyin)."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in installed), None)


def theme_map(directions: dict[str, Tensor], title: str = "theme directions (PCA of the unit vectors)") -> Any:
    """Each theme's unit direction in the latent, as an arrow in the first two principal components of the set:
    themes that steer alike point alike."""
    import matplotlib.pyplot as plt
    from pypinyin import lazy_pinyin

    names = list(directions)
    units = torch.stack([d / d.norm().clamp_min(1e-12) for d in directions.values()])
    coords = project_2d(torch.cat([units, -units]))[: len(names)]  # ± keeps the origin at the centre
    font = cjk_font()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (x, y) in zip(names, coords.tolist(), strict=True):
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": "tab:blue"})
        label = name if font else " ".join(lazy_pinyin(name))
        ax.text(x * 1.08, y * 1.08, label, ha="center", va="center", fontsize=11,
                **({"fontfamily": font} if font else {}))
    limit = float(coords.abs().max()) * 1.3
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), xlabel="PC 1", ylabel="PC 2", title=title)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    fig.tight_layout()
    return fig
