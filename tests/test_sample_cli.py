"""The sample command end to end (subprocess, as a user runs it) on a tiny real checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from poetry_vae.cli import CONFIG_DIR, quote_unicode_values
from poetry_vae.errors import PoetryVAEError
from poetry_vae.generation import DecodeRequest
from poetry_vae.layout import is_format_valid
from poetry_vae.metrics.poetry import rhyme_rate
from poetry_vae.prosody import fits_pattern
from poetry_vae.sample import BATCH_SIZE, code_batches, write_poems


def sample(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "poetry_vae.sample", *args], capture_output=True, text=True,
                          timeout=180)


def test_constrained_poems_written_as_jsonl(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "poems.jsonl"
    result = sample(f"ckpt_path={tiny_checkpoint}", "n=6", "rhyme=pingshui", "tone=auto", "first_line=白日依山尽",
                    f"out={out}", "seed=3")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert is_format_valid(row["text"]) and row["lines"][0] == "白日依山尽"
        assert all(row["constraints"].values()) and fits_pattern(row["lines"], row["pattern"])
    assert rhyme_rate([row["lines"] for row in rows]) == 1.0
    again = tmp_path / "again.jsonl"
    sample(f"ckpt_path={tiny_checkpoint}", "n=6", "rhyme=pingshui", "tone=auto", "first_line=白日依山尽",
           f"out={again}", "seed=3")
    assert again.read_text("utf-8") == out.read_text("utf-8")  # same seed, same poems


def test_interpolate_and_reconstruct_modes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "path.jsonl"
    a, b = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    result = sample(f"ckpt_path={tiny_checkpoint}", "mode=interpolate", f"poems=[{a},{b}]", "steps=4", f"out={out}")
    assert result.returncode == 0, result.stderr
    assert len(out.read_text("utf-8").splitlines()) == 4
    result = sample(f"ckpt_path={tiny_checkpoint}", "mode=reconstruct", f"poems=[{a}]", "strategy=greedy")
    assert result.returncode == 0 and "1 poems" in result.stdout


def test_every_decoding_precision_writes_poems(tiny_checkpoint: Path) -> None:
    for precision in ("fp32", "bf16", "auto"):
        result = sample(f"ckpt_path={tiny_checkpoint}", "n=3", "strategy=greedy", f"precision={precision}")
        assert result.returncode == 0 and "3 poems" in result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["acrostic=春夏秋"], "acrostic"),
        (["first_line=白日依山"], "first_line"),
        (["first_line=白日依山盡"], "simplified form '尽'"),
        (["strategy=nucleus"], "strategy"),
        (["precision=fp8"], "precision='fp8': choose one of fp32, bf16, auto"),
        (["mode=interpolate", "poems=[白日依山尽，黄河入海流。欲穷千里目，更上一层楼。]"], "exactly 2"),
        (["mode=reconstruct"], "needs poems"),
        (["ckpt_path=/nonexistent/last.ckpt"], "not found"),
    ],
)
def test_bad_input_is_one_line(tiny_checkpoint: Path, tmp_path: Path, args: list[str], expected: str) -> None:
    out = tmp_path / "never.jsonl"
    overrides = quote_unicode_values([f"ckpt_path={tiny_checkpoint}", f"out={out}", *args])
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("sample", overrides=overrides)
    with pytest.raises(PoetryVAEError, match=re.escape(expected)) as error:
        write_poems(cfg)
    assert "\n" not in str(error.value)
    assert not out.exists()  # nothing half-written


def test_cli_reports_bad_input_in_one_line(tiny_checkpoint: Path) -> None:
    for args, expected in ((["acrostic=春夏秋"], "acrostic"), (["no_such_option=1"], "no_such_option")):
        result = sample(f"ckpt_path={tiny_checkpoint}", *args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("error:") and expected in lines[0]


def test_a_batch_decodes_at_most_batch_size_rows_whatever_the_beam() -> None:
    for request, codes in ((DecodeRequest(strategy="beam", beam_size=512), 2),
                           (DecodeRequest(strategy="beam", beam_size=5, num_return_sequences=5), 204),
                           (DecodeRequest(strategy="top_p", num_return_sequences=4), 256)):
        batches = list(code_batches(1000, request))
        assert [b.stop - b.start for b in batches[:-1]] == [codes] * (len(batches) - 1)
        assert sum(b.stop - b.start for b in batches) == 1000
        assert codes * (request.beam_size if request.strategy == "beam" else 4) <= BATCH_SIZE
