"""Training curves offline: `python -m poetry_vae.plot` on a real run's CSV and on bad input, the figure's panels
(same quantity on both splits, a legend on every panel), and the report's line styles for many runs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from poetry_vae.errors import PoetryVAEError
from poetry_vae.plot import main
from poetry_vae.plots import line_styles, neg_elbo_per_char, read_metrics, training_curves

matplotlib.use("Agg")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    columns = sorted({key for row in rows for key in row})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def fake_run(root: Path, rhyme: bool = False) -> Path:
    """A run directory with two resumes' CSVs: train rows every step, validation rows every other."""
    rows: list[dict[str, object]] = []
    for step in range(1, 9):
        rows.append({"step": step, "train/rec": 63.0, "train/kl": 21.0, "train/nll_char": 3.0,
                     "train/beta": step / 8})
        if step % 2 == 0:
            row: dict[str, object] = {"step": step, "val/rec": 84.0, "val/kl": 0.0, "val/nll_char": 4.0,
                                      "val/iw_nll_char": 3.9, "val/active_units": step, "val/mi": 0.1 * step}
            if rhyme:
                row["val/rhyme_rate"] = 0.1 * step
            rows.append(row)
    write_csv(root / "csv" / "version_0" / "metrics.csv", rows[:6])
    write_csv(root / "csv" / "version_1" / "metrics.csv", rows[6:])
    return root


def test_loss_compares_the_same_quantity_per_character(tmp_path: Path) -> None:
    rows = read_metrics(fake_run(tmp_path))
    steps, train = neg_elbo_per_char(rows, "train")
    assert steps == list(range(1, 9)) and train == [pytest.approx(4.0)] * 8  # (63 + 21) / (63 / 3)
    assert neg_elbo_per_char(rows, "val") == ([2, 4, 6, 8], [pytest.approx(4.0)] * 4)  # (84 + 0) / (84 / 4)


@pytest.mark.parametrize("rhyme", [False, True])
def test_every_panel_has_its_legend(tmp_path: Path, rhyme: bool) -> None:
    fig = training_curves(read_metrics(fake_run(tmp_path, rhyme)))
    panels = [ax for ax in fig.axes if ax.get_title()]  # twin axes share their panel's legend
    assert len(panels) == (4 if rhyme else 3)
    legends = {ax.get_title(): [text.get_text() for text in ax.get_legend().get_texts()] for ax in panels}
    loss = next(labels for title, labels in legends.items() if title.startswith("loss"))
    assert loss[:2] == ["train −ELBO / char", "validation −ELBO / char"]
    kl = next(labels for title, labels in legends.items() if title.startswith("KL"))
    assert "validation KL / poem" in kl and "β (KL weight)" in kl
    latent = next(labels for title, labels in legends.items() if "latent" in title)
    assert latent == ["validation active units", "validation MI (nats)"]


def test_the_command_plots_a_tiny_run(tiny_checkpoint: Path, tmp_path: Path) -> None:
    run = tiny_checkpoint.parent.parent
    out = tmp_path / "curves.png"
    result = subprocess.run([sys.executable, "-m", "poetry_vae.plot", str(run), f"out={out}"],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}"
    assert out.read_bytes()[:8] == PNG_MAGIC
    # a metrics.csv given alone works too, its PNG beside it by default
    csv_file = next(run.glob("csv/version_*/metrics.csv"))
    main([str(csv_file)])
    assert (csv_file.parent / "curves.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(("args", "message"), [
    (["{tmp}/nowhere"], "does not exist: give a run directory"),
    (["{tmp}/empty"], "holds no csv/version_*/metrics.csv"),
    (["{tmp}/other.csv"], "no 'step' column"),
    (["{tmp}/bare.csv"], "logs none of train/rec"),
    (["{tmp}/model.pt"], "is not text (not UTF-8): give a run directory"),  # a checkpoint given by mistake
    (["{tmp}/run", "ot=x.png"], "unknown key 'ot': did you mean 'out'?"),
    (["{tmp}/run", "out={tmp}/x.jpg"], "is not a .png file"),
    ([], "give one run directory or metrics.csv (got 0)"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                               message: str) -> None:
    (tmp_path / "empty").mkdir()
    write_csv(tmp_path / "other.csv", [{"epoch": 1, "loss": 2.0}])
    write_csv(tmp_path / "bare.csv", [{"step": 1, "lr": 0.001}])
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04\x80\xff binary")
    fake_run(tmp_path / "run")
    with pytest.raises(SystemExit) as stop:
        main([arg.format(tmp=tmp_path) for arg in args])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not list(tmp_path.rglob("*.png"))  # nothing written


def test_read_metrics_names_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(PoetryVAEError, match="does not exist"):
        read_metrics(tmp_path / "missing")


def test_report_line_styles_stay_distinct_for_many_runs() -> None:
    styles = line_styles(40)
    combos = {(style["color"], style["linestyle"]) for style in styles}
    assert len(combos) == 40
    assert styles[0]["color"] != styles[10]["color"]  # runs ten apart (lm, finetune_vae) no longer share a hue
    assert len({style["color"] for style in styles[:20]}) == 20
