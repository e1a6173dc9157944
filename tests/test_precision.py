"""trainer.precision=auto picks bf16 only on CPUs with native bf16 where it measures faster; evaluation is fp32."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import tiny_train_config
from hydra.utils import instantiate

from poetry_vae import precision
from poetry_vae.train import build_module


def test_explicit_precision_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "bf16_speedup_cpu", lambda: pytest.fail("no benchmark for an explicit choice"))
    assert precision.resolve_precision("32-true") == "32-true"
    assert precision.resolve_precision("bf16-mixed") == "bf16-mixed"
    assert precision.resolve_precision(32) == 32


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n", encoding="utf-8")
    assert {"avx2", "avx512_bf16"} <= precision.cpu_flags(info)
    assert precision.cpu_has_native_bf16(precision.cpu_flags(info))
    assert not precision.cpu_has_native_bf16({"avx2", "fma"})
    assert precision.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(("native", "speedup", "expected"), [
    (False, 3.0, "32-true"),  # emulated bf16: never, whatever a benchmark would say
    (True, 2.0, "bf16-mixed"),
    (True, 1.02, "32-true"),  # within noise of fp32: not worth the rounding
    (True, 0.7, "32-true"),
])
def test_auto_on_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, native: bool, speedup: float,
                    expected: str) -> None:
    monkeypatch.setattr(precision, "VERDICT_DIR", str(tmp_path))  # a machine that never measured
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda flags=None: native)
    calls = []
    monkeypatch.setattr(precision, "bf16_speedup_cpu", lambda: calls.append(1) or speedup)
    assert precision.resolve_precision("auto", "cpu") == expected
    assert len(calls) == (1 if native else 0)


def test_benchmark_returns_a_ratio_and_leaves_the_rng() -> None:
    state = torch.get_rng_state()
    ratio = precision.bf16_speedup_cpu(hidden=32, vocab=200, batch=8, steps=5, reps=1)
    assert math.isfinite(ratio) and ratio > 0
    assert torch.equal(torch.get_rng_state(), state)


def test_validation_numbers_are_fp32_under_bf16_training_precision(tmp_path: Path) -> None:
    cfg = tiny_train_config(tmp_path / "run", tmp_path / "cache")
    datamodule = instantiate(cfg.data)
    pl.seed_everything(0, verbose=False)
    module = build_module(cfg, datamodule)
    results = {}
    for name in ("32-true", "bf16-mixed"):
        trainer = pl.Trainer(accelerator="cpu", devices=1, precision=name, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1)
        pl.seed_everything(0, verbose=False)
        results[name] = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    for key in ("val/iw_nll", "val/elbo", "val/kl", "val/rec"):
        assert results["bf16-mixed"][key] == pytest.approx(results["32-true"][key], rel=1e-3), key
    # the guard matters: the same forward pass under bf16 autocast moves the reconstruction term
    batch = next(iter(datamodule.val_dataloader()))
    module.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        fp32 = module.model(batch["tokens"], batch["dec_in"], batch["target"]).rec
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = module.model(batch["tokens"], batch["dec_in"], batch["target"]).rec.float()
    assert not torch.allclose(fp32, bf16, rtol=1e-4, atol=0)


def test_decoding_precision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """fp32 and bf16 as asked; auto: bf16 only on a CPU with native bf16 where the projection measures faster."""
    assert precision.bf16_projection_speedup(hidden=16, vocab=64, rows=8, reps=1) > 0
    assert precision.decoding_dtype("fp32") == torch.float32
    assert precision.decoding_dtype("bf16") == torch.bfloat16
    assert precision.decoding_dtype("auto", "cuda") == torch.float32
    for native, speedup, expected in ((False, 3.0, torch.float32), (True, 1.0, torch.float32),
                                      (True, 1.8, torch.bfloat16)):  # fmt: skip
        precision._cpu_bf16_pays.cache_clear()
        monkeypatch.setattr(precision, "VERDICT_DIR", str(tmp_path / f"{native}-{speedup}"))
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        monkeypatch.setattr(precision, "bf16_projection_speedup", lambda speedup=speedup: speedup)
        assert precision.decoding_dtype("auto") == expected
    precision._cpu_bf16_pays.cache_clear()


def test_bf16_projection_keeps_the_distribution() -> None:
    """Decoding with a bf16 vocabulary projection: logits within bf16 rounding of fp32, the same greedy choices
    on a model whose top logits are well separated, and fp32 logits handed to the sampler."""
    from poetry_vae.model import ModelConfig, PoemModel
    from poetry_vae.model.stepper import LogitStepper

    torch.manual_seed(0)
    model = PoemModel(ModelConfig(vocab_size=300, embed_dim=16, encoder_hidden=16, latent_dim=8, decoder_hidden=32,
                              output_layer="softmax")).eval()  # fmt: skip
    z = torch.randn(64, 8)
    prev = torch.randint(5, 300, (64,))
    with torch.inference_mode():
        exact, rounded = LogitStepper(model, z, 64), LogitStepper(model, z, 64, dtype=torch.bfloat16)
        for _ in range(3):
            a, b = exact(prev)[:, :300], rounded(prev)[:, :300]
            assert b.dtype == torch.float32
            torch.testing.assert_close(b, a, atol=0.02, rtol=0.01)
            gap = a.topk(2, dim=1).values.diff(dim=1).abs().squeeze(1)
            clear = gap > 0.05
            assert bool((a.argmax(1) == b.argmax(1))[clear].all())
            prev = a.argmax(1)


def test_a_speed_verdict_is_measured_once_per_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A timing repeated in every run flips on a loaded CPU (and with it the rounding of same-seed poems): the
    verdict is kept per machine, and a damaged file only means measuring again."""
    monkeypatch.setattr(precision, "VERDICT_DIR", str(tmp_path))
    calls = []
    measure = lambda: calls.append(1) or True  # noqa: E731
    assert precision.machine_verdict("x", measure) and precision.machine_verdict("x", lambda: False)
    assert len(calls) == 1
    (file,) = tmp_path.glob("verdict-x-*.json")
    file.write_text("{not json", encoding="utf-8")
    assert not precision.machine_verdict("x", lambda: False)
    assert precision.machine_key() == precision.machine_key() and len(precision.machine_key()) == 16


def test_decoding_flushes_subnormals_inside_only() -> None:
    tiny = torch.tensor([1e-40])  # below float32's normal range
    with precision.denormals_flushed():
        flushed = float(tiny * 1.0)
    if flushed == 0.0:  # a CPU that can flush did; afterwards arithmetic keeps subnormals again
        assert float(tiny * 1.0) > 0.0
    else:
        pytest.skip("this CPU cannot flush subnormals")


def test_flushing_subnormals_changes_no_draw(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    from poetry_vae.checkpoint import load_checkpoint
    from poetry_vae.generation import DecodeRequest, decoding, generate, sample_prior

    ckpt = load_checkpoint(tiny_checkpoint)
    z = sample_prior(ckpt.model, 64, torch.Generator().manual_seed(0))
    request = DecodeRequest(strategy="top_p", top_p=0.9, temperature=0.5)

    def poems() -> list[str]:
        return [p.text for p in generate(ckpt.model, ckpt.vocab, z, request, torch.Generator().manual_seed(1))]

    flushed = poems()
    monkeypatch.setattr(decoding, "denormals_flushed", contextlib.nullcontext)
    assert poems() == flushed


def test_auto_on_a_gpu_is_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "bf16_speedup_cpu", lambda: pytest.fail("no CPU benchmark for a GPU run"))
    assert precision.resolve_precision("auto", "gpu") == "32-true"
    assert precision.resolve_precision("auto", "cuda") == "32-true"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
def test_adaptive_softmax_log_probs_under_autocast(device: str, input_dtype: torch.dtype) -> None:
    """Under autocast the adaptive softmax gives the fp32 log-probabilities (to bf16 rounding) instead of failing on
    a mix of dtypes: CUDA's autocast runs log_softmax in fp32, and CPU autocast gives an fp32 input bf16 matmuls."""
    from poetry_vae.model.decoder import adaptive_target_log_probs

    torch.manual_seed(0)
    layer = torch.nn.AdaptiveLogSoftmaxWithLoss(32, 400, [50, 200]).to(device)
    hidden, target = torch.randn(64, 32, device=device), torch.randint(400, (64,), device=device)
    exact = layer(hidden, target).output
    with torch.autocast(device, dtype=torch.bfloat16):
        mixed = adaptive_target_log_probs(layer, hidden.to(input_dtype), target)
    torch.testing.assert_close(mixed.float(), exact, atol=0.1, rtol=0.02)
