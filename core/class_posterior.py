"""The expected shortfall of Gaussian class references (LDA's classes, or a spread each), by simulation.

The references score token k against a whitened frame z with N(z; m_k, s_k^2 I) (LDA: one shared
covariance, s_k = 1), m_k a class mean shrunk towards the grand mean and s_k^2 a spread leaning on the
pooled one. With a large vocabulary most tokens are seen a few times (1,024 Zipf-like tokens at 7,000
frames: the median token 3 times), so what the counts cannot tell is each rare token's mean (and
spread), and the halves' 1/n law recovers too little of the loss (Gaussian classes of a spread each
over 1,024 tokens, 16 dims: 0.39 of a 0.68-nat shortfall).

The model's posterior given the train frames is: token shares about the counts under a symmetric
Dirichlet or (LDA, where its evidence is larger: Zipf-like tokens leave far more mass unseen than a
symmetric prior believes) a Pitman-Yor prior (``share_posterior.py``); each mean Gaussian about the
token's own mean shrunk by tau^2 / (tau^2 + s_k^2 / n_k) per direction, tau^2 the means' variance across
tokens, each token once (``token_tau2``; the fit's own weights tokens by their frames, so it describes
the few frequent ones); for the class spreads, each spread on a grid under a nonparametric prior fitted to every token's
scatter (``grid_spread_prior``). The expected shortfall of the fixed critic is E_post[I(theta) -
bound(critic; theta)], each term on frames drawn from theta: I(theta) by its own log ratio, the bound
with the marginal term summed over tokens exactly. The frames are the same for both terms, so their noise
largely cancels.

LDA's posterior lives in the directions its fit kept; the class-spread posterior in every direction of
the whitened space, the fit's dropped ones included (their means' variance by ``token_tau2`` like the
kept ones', and the spreads from the scatter about each token's mean in all of them). Over 4,096 tokens x
24 dims the edge rule drops directions with signal: a posterior of the kept directions alone predicted
0.63-0.70 of the deficit there, while an inverse-gamma prior on the spreads, whose heavy tail covered
that gap, predicted 1.36-1.44 for the fits that keep every direction (a variant's +0.3/-4.2% was a
balance of the two errors). With every direction and the grid prior: 0.98-1.22 there, 0.91-1.03 over
2,048 x 16 and 0.82-0.94 over 256 x 32, for every rule; 0.80-1.26 (the middle half 0.89-1.01, before
0.76-1.00) over 128-4,096 tokens x 8-64 dims, some with 40-56 dims of noise alone. The class-spread
posterior keeps the symmetric shares: with LDA's Pitman-Yor shares it read 0.80-1.37 over the same cases,
the middle half 0.92-0.99, but 1.14-1.35 where 40-56 dims are noise alone and the tokens Zipf's (0.89-1.04
with the symmetric shares): no clear gain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .share_posterior import draw_shares, fit_share_prior, symmetric_share_prior

if TYPE_CHECKING:
    from .reference import LdaReference, SpreadReference

#: frames x tokens scored per posterior draw (two score tables of this size in float32)
SIM_CELLS = 1 << 22
SIM_FRAMES = (1024, 16384)
SIM_DRAWS = 4
SIM_SEED = 20_240_611
#: ``token_tau2``'s least variance: a direction at it carries no signal
TAU2_FLOOR = 1e-6


@dataclass
class ClassPosterior:
    """What a class reference's posterior needs from its fit: each token's frames ``counts [V]`` and unshrunk
    mean ``raw [V, r]`` in the directions the fit kept, and either (a spread each) the means in the directions
    it dropped ``rest [V, d - r]`` with each token's scatter about its own mean in all d directions ``ss [V]``
    on ``dof [V]`` degrees of freedom, or (LDA) the whitened frames' shared noise covariance in the kept
    directions ``noise [r, r]`` (its whitening need not be exact)."""

    counts: torch.Tensor
    raw: torch.Tensor
    rest: torch.Tensor | None = None
    ss: torch.Tensor | None = None
    dof: torch.Tensor | None = None
    noise: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("counts", "raw", "rest", "ss", "dof", "noise"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.detach().double().cpu())


@dataclass
class SpreadPrior:
    """A discrete prior on the tokens' spreads (variances ``grid [G]`` with ``weights [G]``) and each token's
    posterior over that grid ``post [V, G]`` given its scatter."""

    grid: torch.Tensor
    weights: torch.Tensor
    post: torch.Tensor

    def mean(self) -> torch.Tensor:
        """Each token's posterior mean spread ``[V]``."""
        return self.post @ self.grid

    def draw(self, gen: torch.Generator) -> torch.Tensor:
        """One spread per token ``[V]`` from its posterior."""
        return self.grid[torch.multinomial(self.post, 1, generator=gen)[:, 0]]


def grid_spread_prior(ss: torch.Tensor, dof: torch.Tensor, points: int = 80, sweeps: int = 300) -> SpreadPrior | None:
    """The tokens' spread prior by nonparametric maximum likelihood on a log grid (Kiefer-Wolfowitz, by EM):
    token k's sum of squares ``ss`` is s_k^2 chi^2 with ``dof`` degrees of freedom (a token with none keeps
    the prior). None when fewer than two tokens have any.

    An inverse-gamma prior fitted by its evidence had a shape of 1.7 for spreads log-uniform over a 16-fold
    range (bounded): a tail far heavier than theirs, which alone moved the predicted shortfall between 0.44
    and 1.8 of the deficit over 2,048 tokens as the shape was varied."""
    ss, dof = ss.double(), dof.double()
    seen = dof > 0
    if int(seen.sum()) < 2:
        return None
    pooled = float(ss[seen].sum() / dof[seen].sum())
    if not pooled > 0:
        return None
    grid = pooled * torch.logspace(-2.0, 2.0, points, dtype=torch.float64)
    # each token's log-likelihood at each grid spread, up to a per-token constant
    ll = -0.5 * (dof[:, None] * grid.log()[None] + ss[:, None] / grid[None])  # [V, G]
    lik = (ll - ll.max(1, keepdim=True).values).exp()
    weights = torch.full((points,), 1.0 / points, dtype=torch.float64)
    fit = lik[seen]
    for _ in range(sweeps):
        r = fit * weights[None]
        weights = (r / r.sum(1, keepdim=True)).mean(0)
    post = lik * weights[None]
    return SpreadPrior(grid, weights, post / post.sum(1, keepdim=True))


def token_tau2(raw: torch.Tensor, counts: torch.Tensor, noise: torch.Tensor, sweeps: int = 50) -> torch.Tensor:
    """The class means' prior variance per direction ``[r]`` with the seen tokens as draws from one population:
    the maximum-likelihood variance of a random effect observed as ``raw`` with noise ``noise [V, r]`` / n_k.

    The fit's own tau^2 weights tokens by their frames, so it describes the few frequent tokens, and it is
    what the critic shrinks with. The rare tokens, whose means the posterior is about, are draws from all
    tokens: over 6,561 Zipf tokens (means N(0, I) in 16 dims) the frame-weighted tau^2 summed to 14.6 and
    14.8 (two seeds) against 16.4 per token, and the shortfall read 0.92-0.95 of the deficit. Counting
    each token once (a plain mean of m_k^2 less its noise) fixed that, but where a direction's signal is
    weak beside the noise (tau^2 0.09 at unit noise, 1,024 tokens; class-spread fits) singletons made each
    direction's estimate noisy and the shortfall read 1.1-1.2; the likelihood weights a token by
    1 / (tau^2 + v_k)^2."""
    seen = counts > 0
    x2, v = raw[seen] ** 2, noise[seen] / counts[seen][:, None]
    tau2 = (x2 - v).mean(0).clamp_min(TAU2_FLOOR)
    for _ in range(sweeps):  # the score equation's fixed point: sum_k w_k (x_k^2 - v_k - tau^2) = 0
        w = (tau2[None] + v).reciprocal() ** 2
        tau2 = ((w * (x2 - v)).sum(0) / w.sum(0)).clamp_min(TAU2_FLOOR)
    return tau2


def class_shortfall(ref: "LdaReference | SpreadReference") -> float | None:
    """A class reference's expected shortfall under its posterior (None without its fit's statistics)."""
    post = ref.posterior
    if post is None:
        return None
    counts = post.counts
    vocab, r = post.raw.shape
    means, log_prior = ref.means.double().cpu(), ref.log_prior.double().cpu()
    spreads = post.ss is not None and post.dof is not None
    if spreads:
        prior = grid_spread_prior(post.ss, post.dof)
        if prior is None:
            return None
        d = int(ref.full_proj.shape[0])
        inv_var, const = ref.inv_var.double().cpu(), ref.const.double().cpu()
        raw = post.raw if post.rest is None else torch.cat([post.raw, post.rest], 1)
        tau2 = token_tau2(raw, counts, prior.mean()[:, None].expand(vocab, raw.shape[1]))
        # a dropped direction whose means do not vary across tokens is noise alone: drawn with the rest as chi^2
        signal = torch.cat([torch.ones(r, dtype=torch.bool), tau2[r:] > TAU2_FLOOR])
        raw, tau2 = raw[:, signal], tau2[signal]
        scale = torch.ones(raw.shape[1], dtype=torch.float64)
        shares = symmetric_share_prior(counts)  # see the module's docstring
    else:
        if post.noise is None:
            return None
        chol, info = torch.linalg.cholesky_ex(post.noise)
        if int(info):  # a direction without noise (a constant dimension): no posterior to draw from
            return None
        raw = post.raw
        inv_var, const = torch.ones(vocab, dtype=torch.float64), -0.5 * (means**2).sum(1)
        scale = post.noise.diagonal()
        tau2, shares = token_tau2(raw, counts, scale.expand(vocab, r)), fit_share_prior(counts)
    cols = raw.shape[1]
    m = max(SIM_FRAMES[0], min(SIM_FRAMES[1], SIM_CELLS // max(vocab, 1)))
    gen = torch.Generator().manual_seed(SIM_SEED)
    seen = (counts > 0)[:, None]
    n_k = counts.clamp_min(1)[:, None]
    rows = torch.arange(m)
    values = []
    for _ in range(SIM_DRAWS):
        pi = draw_shares(shares, counts, gen)
        s2 = prior.draw(gen) if spreads else torch.ones(vocab, dtype=torch.float64)
        noise = s2[:, None] * scale[None]  # [V, cols] each token's noise variance per direction
        shrink = torch.where(seen, tau2 / (tau2 + noise / n_k), torch.zeros_like(raw))
        var_mu = torch.where(seen, 1.0 / (1.0 / tau2 + n_k / noise), tau2.expand(vocab, cols))
        mu = raw * shrink + var_mu.sqrt() * torch.randn(vocab, cols, generator=gen, dtype=torch.float64)
        k = torch.multinomial(pi, m, replacement=True, generator=gen)
        eps = torch.randn(m, cols, generator=gen, dtype=torch.float64)
        if spreads:
            z = mu[k] + s2[k].sqrt()[:, None] * eps
            sq = (z**2).sum(1)
            if d > cols:
                sq += 2 * s2[k] * torch._standard_gamma(torch.full((m,), (d - cols) / 2, dtype=torch.float64),
                                                        generator=gen)
            true_logits = _logits(z, sq, mu, 1.0 / s2, -0.5 * (mu**2).sum(1) / s2 - 0.5 * d * s2.log(), pi.log())
            z = z[:, :r]  # what the critic sees of the frame besides its norm
        else:
            z, sq = mu[k] + eps @ chol.T, torch.zeros(m, dtype=torch.float64)
            # the truth in coordinates where its noise is white: z' = L^-1 z, frames mu'_k + eps
            white = torch.linalg.solve_triangular(chol, mu.T, upper=False).T
            true_logits = _logits(white[k] + eps, sq, white, inv_var, -0.5 * (white**2).sum(1), pi.log())
        fit_logits = _logits(z, sq, means, inv_var, const, log_prior)
        true_norm, fit_norm = torch.logsumexp(true_logits, 1).double(), torch.logsumexp(fit_logits, 1).double()
        mi = (true_logits[rows, k].double() - pi.log()[k] - true_norm).mean()
        joint = (fit_logits[rows, k].double() - log_prior[k] - fit_norm).mean()
        # E_{k ~ pi} exp T(k, z) = sum_k pi_k q(z | k) / q(z), exactly over the tokens
        marginal = torch.logsumexp(fit_logits.add_((pi.log() - log_prior).float()[None]), 1).double() - fit_norm
        values.append(float(mi - joint + torch.logsumexp(marginal, 0) - math.log(m)))
    out = sum(values) / len(values)
    return out if math.isfinite(out) else None


def _logits(z: torch.Tensor, sq: torch.Tensor, means: torch.Tensor, inv_var: torch.Tensor, const: torch.Tensor,
            log_prior: torch.Tensor) -> torch.Tensor:
    """log pi_k + log N(z; m_k, s_k^2 I) up to a constant ``[M, V]`` in float32 (the [M, V] passes are the whole
    cost; the shortfall is a mean over M), for frames ``z [M, r]`` with squared norms ``sq [M]``."""
    f = torch.float32
    out = z.to(f) @ (means * inv_var[:, None]).T.to(f)
    out.addr_(sq.to(f), inv_var.to(f), alpha=-0.5)
    return out.add_((const + log_prior).to(f)[None])
