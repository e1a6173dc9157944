"""``trainer.precision=auto``: bf16 autocast only where it pays.

On CUDA: ``bf16-mixed`` where the GPU supports bf16. On CPU: ``bf16-mixed`` only when the CPU has native bf16
instructions (AVX512-BF16 or AMX, from /proc/cpuinfo) *and* a sub-second micro-benchmark of this model's hot
path (an LSTM layer plus the projection onto the vocabulary, forward and backward) runs faster under bf16
autocast than in fp32 here; otherwise ``32-true``. Without native bf16, autocast emulates it and is slower.

Evaluation never uses it: the LightningModule turns autocast off in its validation and test steps, so
validation and test numbers are fp32 whatever the training precision.

Decoding (``precision=auto`` of the sample command) follows the same rule for its output layer's matmuls (the
projection onto the vocabulary, or an adaptive softmax's head and tails): bf16 on a CPU with native bf16 where a
short benchmark of the plain projection is faster, fp32 elsewhere (and on CUDA, where the output layer is not what
limits sampling).

Each benchmark runs once per machine (CPU model, flags, torch version) and its verdict is kept under
``.cache/poetry_vae/``: a timing taken again in every run would flip on a loaded CPU, and with it the rounding,
so the same seed would not always give the same poems.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from poetry_vae.atomic import atomic_write_text
from poetry_vae.project_paths import anchored

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_MIN_SPEEDUP = 1.1  # bf16 must win by 10% to be worth its rounding
VERDICT_DIR = ".cache/poetry_vae"  # where each benchmark's verdict is kept, under the project root


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def machine_key(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """What a speed verdict depends on: the CPU model and flags, and the torch build."""
    try:
        model = next((line for line in cpuinfo.read_text("utf-8", "replace").splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        model = platform.processor()
    text = json.dumps([model, sorted(cpu_flags(cpuinfo)), torch.__version__, platform.machine()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def machine_verdict(name: str, measure: Callable[[], bool]) -> bool:
    """``measure()``'s answer on this machine: measured once, then read from ``VERDICT_DIR`` (a damaged or
    unwritable file only means measuring again)."""
    path = anchored(VERDICT_DIR) / f"verdict-{name}-{machine_key()}.json"
    try:
        return bool(json.loads(path.read_text("utf-8"))["pays"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    pays = bool(measure())
    with contextlib.suppress(OSError):  # a read-only project still decodes; it measures again next time
        atomic_write_text(path, json.dumps({"pays": pays, "benchmark": name, "torch": torch.__version__}) + "\n")
    return pays


def _best_seconds(run: Callable[[], object], reps: int) -> float:
    """The fastest of ``reps`` timed calls of ``run``."""
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _step_seconds(model: nn.Module, x: Tensor, target: Tensor, bf16: bool, reps: int) -> float:
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden, _ = model[0](x)
            logits = model[1](hidden)
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target)
        loss.backward()

    return _best_seconds(step, reps)


def bf16_speedup_cpu(hidden: int = 128, vocab: int = 4500, batch: int = 32, steps: int = 21, reps: int = 2) -> float:
    """fp32 time / bf16-autocast time of one LSTM + vocabulary projection step (forward and backward), best of
    ``reps``; a fraction of a second on an idle core. > 1 means bf16 is faster here."""
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # the benchmark must not move the training RNG
        torch.manual_seed(0)
        model = nn.ModuleList([nn.LSTM(hidden, hidden, batch_first=True), nn.Linear(hidden, vocab)])
    x = torch.randn(batch, steps, hidden, generator=generator)
    target = torch.randint(vocab, (batch * steps,), generator=generator)
    _step_seconds(model, x, target, True, 1)  # warm-up: first calls pick kernels
    _step_seconds(model, x, target, False, 1)
    return _step_seconds(model, x, target, False, reps) / _step_seconds(model, x, target, True, reps)


def resolve_precision(requested: str | int, accelerator: str = "cpu") -> str | int:
    """``requested`` unchanged unless it is ``auto``; then bf16-mixed where it pays on a CPU, else 32-true."""
    if requested != "auto":
        return requested
    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_cuda:
        # a GPU step at these sizes is launch-bound (an H200 ran the wide flagship at 34 steps/s in fp32 beside a
        # second run): mixed precision would buy little there, and fp32 is what the model was trained in on a GPU
        return "32-true"
    if not cpu_has_native_bf16():
        return "32-true"
    pays = machine_verdict("bf16-training", lambda: bf16_speedup_cpu() >= BF16_MIN_SPEEDUP)
    return "bf16-mixed" if pays else "32-true"


DECODING_PRECISIONS = ("fp32", "bf16", "auto")


def bf16_projection_speedup(hidden: int = 128, vocab: int = 4672, rows: int = 512, reps: int = 5) -> float:
    """fp32 time / bf16 time of a decoding step's projection onto the vocabulary (bf16 result widened to fp32
    included), best of ``reps``; a few tens of milliseconds."""
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(rows, hidden, generator=generator), torch.randn(hidden, vocab, generator=generator)
    x16, weight16 = x.bfloat16(), weight.bfloat16()

    def fp32() -> Tensor:
        return x @ weight

    def bf16() -> Tensor:
        return (x16 @ weight16).float()

    fp32(), bf16()  # warm-up: the first call picks the kernel
    return _best_seconds(fp32, reps) / _best_seconds(bf16, reps)


@functools.cache
def _cpu_bf16_pays() -> bool:
    return cpu_has_native_bf16() and machine_verdict(
        "bf16-decoding", lambda: bf16_projection_speedup() >= BF16_MIN_SPEEDUP)


def decoding_dtype(requested: str, device: torch.device | str = "cpu") -> torch.dtype:
    """The dtype of the decoder's vocabulary projection for ``precision=requested`` on ``device``."""
    if requested == "bf16":
        return torch.bfloat16
    if requested == "auto" and torch.device(device).type == "cpu" and _cpu_bf16_pays():
        return torch.bfloat16
    return torch.float32


@contextlib.contextmanager
def denormals_flushed() -> Iterator[None]:
    """Subnormal floats read as zero inside (on CPUs that can: x86 with SSE3).

    Sampling exponentiates a whole vocabulary per row; a peaked row (a steered or well-trained model) has most of
    its weights below float32's normal range, where arithmetic is slow: flushing them made the normalising and
    masking phases of top-p decoding 20-25% faster on the shipped model (2,000 poems, T 0.8), and steered codes
    no longer decode slower than prior draws. Weights that small move no cumulative sum, so no draw changes.
    Turned off again on exit (PyTorch has no getter for the setting; it is off by default).
    """
    flushing = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushing:
            torch.set_flush_denormal(False)
