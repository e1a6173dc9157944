"""Steering through the latent: themes, directions, the cached bank, the judge, fluency, and the sample modes."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from poetry_vae.checkpoint import load_checkpoint
from poetry_vae.data.corpus import load_corpus
from poetry_vae.data.split import split_poems
from poetry_vae.errors import PoetryVAEError, PromptError
from poetry_vae.generation.steering import (
    THEMES,
    LatentBank,
    analogy_code,
    latent_bank,
    resolve_theme,
    steering,
)
from poetry_vae.metrics.fluency import nll_per_char
from poetry_vae.metrics.theme_judge import ThemeJudge

POEMS = ["床前明月光,疑是地上霜.举头望明月,低头思故乡.", "春眠不觉晓,处处闻啼鸟.夜来风雨声,花落知多少.",
         "白日依山尽,黄河入海流.欲穷千里目,更上一层楼."]


def synthetic_bank(themed: int = 40, others: int = 160, shift: float = 3.0) -> LatentBank:
    """Poems with 月 have codes shifted along dimension 0; the others are centred."""
    generator = torch.Generator().manual_seed(0)
    mu = torch.randn(themed + others, 4, generator=generator)
    mu[:themed, 0] += shift
    texts = ["明月" + "山" * 18] * themed + ["青山" + "水" * 18] * others
    return LatentBank(texts, mu)


def test_themes_by_name_or_characters() -> None:
    assert resolve_theme("别").markers == THEMES["别"] and resolve_theme("别").marks("送君南浦")
    assert resolve_theme("松, 竹").markers == "松竹"
    with pytest.raises(PromptError, match="theme=<name or characters>"):
        resolve_theme(None)
    with pytest.raises(PromptError, match="no characters"):
        resolve_theme(",,")


def test_mean_difference_points_at_the_theme_and_moves_by_strength() -> None:
    bank = synthetic_bank()
    steer = steering(bank, resolve_theme("月"), "mean_diff", 2.5)
    unit = steer.direction / steer.direction.norm()
    assert unit[0] > 0.9  # the shift was put in dimension 0
    eps = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(steer.move(eps) - eps, 2.5 * unit.expand(8, 4), atol=1e-6)
    assert torch.equal(steering(bank, resolve_theme("月"), "mean_diff", 0.0).move(eps), eps)


def test_shell_moves_along_the_direction_and_keeps_each_draws_norm() -> None:
    bank = synthetic_bank()
    steer = steering(bank, resolve_theme("月"), "shell", 4.0)
    unit = steer.direction / steer.direction.norm()
    eps = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    z = steer.move(eps)
    torch.testing.assert_close(z.norm(dim=1), eps.norm(dim=1))
    assert (z @ unit).mean() > (eps @ unit).mean() + 1.0  # moved towards the theme
    plain = steering(bank, resolve_theme("月"), "mean_diff", 4.0).move(eps)
    torch.testing.assert_close(z / z.norm(dim=1, keepdim=True), plain / plain.norm(dim=1, keepdim=True))


def test_neighbors_at_full_strength_are_themed_codes() -> None:
    bank = synthetic_bank()
    steer = steering(bank, resolve_theme("月"), "neighbors", 1.0)
    z = steer.move(torch.randn(16, 4), torch.Generator().manual_seed(0))
    themed = bank.mu[:40]
    assert all(any(torch.allclose(row, code) for code in themed) for row in z)
    eps = torch.randn(5, 4)
    assert torch.allclose(steering(bank, resolve_theme("月"), "neighbors", 0.0).move(eps), eps)


def test_exemplars_are_the_themed_codes_furthest_along_the_theme_pushed_further() -> None:
    bank = synthetic_bank(themed=100, others=400)
    steer = steering(bank, resolve_theme("月"), "exemplars", 0.0)
    unit = steer.direction / steer.direction.norm()
    along = bank.mu[:100] @ unit
    assert len(steer.exemplar_mu) == 20  # the fifth of the 100 themed codes
    threshold = along.sort(descending=True).values[19]
    assert ((steer.exemplar_mu @ unit) >= threshold - 1e-6).all()
    z = steer.move(torch.randn(32, 4), torch.Generator().manual_seed(0))
    assert all(any(torch.allclose(row, code) for code in steer.exemplar_mu) for row in z)  # strength 0: as they are
    pushed = steering(bank, resolve_theme("月"), "exemplars", 2.0).move(torch.randn(32, 4),
                                                                      torch.Generator().manual_seed(0))
    torch.testing.assert_close(pushed.norm(dim=1), z.norm(dim=1))  # the same exemplars, each at its own norm
    assert ((pushed @ unit) > (z @ unit)).all()  # each moved further along the theme
    assert steering(bank, resolve_theme("月")).method == "exemplars"  # the default


@pytest.mark.parametrize(("method", "strength", "expected"), [
    ("nearest", 1.0, "steer_method='nearest'"), ("neighbors", 1.5, "must be in \\[0, 1\\]"),
    ("mean_diff", -1.0, "must be >= 0"), ("exemplars", -0.5, "must be >= 0"),
    ("mean_diff", "high", "must be a finite number"),
    ("exemplars", math.inf, "strength=inf must be a finite number"),
])
def test_bad_steering_options_are_one_line(method: str, strength: object, expected: str) -> None:
    with pytest.raises(PromptError, match=expected):
        steering(synthetic_bank(), resolve_theme("月"), method, strength)  # type: ignore[arg-type]


REGULATED_MOON = "九龙蟠燄动四照逐花生即此流高殿堪持待月明"  # fits a regulated tone pattern (近体)
UNREGULATED_MOON = "上弦明月半激箭流星远落雁带书惊啼猿映枝转"  # does not (古绝)


def test_a_verse_keeps_the_themed_codes_of_that_verse_and_the_whole_themes_direction() -> None:
    bank = synthetic_bank(themed=60, others=140)
    bank.texts[:30] = [REGULATED_MOON] * 30
    bank.texts[30:60] = [UNREGULATED_MOON] * 30
    whole = steering(bank, resolve_theme("月"), "neighbors", 1.0)
    for verse, rows in (("regulated", slice(0, 30)), ("unregulated", slice(30, 60))):
        steer = steering(bank, resolve_theme("月"), "neighbors", 1.0, verse=verse)
        assert steer.themed_count == 30 and torch.equal(steer.themed_mu, bank.mu[rows])
        torch.testing.assert_close(steer.direction, whole.direction)
        z = steer.move(torch.randn(16, 4), torch.Generator().manual_seed(0))  # strength 1: the verse's own codes
        assert all(any(torch.allclose(row, code) for code in bank.mu[rows]) for row in z)
    with pytest.raises(PromptError, match="0 of its 60 training poems are regulated"):
        steering(synthetic_bank(themed=60), resolve_theme("月"), verse="regulated")


def test_a_theme_too_rare_for_a_direction_is_refused() -> None:
    with pytest.raises(PromptError, match="marks 3 of"):
        steering(synthetic_bank(themed=3), resolve_theme("月"))


def test_analogy_is_b_minus_a_plus_c() -> None:
    mu = torch.tensor([[1.0, 0.0], [3.0, 1.0], [0.0, 5.0]])
    assert torch.equal(analogy_code(mu), torch.tensor([[2.0, 6.0]]))
    with pytest.raises(PromptError, match="exactly 3 poems"):
        analogy_code(mu[:2])


def test_bank_is_the_checkpoint_training_poems_and_is_cached(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    bank = latent_bank(ckpt, tmp_path)
    assert len(bank.texts) == 3000 and bank.mu.shape == (3000, ckpt.model.cfg.latent_dim)
    cached = list(tmp_path.glob("latent-bank-*.pt"))
    assert len(cached) == 1
    with torch.no_grad():
        ids = torch.as_tensor(ckpt.vocab.encode_many(bank.texts[:4], 20))
        assert torch.allclose(ckpt.model.encode(ids)[0], bank.mu[:4], atol=1e-5)
    again = latent_bank(ckpt, tmp_path)
    assert again.texts == bank.texts and torch.equal(again.mu, bank.mu)
    cached[0].write_bytes(b"not a tensor file")  # a damaged cache is rebuilt, not trusted
    assert torch.equal(latent_bank(ckpt, tmp_path).mu, bank.mu)


def test_judge_never_reads_markers_and_beats_chance_on_held_out_poems() -> None:
    splits = split_poems(load_corpus())
    train = [p.text for p in splits["train"]]
    test = [p.text for p in splits["test"]]
    theme = resolve_theme("月")
    judge = ThemeJudge.fit(theme, train)
    poem = "床前明月光疑是地上霜举头望明月低头思故乡"
    assert judge.judge([poem]) == judge.judge([poem.replace("月", "")])
    accuracy = judge.accuracy(test)
    assert 0.05 < accuracy["themed_share"] < 0.5
    assert accuracy["balanced_accuracy"] > 0.6  # it recognises moon poems by 夜, 光, 霜, ... alone


def test_fluency_is_the_mean_nll_of_each_character(tiny_checkpoint: Path) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    texts = ["床前明月光疑是地上霜举头望明月低头思故乡", "春眠不觉晓处处闻啼鸟夜来风雨声花落知多少"]
    tokens = torch.as_tensor(ckpt.vocab.encode_many(texts, 20))
    dec_in = torch.cat([torch.full((2, 1), ckpt.vocab.bos_id), tokens[:, :-1]], 1)
    with torch.no_grad():
        full = ckpt.model.next_token_log_probs(dec_in, torch.zeros(2, ckpt.model.cfg.latent_dim))
    expected = -full.gather(2, tokens.unsqueeze(2)).mean().item()
    assert nll_per_char(ckpt.model, ckpt.vocab, texts) == pytest.approx(expected, rel=1e-5)
    written = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "春眠不觉晓,处处闻啼鸟.夜来风雨声,花落知多少."]
    assert nll_per_char(ckpt.model, ckpt.vocab, written) == pytest.approx(expected, rel=1e-5)  # marks dropped


def sample(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "poetry_vae.sample", *args], capture_output=True, text=True,
                          timeout=240)


def test_steer_mode_composes_with_constraints(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "steered.jsonl"
    result = sample(f"ckpt_path={tiny_checkpoint}", "mode=steer", "theme=山", "n=6", "rhyme=pingshui", "tone=auto",
                    f"out={out}")
    assert result.returncode == 0, result.stderr
    assert "theme 山 (markers 山峰岭)" in result.stdout
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(rows) == 6 and all(all(row["constraints"].values()) for row in rows)
    assert {row["mode"] for row in rows} == {"steer"}
    refused = sample(f"ckpt_path={tiny_checkpoint}", "mode=steer", "theme=山", "verse=regulated")
    assert refused.returncode != 0 and "prior was not fitted by verse" in refused.stderr


def test_analogy_mode_and_its_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "analogy.jsonl"
    result = sample(f"ckpt_path={tiny_checkpoint}", "mode=analogy", f"poems=[{','.join(repr(p) for p in POEMS)}]",
                    f"out={out}")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(rows) == 1 and rows[0]["strategy"] == "greedy" and " :: " in rows[0]["input"]
    for args, expected in ((["mode=analogy", f"poems=[{POEMS[0]!r},{POEMS[1]!r}]"], "exactly 3 poems"),
                           (["mode=steer"], "theme=<name or characters>"),
                           (["mode=steer", "theme=月", "steer_method=neighbors", "strength=3"], "must be in [0, 1]")):
        result = sample(f"ckpt_path={tiny_checkpoint}", *args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and expected in lines[0], result.stderr


def test_steer_report_writes_its_page_and_never_overwrites(tiny_checkpoint: Path, tiny_lm: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "steering" / "page.md"
    command = [sys.executable, "scripts/steer_report.py", "--ckpt", str(tiny_checkpoint), "--lm", str(tiny_lm),
               "--themes", "山", "--n", "20", "--cost-poems", "20", "--out", str(out)]
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.with_suffix(".json").read_text("utf-8"))
    assert report["hard"]["山"]["hit"] == 1.0  # the forced baseline puts a marker in every poem
    assert {row["method"] for row in report["rows"]} == {"exemplars", "mean_diff", "shell", "neighbors"}
    assert report["constraints_hold"]["山"] == 1.0 and out.with_suffix(".png").is_file()
    assert "| 山 | forced marker (include=) |" in out.read_text("utf-8")
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=root)
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_steer_report_refuses_the_wrong_models_in_one_line(tiny_checkpoint: Path, tiny_lm: Path,
                                                            tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("steer_report", root / "scripts" / "steer_report.py")
    steer_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(steer_report)
    missing = tmp_path / "missing.ckpt"
    for (ckpt, lm), expected in [((tiny_checkpoint, tiny_checkpoint), "is a VAE: give the language model"),
                                 ((missing, tiny_lm), f"--ckpt {missing} not found: give a run directory")]:
        with pytest.raises(PoetryVAEError, match=re.escape(expected)):
            steer_report.models(str(ckpt), str(lm))
    # and from the command line: one line, exit status 2, no page
    out = tmp_path / "page.md"
    result = subprocess.run([sys.executable, "scripts/steer_report.py", "--ckpt", str(tiny_lm), "--lm", str(tiny_lm),
                             "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=root)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "is a language model: steering needs a latent code" in lines[0] and not out.exists()
