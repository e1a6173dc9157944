"""The latent prior p(z): N(0, I), or full-covariance Gaussians (one, or a mixture) fitted to the aggregate posterior.

With the encoder and decoder fixed, the ELBO's only term in p(z) is E_x E_q(z|x) log p(z): the cross-entropy of
the aggregate posterior q(z) = E_x q(z|x) against the prior. Among Gaussians it is largest for the one with q(z)'s
mean and covariance (moment matching), so :meth:`GaussianPrior.fit` raises the bound of a trained model without
retraining it, and its samples come from where the codes of real poems lie (their correlations included). A
mixture follows the aggregate posterior more closely still: its samples fall less often between the codes of real
poems, where the decoder writes less regular verse (docs/flagship_history.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from poetry_vae.errors import PromptError
from poetry_vae.objective import gaussian_kl, gaussian_log_density

PRIORS = ("standard", "gaussian")
# What a component of a prior fitted by verse holds: the codes of poems that fit a regulated tone pattern (近体) or
# of those that do not (古绝). Sampling can draw from one kind alone (``verse=``): the code fixes a poem's pattern.
VERSES = ("unregulated", "regulated")
UNLABELLED = -1  # a component fitted to every poem (a prior fitted before verses, or without them)


class StandardPrior(nn.Module):
    """N(0, I): no parameters, so checkpoints written before priors were a choice load unchanged."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def log_prob(self, z: Tensor) -> Tensor:
        """(..., Z) -> (...) log-density."""
        return gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None,
               verse: str | None = None) -> Tensor:
        """(n, Z) codes on ``device``, drawn on the generator's device (the same numbers for a seed anywhere).
        ``verse`` (one of ``VERSES``) draws from that kind's components only: a prior fitted by verse."""
        if verse is not None:
            self.check_verse(verse)  # N(0, I) has no verses: raises
        gen_device = generator.device if generator is not None else device
        return torch.randn(n, self.dim, generator=generator, device=gen_device).to(device)

    def fitted_verses(self) -> tuple[str, ...]:
        """The verses ``sample(verse=...)`` can draw: none unless the prior was fitted by verse."""
        return ()

    def check_verse(self, verse: str) -> None:
        """A one-line error unless ``sample(verse=verse)`` can draw: a known verse, in a prior fitted by verse."""
        if verse not in VERSES:
            raise PromptError(f"verse={verse!r}: choose {' or '.join(VERSES)}, or leave it out for either")
        if verse not in self.fitted_verses():
            raise PromptError(f"verse={verse}: this model's prior was not fitted by verse; fit one with python -m "
                              "poetry_vae.fit_prior ckpt_path=<checkpoint> out=<new file> components=8 by_verse=true")

    def log_ratio(self, z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
        """log p(z) - log q(z|x) for codes z (..., Z) of the posteriors N(mu, exp(logvar)): an importance weight."""
        return self.log_prob(z) - gaussian_log_density(z, mu, logvar)

    def kl(self, mu: Tensor, logvar: Tensor, z: Tensor | None = None) -> Tensor:
        """KL(N(mu, exp(logvar)) || p) per dimension: (B, Z) -> (B, Z) (``z``, the codes drawn, unused)."""
        return gaussian_kl(mu, logvar)


class GaussianPrior(StandardPrior):
    """A mixture of ``components`` full-covariance Gaussians, Σ_k w_k N(m_k, L_k L_kᵀ), held as buffers (N(0, I)
    until :meth:`fit`); not trained by the optimiser. One component is a single Gaussian."""

    def __init__(self, dim: int, components: int = 1) -> None:
        super().__init__(dim)
        self.components = components
        self.register_buffer("logits", torch.zeros(components))
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("scale_trils", torch.eye(dim).repeat(components, 1, 1))
        self.register_buffer("verses", torch.full((components,), UNLABELLED, dtype=torch.long))  # index in VERSES

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # a prior fitted before verses were labelled has no ``verses``: all its components are unlabelled
        state_dict.setdefault(prefix + "verses", torch.full((self.components,), UNLABELLED, dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fitted_verses(self) -> tuple[str, ...]:
        return tuple(verse for index, verse in enumerate(VERSES) if bool((self.verses == index).any()))

    def _law(self, dtype: torch.dtype) -> MultivariateNormal | MixtureSameFamily:
        normals = MultivariateNormal(self.means.to(dtype), scale_tril=self.scale_trils.to(dtype), validate_args=False)
        if self.components == 1:
            return MultivariateNormal(normals.loc[0], scale_tril=normals.scale_tril[0], validate_args=False)
        return MixtureSameFamily(Categorical(logits=self.logits.to(dtype), validate_args=False), normals,
                                 validate_args=False)

    def log_prob(self, z: Tensor) -> Tensor:
        """In float32 at least (the triangular solve has no bf16 kernel, and a density wants the precision)."""
        dtype = torch.promote_types(z.dtype, torch.float32)
        with torch.autocast(z.device.type, enabled=False):
            return self._law(dtype).log_prob(z.to(dtype))

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None,
               verse: str | None = None) -> Tensor:
        logits = self.logits
        if verse is not None:
            self.check_verse(verse)
            logits = logits.masked_fill(self.verses != VERSES.index(verse), float("-inf"))
        eps = super().sample(n, generator, device)
        if self.components == 1:
            return self.means[0] + eps @ self.scale_trils[0].t()
        pick = torch.multinomial(logits.softmax(0).to(eps.device if generator is None else generator.device),
                                 n, replacement=True, generator=generator).to(eps.device)
        return self.means[pick] + (self.scale_trils[pick] @ eps.unsqueeze(-1)).squeeze(-1)

    def kl(self, mu: Tensor, logvar: Tensor, z: Tensor | None = None) -> Tensor:
        """KL(q(z|x) || p). One component: exact, split over the whitened coordinates (each term need not be >= 0;
        their sum is the KL and, for the identity, each is :class:`StandardPrior`'s): in w = L⁻¹(z - m) the
        posterior is N(a, B) against N(0, I), so KL = ½ Σ_j (B_jj + a_j² - 1 - log s_j² + 2 log L_jj). A mixture
        has no closed form: log q(z|x) - log p(z) at the code drawn, (B, 1), so free bits then floor the whole KL,
        not each dimension's."""
        dtype = torch.promote_types(mu.dtype, torch.float32)
        with torch.autocast(mu.device.type, enabled=False):
            mu, logvar = mu.to(dtype), logvar.to(dtype)
            if self.components > 1:
                if z is None:
                    raise ValueError("a mixture prior's KL is estimated at a code: pass z")
                z = z[: mu.shape[0]].to(dtype)  # the first code of each poem (the IW bound draws K a poem)
                return -self.log_ratio(z, mu, logvar).unsqueeze(1)
            scale_tril = self.scale_trils[0].to(dtype)
            centred = torch.linalg.solve_triangular(scale_tril, (mu - self.means[0].to(dtype)).t(), upper=False).t()
            spread = logvar.exp() @ torch.linalg.inv(scale_tril).pow(2).t()  # B_jj = Σ_k (L⁻¹)_jk² s_k²
            log_diag = scale_tril.diagonal().log()
            return 0.5 * (spread + centred.pow(2) - 1.0 - logvar + 2.0 * log_diag)

    @torch.no_grad()
    def fit(self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None, draws: int = 4) -> None:
        """Fit to the aggregate posterior of N poems' posteriors (N, Z). One component: moment matching, exact (its
        mean, and the covariance of the means plus the mean posterior variance, in float64). A mixture:
        expectation-maximisation (scikit-learn's GaussianMixture) on ``draws`` codes from each posterior."""
        mu, logvar = mu.double(), logvar.double()
        if self.components == 1:
            mean = mu.mean(dim=0)
            centred = mu - mean
            covariance = centred.t() @ centred / mu.shape[0] + torch.diag(logvar.exp().mean(dim=0))
            weights, means, covariances = torch.ones(1), mean[None], covariance[None]
        else:
            from sklearn.mixture import GaussianMixture  # only here: the import takes a second

            codes = torch.cat([mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator,
                                                                        dtype=mu.dtype) for _ in range(draws)])
            mixture = GaussianMixture(self.components, covariance_type="full", reg_covar=1e-4, max_iter=200,
                                      random_state=0).fit(codes.numpy())
            weights, means, covariances = (torch.from_numpy(a) for a in (mixture.weights_, mixture.means_,
                                                                          mixture.covariances_))
        self.logits.copy_(weights.log())
        self.means.copy_(means)
        self.scale_trils.copy_(torch.linalg.cholesky(covariances))
        self.verses.fill_(UNLABELLED)

    @torch.no_grad()
    def fit_by_verse(self, mu: Tensor, logvar: Tensor, regulated: Tensor, generator: torch.Generator | None = None,
                     draws: int = 4) -> None:
        """Half the components fitted (as :meth:`fit`) to the posteriors of the poems that fit a regulated tone
        pattern (``regulated``, (N,) bool), half to the rest, each half weighted by its share of the poems: the
        mixture is still a fit of the whole aggregate posterior, and ``sample(verse=...)`` can draw from one half."""
        if self.components % 2 or not 0 < int(regulated.sum()) < len(regulated):
            raise PromptError(f"a prior fitted by verse needs an even number of components (got {self.components}) "
                              "and poems of both verses")
        half = self.components // 2
        for index, verse in enumerate(VERSES):
            chosen = regulated if verse == "regulated" else ~regulated
            part = GaussianPrior(self.dim, half)
            part.fit(mu[chosen], logvar[chosen], generator, draws)
            place = slice(index * half, (index + 1) * half)
            self.logits[place] = part.logits + chosen.double().mean().log()
            self.means[place] = part.means
            self.scale_trils[place] = part.scale_trils
            self.verses[place] = index


def build_prior(kind: str, dim: int, components: int = 1) -> StandardPrior:
    return GaussianPrior(dim, components) if kind == "gaussian" else StandardPrior(dim)
