"""Per-phase wall-clock totals of a decoding run (``generate(..., profile=StepProfile())``), for the bench."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class StepProfile:
    """Accumulates seconds per named phase; on CUDA each phase is synchronised so the times are the GPU's."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds: dict[str, float] = {}
        self.steps = 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def per_step_ms(self) -> dict[str, float]:
        """Milliseconds per decoding step for each phase."""
        steps = max(self.steps, 1)
        return {name: 1e3 * total / steps for name, total in self.seconds.items()}
