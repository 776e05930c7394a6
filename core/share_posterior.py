"""The posterior of a vocabulary's token shares given train counts: a symmetric Dirichlet or a Pitman-Yor prior.

A symmetric Dirichlet believes every token equally likely a priori, so over Zipf-like tokens its evidence
fit puts too little mass on the tokens never seen: 6,561 tokens with 1/k shares at 7,000 frames leave
0.185 of the mass on unseen tokens (Good-Turing's n1/N reads 0.189); the Dirichlet's posterior put 0.087
there, and a class reference's expected shortfall came out at 0.82 of the deficit. The two-parameter
(Pitman-Yor) prior with discount d in [0, 1) has power-law tails; its posterior mass on new tokens is
(theta + K d) / (N + theta). Both are exchangeable partition laws (a symmetric Dirichlet over V tokens is
the Pitman-Yor law with d = -alpha, theta = V alpha), so their evidence compares directly; Pitman-Yor is
used where its evidence is larger by ``PY_MARGIN``.

Pitman-Yor knows no vocabulary size, so as the vocabulary runs out it over-states the unseen mass (1,024
tokens with 1/k^0.8 shares at 7,000 frames: 0.043 against 0.019). Good-Turing's n1/N for the total
was closer there, but it lowered the predicted shortfall of class-spread fits over such vocabularies
(measured while they took these shares too) from 0.90-1.03 of the deficit to 0.82-0.99 (1,024-2,048
tokens, two seeds): Pitman-Yor's total is kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Pitman-Yor is taken only when its evidence beats the Dirichlet's by this many nats (a grid of two
#: parameters against one, and flat counts should keep their Dirichlet)
PY_MARGIN = 2.0
_DISCOUNTS = torch.linspace(0.0, 0.95, 39, dtype=torch.float64)
_STRENGTHS = torch.logspace(-1.0, 5.0, 121, dtype=torch.float64)


@dataclass(frozen=True)
class SharePrior:
    """A token-share prior: ``discount`` < 0 is a symmetric Dirichlet with pseudo-count -discount per token;
    ``discount`` in [0, 1) is Pitman-Yor with strength ``strength``."""

    discount: float
    strength: float

    @property
    def dirichlet(self) -> bool:
        """Whether this is the symmetric Dirichlet."""
        return self.discount < 0


def _seen_terms(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """The seen tokens' distinct counts, how many tokens have each, K and N."""
    n = counts[counts > 0].double()
    values, mult = torch.unique(n, return_counts=True)
    return values, mult.double(), int(n.numel()), float(n.sum())


def partition_evidence(counts: torch.Tensor, discount: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """log EPPF of the seen counts under Pitman-Yor (``discount`` >= 0) for each pair of the broadcast grids."""
    values, mult, k, total = _seen_terms(counts)
    d, t = discount.double(), strength.double()
    new = torch.where(d > 0, (k - 1) * d.clamp_min(1e-300).log() + torch.lgamma(t / d.clamp_min(1e-12) + k)
                      - torch.lgamma(t / d.clamp_min(1e-12) + 1), (k - 1) * t.log())
    sizes = ((torch.lgamma(values - d[..., None]) - torch.lgamma(1 - d[..., None])) * mult).sum(-1)
    return new - (torch.lgamma(t + total) - torch.lgamma(t + 1)) + sizes


def dirichlet_evidence(counts: torch.Tensor, alpha: float) -> float:
    """log EPPF of the seen counts under a symmetric Dirichlet with ``alpha`` per token over all of them."""
    values, mult, k, total = _seen_terms(counts)
    vocab = counts.numel()
    new = (k - 1) * math.log(alpha) + math.lgamma(vocab) - math.lgamma(vocab - k + 1)
    sizes = float(((torch.lgamma(values + alpha) - math.lgamma(1 + alpha)) * mult).sum())
    return new - (math.lgamma(vocab * alpha + total) - math.lgamma(vocab * alpha + 1)) + sizes


def token_share_prior(counts: torch.Tensor) -> float:
    """Each token's pseudo-count in a symmetric Dirichlet prior on the token shares, at its evidence's maximum.

    Jeffreys' 1/2 believes that the tokens seen most in training are the most frequent ones, and the
    critic knows those best: with 2,048 equally frequent tokens at 7,000 frames the posterior's shortfall
    then read 0.80 of a 1.06-nat deficit. The evidence of flat counts puts the prior near uniform."""
    from .reference import dirichlet_evidence_fit  # reference.py imports class_posterior, which imports this

    seen = counts > 0
    vocab = counts.numel()
    total = dirichlet_evidence_fit(counts[seen], counts.sum().reshape(1),
                                   torch.full((int(seen.sum()),), 1.0 / vocab, dtype=torch.float64))
    return total / vocab


def symmetric_share_prior(counts: torch.Tensor) -> SharePrior:
    """The symmetric Dirichlet at its evidence's maximum."""
    alpha = token_share_prior(counts.detach().double().cpu())
    return SharePrior(-alpha, counts.numel() * alpha)


def fit_share_prior(counts: torch.Tensor) -> SharePrior:
    """The symmetric Dirichlet at its evidence's maximum (``token_share_prior``), or the Pitman-Yor prior at
    its own on a grid when that is larger by ``PY_MARGIN`` nats."""
    counts = counts.detach().double().cpu()
    dirichlet = symmetric_share_prior(counts)
    if int((counts > 0).sum()) < 2:
        return dirichlet
    ll = partition_evidence(counts, _DISCOUNTS[:, None], _STRENGTHS[None, :])
    best = int(ll.argmax())
    di, ti = divmod(best, _STRENGTHS.numel())
    if float(ll.max()) <= dirichlet_evidence(counts, -dirichlet.discount) + PY_MARGIN:
        return dirichlet
    return SharePrior(float(_DISCOUNTS[di]), float(_STRENGTHS[ti]))


def draw_shares(prior: SharePrior, counts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One draw of the token shares ``[V]`` from the posterior given the train ``counts``."""
    counts = counts.double()
    if prior.dirichlet:
        g = torch._standard_gamma(counts - prior.discount, generator=gen)
        return g / g.sum()
    seen = counts > 0
    k, unseen = int(seen.sum()), int((~seen).sum())
    rest = prior.strength + k * prior.discount
    g_seen = torch._standard_gamma(counts[seen] - prior.discount, generator=gen)
    g_rest = torch._standard_gamma(torch.tensor([rest], dtype=torch.float64), generator=gen) if unseen else \
        torch.zeros(1, dtype=torch.float64)
    total = g_seen.sum() + g_rest.sum()
    pi = torch.zeros_like(counts)
    pi[seen] = g_seen / total
    if unseen:
        # the new tokens' mass split by the Pitman-Yor stick-breaking of the posterior, cut at the tokens
        # left (what the cut leaves over is spread in proportion); which unseen token gets which stick
        # does not matter to a critic that scores every unseen token alike
        j = torch.arange(unseen, dtype=torch.float64)
        a = torch._standard_gamma(torch.full((unseen,), 1.0 - prior.discount, dtype=torch.float64), generator=gen)
        b = torch._standard_gamma(rest + (j + 1) * prior.discount, generator=gen)
        stick = a / (a + b)
        left = torch.cat([torch.zeros(1, dtype=torch.float64), torch.log1p(-stick[:-1].clamp_max(1 - 1e-16)).cumsum(0)])
        w = stick * left.exp()
        pi[~seen] = (g_rest / total) * w / w.sum()
    return pi
