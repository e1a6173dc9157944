"""The sample command as a newcomer runs it, on the model shipped with the package: no checkpoint to name, greedy
reconstructions and homotopies with their inputs and t, one-line warnings for ignored keys, poems typed with ASCII
marks, and any n in bounded memory, written whole or not at all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from poetry_vae import sample as sample_module
from poetry_vae.checkpoint import shipped_model
from poetry_vae.cli import CONFIG_DIR, quote_unicode_values
from poetry_vae.errors import PoetryVAEError
from poetry_vae.layout import as_written, written_chars
from poetry_vae.sample import Written, write_poems

JINGYESI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
DENG = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
JINGYESI_ASCII = "床前明月光,疑是地上霜.举头望明月,低头思故乡."


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[Written, str, str]:
    """The command in-process, composed as Hydra composes a command line (so it knows which keys were typed)."""
    overrides = quote_unicode_values(list(args))
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("sample", overrides=overrides, return_hydra_config=True)
    written = write_poems(cfg)
    captured = capsys.readouterr()
    return written, captured.out, captured.err


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_first_poems_need_no_checkpoint_and_name_the_one_opened() -> None:
    result = subprocess.run([sys.executable, "-m", "poetry_vae.sample", "n=2", "top_k=40"], capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("checkpoint: ") and str(shipped_model()) in first and "shipped" in first
    assert "2 poems" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["warning: top_k=40 is ignored: strategy=top_p does not use it (strategy=top_k or top_k_top_p "
                     "does)"]


@pytest.mark.parametrize("where", ["run", "run/checkpoints"])
def test_a_run_dir_opens_its_last_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str) -> None:
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.symlink_to(shipped_model())
    out = tmp_path / "poems.jsonl"
    _, stdout, _ = run(capsys, f"ckpt_path={tmp_path / where}", "n=1", f"out={out}")
    assert stdout.splitlines()[0].startswith(f"checkpoint: {last} (step ")
    assert records(out)[0]["checkpoint"] == str(last)


def test_a_folder_without_a_checkpoint_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(PoetryVAEError, match=re.escape(f"ckpt_path={tmp_path} is a folder with neither")) as error:
        run(capsys, f"ckpt_path={tmp_path}", "n=1")
    assert "\n" not in str(error.value)


def test_a_shipped_name_opens_that_model(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no file or folder called poet_lm here
    out = tmp_path / "poems.jsonl"
    _, stdout, _ = run(capsys, "ckpt_path=poet_lm", "n=1", f"out={out}")
    assert stdout.splitlines()[0] == f"checkpoint: {shipped_model('poet_lm')} (a model shipped with the package; " \
                                     "ckpt_path=<run dir> for your own)"
    assert records(out)[0]["checkpoint"] == str(shipped_model("poet_lm"))


def test_an_unknown_bare_name_lists_the_shipped_models(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PoetryVAEError, match="ckpt_path=peot is neither a file, a run dir nor a shipped model") \
            as error:
        run(capsys, "ckpt_path=peot", "n=1")
    assert "\n" not in str(error.value) and "poet, poet_lm" in str(error.value)


def test_reconstruction_is_greedy_unless_asked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    texts = []
    for seed in (1, 2):  # greedy: the seed does not matter
        out = tmp_path / f"r{seed}.jsonl"
        _, stdout, err = run(capsys, "mode=reconstruct", f"poems=[{JINGYESI},{DENG}]", f"seed={seed}", f"out={out}")
        rows = records(out)
        assert [row["input"] for row in rows] == [JINGYESI, DENG]
        assert {row["strategy"] for row in rows} == {"greedy"} and warnings(err) == []
        assert "strategy=greedy" in stdout and JINGYESI in stdout  # the input is printed beside its output
        texts.append([row["text"] for row in rows])
    assert texts[0] == texts[1]
    out = tmp_path / "asked.jsonl"  # a strategy on the command line wins, even the default's own value
    run(capsys, "mode=reconstruct", f"poems=[{JINGYESI}]", "strategy=top_p", f"out={out}")
    assert records(out)[0]["strategy"] == "top_p"


def test_homotopy_records_each_step_t(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "path.jsonl"
    _, stdout, _ = run(capsys, "mode=interpolate", f"poems=[{JINGYESI},{DENG}]", "steps=5", f"out={out}")
    rows = records(out)
    assert [row["t"] for row in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert {row["strategy"] for row in rows} == {"greedy"}
    assert all(re.search(rf"│\s+{i}\s+│\s+{t:.2f}\s+│", stdout) for i, t in enumerate((0, 0.25, 0.5, 0.75, 1)))
    ends = tmp_path / "ends.jsonl"  # t = 0 and t = 1 decode the posterior means themselves
    run(capsys, "mode=reconstruct", f"poems=[{JINGYESI},{DENG}]", f"out={ends}")
    assert [rows[0]["text"], rows[-1]["text"]] == [row["text"] for row in records(ends)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["n=2", "strategy=top_p", "top_k=50"], ["top_k=50 is ignored: strategy=top_p does not use it"]),
        (["mode=reconstruct", f"poems=[{JINGYESI}]", "temperature=0.5", "n=4"],
         ["temperature=0.5 is ignored: strategy=greedy (mode=reconstruct's default) does not use it",
          "n=4 is ignored in mode=reconstruct"]),
        (["n=1", "strategy=beam", "temperature=0.7"], ["temperature=0.7 is ignored: strategy=beam"]),
        (["n=1", f"poems=[{JINGYESI}]", "steps=3", "spherical=true"],
         ["poems=[1 poem] is ignored in mode=prior", "steps=3 is ignored in mode=prior",
          "spherical=true is ignored in mode=prior"]),
        (["mode=interpolate", f"poems=[{JINGYESI},{DENG}]", "steps=2", "spherical=true", "n=5"],
         ["n=5 is ignored in mode=interpolate"]),
        (["n=1", "temperature=0.5", "top_p=0.8"], []),  # all read by top_p
    ],
)
def test_each_ignored_key_is_one_warning(capsys: pytest.CaptureFixture[str], args: list[str],
                                         expected: list[str]) -> None:
    _, _, err = run(capsys, *args)
    lines = warnings(err)
    assert len(lines) == len(expected), err
    assert all(line.startswith(f"warning: {text}") for line, text in zip(lines, expected, strict=True))


def test_a_comma_quoted_poem_is_one_poem(capsys: pytest.CaptureFixture[str]) -> None:
    written, _, _ = run(capsys, "mode=reconstruct", f"poems=['{JINGYESI_ASCII}', {DENG.replace('，', ' ')}]")
    assert [row.input for row in written.shown] == [JINGYESI, DENG]
    written, _, _ = run(capsys, "mode=interpolate", f'poems=["{JINGYESI_ASCII}","{DENG}"]', "steps=3")
    assert written.decoded == 3


def test_an_unquoted_comma_poem_says_how_to_quote(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PoetryVAEError, match=re.escape("must be quoted whole")) as error:
        run(capsys, "mode=reconstruct", f"poems=[{JINGYESI_ASCII}]")  # Hydra splits it at its commas
    assert "\n" not in str(error.value) and "poems[0]='床前明月光' has 5 characters" in str(error.value)


def test_prompts_typed_with_ascii_marks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "prompts.jsonl"
    run(capsys, "n=3", "first_line=白日依山尽.", "acrostic=白, 夏 秋!冬", f"out={out}")
    for row in records(out):
        assert row["lines"][0] == "白日依山尽" and [line[0] for line in row["lines"]] == list("白夏秋冬")
        assert row["constraints"]["first_line"] and row["constraints"]["acrostic"]


def test_one_normaliser_for_the_written_layout() -> None:
    assert written_chars("白日 依山尽,\t黄河;入海流!?") == "白日依山尽黄河入海流"
    assert as_written(JINGYESI_ASCII) == JINGYESI == as_written("床前明月 光疑是地上霜举头望明月低头思故乡")
    assert as_written("床前明月光,疑是地上霜.") is None


def test_n_poems_in_batches_are_exactly_n(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_module, "BATCH_SIZE", 5)
    monkeypatch.setattr(sample_module, "SHOWN", 3)
    sizes: list[int] = []
    real_generate = sample_module.generate

    def counting_generate(model: Any, vocab: Any, z: Any, *args: Any, **kwargs: Any) -> Any:  # a spy
        sizes.append(z.shape[0])
        return real_generate(model, vocab, z, *args, **kwargs)

    monkeypatch.setattr(sample_module, "generate", counting_generate)
    out = tmp_path / "many.jsonl"
    written, stdout, _ = run(capsys, "n=12", f"out={out}")
    assert sizes == [5, 5, 2] and written.decoded == 12
    assert [row["index"] for row in records(out)] == list(range(12))
    assert "the first 3 of 12 poems" in stdout and "wrote 12 poems" in stdout
    assert len([line for line in stdout.splitlines() if "format✓" in line]) == 3  # only those are printed
    fewer = tmp_path / "fewer.jsonl"  # same seed: the whole batches two runs share hold the same poems
    run(capsys, "n=10", f"out={fewer}")
    assert [r["text"] for r in records(fewer)] == [r["text"] for r in records(out)[:10]]
    sizes.clear()  # without out=, decoding stops after the batch that holds the printed poems
    written, stdout, _ = run(capsys, "n=12")
    assert sizes == [5] and written.decoded == 3 and "9 more poems not shown" in stdout


def test_an_interrupted_write_leaves_the_earlier_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_module, "BATCH_SIZE", 5)
    calls: list[int] = []
    real_generate = sample_module.generate

    def interrupted_generate(*args: Any, **kwargs: Any) -> Any:  # Ctrl-C during the second batch
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(sample_module, "generate", interrupted_generate)
    out = tmp_path / "poems.jsonl"
    out.write_text("the earlier poems\n", encoding="utf-8")
    with pytest.raises(PoetryVAEError, match=re.escape(f"interrupted after 5 of 12 poems; {out} was not written")):
        run(capsys, "n=12", f"out={out}")
    assert out.read_text("utf-8") == "the earlier poems\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["poems.jsonl"]  # no temporary file left


def test_sigterm_mid_write_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "poems.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "poetry_vae.sample", "n=2000000", "strategy=greedy",
                                f"out={out}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(tmp_path.iterdir()) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)  # the temporary file appears once the checkpoint is loaded
    assert any(tmp_path.iterdir()), "the write never started"
    time.sleep(1.0)
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert [line for line in err.splitlines() if line.strip()][-1].startswith("error: interrupted after ")
    assert list(tmp_path.iterdir()) == []
