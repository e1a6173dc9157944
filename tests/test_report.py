"""`make report`'s table and figure building, on fake CSV logs and metrics (no training)."""

from __future__ import annotations

import argparse
import csv
import importlib.util
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[1] / "scripts" / "report.py"
spec = importlib.util.spec_from_file_location("report", REPORT)
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)

FIELDS = ["epoch", "step", "train/loss", "train/elapsed_min", "val/iw_nll_char", "val/elapsed_min"]


def write_log(run: Path, rows: list[dict[str, object]], version: int = 0) -> None:
    path = run / "csv" / f"version_{version}" / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def test_experiments_accept_commas_and_spaces_and_refuse_unknown_presets() -> None:
    assert report.parse_experiments(["lm,li2019", "bnvae", "lm"]) == ["lm", "li2019", "bnvae"]
    with pytest.raises(SystemExit, match="nosuch"):
        report.parse_experiments(["lm,nosuch"])


def test_quality_against_minutes_from_csv_logs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_log(run, [{"step": 9, "train/loss": 5.0, "train/elapsed_min": 0.4},
                    {"step": 9, "val/iw_nll_char": 7.0, "val/elapsed_min": 0.5},
                    {"step": 19, "val/iw_nll_char": 6.5, "val/elapsed_min": 1.1}])
    write_log(run, [{"step": 29, "val/iw_nll_char": 6.2, "val/elapsed_min": 1.8}], version=1)  # after a resume
    rows = report.read_csv(run)
    assert report.timed_series(rows, "val/iw_nll_char") == ([0.5, 1.1, 1.8], [7.0, 6.5, 6.2])
    old = tmp_path / "old"  # a run logged before the clock existed: no line, no error
    write_log(old, [{"step": 9, "val/iw_nll_char": 7.0}])
    assert report.timed_series(report.read_csv(old), "val/iw_nll_char") == ([], [])
    figures = tmp_path / "figures"
    name = report.plot_quality_per_minute({"a": rows, "old": report.read_csv(old)}, figures)
    assert name and (figures / name).stat().st_size > 1000
    assert report.plot_quality_per_minute({"old": report.read_csv(old)}, figures, "none.png") is None


def metrics(nll: float, **latent: float) -> dict[str, float]:
    base = {"global_step": 100, "poems_per_s": 250.0, "test/iw_nll_char": nll, "test/iw_ppl": 2.718**nll,
            "test/kl": 9.0, "test/mi": 4.5, "test/active_units": 32, "test/elbo": -130.0}
    return base | {f"test/{k}": v for k, v in latent.items()}


def test_main_table_has_the_latent_columns() -> None:
    table = {"lm": metrics(6.1), "li2019": metrics(6.0, recon_char_acc=0.314, recon_bleu2=0.4, recon_forced_acc=0.52,
                                                   homotopy_distinct=5.5, homotopy_endpoint_diff=17.2,
                                                   prior_distinct_2=0.65, prior_self_bleu=0.2)}
    lines = report.main_table(table, ["li2019", "lm"])
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert "recon chars" in header and "forced chars" in header and "prior self-BLEU" in header and len(header) == 16
    for line in lines[1:]:
        assert line.count("|") == 17
    li = [c.strip() for c in lines[2].strip("|").split("|")]
    assert li[0] == "li2019" and li[9] == "31.4%" and li[11] == "52.0%" and li[12] == "5.50" and li[13] == "17.2"
    lm = [c.strip() for c in lines[3].strip("|").split("|")]
    assert lm[9:] == ["–"] * 7  # measures not computed: shown as missing, not as zero


def test_targets() -> None:
    lm = metrics(6.1)
    good = metrics(6.05, recon_char_acc=0.35, homotopy_distinct=5.2, homotopy_endpoint_diff=16.5,
                   prior_distinct_2=0.7)
    assert report.missed_targets(good, lm) == []
    worse = good | {"test/iw_nll_char": 6.2, "test/kl": 5.5, "test/recon_char_acc": 0.019}
    assert report.missed_targets(worse, lm) == ["IW-NLL ≤ LM", "KL ≥ 8", "reconstruction ≥ 30%"]


def test_homotopy_section_lists_each_vae() -> None:
    lines = report.homotopy_section({"li2019": ["p0", "p1"], "bnvae": ["q0", "q1"]}, ["A", "B"])
    text = "\n".join(lines)
    assert "From A to B" in text and "**li2019**" in text and "| 1 | q1 |" in text


def test_best_checkpoint_is_the_best_saved_score_not_the_newest(tmp_path: Path) -> None:
    """A run resumed in a copied directory keeps two best-*.ckpt files; the report evaluates the better one."""
    import os

    import torch

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    key = "ModelCheckpoint{'monitor': 'val/elbo', 'mode': 'max'}"
    for age, (name, score) in enumerate((("best-epoch213.ckpt", -122.10), ("best-epoch264.ckpt", -122.15))):
        torch.save({"callbacks": {key: {"monitor": "val/elbo", "current_score": torch.tensor(score)},
                                  "Timer": {}}}, folder / name)
        os.utime(folder / name, (1000 + age, 1000 + age))  # the worse one is the newer
    assert report.best_checkpoint(tmp_path / "run").name == "best-epoch213.ckpt"
    (folder / "best-epoch213.ckpt").unlink()
    assert report.best_checkpoint(tmp_path / "run").name == "best-epoch264.ckpt"


def test_a_table_of_language_models_only_is_written(tmp_path: Path) -> None:
    """`--experiments lm lm_pos` has no VAE: the page names the best LM and lists no VAE lines or targets."""
    args = argparse.Namespace(budget_min=1.0, iw_samples=5, iw_every=1, seed=0, machine="test", homotopy_pairs=2,
                              prior_samples=2, poems=2, out_dir=tmp_path)
    table = {"lm": metrics(6.1), "lm_pos": metrics(6.2)}
    report.write_markdown(args, table, {}, {}, [], (["", ""], {}), None, None)
    page = (tmp_path / "results.md").read_text("utf-8")
    assert "**Best by test IW-NLL: `lm`**." in page and "Best VAE" not in page and "Targets" in page
    assert "- `lm" not in page  # no target lines: they are for the VAEs
