"""The learning-rate schedules: the shape each promises, read off a real optimiser."""

from __future__ import annotations

import itertools

import pytest
import torch

from poetry_vae.optim import cosine_decay, inverse_sqrt_warmup


def _rates(make, steps: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_cosine_decay_falls_to_its_floor_and_stays_there() -> None:
    rates = _rates(lambda opt: cosine_decay(opt, total_steps=100, floor=0.1), 150)
    assert rates[0] == pytest.approx(1.0)
    assert rates[50] == pytest.approx(0.55)  # halfway: the mean of 1 and the floor
    assert all(a >= b for a, b in itertools.pairwise(rates))  # never rises again
    assert rates[100] == pytest.approx(0.1) and rates[-1] == pytest.approx(0.1)


def test_inverse_sqrt_warmup_peaks_at_the_configured_rate() -> None:
    rates = _rates(lambda opt: inverse_sqrt_warmup(opt, warmup_steps=10), 41)
    assert max(rates) == pytest.approx(1.0) and rates.index(max(rates)) == 10
    assert rates[40] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"total_steps": 0}, "total_steps"), ({"total_steps": 5, "floor": 2.0}, "floor")]
)
def test_cosine_decay_refuses_bad_values(kwargs: dict, message: str) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=message):
        cosine_decay(optimizer, **kwargs)
