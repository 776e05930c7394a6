"""The expected shortfall of Gaussian class references (LDA's classes, or a spread each), by simulation.

The references score token k against a whitened frame z with N(z; m_k, s_k^2 I) (LDA: one shared
covariance, s_k = 1), m_k a class mean shrunk towards the grand mean and s_k^2 a spread leaning on the
pooled one. With a large vocabulary most tokens are seen a few times (1,024 Zipf-like tokens at 7,000
frames: the median token 3 times), so what the counts cannot tell is each rare token's mean (and
spread), and the halves' 1/n law recovers too little of the loss (Gaussian classes of a spread each
over 1,024 tokens, 16 dims: 0.39 of a 0.68-nat shortfall).

The model's posterior given the train frames is: token shares Dirichlet about the counts; each spread
inverse-gamma, from a prior fitted by its evidence over every token's scatter (spreads of real classes
differ by far more than the pooled pseudo-frames allow); each mean Gaussian about the token's own mean
shrunk by tau^2 / (tau^2 + s_k^2 / n_k) per kept direction. The expected shortfall of the fixed critic
is E_post[I(theta) - bound(critic; theta)], each term on frames drawn from theta: I(theta) by its own log
ratio, the bound with the marginal term summed over tokens exactly. The frames are the same for both
terms, so their noise largely cancels. Signal in the directions a fit dropped is not in the posterior:
there the prediction is low.

LDA's posterior takes the shares under a symmetric or a Pitman-Yor prior, whichever the evidence
prefers (``share_posterior.py``: Zipf-like tokens leave far more mass unseen than a symmetric prior
believes), and tau^2 as the means' variance across tokens (``token_tau2``; the fit's own weights tokens
by their frames). Over S3's 6,561 Zipf tokens x 16 dims it then predicts 0.98-1.01 of a 2.0-nat deficit
(0.82-0.84 before); over 16-2,048 tokens x 2-16 dims, uniform or Zipf-like, 0.91-1.02 of 0.025-2.1
nats (the firmest whitening 1.1-1.2 of deficits under 0.04; two seeds each, 7,000 frames).

The class-spread posterior keeps the symmetric shares, the fit's tau^2 and the inverse-gamma spreads:
0.80-1.16 of deficits of 0.08-1.2 nats (1,024-2,048 tokens x 16 dims, 512 x 8, 128 x 8, spreads equal or
16-fold apart). The same three changes with spreads on a grid under a nonparametric prior read
0.84-1.03 for fits that keep every direction with signal, but 0.70-0.80 for the edge rule's, which drop
some: over 4,096 tokens x 24 dims, where 3 of 5 cross-fitted parts chose the edge rule, a variant went
from +0.3/-4.2% to -8.6/-16.3%. The inverse-gamma's heavy tail over-predicts kept-direction fits over
large vocabularies (1.2 over 2,048 tokens, 1.4 over 4,096) and so covers the edge rule's dropped
signal; until the posterior models the dropped directions, the spreads keep it.
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


@dataclass
class ClassPosterior:
    """What a class reference's posterior needs from its fit, in its kept directions: each token's frames
    ``counts [V]``, unshrunk mean ``raw [V, r]`` and the fit's own prior variance of the means ``tau2 [r]``
    (frame-weighted), and either each token's scatter ``ss [V]`` with ``dof [V]`` degrees of freedom (a
    spread each) or the whitened frames' shared noise covariance ``noise [r, r]`` (LDA: its whitening need
    not be exact)."""

    counts: torch.Tensor
    raw: torch.Tensor
    tau2: torch.Tensor
    ss: torch.Tensor | None = None
    dof: torch.Tensor | None = None
    noise: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("counts", "raw", "tau2", "ss", "dof", "noise"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.detach().double().cpu())


def fit_spread_prior(ss: torch.Tensor, dof: torch.Tensor) -> tuple[float, float]:
    """(a, b) of an inverse-gamma prior on the tokens' spreads maximising the evidence of their scatter: token
    k's sum of squares ``ss`` is s_k^2 chi^2 with ``dof`` degrees of freedom (tokens with none are skipped)."""
    seen = dof > 0
    ss, half = ss[seen].double(), dof[seen].double() / 2
    if ss.numel() < 2:
        return math.inf, math.inf
    pooled = float(ss.sum() / (2 * half.sum()))
    shapes = torch.logspace(math.log10(0.3), math.log10(3e4), 61, dtype=torch.float64)
    centres = pooled * torch.logspace(-0.7, 0.7, 36, dtype=torch.float64)  # b / a, the prior's scale
    a = shapes[:, None, None]
    b = a * centres[None, :, None]
    # log marginal of ss_k: lgamma(a + h) - lgamma(a) + a log b - (a + h) log(b + ss/2), up to constants
    ll = (torch.lgamma(a + half) - torch.lgamma(a) + a * b.log() - (a + half) * torch.log(b + ss / 2)).sum(-1)
    i = int(ll.argmax())
    ai, bi = divmod(i, centres.numel())
    return float(shapes[ai]), float(shapes[ai] * centres[bi])


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
    tau2 = (x2 - v).mean(0).clamp_min(1e-6)
    for _ in range(sweeps):  # the score equation's fixed point: sum_k w_k (x_k^2 - v_k - tau^2) = 0
        w = (tau2[None] + v).reciprocal() ** 2
        tau2 = ((w * (x2 - v)).sum(0) / w.sum(0)).clamp_min(1e-6)
    return tau2


def class_shortfall(ref: "LdaReference | SpreadReference") -> float | None:
    """A class reference's expected shortfall under its posterior (None without its fit's statistics)."""
    post = ref.posterior
    if post is None:
        return None
    counts, raw = post.counts, post.raw
    vocab, r = raw.shape
    means, log_prior = ref.means.double().cpu(), ref.log_prior.double().cpu()
    spreads = post.ss is not None and post.dof is not None
    if spreads:
        a0, b0 = fit_spread_prior(post.ss, post.dof)
        if not (math.isfinite(a0) and math.isfinite(b0)):
            return None
        d = int(ref.full_proj.shape[0])
        inv_var, const = ref.inv_var.double().cpu(), ref.const.double().cpu()
        scale = torch.ones(r, dtype=torch.float64)
        # the first posterior's shares and tau^2 (see the module's docstring)
        tau2, shares = post.tau2, symmetric_share_prior(counts)
    else:
        if post.noise is None:
            return None
        chol, info = torch.linalg.cholesky_ex(post.noise)
        if int(info):  # a direction without noise (a constant dimension): no posterior to draw from
            return None
        inv_var, const = torch.ones(vocab, dtype=torch.float64), -0.5 * (means**2).sum(1)
        scale = post.noise.diagonal()
        tau2, shares = token_tau2(raw, counts, scale.expand(vocab, r)), fit_share_prior(counts)
    m = max(SIM_FRAMES[0], min(SIM_FRAMES[1], SIM_CELLS // max(vocab, 1)))
    gen = torch.Generator().manual_seed(SIM_SEED)
    seen = (counts > 0)[:, None]
    n_k = counts.clamp_min(1)[:, None]
    rows = torch.arange(m)
    values = []
    for _ in range(SIM_DRAWS):
        pi = draw_shares(shares, counts, gen)
        s2 = ((b0 + post.ss / 2) / torch._standard_gamma(a0 + post.dof / 2, generator=gen) if spreads
              else torch.ones(vocab, dtype=torch.float64))
        noise = s2[:, None] * scale[None]  # [V, r] each token's noise variance per direction
        shrink = torch.where(seen, tau2 / (tau2 + noise / n_k), torch.zeros_like(raw))
        var_mu = torch.where(seen, 1.0 / (1.0 / tau2 + n_k / noise), tau2.expand(vocab, r))
        mu = raw * shrink + var_mu.sqrt() * torch.randn(vocab, r, generator=gen, dtype=torch.float64)
        k = torch.multinomial(pi, m, replacement=True, generator=gen)
        eps = torch.randn(m, r, generator=gen, dtype=torch.float64)
        if spreads:
            z = mu[k] + s2[k].sqrt()[:, None] * eps
            rest = 2 * s2[k] * torch._standard_gamma(torch.full((m,), (d - r) / 2, dtype=torch.float64),
                                                     generator=gen)
            sq = (z**2).sum(1) + rest
            true_logits = _logits(z, sq, mu, 1.0 / s2, -0.5 * (mu**2).sum(1) / s2 - 0.5 * d * s2.log(), pi.log())
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
