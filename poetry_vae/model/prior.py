"""The latent prior p(z): N(0, I), or a full-covariance Gaussian N(m, L Lᵀ) fitted to the aggregate posterior.

With the encoder and decoder fixed, the ELBO's only term in p(z) is E_x E_q(z|x) log p(z): the cross-entropy of
the aggregate posterior q(z) = E_x q(z|x) against the prior. Among Gaussians it is largest for the one with q(z)'s
mean and covariance (moment matching), so :meth:`GaussianPrior.fit` raises the bound of a trained model without
retraining it, and its samples come from where the codes of real poems lie (their correlations included).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from poetry_vae.objective import gaussian_kl, gaussian_log_density

PRIORS = ("standard", "gaussian")


class StandardPrior(nn.Module):
    """N(0, I): no parameters, so checkpoints written before priors were a choice load unchanged."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def log_prob(self, z: Tensor) -> Tensor:
        """(..., Z) -> (...) log-density."""
        return gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None) -> Tensor:
        """(n, Z) codes on ``device``, drawn on the generator's device (the same numbers for a seed anywhere)."""
        gen_device = generator.device if generator is not None else device
        return torch.randn(n, self.dim, generator=generator, device=gen_device).to(device)

    def kl(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """KL(N(mu, exp(logvar)) || p) per dimension: (B, Z) -> (B, Z)."""
        return gaussian_kl(mu, logvar)


class GaussianPrior(StandardPrior):
    """N(mean, scale_tril scale_trilᵀ), held as buffers (N(0, I) until :meth:`fit`); not trained by the optimiser."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale_tril", torch.eye(dim))

    def _whiten(self, x: Tensor) -> Tensor:
        """L⁻¹ (x - mean) for rows x (..., Z): the coordinates in which this prior is N(0, I)."""
        flat = (x - self.mean.to(x.dtype)).reshape(-1, self.dim).t()
        scale_tril = self.scale_tril.to(x.dtype)
        return torch.linalg.solve_triangular(scale_tril, flat, upper=False).t().reshape(x.shape)

    def log_prob(self, z: Tensor) -> Tensor:
        """In float32 at least (the triangular solve has no bf16 kernel, and a density wants the precision)."""
        dtype = torch.promote_types(z.dtype, torch.float32)
        with torch.autocast(z.device.type, enabled=False):
            law = MultivariateNormal(self.mean.to(dtype), scale_tril=self.scale_tril.to(dtype), validate_args=False)
            return law.log_prob(z.to(dtype))

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None) -> Tensor:
        eps = super().sample(n, generator, device)
        return self.mean + eps @ self.scale_tril.t()

    def kl(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """Exact KL, split over the whitened coordinates (each term need not be >= 0; their sum is the KL and,
        for the identity, each is :class:`StandardPrior`'s): in w = L⁻¹(z - m) the posterior is N(a, B) against
        N(0, I), so KL = ½ Σ_j (B_jj + a_j² - 1 - log s_j² + 2 log L_jj)."""
        dtype = torch.promote_types(mu.dtype, torch.float32)
        with torch.autocast(mu.device.type, enabled=False):
            mu, logvar = mu.to(dtype), logvar.to(dtype)
            inverse = torch.linalg.inv(self.scale_tril.to(dtype))
            centred = self._whiten(mu)
            spread = logvar.exp() @ inverse.pow(2).t()  # B_jj = Σ_k (L⁻¹)_jk² s_k²
            log_diag = self.scale_tril.diagonal().log().to(dtype)
            return 0.5 * (spread + centred.pow(2) - 1.0 - logvar + 2.0 * log_diag)

    @torch.no_grad()
    def fit(self, mu: Tensor, logvar: Tensor) -> None:
        """Moment-match the aggregate posterior of N poems' posteriors (N, Z): its mean, and the covariance of the
        means plus the mean posterior variance (in float64, then stored in the buffers' dtype)."""
        mu, var = mu.double(), logvar.double().exp()
        mean = mu.mean(dim=0)
        centred = mu - mean
        covariance = centred.t() @ centred / mu.shape[0] + torch.diag(var.mean(dim=0))
        self.mean.copy_(mean)
        self.scale_tril.copy_(torch.linalg.cholesky(covariance))


def build_prior(kind: str, dim: int) -> StandardPrior:
    return GaussianPrior(dim) if kind == "gaussian" else StandardPrior(dim)
