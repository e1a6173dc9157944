"""The training and evaluation numbers a run logs, from the ELBO terms and the running means of a split.

Pure functions of plain values: the LightningModule accumulates, gathers across ranks and logs.
"""

from __future__ import annotations

import math

from torch import Tensor

from poetry_vae.metrics.latent import active_units, mutual_information

_MAX_LOG_PPL = 50.0  # math.exp raises past ~709: an untrained model's perplexity is capped, not an error


def perplexity(nll_per_char: float) -> float:
    return math.exp(min(_MAX_LOG_PPL, nll_per_char))


def mean_positions(target: Tensor, pad_id: int) -> float:
    """Scored positions (non-pad targets) per poem in a batch: turns a poem NLL into a per-character one."""
    return float((target != pad_id).sum(dim=1).float().mean())


def eval_epoch_logs(stage: str, means: dict[str, float], positions: float, beta: float) -> dict[str, float]:
    """``stage/...`` numbers of a whole split from its per-poem means ``rec``, ``kl``, ``elbo`` and, when the
    importance-weighted bound was computed, ``iw_ll``."""
    logs = {
        f"{stage}/rec": means["rec"],
        f"{stage}/kl": means["kl"],
        f"{stage}/elbo": means["elbo"],
        f"{stage}/loss": means["rec"] + beta * means["kl"],
        f"{stage}/nll_char": means["rec"] / positions,
        f"{stage}/beta": beta,
    }
    if "iw_ll" in means:
        iw_nll_char = -means["iw_ll"] / positions
        logs.update({f"{stage}/iw_nll": -means["iw_ll"], f"{stage}/iw_nll_char": iw_nll_char,
                     f"{stage}/iw_ppl": perplexity(iw_nll_char)})
    return logs


def latent_usage(stage: str, mu: Tensor, logvar: Tensor) -> dict[str, float]:
    """Active units and mutual information over a split's posteriors (N, Z); nothing for fewer than 2 poems."""
    if mu.size(0) < 2:
        return {}
    return {f"{stage}/active_units": float(active_units(mu)), f"{stage}/mi": mutual_information(mu, logvar)}


