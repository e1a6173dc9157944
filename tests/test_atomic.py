"""Outputs are written whole or not at all, through links, in place on devices and pipes, and a place or a disk
that refuses them is one line, never a traceback."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_cli_errors import _sample_cfg

from poetry_vae.atomic import atomic_write_text, check_writable
from poetry_vae.errors import PoetryVAEError
from poetry_vae.project_paths import PROJECT_ROOT
from poetry_vae.sample import write_poems

REFUSING = Path("/proc")  # a folder where no file can be made, whoever runs the tests
FULL = Path("/dev/full")  # a device whose every write fails for want of space


def test_a_link_is_written_through_and_kept(tmp_path: Path) -> None:
    target = tmp_path / "poems.jsonl"
    target.write_text("old\n", encoding="utf-8")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text(encoding="utf-8") == "new\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["latest.jsonl", "poems.jsonl"]  # no temporary left


def test_a_named_pipe_is_written_in_place_not_replaced(tmp_path: Path) -> None:
    pipe = tmp_path / "poems.fifo"
    os.mkfifo(pipe)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text(encoding="utf-8")), daemon=True)
    reader.start()
    atomic_write_text(pipe, "一首诗\n")
    reader.join(timeout=10)
    assert received == ["一首诗\n"]
    assert stat.S_ISFIFO(pipe.stat().st_mode)  # replacing it by a file would break whoever reads it


def test_an_output_never_replaces_a_model(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.ckpt"
    model.write_bytes(tiny_checkpoint.read_bytes())
    cfg = _sample_cfg(f"ckpt_path={model}", f"out={model}", "n=2")  # a slip of the keyboard: out= names the model
    with pytest.raises(PoetryVAEError, match="holds a saved model or tensors: choose another file") as error:
        write_poems(cfg)
    assert "\n" not in str(error.value)
    assert model.read_bytes() == tiny_checkpoint.read_bytes()


def test_checking_a_path_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "new" / "poems.jsonl"
    assert check_writable(out) == out
    assert list(tmp_path.iterdir()) == []  # the probe is removed and no folder made before the work


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        pytest.param(REFUSING / "poems.jsonl", f"cannot write in {REFUSING} .*; choose another path",
                     marks=pytest.mark.skipif(not REFUSING.is_dir(), reason="needs /proc (Linux)")),  # before any poem
        pytest.param(FULL, "could not write out=/dev/full .*; free some space",
                     marks=pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full (Linux)")),
    ],
)
def test_a_place_or_device_that_refuses_poems_is_one_line(tiny_checkpoint: Path, out: Path, expected: str) -> None:
    kind = out.exists() and stat.S_IFMT(out.stat().st_mode)
    cfg = _sample_cfg(f"ckpt_path={tiny_checkpoint}", f"out={out}", "n=2")
    with pytest.raises(PoetryVAEError, match=expected) as error:
        write_poems(cfg)
    assert "\n" not in str(error.value)
    assert (out.exists() and stat.S_IFMT(out.stat().st_mode)) == kind  # a device stays a device; nothing new made


def test_a_command_refused_a_file_by_the_system_says_so_in_one_line() -> None:
    # in a process of its own: Hydra's disabled job logging would silence this process's loggers for later tests
    job = "lambda cfg: (_ for _ in ()).throw(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'metrics.json'))"
    code = ("import errno, os, sys; from poetry_vae.cli import hydra_command; sys.argv = ['poetry_vae.sample']; "
            f"hydra_command('sample', {job})()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=PROJECT_ROOT)
    assert result.returncode == 2
    assert result.stderr == "error: could not read or write metrics.json: No space left on device; free some " \
                            "space or choose another path\n"
